"""`HashGrid`: the Instant-NGP multiresolution hash encoding as an nn.Module."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .. import backend as _backend
from ..errors import ConfigError
from ..ops.hashgrid import INTERPOLATIONS, HashGridLayout, hashgrid_encode, hashgrid_encode_cached


@dataclass
class HashGridSettings:
    """The hash grid's config keys, shared by every mode's ``model`` section (which derive from this,
    so the keys stay flat: ``model.n_levels``, ``model.log2_hashmap_size`` ...). The per-level scale
    follows from ``finest_resolution`` (``0`` = a size the mode picks, e.g. an image's longest side)."""
    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    finest_resolution: int = 2048


class HashGrid(_backend.BackendChoice, nn.Module):
    """Multiresolution hash encoding of points in ``[0,1]^D`` (tiny-cuda-nn GridEncoding semantics).

    ``y = enc(x)``: ``x`` ``[..., D]`` -> ``[..., n_levels * n_features_per_level]``.

    The table is one parameter, ``table`` ``[n_rows, F]`` (levels stacked), initialised uniformly in
    ``[-1e-4, 1e-4]`` as Instant-NGP does. The state_dict is the same whatever the backend; set
    ``enc.backend`` at any time to switch (``"auto"``, ``"torch"``, ``"cpp"``, ``"cuda"``).
    ``per_level_scale=None`` derives it from ``finest_resolution``.
    """

    def __init__(self, input_dim: int = 3, n_levels: int = 16, n_features_per_level: int = 2,
                 log2_hashmap_size: int = 19, base_resolution: int = 16, per_level_scale: Optional[float] = 1.3819,
                 interpolation: str = "linear", backend: str = "auto", dtype: torch.dtype = torch.float32,
                 finest_resolution: Optional[int] = None, init_scale: float = 1e-4):
        super().__init__()
        if per_level_scale is None:
            if finest_resolution is None:
                raise ConfigError("HashGrid needs per_level_scale or finest_resolution")
            per_level_scale = math.exp(math.log(finest_resolution / base_resolution) / max(n_levels - 1, 1))
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"HashGrid interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.layout = HashGridLayout.build(input_dim, n_levels, n_features_per_level, log2_hashmap_size,
                                           base_resolution, per_level_scale)
        self.interpolation = interpolation
        self.backend = backend
        self.table = nn.Parameter(torch.empty(self.layout.n_rows, n_features_per_level, dtype=dtype)
                                  .uniform_(-init_scale, init_scale))

    @classmethod
    def from_settings(cls, settings: HashGridSettings, input_dim: int = 3, backend: str = "auto",
                      finest_resolution: Optional[int] = None) -> "HashGrid":
        """The grid a mode's ``model`` section describes (``finest_resolution`` overrides the section's)."""
        s = settings
        return cls(input_dim, s.n_levels, s.n_features_per_level, s.log2_hashmap_size, s.base_resolution,
                   per_level_scale=None, finest_resolution=finest_resolution or s.finest_resolution, backend=backend)

    @property
    def input_dim(self) -> int:
        return self.layout.input_dim

    @property
    def n_output_dims(self) -> int:
        return self.layout.n_levels * self.layout.n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = hashgrid_encode(x.reshape(-1, x.shape[-1]), self.table, self.layout, self.interpolation, self._backend)
        return y.reshape(*lead, y.shape[-1])

    def cached(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``forward(x)`` whose value ``y`` the compiled kernel already computed (training's fused compaction):
        only the backward runs (:func:`~nerf_app.ops.hashgrid.hashgrid_encode_cached`)."""
        return hashgrid_encode_cached(x, self.table, self.layout, y, self.interpolation)

    def extra_repr(self) -> str:
        L = self.layout
        n_hashed = sum(L.hashed)
        return (f"input_dim={L.input_dim}, n_levels={L.n_levels}, F={L.n_features}, T=2^{L.log2_hashmap_size}, "
                f"base={L.base_resolution}, per_level_scale={L.per_level_scale:.4f}, "
                f"finest_res={L.resolutions[-1]}, dense_levels={L.n_levels - n_hashed}, hashed_levels={n_hashed}, "
                f"interpolation={self.interpolation}, backend={self._backend}")
