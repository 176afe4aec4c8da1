"""The radiance field in Instant-NGP's shape.

    x (normalised world) --hash grid--> MLP --> h [16]:  sigma = trunc_exp(h_0)
    SH_4(d) [16] ++ h [16] --MLP--> sigmoid --> rgb
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .. import encodings
from ..encodings.factory import EncodingSettings
from ..networks import FusedMLP
from ..ops.sh import sh_encode


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(min(x, 15)): large early densities cannot blow up the update."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


class NerfField(nn.Module):
    """Density and colour at points of the cube ``[lo, hi]^3`` (the outermost cascade).

    Args:
        bound_lo, bound_hi: the box the hash grid covers (normalised world coordinates).
        grid: the hash grid's settings; its ``finest_resolution`` is per unit length, so the grid over
            ``[lo, hi]`` gets ``finest_resolution * (hi - lo)``.
        geo_features: width of ``h`` (density logit + features passed to the colour net).
        density_width / density_layers, color_width / color_layers: the two MLPs.
        sh_degree: spherical-harmonics degree of the view direction (1..4).
        backend: kernels for the encoding and MLPs.
    """

    def __init__(self, bound_lo: float = 0.0, bound_hi: float = 1.0, grid: Optional[EncodingSettings] = None,
                 geo_features: int = 16, density_width: int = 64,
                 density_layers: int = 1, color_width: int = 64, color_layers: int = 2, sh_degree: int = 4,
                 backend: str = "auto", density_bias: float = 0.0):
        super().__init__()
        # sigma = exp(h_0 + density_bias): a negative bias makes space no ray has trained transparent
        # (exp(-3) = 0.05 instead of exp(0) = 1 per unit length) — the haze untrained space otherwise shows
        # (a buffer, so a checkpoint carries the bias it was trained with)
        self.register_buffer("density_bias", torch.tensor(float(density_bias)))
        self.bound_lo, self.bound_hi = float(bound_lo), float(bound_hi)
        self.sh_degree = sh_degree
        self.backend = backend
        grid = grid or EncodingSettings()
        finest = int(grid.finest_resolution * (self.bound_hi - self.bound_lo))
        self.encoding = encodings.build(grid, 3, backend, finest_resolution=finest)
        self.density_net = FusedMLP(self.encoding.n_output_dims, geo_features, density_width, density_layers,
                                    backend=backend)
        self.color_net = FusedMLP(sh_degree ** 2 + geo_features, 3, color_width, color_layers,
                                  output_activation="sigmoid", backend=backend)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the bias existed were trained with sigma = exp(h_0)
        state_dict.setdefault(prefix + "density_bias", torch.tensor(0.0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.bound_lo) / (self.bound_hi - self.bound_lo)

    def density(self, x: torch.Tensor, features: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``x [N, 3]`` -> ``sigma [N]``, ``h [N, geo_features]``. ``features``: the hash grid's value at ``x``
        when already computed (training's fused compaction, ops/compact_fused.py); its gradients still flow."""
        # marched points lie inside the box: no clamp (encodings.prepare only recentres for positional/identity)
        u = encodings.prepare(self._unit(x), self.encoding, clamp=False)
        h = self.density_net(self.encoding(u) if features is None else self.encoding.cached(u, features))
        return trunc_exp(h[:, 0] + self.density_bias.to(h.dtype)), h

    def forward(self, x: torch.Tensor, d: torch.Tensor,
                features: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``x [N, 3]`` points, ``d [N, 3]`` unit view directions -> ``sigma [N]``, ``rgb [N, 3]``
        (``features``: as :meth:`density`)."""
        sigma, h = self.density(x, features)
        return sigma, self.color(d, h)

    def color(self, d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``d [N, 3]`` unit view directions, ``h [N, geo_features]`` from :meth:`density` -> ``rgb [N, 3]``."""
        return self.color_net(torch.cat([sh_encode(d, self.sh_degree, self.backend), h], dim=-1))
