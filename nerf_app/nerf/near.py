"""Per-camera near planes from the capture's sparse points.

Fog and floaters in front of a camera sit in space that the training cameras constrain badly. Structure
from motion already says how close the scene comes to each camera: the sparse points inside its frustum.
A camera's near plane is ``margin x`` a low percentile of those points' depths; marching (training and
rendering) starts there, so no density is learned or drawn in front of it. Held-out and novel cameras get
theirs the same way (the points are projected, not looked up in the observations), so evaluation and
camera paths are handled like training views. ``rays.near > 0`` overrides it with one distance for all.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch


def near_from_points(points: Optional[np.ndarray], c2w: np.ndarray, intrinsics: Sequence[Sequence[float]],
                     sizes: Sequence[Sequence[int]], percentile: float = 1.0, margin: float = 0.5,
                     min_points: int = 16) -> np.ndarray:
    """``points [P, 3]`` (normalised coordinates), ``c2w [N, 4, 4]`` OpenCV, ``intrinsics[i] = (fx, fy, cx, cy)``,
    ``sizes[i] = (width, height)`` -> near distance per camera ``[N]`` (float32; 0 where fewer than
    ``min_points`` points fall in the frustum, or without points). Pinhole projection (distortion is
    negligible for a percentile of depths). Near is a distance along the ray, depth along the optical axis:
    depth <= distance, so the plane is conservative for off-axis rays."""
    n = len(c2w)
    out = np.zeros(n, np.float32)
    if points is None or len(points) == 0:
        return out
    pts = np.asarray(points, np.float64)
    w2c = np.linalg.inv(np.asarray(c2w, np.float64))
    for i in range(n):
        q = pts @ w2c[i, :3, :3].T + w2c[i, :3, 3]
        z = q[:, 2]
        front = z > 1e-6
        if front.sum() < min_points:
            continue
        q, z = q[front], z[front]
        fx, fy, cx, cy = intrinsics[i]
        w, h = sizes[i]
        u = fx * q[:, 0] / z + cx
        v = fy * q[:, 1] / z + cy
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        if inside.sum() < min_points:
            continue
        out[i] = margin * float(np.percentile(z[inside], percentile))
    return out


def free_space_loss(density: Callable[[torch.Tensor], torch.Tensor], origins: torch.Tensor, dirs: torch.Tensor,
                    free: torch.Tensor, lo: float, hi: float, samples: int = 4) -> torch.Tensor:
    """Mean opacity of the space each ray crosses before ``free [R]``, the distance up to which its camera's
    frustum is known to be empty (a margin below the depth of the nearest sparse points).

    ``origins, dirs [R, 3]`` (unit dirs), ``density(x [M, 3]) -> sigma [M]``. Each ray's ``[0, free]`` is cut
    into ``samples`` equal segments with one uniformly drawn point in each (stratified); a segment of length
    ``l = free / samples`` at density ``sigma`` has opacity ``1 - exp(-sigma l)``, and the loss is the mean
    over segments inside the box ``[lo, hi]^3`` (0 when none is). The photometric loss never sees most of
    this space (marching starts at the near plane), so without this term other cameras are free to explain
    their pixels with fog hanging right in front of a camera: what a held-out view near it then shows.
    """
    R = origins.shape[0]
    if R == 0:
        return origins.new_zeros(())
    S = int(samples)
    seg = free / S                                                        # [R]
    u = (torch.arange(S, device=origins.device, dtype=origins.dtype)[None] +
         torch.rand(R, S, device=origins.device, dtype=origins.dtype)) * seg[:, None]
    x = origins[:, None] + u[..., None] * dirs[:, None]                   # [R, S, 3]
    x = x.reshape(-1, 3)
    length = seg[:, None].expand(R, S).reshape(-1)                        # [R*S], per point
    inside = ((x >= lo) & (x <= hi)).all(-1) & (length > 0)
    # every point is evaluated (the ones outside clamped into the box) and the outside ones are masked out:
    # selecting the inside points first would read their count back to the host on a GPU, every step
    sigma = density(torch.where(inside[:, None], x, x.clamp(lo, hi)).contiguous())
    opacity = torch.where(inside, 1.0 - torch.exp(-sigma * length), torch.zeros_like(sigma))
    return opacity.sum() / (R * S)
