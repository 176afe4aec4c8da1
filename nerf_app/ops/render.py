"""NeRF rendering ops with backend dispatch: spherical harmonics, ray-box intersection, occupancy-grid
ray marching to packed samples, and volume rendering of packed samples.

Packed samples (as in nerfacc): the samples of all rays in flat tensors — ``ray_indices [S]``,
``t_starts [S]``, ``t_ends [S]`` — grouped by ray in increasing t, with ``packed_info [R, 2]`` holding
each ray's first sample and count. No padded rays x samples tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

from .. import backend as _backend
from ..errors import ConfigError
from . import _reference

_F32 = (torch.float32,)


def _which(op: str, backend: Optional[str], t: torch.Tensor) -> str:
    return _backend.resolve(op, backend, t.device, t.dtype, cpp_dtypes=_F32, cuda_dtypes=_F32)


class _SHFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dirs, degree):
        ctx.save_for_backward(dirs)
        ctx.degree = degree
        return _backend.extension().sh_encode_forward(dirs, degree)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (dirs,) = ctx.saved_tensors
        return _backend.extension().sh_encode_backward(dirs, grad_out.contiguous(), ctx.degree), None


def sh_encode(dirs: torch.Tensor, degree: int = 4, backend: Optional[str] = "auto") -> torch.Tensor:
    """Real spherical harmonics of unit directions: ``[N, 3]`` -> ``[N, degree**2]`` (degree 1..4),
    differentiable in ``dirs``. See :func:`nerf_app.ops._reference.sh_encode`."""
    if not 1 <= degree <= 4:
        raise ConfigError(f"spherical-harmonics degree must be 1..4, got {degree}")
    if _which("sh_encode", backend, dirs) == "torch":
        return _reference.sh_encode(dirs, degree)
    return _SHFunction.apply(dirs.contiguous(), degree)


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, lo: float = 0.0, hi: float = 1.0,
             backend: Optional[str] = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances ``(t_near [R], t_far [R])`` of rays ``[R, 3]`` through ``[lo, hi]^3``
    (no hit when ``t_near > t_far``)."""
    if _which("ray_aabb", backend, origins) == "torch":
        return _reference.ray_aabb(origins, dirs, lo, hi)
    t_near, t_far = _backend.extension().ray_aabb(origins.contiguous(), dirs.contiguous(), float(lo), float(hi))
    return t_near, t_far


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
    :func:`nerf_app.ops._reference.march_rays` for the exact rule."""
    args = (origins.contiguous(), dirs.contiguous(), t_min.contiguous(), t_max.contiguous(), bitfield.contiguous(),
            int(n_cascades), int(resolution), float(dt_min), float(dt_max), float(cone_angle), int(max_samples))
    if _which("march_rays", backend, origins) == "torch":
        packed, ray_indices, t_starts, t_ends = _reference.march_rays(*args)
    else:
        packed, ray_indices, t_starts, t_ends = _backend.extension().march_rays(*args)
    return PackedSamples(ray_indices, t_starts, t_ends, packed)


class _RenderFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas, rgbs, t_starts, t_ends, packed_info, t_threshold):
        weights, color, opacity, depth = _backend.extension().render_forward(sigmas, rgbs, t_starts, t_ends,
                                                                             packed_info, t_threshold)
        ctx.save_for_backward(sigmas, rgbs, t_starts, t_ends, packed_info, weights)
        ctx.t_threshold = t_threshold
        ctx.mark_non_differentiable(weights)
        return weights, color, opacity, depth

    @staticmethod
    @once_differentiable
    def backward(ctx, _grad_weights, grad_color, grad_opacity, grad_depth):
        sigmas, rgbs, t_starts, t_ends, packed_info, weights = ctx.saved_tensors
        zeros = lambda shape: torch.zeros(shape, dtype=sigmas.dtype, device=sigmas.device)
        n_rays = packed_info.shape[0]
        grad_color = zeros((n_rays, 3)) if grad_color is None else grad_color.contiguous()
        grad_opacity = zeros((n_rays,)) if grad_opacity is None else grad_opacity.contiguous()
        grad_depth = zeros((n_rays,)) if grad_depth is None else grad_depth.contiguous()
        grad_sigmas, grad_rgbs = _backend.extension().render_backward(
            sigmas, rgbs, t_starts, t_ends, packed_info, ctx.t_threshold, weights, grad_color, grad_opacity,
            grad_depth)
        return grad_sigmas, grad_rgbs, None, None, None, None


def volume_render(sigmas: torch.Tensor, rgbs: torch.Tensor, samples: PackedSamples, t_threshold: float = 1e-4,
                  backend: Optional[str] = "auto"):
    """Composite packed samples: ``sigmas [S]``, ``rgbs [S, 3]`` -> ``weights [S]`` (not differentiable),
    ``color [R, 3]``, ``opacity [R]``, ``depth [R]`` (differentiable in sigmas and rgbs). Samples after the
    transmittance drops below ``t_threshold`` get weight 0. See :func:`nerf_app.ops._reference.volume_render`."""
    if _which("volume_render", backend, sigmas) == "torch":
        return _reference.volume_render(sigmas, rgbs, samples.t_starts, samples.t_ends, samples.ray_indices,
                                        samples.n_rays, t_threshold)
    return _RenderFunction.apply(sigmas.contiguous(), rgbs.contiguous(), samples.t_starts, samples.t_ends,
                                 samples.packed_info, float(t_threshold))
