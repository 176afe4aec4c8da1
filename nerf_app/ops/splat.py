"""Differentiable 3D Gaussian-splat rendering (issue 27), with backend dispatch (kernels: csrc/splat.cpp).

Two stages, as in 3D Gaussian Splatting:

1. :func:`project_splats` (torch only, vectorised, differentiable by autograd; the per-splat work is
   O(N), a small share of a frame): camera-space means, the EWA 2D covariance ``J W Sigma W^T J^T`` plus a
   0.3 px dilation, its conic, the colour from spherical harmonics at the direction from the camera, the
   opacity, and a cull radius.
2. :func:`rasterize_splats` (dispatched: the C++/OpenMP kernel on CPU tensors, the dense torch twin
   :func:`nerf_app.ops._reference.splat_rasterize` otherwise): front-to-back alpha compositing in 16x16
   tiles, forward and backward.

:func:`render_splats` runs both. No CUDA rasteriser exists yet: CUDA tensors are refused (docs/gpu-status.md)
unless ``backend="torch"`` asks for the dense twin explicitly.
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

DILATION = 0.3      # px^2 added to the 2D covariance's diagonal (3DGS): every splat covers about a pixel
FRUSTUM_SLACK = 0.3  # the Jacobian is taken at x/z clamped to the image plus this share of its width (3DGS)


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


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` quaternions (w, x, y, z; normalised here) -> ``[N, 3, 3]`` rotation matrices."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(q.shape[:-1] + (3, 3))


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


def project_splats(means, log_scales, quats, opacity_logits, sh, camera: SplatCamera,
                   sh_degree: Optional[int] = None) -> Projected:
    """Project splats ``means [N,3]``, ``log_scales [N,3]``, ``quats [N,4]`` (w first), ``opacity_logits [N]``,
    ``sh [N, K, 3]`` into ``camera``. Colour: ``sum_k sh_k Y_k(dir) + 0.5`` clamped at 0 (3DGS), ``dir`` the
    unit vector from the camera centre to the mean, :func:`nerf_app.ops._reference.sh_encode`'s basis (the
    same as 3DGS's). ``sh_degree`` (project degree, 1..4) uses only the first ``sh_degree**2`` coefficients.

    The cull radius bounds where the splat's alpha can reach 1/255: ``|d| <= sqrt(2 ln(255 o) lambda_max)``,
    plus one pixel for rounding; splats behind ``camera.near``, with a degenerate covariance or an opacity
    below 1/255 get radius 0."""
    dev, dt = means.device, means.dtype
    w2c = camera.w2c(dev, dt)
    R, t = w2c[:3, :3], w2c[:3, 3]
    pc = means @ R.T + t
    x, y, z = pc.unbind(-1)
    in_front = z > camera.near
    zs = torch.where(in_front, z, torch.ones_like(z))          # culled splats: finite numbers, no gradient
    W, H = camera.width, camera.height
    lim_x_pos = (W - camera.cx) / camera.fx + FRUSTUM_SLACK * W / camera.fx
    lim_x_neg = camera.cx / camera.fx + FRUSTUM_SLACK * W / camera.fx
    lim_y_pos = (H - camera.cy) / camera.fy + FRUSTUM_SLACK * H / camera.fy
    lim_y_neg = camera.cy / camera.fy + FRUSTUM_SLACK * H / camera.fy
    tx = zs * torch.clamp(x / zs, -lim_x_neg, lim_x_pos)
    ty = zs * torch.clamp(y / zs, -lim_y_neg, lim_y_pos)
    zero = torch.zeros_like(zs)
    J = torch.stack([camera.fx / zs, zero, -camera.fx * tx / (zs * zs),
                     zero, camera.fy / zs, -camera.fy * ty / (zs * zs)], -1).reshape(-1, 2, 3)
    M = quat_to_rotmat(quats) * torch.exp(log_scales)[:, None, :]   # R S
    T = J @ R[None] @ M                                             # [N, 2, 3]
    cov = T @ T.transpose(1, 2)
    a = cov[:, 0, 0] + DILATION
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + DILATION
    det = a * c - b * b
    ok = in_front & (det > 0)
    det_s = torch.where(ok, det, torch.ones_like(det))
    conic = torch.stack([c / det_s, -b / det_s, a / det_s], -1)
    mean2d = torch.stack([camera.fx * x / zs + camera.cx, camera.fy * y / zs + camera.cy], -1)
    opacity = torch.sigmoid(opacity_logits)
    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.0))
        reach = torch.sqrt(2.0 * torch.log(torch.clamp(opacity * 255.0, min=1.0)))
        r = torch.ceil(reach * torch.sqrt(torch.clamp(lam, min=0.0))) + 1.0
        ok = ok & (opacity >= _reference.SPLAT_ALPHA_MIN) & torch.isfinite(r) & torch.isfinite(mean2d).all(-1)
        radius = torch.where(ok, torch.clamp(r, max=float(4 * max(W, H))), torch.zeros_like(r)).to(torch.int32)
    degree = sh_degree or sh_degree_of(sh)
    cam_pos = torch.as_tensor(np.asarray(camera.c2w, np.float64)[:3, 3], dtype=dt, device=dev)
    dirs = means - cam_pos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = _reference.sh_encode(dirs, degree)                       # [N, degree^2]
    color = torch.clamp((basis[:, :, None] * sh[:, :degree * degree, :]).sum(1) + 0.5, min=0.0)
    return Projected(mean2d, conic, color, opacity, torch.where(in_front, z, zero), radius)


class _RasterizeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mean2d, conic, color, opacity, depth, radius, width, height, background):
        ext = _backend.extension()
        out = ext.splat_rasterize_forward(mean2d, conic, color, opacity, depth, radius, width, height, background)
        image, alpha, *saved = out
        ctx.save_for_backward(mean2d, conic, color, opacity, background, image, *saved)
        ctx.mark_non_differentiable(alpha)
        return image, alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image, grad_alpha):
        mean2d, conic, color, opacity, background, image, *saved = ctx.saved_tensors
        g_mean, g_conic, g_color, g_opacity = _backend.extension().splat_rasterize_backward(
            mean2d, conic, color, opacity, background, image, *saved, grad_image.contiguous())
        return g_mean, g_conic, g_color, g_opacity, None, None, None, None, None


def _no_cuda(native: str) -> Optional[str]:
    return "there is no CUDA splat rasteriser yet (docs/gpu-status.md)" if native == "cuda" else None


def rasterize_splats(mean2d, conic, color, opacity, depth, radius, width: int, height: int, background,
                     backend: Optional[str] = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Composite projected splats into ``color [H, W, 3]`` and ``alpha [H, W]`` (no gradient); the semantics
    are :func:`nerf_app.ops._reference.splat_rasterize`'s. float32 on the C++ kernel; anything on the twin."""
    dev = _backend.same_device("splat_rasterize", mean2d=mean2d, conic=conic, color=color, opacity=opacity,
                               depth=depth, radius=radius, background=background)
    if dev.type == "cuda" and _backend.requested(backend) != "torch":
        raise BackendError("splat_rasterize: there is no CUDA splat rasteriser yet (docs/gpu-status.md); "
                           "render splats on the CPU, or pass backend='torch' for the slow dense twin")
    which = _backend.resolve("splat_rasterize", backend, dev, mean2d.dtype, cpp_dtypes=(torch.float32,),
                             cuda_dtypes=(), unsupported=_no_cuda)
    if which == "torch":
        return _reference.splat_rasterize(mean2d, conic, color, opacity, depth, radius, width, height, background)
    f = lambda t: t.contiguous().float()  # noqa: E731
    return _RasterizeFunction.apply(f(mean2d), f(conic), f(color), f(opacity), f(depth),
                                    radius.to(torch.int32).contiguous(), int(width), int(height), f(background))


def render_splats(means, log_scales, quats, opacity_logits, sh, camera: SplatCamera, background,
                  sh_degree: Optional[int] = None, backend: Optional[str] = "auto"):
    """Project and rasterise: ``(color [H, W, 3], alpha [H, W], projected)``; differentiable in every splat
    parameter (means, log-scales, quaternions, opacity logits, SH coefficients)."""
    p = project_splats(means, log_scales, quats, opacity_logits, sh, camera, sh_degree)
    bg = torch.as_tensor(background, dtype=means.dtype, device=means.device)
    image, alpha = rasterize_splats(p.mean2d, p.conic, p.color, p.opacity, p.depth, p.radius,
                                    camera.width, camera.height, bg, backend)
    return image, alpha, p
