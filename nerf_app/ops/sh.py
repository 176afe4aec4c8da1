"""Spherical-harmonics encoding of view directions, with backend dispatch (kernels: csrc/sh.cpp)."""
from __future__ import annotations

from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from .. import backend as _backend
from ..errors import ConfigError
from . import _reference


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
    which = _backend.resolve("sh_encode", backend, dirs.device, dirs.dtype, cpp_dtypes=(torch.float32,),
                             cuda_dtypes=(torch.float32,))
    if which == "torch":
        return _reference.sh_encode(dirs, degree)
    return _SHFunction.apply(dirs.contiguous(), degree)
