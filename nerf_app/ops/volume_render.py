"""Volume rendering (compositing) of packed samples, with backend dispatch (kernels: csrc/volume_render.cpp)."""
from __future__ import annotations

from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from .. import backend as _backend
from . import _reference
from .march import PackedSamples


class _RenderFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas, rgbs, t_starts, t_ends, packed_info, t_threshold):
        weights, color, opacity, depth = _backend.extension().volume_render_forward(sigmas, rgbs, t_starts, t_ends,
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
        grad_sigmas, grad_rgbs = _backend.extension().volume_render_backward(
            sigmas, rgbs, t_starts, t_ends, packed_info, ctx.t_threshold, weights, grad_color, grad_opacity,
            grad_depth)
        return grad_sigmas, grad_rgbs, None, None, None, None


def volume_render(sigmas: torch.Tensor, rgbs: torch.Tensor, samples: PackedSamples, t_threshold: float = 1e-4,
                  backend: Optional[str] = "auto"):
    """Composite packed samples: ``sigmas [S]``, ``rgbs [S, 3]`` -> ``weights [S]`` (not differentiable),
    ``color [R, 3]``, ``opacity [R]``, ``depth [R]`` (differentiable in sigmas and rgbs). Samples after the
    transmittance drops below ``t_threshold`` get weight 0. See :func:`nerf_app.ops._reference.volume_render`."""
    _backend.same_device("volume_render", sigmas=sigmas, rgbs=rgbs, t_starts=samples.t_starts,
                         t_ends=samples.t_ends, packed_info=samples.packed_info)
    which = _backend.resolve("volume_render", backend, sigmas.device, sigmas.dtype, cpp_dtypes=(torch.float32,),
                             cuda_dtypes=(torch.float32,))
    if which == "torch":
        return _reference.volume_render(sigmas, rgbs, samples.t_starts, samples.t_ends, samples.ray_indices,
                                        samples.n_rays, t_threshold)
    return _RenderFunction.apply(sigmas.contiguous(), rgbs.contiguous(), samples.t_starts.contiguous(),
                                 samples.t_ends.contiguous(), samples.packed_info.contiguous(), float(t_threshold))
