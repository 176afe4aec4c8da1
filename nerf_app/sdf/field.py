"""Neural implicit fields of a shape: encoding (hash grid by default) -> bias-free MLP -> one scalar.

``MeshField(x)``: points ``x [N,3]`` in the unit cube -> ``[N]``; a signed distance (unit-cube
units, negative inside) in ``sdf`` mode or an inside logit in ``occupancy`` mode.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import encodings
from ..networks import FusedMLP


class MeshField(nn.Module):
    def __init__(self, settings, backend: str = "auto"):
        super().__init__()
        s = settings
        self.encoding = encodings.build(s, 3, backend)
        self.mlp = FusedMLP(self.encoding.n_output_dims, 1, s.width, s.n_hidden_layers, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the hash grid is defined on [0,1]^3 only; points outside (rays, finite differences) are clamped
        return self.mlp(self.encoding(encodings.prepare(x, self.encoding))).squeeze(-1)
