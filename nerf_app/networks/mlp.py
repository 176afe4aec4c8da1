"""`FusedMLP`: the small MLP every field uses, with one state_dict whatever the backend.

The ``torch`` backend (plain matmuls) is the reference; it defines the initialisation and the
semantics the compiled fused kernels must match: ``cpp`` (float32, cache-tiled, multithreaded,
deterministic) and ``cuda`` (fp16 tensor cores, fp32 accumulation; hidden widths 16/32/64/128).
See :mod:`nerf_app.ops.mlp` for what each supports and how ``auto`` falls back.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .. import backend as _backend
from ..errors import ConfigError
from ..ops.mlp import ACTIVATIONS, OUTPUT_ACTIVATIONS, mlp_forward


class FusedMLP(_backend.BackendChoice, nn.Module):
    """``n_input -> width (x n_hidden_layers) -> n_output``, no biases (as tiny-cuda-nn's FullyFusedMLP).

    ``y = net(x)``: ``x`` ``[..., n_input]`` -> ``[..., n_output]``. Hidden layers use ``activation``
    (``"relu"``, ``"none"``); the output uses ``output_activation`` (``None``/``"none"``, ``"relu"``,
    ``"sigmoid"``, ``"exp"``). Weights are ``weights.{i}`` of shape ``[out, in]``, initialised with
    Kaiming-uniform for ReLU layers (Xavier-uniform otherwise), seeded by the caller's RNG.
    ``n_hidden_layers`` counts hidden layers (so there are ``n_hidden_layers + 1`` matrices).
    """

    def __init__(self, n_input: int, n_output: int, width: int = 64, n_hidden_layers: int = 2,
                 activation: str = "relu", output_activation: Optional[str] = None, backend: str = "auto"):
        super().__init__()
        output_activation = output_activation or "none"
        if activation not in ACTIVATIONS:
            raise ConfigError(f"FusedMLP activation must be one of {ACTIVATIONS}, got {activation!r}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ConfigError(f"FusedMLP output_activation must be one of {OUTPUT_ACTIVATIONS}, "
                              f"got {output_activation!r}")
        if n_input < 1 or n_output < 1 or width < 1 or n_hidden_layers < 0:
            raise ConfigError("FusedMLP needs n_input, n_output, width >= 1 and n_hidden_layers >= 0")
        self.n_input, self.n_output, self.width = n_input, n_output, width
        self.n_hidden_layers = n_hidden_layers
        self.activation, self.output_activation = activation, output_activation
        self.backend = backend
        dims = [n_input] + [width] * n_hidden_layers + [n_output]
        self.weights = nn.ParameterList()
        for i in range(len(dims) - 1):
            w = torch.empty(dims[i + 1], dims[i])
            if activation == "relu" and i < len(dims) - 2:
                nn.init.kaiming_uniform_(w, a=0.0, nonlinearity="relu")
            else:
                bound = math.sqrt(6.0 / (dims[i] + dims[i + 1]))
                nn.init.uniform_(w, -bound, bound)
            self.weights.append(nn.Parameter(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = mlp_forward(x.reshape(-1, self.n_input), list(self.weights), self.activation, self.output_activation,
                        self._backend)
        return y.reshape(*lead, self.n_output)

    def extra_repr(self) -> str:
        return (f"{self.n_input} -> {self.width} x {self.n_hidden_layers} -> {self.n_output}, "
                f"activation={self.activation}, output_activation={self.output_activation}, backend={self._backend}")
