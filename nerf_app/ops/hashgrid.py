"""Hash-grid encoding op: layout, autograd wrapper and backend dispatch.

``hashgrid_encode(x, table, layout)`` runs the ``cuda``, ``cpp`` or ``torch`` implementation; all
three share the semantics of :func:`nerf_app.ops._reference.hashgrid_encode`.
"""
from __future__ import annotations

import math
import sys
import weakref
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

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
        return (*_grid_backward(ctx, grad_y), None, None)


def _grid_backward(ctx, grad_y: torch.Tensor):
    """``(grad_x, grad_table)`` of a grid function whose ctx saved ``x, table``, ``layout`` and ``smoothstep``."""
    x, table = ctx.saved_tensors
    ext = _backend.extension()
    grad_y = grad_y.to(x.dtype).contiguous()
    args = ctx.layout.kernel_args()
    grad_x = grad_table = None
    if ctx.needs_input_grad[0]:
        grad_x = ext.hashgrid_backward_input(x, table, grad_y, *args, ctx.smoothstep)
    if ctx.needs_input_grad[1]:
        grad_table = _table_gradient(ext, x, table, grad_y, args, ctx.smoothstep)
    return grad_x, grad_table


class _GradBuffer:
    """A table's reusable gradient tensor and its reference counts when nothing but this holds it."""

    def __init__(self, table: torch.Tensor):
        self.tensor = torch.empty_like(table, memory_format=torch.contiguous_format)
        self.free_counts = self.counts()

    def counts(self):
        t = self.tensor
        return sys.getrefcount(t), torch._C._storage_Use_Count(t.untyped_storage()._cdata)

    def is_free(self, table: torch.Tensor) -> bool:
        # no local name for self.tensor here: it would count as a holder
        return (self.tensor.shape == table.shape and self.tensor.dtype == table.dtype
                and self.tensor.device == table.device and self.counts() == self.free_counts)


# per table (its TensorImpl), dropped when the table dies (a tensor cannot key a WeakKeyDictionary: == is elementwise)
_GRAD_BUFFERS: Dict[int, _GradBuffer] = {}


def _accumulates_into(table: torch.Tensor) -> bool:
    """Whether this backward pass hands the table's gradient to ``table.grad`` (the engine will run the leaf's
    AccumulateGrad node: ``.backward()``, not ``autograd.grad`` for other inputs), plainly (no hooks, no graph
    of the backward)."""
    if not (table.is_leaf and table.requires_grad) or torch.is_grad_enabled() or table.is_sparse:
        return False
    if table._backward_hooks or getattr(table, "_post_accumulate_grad_hooks", None):
        return False
    try:
        with torch.enable_grad():
            node = table.view_as(table).grad_fn.next_functions[0][0]
        return bool(torch._C._will_engine_execute_node(node))
    except (RuntimeError, AttributeError, IndexError):
        return False


def _table_gradient(ext, x, table, grad_y, args, smooth) -> Optional[torch.Tensor]:
    """The table's gradient for autograd, or None once the kernel has put it into ``table.grad`` itself.

    Why: the hash table is by far the largest parameter (lego: 12 M floats), and a fresh gradient tensor each
    step is a fresh ``mmap`` the kernel then faults in page by page — 12 k page faults and ~0.04 CPU-s per lego
    step on 2 cores, ~10 % of the step. On the CPU, where the engine would hand this gradient to the leaf
    table's AccumulateGrad, the kernel writes it into a buffer kept for the table and makes that ``table.grad``
    (``.grad`` was None: bit for bit what AccumulateGrad would hold), or adds it to the ``table.grad`` there
    is (a second pass through the grid in the same step, such as the free-space loss: the same sum as
    AccumulateGrad's ``grad += new``, each contribution added in turn, so its last bits may differ; still the
    same on every run). The buffer is reused only while nothing else holds it (a caller that kept last step's
    ``.grad`` gets a new one); anything else takes the plain path."""
    into = getattr(ext, "hashgrid_backward_table_into", None)
    if into is None or x.device.type != "cpu" or not _accumulates_into(table):
        return ext.hashgrid_backward_table(x, table, grad_y, *args, smooth)
    grad = table.grad
    if grad is None:
        key = table._cdata
        buf = _GRAD_BUFFERS.get(key)
        if buf is None:
            weakref.finalize(table, _GRAD_BUFFERS.pop, key, None)
        if buf is None or not buf.is_free(table):
            buf = _GRAD_BUFFERS[key] = _GradBuffer(table)
        into(x, table, grad_y, buf.tensor, False, *args, smooth)
        table.grad = buf.tensor
    elif grad.is_contiguous() and grad.dtype == table.dtype and grad.shape == table.shape and not grad.is_sparse:
        into(x, table, grad_y, grad, True, *args, smooth)
    else:
        return ext.hashgrid_backward_table(x, table, grad_y, *args, smooth)
    return None


class _HashGridCachedFunction(torch.autograd.Function):
    """The grid at ``x`` whose values ``y`` a no-grad pass over the same ``x`` and table already computed
    (ops/compact_fused.py): forward hands ``y`` on, backward is :class:`_HashGridFunction`'s."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout, smoothstep: bool,
                y: torch.Tensor):
        ctx.save_for_backward(x, table)
        ctx.layout = layout
        ctx.smoothstep = smoothstep
        return y.view_as(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        return (*_grid_backward(ctx, grad_y), None, None, None)


def hashgrid_encode_cached(x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout, y: torch.Tensor,
                           interpolation: str = "linear") -> torch.Tensor:
    """:func:`hashgrid_encode` of ``x`` when its value ``y [N, n_levels * F]`` is already known — computed by
    the compiled kernel from the same ``x`` and ``table`` (float32) — so only the backward runs: the
    gradients to ``table`` (and ``x``) are those of :func:`hashgrid_encode`. ``y`` is trusted, not checked:
    the caller owns that it is the encoding of ``x``."""
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"hash grid interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if x.dim() != 2 or x.shape[1] != layout.input_dim or y.shape != (x.shape[0], layout.n_levels * layout.n_features):
        raise ConfigError(f"cached hash grid: x {list(x.shape)} and y {list(y.shape)} do not match the layout")
    if table.dtype != torch.float32 or y.dtype != torch.float32:
        raise ConfigError("cached hash grid: float32 table and values only")
    return _HashGridCachedFunction.apply(x.float().contiguous(), table.contiguous(), layout,
                                         interpolation == "smoothstep", y)


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
