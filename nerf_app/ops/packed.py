"""Arithmetic over packed samples: the one place that turns ray indices into per-ray offsets and back, and
sums along rays.

Packed samples (see :mod:`nerf_app.ops.march`, as in nerfacc): the samples of all rays in flat tensors,
``ray_indices [S]`` grouped by ray (a ray's samples are contiguous, in increasing t), and
``packed_info [R, 2]`` = (first sample, count) per ray. Torch only, no kernel and no dispatch: every op here
is a few vectorised torch calls that run on any device without reading a count back to the host (except
:func:`unpack_info`, whose output size is its argument).

Gathers that repeat an index and may carry a gradient go through :func:`nerf_app.ops.gather.take_rows`
(a ray's running sum read by each of its samples), so their backward adds in index order on any number of
threads (issue 31; ``tests/test_determinism.py`` checks every training step's graph for this).
"""
from __future__ import annotations

from typing import Optional

import torch

from .gather import take_rows


def pack_counts(counts: torch.Tensor) -> torch.Tensor:
    """Per-ray sample ``counts [R]`` (integer) -> ``packed_info [R, 2]`` (first sample, count), int64."""
    counts = counts.long()
    return torch.stack([torch.cumsum(counts, 0) - counts, counts], 1)


def pack_info(ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """``ray_indices [S]`` (grouped by ray) -> ``packed_info [n_rays, 2]`` (first sample, count), int64;
    rays without samples get count 0."""
    return pack_counts(torch.bincount(ray_indices.long(), minlength=n_rays))


def unpack_info(packed_info: torch.Tensor, n_samples: int) -> torch.Tensor:
    """``packed_info [R, 2]`` of ``n_samples`` samples -> ``ray_indices [n_samples]`` (int64)."""
    rays = torch.arange(packed_info.shape[0], device=packed_info.device)
    return torch.repeat_interleave(rays, packed_info[:, 1].long(), output_size=int(n_samples))


def ray_starts(ray_indices: torch.Tensor) -> torch.Tensor:
    """``[S]``: for each sample, the position of its ray's first sample."""
    first = torch.ones_like(ray_indices, dtype=torch.bool)
    first[1:] = ray_indices[1:] != ray_indices[:-1]
    # the last "first" position at or before each sample (a ray's samples are contiguous), by a running max
    # rather than by boolean indexing, which would read the count back to the host on a GPU
    pos = torch.arange(ray_indices.numel(), device=ray_indices.device)
    return torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values


def exclusive_sum(x: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
    """Per-ray exclusive prefix sums of packed ``x [S]``: ``out_i = sum of x_j`` over the samples ``j`` of
    ``i``'s ray before ``i``; float64 ``[S]`` (0 at each ray's first sample, exactly). Differentiable in ``x``.

    One float64 prefix sum over all samples, minus its value at each ray's first sample: no per-ray loop and
    no padding; float64 so that the earlier rays' total, subtracted again, costs a float32 result none of its
    digits (unless it outweighs the ray's own sums by ~1e8)."""
    # two casts, as the copies this replaced wrote it: each path's float64 gradient is then rounded to x's dtype
    # on its own before they are added. One shared cast would add them in float64 first (a rounding fewer) but
    # change the last bit of float32 gradients, and with it every training that uses them
    excl = torch.cumsum(x.double(), 0) - x.double()
    # take_rows, not excl[start]: every sample of a ray reads its start, and x[index]'s backward adds those
    # repeats in thread order (nerf_app/ops/gather.py)
    return excl - take_rows(excl, ray_starts(ray_indices))


def segment_sum(values: torch.Tensor, ray_indices: torch.Tensor, n_rays: int,
                initial: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sum packed ``values [S, ...]`` along each ray -> ``[n_rays, ...]`` in ``values``' dtype, added in sample
    order (``index_add``: the same bits on any number of CPU threads), onto a copy of ``initial [n_rays, ...]``
    where given (else zeros). Differentiable in ``values`` and ``initial``."""
    if initial is None:
        out = torch.zeros((n_rays, *values.shape[1:]), dtype=values.dtype, device=values.device)
    else:
        out = initial.to(dtype=values.dtype, copy=True)
    return out.index_add(0, ray_indices, values)
