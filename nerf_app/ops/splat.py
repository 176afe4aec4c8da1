"""Differentiable 3D Gaussian-splat rendering (issue 27), with backend dispatch (kernels: csrc/splat_project.cpp,
csrc/splat.cpp).

Two stages, as in 3D Gaussian Splatting:

1. :func:`project_splats` (dispatched: the C++/OpenMP kernel csrc/splat_project.cpp with its own backward on
   float32 CPU tensors, the torch twin :func:`nerf_app.ops._reference.splat_project` through autograd
   otherwise): camera-space means, the EWA 2D covariance ``J W Sigma W^T J^T`` plus a 0.3 px dilation, its
   conic, the colour from spherical harmonics at the direction from the camera, the opacity, and a cull
   radius.
2. :func:`rasterize_splats` (dispatched: the C++/OpenMP kernel on CPU tensors, the dense torch twin
   :func:`nerf_app.ops._reference.splat_rasterize` otherwise): front-to-back alpha compositing in 16x16
   tiles, forward and backward.

:func:`render_splats` runs both. No CUDA splat kernel exists yet: CUDA tensors are refused (docs/gpu-status.md)
unless ``backend="torch"`` asks for the twins explicitly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import backend as _backend
from ..errors import BackendError, ConfigError
from . import _reference

DILATION = _reference.SPLAT_DILATION
FRUSTUM_SLACK = _reference.SPLAT_FRUSTUM_SLACK
quat_to_rotmat = _reference.quat_to_rotmat


@dataclass
class SplatCamera:
    """A pinhole camera: ``c2w`` 4x4 (OpenCV axes: x right, y down, z forward), focal lengths and principal
    point in pixels, image size. ``near``: splats closer than this (camera z) are not drawn."""
    c2w: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.01

    def w2c(self, device, dtype) -> torch.Tensor:
        return torch.as_tensor(np.linalg.inv(np.asarray(self.c2w, np.float64)), dtype=dtype, device=device)

    def scaled(self, factor: float) -> "SplatCamera":
        """The same camera with its image ``factor`` times as large (e.g. 0.5: half resolution)."""
        w, h = max(1, int(round(self.width * factor))), max(1, int(round(self.height * factor)))
        sx, sy = w / self.width, h / self.height
        return SplatCamera(self.c2w, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, w, h, self.near)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> "SplatCamera":
        """The window of ``width`` x ``height`` pixels whose top-left pixel is ``(x0, y0)`` of this image."""
        return SplatCamera(self.c2w, self.fx, self.fy, self.cx - x0, self.cy - y0, width, height, self.near)


def sh_degree_of(sh: torch.Tensor) -> int:
    """The project's SH degree (coefficients = degree**2; 3DGS's degree + 1) of ``sh [N, K, 3]``."""
    k = sh.shape[1]
    degree = int(round(math.sqrt(k)))
    if degree * degree != k or not 1 <= degree <= 4:
        raise ConfigError(f"splats: {k} spherical-harmonics coefficients per channel (expected 1, 4, 9 or 16)")
    return degree


@dataclass
class Projected:
    mean2d: torch.Tensor   # [N, 2] pixels
    conic: torch.Tensor    # [N, 3] inverse 2D covariance (a, b, c)
    color: torch.Tensor    # [N, 3]
    opacity: torch.Tensor  # [N]
    depth: torch.Tensor    # [N] camera z
    radius: torch.Tensor   # [N] int32 cull radius in pixels (0: not drawn)


def _no_cuda(native: str) -> Optional[str]:
    return "there is no CUDA splat kernel yet (docs/gpu-status.md)" if native == "cuda" else None


def _choose(op: str, what: str, backend: Optional[str], dev: torch.device, dtype: torch.dtype) -> str:
    """``"cpp"`` or ``"torch"`` for a splat op: float32 CPU tensors take the C++ kernel; CUDA tensors are
    refused loudly unless the torch twin is asked for explicitly (there is no CUDA splat kernel)."""
    if dev.type == "cuda" and _backend.requested(backend) != "torch":
        raise BackendError(f"{op}: there is no CUDA {what} yet (docs/gpu-status.md); use CPU tensors, or pass "
                           f"backend='torch' for the torch twin")
    return _backend.resolve(op, backend, dev, dtype, cpp_dtypes=(torch.float32,), cuda_dtypes=(),
                            unsupported=_no_cuda)


class _ProjectFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, log_scales, quats, opacity_logits, sh, w2c, cam_pos, intrinsics, width, height, degree):
        out = _backend.extension().splat_project_forward(means, log_scales, quats, opacity_logits, sh, w2c, cam_pos,
                                                         intrinsics, width, height, degree)
        ctx.save_for_backward(means, log_scales, quats, opacity_logits, sh, w2c, cam_pos)
        ctx.args = (intrinsics, width, height, degree)
        ctx.mark_non_differentiable(out[5])
        return tuple(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_mean2d, g_conic, g_color, g_opacity, g_depth, _g_radius):
        saved = ctx.saved_tensors
        ref = saved[0]
        z = lambda g, shape: torch.zeros(shape, dtype=ref.dtype) if g is None else g.contiguous()  # noqa: E731
        n = ref.shape[0]
        grads = _backend.extension().splat_project_backward(
            *saved, *ctx.args, z(g_mean2d, (n, 2)), z(g_conic, (n, 3)), z(g_color, (n, 3)), z(g_opacity, (n,)),
            z(g_depth, (n,)))
        return (*grads, None, None, None, None, None, None)


def project_splats(means, log_scales, quats, opacity_logits, sh, camera: SplatCamera,
                   sh_degree: Optional[int] = None, backend: Optional[str] = "auto") -> Projected:
    """Project splats ``means [N,3]``, ``log_scales [N,3]``, ``quats [N,4]`` (w first), ``opacity_logits [N]``,
    ``sh [N, K, 3]`` into ``camera``; the semantics are :func:`nerf_app.ops._reference.splat_project`'s
    (colour from spherical harmonics of degree ``sh_degree``, 1..4, default all of ``sh``; the cull radius).
    Dispatched: the C++ kernel (float32, CPU) with its own backward, else the twin through autograd."""
    dev = _backend.same_device("splat_project", means=means, log_scales=log_scales, quats=quats,
                               opacity_logits=opacity_logits, sh=sh)
    degree = sh_degree or sh_degree_of(sh)
    if _choose("splat_project", "splat projection", backend, dev, means.dtype) == "torch":
        return Projected(*_reference.splat_project(means, log_scales, quats, opacity_logits, sh, camera, degree))
    w2c = camera.w2c(dev, torch.float32).contiguous()
    cam_pos = torch.as_tensor(np.asarray(camera.c2w, np.float64)[:3, 3], dtype=torch.float32, device=dev)
    lims = _reference.splat_frustum_limits(camera)
    intr = [float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy), *lims, float(camera.near)]
    f = lambda t: t.contiguous().float()  # noqa: E731
    out = _ProjectFunction.apply(f(means), f(log_scales), f(quats), f(opacity_logits), f(sh), w2c, cam_pos, intr,
                                 int(camera.width), int(camera.height), int(degree))
    return Projected(*out)


def _raster_kernel(name: str, *args):
    """The rasteriser's C++ entry ``name``. Its per-pixel loop is chosen from the CPU and NERF_APP_SPLAT_SIMD
    (csrc/cpu/splat_tiles.h); a loop this CPU lacks, or an unknown name, is the user's setting, so it becomes a
    one-line BackendError here rather than the extension's RuntimeError and a traceback."""
    try:
        return getattr(_backend.extension(), name)(*args)
    except RuntimeError as exc:
        if str(exc).startswith("NERF_APP_SPLAT_SIMD="):
            raise BackendError(str(exc).splitlines()[0]) from None
        raise


class _RasterizeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mean2d, conic, color, opacity, depth, radius, width, height, background):
        out = _raster_kernel("splat_rasterize_forward", mean2d, conic, color, opacity, depth, radius, width, height,
                             background)
        image, alpha, *saved = out
        ctx.save_for_backward(mean2d, conic, color, opacity, background, image, *saved)
        ctx.mark_non_differentiable(alpha)
        return image, alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image, grad_alpha):
        mean2d, conic, color, opacity, background, image, *saved = ctx.saved_tensors
        g_mean, g_conic, g_color, g_opacity = _raster_kernel(
            "splat_rasterize_backward", mean2d, conic, color, opacity, background, image, *saved,
            grad_image.contiguous())
        return g_mean, g_conic, g_color, g_opacity, None, None, None, None, None


def rasterize_splats(mean2d, conic, color, opacity, depth, radius, width: int, height: int, background,
                     backend: Optional[str] = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Composite projected splats into ``color [H, W, 3]`` and ``alpha [H, W]`` (no gradient); the semantics
    are :func:`nerf_app.ops._reference.splat_rasterize`'s. float32 on the C++ kernel; anything on the twin."""
    dev = _backend.same_device("splat_rasterize", mean2d=mean2d, conic=conic, color=color, opacity=opacity,
                               depth=depth, radius=radius, background=background)
    if _choose("splat_rasterize", "splat rasteriser", backend, dev, mean2d.dtype) == "torch":
        return _reference.splat_rasterize(mean2d, conic, color, opacity, depth, radius, width, height, background)
    f = lambda t: t.contiguous().float()  # noqa: E731
    return _RasterizeFunction.apply(f(mean2d), f(conic), f(color), f(opacity), f(depth),
                                    radius.to(torch.int32).contiguous(), int(width), int(height), f(background))


def render_splats(means, log_scales, quats, opacity_logits, sh, camera: SplatCamera, background,
                  sh_degree: Optional[int] = None, backend: Optional[str] = "auto"):
    """Project and rasterise: ``(color [H, W, 3], alpha [H, W], projected)``; differentiable in every splat
    parameter (means, log-scales, quaternions, opacity logits, SH coefficients)."""
    p = project_splats(means, log_scales, quats, opacity_logits, sh, camera, sh_degree, backend)
    bg = torch.as_tensor(background, dtype=means.dtype, device=means.device)
    image, alpha = rasterize_splats(p.mean2d, p.conic, p.color, p.opacity, p.depth, p.radius,
                                    camera.width, camera.height, bg, backend)
    return image, alpha, p
