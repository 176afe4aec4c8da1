"""SIREN: MLP with periodic activations (Sitzmann et al. 2020, "Implicit Neural Representations
with Periodic Activation Functions").

Layer ``i``: ``h_{i+1} = sin(w0_i * (W_i h_i + b_i))`` with ``w0_0 = w0_initial`` and ``w0_i = w0``
after; the last layer is linear (``outermost_linear``) or another sine layer.

Initialisation (the paper's Sec. 3.2 / supplement 1.5), ``n`` = fan-in of the layer:
  * first layer: ``W ~ U(-1/n, 1/n)`` (times ``w0_initial`` this spans several periods over [-1,1]);
  * later layers: ``W ~ U(-sqrt(6/n)/w0, sqrt(6/n)/w0)``, so ``w0 W h`` with ``h`` arcsine-distributed
    (variance 1/2) has variance ``n * (6/n)/3 * 1/2 = 1``: pre-activations stay ~N(0, 1) and
    activations ``sin(.)`` stay arcsine-distributed in [-1, 1] through depth;
  * biases as ``nn.Linear`` (``U(-1/sqrt(n), 1/sqrt(n))``), as in the authors' code.

Pure torch: one GEMM + sin per layer; the sine is elementwise and the fused MLP kernels are
ReLU/bias-free, so there is nothing a custom kernel would add beyond what BLAS already does.
Inputs are expected in [-1, 1] (callers map [0,1] coordinates with ``2x - 1``).
"""
from __future__ import annotations

import math
from typing import List

import torch
from torch import nn

from ..errors import ConfigError


class Siren(nn.Module):
    """``x`` ``[..., n_input]`` -> ``[..., n_output]``; ``n_hidden_layers`` sine layers of ``width``.

    ``n_hidden_layers`` counts hidden (sine) layers as :class:`FusedMLP` does, so there are
    ``n_hidden_layers + 1`` linear maps. :meth:`preactivations` returns each layer's
    ``w0 (W h + b)`` (used by the initialisation tests).
    """

    def __init__(self, n_input: int, n_output: int, width: int = 256, n_hidden_layers: int = 3,
                 w0: float = 30.0, w0_initial: float = 30.0, outermost_linear: bool = True):
        super().__init__()
        if n_input < 1 or n_output < 1 or width < 1 or n_hidden_layers < 1:
            raise ConfigError("Siren needs n_input, n_output, width >= 1 and n_hidden_layers >= 1")
        self.n_input, self.n_output, self.width, self.n_hidden_layers = n_input, n_output, width, n_hidden_layers
        self.w0, self.w0_initial, self.outermost_linear = float(w0), float(w0_initial), outermost_linear
        dims = [n_input] + [width] * n_hidden_layers + [n_output]
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        with torch.no_grad():
            for i, lin in enumerate(self.layers):
                n = lin.in_features
                bound = 1.0 / n if i == 0 else math.sqrt(6.0 / n) / self.w0
                lin.weight.uniform_(-bound, bound)
                # bias keeps nn.Linear's default U(-1/sqrt(n), 1/sqrt(n))

    @property
    def n_output_dims(self) -> int:
        return self.n_output

    def _omega(self, i: int) -> float:
        return self.w0_initial if i == 0 else self.w0

    def preactivations(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``[w0_i (W_i h_i + b_i) for each sine layer]`` (the arguments of the sines)."""
        out, h = [], x
        for i, lin in enumerate(self.layers[:-1]):
            z = self._omega(i) * lin(h)
            out.append(z)
            h = torch.sin(z)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.layers) - 1
        for i, lin in enumerate(self.layers):
            if i == last and self.outermost_linear:
                return lin(h)
            h = torch.sin(self._omega(i) * lin(h))
        return h

    def extra_repr(self) -> str:
        return f"w0={self.w0}, w0_initial={self.w0_initial}, outermost_linear={self.outermost_linear}"
