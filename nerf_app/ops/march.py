"""Occupancy-grid ray marching to packed samples, with backend dispatch (kernels: csrc/march.cpp).

Packed samples (as in nerfacc): the samples of all rays in flat tensors — ``ray_indices [S]``,
``t_starts [S]``, ``t_ends [S]`` — grouped by ray in increasing t, with ``packed_info [R, 2]`` holding
each ray's first sample and count. No padded rays x samples tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .. import backend as _backend
from . import _reference


@dataclass
class PackedSamples:
    """Samples of all rays, packed: ``ray_indices [S]``, ``t_starts [S]``, ``t_ends [S]``,
    ``packed_info [R, 2]`` (first sample, count)."""

    ray_indices: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor
    packed_info: torch.Tensor

    @property
    def n_samples(self) -> int:
        return int(self.t_starts.shape[0])

    @property
    def n_rays(self) -> int:
        return int(self.packed_info.shape[0])


def march_rays(origins: torch.Tensor, dirs: torch.Tensor, t_min: torch.Tensor, t_max: torch.Tensor,
               bitfield: torch.Tensor, n_cascades: int, resolution: int, dt_min: float, dt_max: float,
               cone_angle: float = 0.0, max_samples: int = 1024,
               backend: Optional[str] = "auto") -> PackedSamples:
    """March rays ``[R, 3]`` from ``t_min`` to ``t_max`` through a cascaded occupancy bitfield
    (``uint8 [n_cascades * resolution**3 / 8]``), returning the samples in occupied cells, packed.
    Steps are ``clamp(t * cone_angle, dt_min, dt_max)``; empty cells are skipped. See
    :func:`nerf_app.ops._reference.march_rays` for the exact rule. All tensors must share one device."""
    _backend.same_device("march_rays", origins=origins, dirs=dirs, t_min=t_min, t_max=t_max, bitfield=bitfield)
    args = (origins.contiguous(), dirs.contiguous(), t_min.contiguous(), t_max.contiguous(), bitfield.contiguous(),
            int(n_cascades), int(resolution), float(dt_min), float(dt_max), float(cone_angle), int(max_samples))
    which = _backend.resolve("march_rays", backend, origins.device, origins.dtype, cpp_dtypes=(torch.float32,),
                             cuda_dtypes=(torch.float32,))
    if which == "torch":
        packed, ray_indices, t_starts, t_ends = _reference.march_rays(*args)
    else:
        packed, ray_indices, t_starts, t_ends = _backend.extension().march_rays(*args)
    return PackedSamples(ray_indices, t_starts, t_ends, packed)
