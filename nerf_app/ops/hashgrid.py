"""Hash-grid encoding op: layout, autograd wrapper and backend dispatch.

``hashgrid_encode(x, table, layout)`` runs the ``cuda``, ``cpp`` or ``torch`` implementation; all
three share the semantics of :func:`nerf_app.ops._reference.hashgrid_encode`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import backend as _backend
from ..errors import ConfigError
from . import _reference

INTERPOLATIONS = ("linear", "smoothstep")


@dataclass(frozen=True)
class HashGridLayout:
    """Where each level lives in the stacked table, and its grid geometry.

    Follows tiny-cuda-nn: ``scale_l = base * b^l - 1`` (rounded to float32), ``res_l = ceil(scale_l)+1``,
    ``size_l = min(next_multiple(res_l^D, 8), 2^log2_hashmap_size)``, hashed iff ``res_l^D > size_l``.
    """

    input_dim: int
    n_levels: int
    n_features: int
    log2_hashmap_size: int
    base_resolution: int
    per_level_scale: float
    offsets: Tuple[int, ...]
    sizes: Tuple[int, ...]
    resolutions: Tuple[int, ...]
    scales: Tuple[float, ...]
    hashed: Tuple[bool, ...]
    n_rows: int

    @classmethod
    def build(cls, input_dim: int, n_levels: int, n_features: int, log2_hashmap_size: int,
              base_resolution: int, per_level_scale: float) -> "HashGridLayout":
        if input_dim not in (1, 2, 3, 4):
            raise ConfigError(f"hash grid input_dim must be 1, 2, 3 or 4, got {input_dim}")
        if not 1 <= n_levels <= 32:
            raise ConfigError(f"hash grid n_levels must be in 1..32, got {n_levels}")
        if n_features not in (1, 2, 4, 8):
            raise ConfigError(f"hash grid n_features_per_level must be 1, 2, 4 or 8, got {n_features}")
        if not 3 <= log2_hashmap_size <= 30:
            raise ConfigError(f"hash grid log2_hashmap_size must be in 3..30, got {log2_hashmap_size}")
        if base_resolution < 1 or not per_level_scale >= 1.0:
            raise ConfigError("hash grid needs base_resolution >= 1 and per_level_scale >= 1")
        table_size = 1 << log2_hashmap_size
        offsets, sizes, resolutions, scales, hashed = [], [], [], [], []
        offset = 0
        for level in range(n_levels):
            scale = float(np.float32(base_resolution * per_level_scale ** level - 1.0))
            res = int(math.ceil(scale)) + 1
            if res >= 1 << 31:
                raise ConfigError(f"hash grid level {level} resolution {res} is too fine")
            volume = res ** input_dim
            size = min(-(-volume // 8) * 8, table_size)
            offsets.append(offset)
            sizes.append(size)
            resolutions.append(res)
            scales.append(scale)
            hashed.append(volume > size)
            offset += size
        return cls(input_dim, n_levels, n_features, log2_hashmap_size, base_resolution, float(per_level_scale),
                   tuple(offsets), tuple(sizes), tuple(resolutions), tuple(scales), tuple(hashed), offset)

    def kernel_args(self):
        return list(self.offsets), list(self.sizes), list(self.resolutions), list(self.scales)


class _HashGridFunction(torch.autograd.Function):
    """Autograd wrapper of the compiled kernels (cpp and cuda share the same entry points)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout, smoothstep: bool):
        ext = _backend.extension()
        y = ext.hashgrid_forward(x, table, *layout.kernel_args(), smoothstep)
        ctx.save_for_backward(x, table)
        ctx.layout = layout
        ctx.smoothstep = smoothstep
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        x, table = ctx.saved_tensors
        ext = _backend.extension()
        grad_y = grad_y.to(x.dtype).contiguous()
        args = ctx.layout.kernel_args()
        grad_x = grad_table = None
        if ctx.needs_input_grad[0]:
            grad_x = ext.hashgrid_backward_input(x, table, grad_y, *args, ctx.smoothstep)
        if ctx.needs_input_grad[1]:
            grad_table = ext.hashgrid_backward_table(x, table, grad_y, *args, ctx.smoothstep)
        return grad_x, grad_table, None, None


def hashgrid_encode(x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout,
                    interpolation: str = "linear", backend: Optional[str] = "auto") -> torch.Tensor:
    """Encode points with a multiresolution hash grid.

    Args:
        x: ``[N, D]`` points in ``[0,1]^D`` (clamped), ``D == layout.input_dim``.
        table: ``[layout.n_rows, F]`` parameters; float32 or float64 (``cpp``, ``torch``), float32 or
            float16 (``cuda``; fp16 gradients accumulate with half2 atomics).
        layout: :class:`HashGridLayout` of the table.
        interpolation: ``"linear"`` or ``"smoothstep"``.
        backend: ``"auto"``, ``"torch"``, ``"cpp"`` or ``"cuda"`` (see :mod:`nerf_app.backend`).

    Returns:
        ``[N, n_levels * F]`` features, float64 for a float64 table, else float32.
    """
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"hash grid interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if x.dim() != 2 or x.shape[1] != layout.input_dim:
        raise ConfigError(f"hash grid expects x of shape [N, {layout.input_dim}], got {list(x.shape)}")
    if table.shape != (layout.n_rows, layout.n_features):
        raise ConfigError(f"hash grid table must be [{layout.n_rows}, {layout.n_features}], got {list(table.shape)}")
    compute_dtype = torch.float64 if table.dtype == torch.float64 else torch.float32
    x = x.to(compute_dtype).contiguous()
    which = _backend.resolve("hashgrid", backend, x.device, table.dtype)
    smooth = interpolation == "smoothstep"
    if which == "torch":
        return _reference.hashgrid_encode(x, table, layout, smooth)
    return _HashGridFunction.apply(x, table.contiguous(), layout, smooth)
