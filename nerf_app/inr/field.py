"""``InrField``: coordinates ``[N, D]`` in ``[0,1]^D`` -> values ``[N, C]``, ``net(enc(x))``.

Encodings see ``x`` in their natural domain: the hash grid and Fourier features (Tancik et al.)
take ``[0,1]^D``; positional encoding, identity and SIREN's first layer take ``2x - 1 in [-1,1]^D``
(NeRF's and SIREN's conventions). Networks: ``mlp`` = :class:`~nerf_app.networks.FusedMLP`
(ReLU, bias-free, fused kernels), ``siren`` = :class:`~nerf_app.networks.Siren`. The output is
linear (no squashing), so the loss sees the signal's own units.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import encodings
from ..errors import ConfigError
from ..networks import FusedMLP, Siren

ENCODINGS = encodings.ENCODINGS
NETWORKS = ("mlp", "siren")


class InrField(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, s, resolution: int, seed: int = 0, backend: str = "auto"):
        super().__init__()
        if s.network not in NETWORKS:
            raise ConfigError(f"model.network must be one of {NETWORKS}, got {s.network!r}")
        self.encoding = encodings.build(s, input_dim, backend, finest_resolution=s.finest_resolution or resolution,
                                        seed=seed)
        n = self.encoding.n_output_dims
        if s.network == "mlp":
            self.net = FusedMLP(n, output_dim, s.width, s.n_hidden_layers, backend=backend)
        else:
            self.net = Siren(n, output_dim, s.width, s.n_hidden_layers, s.w0, s.w0_initial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoding(encodings.prepare(x, self.encoding)))
