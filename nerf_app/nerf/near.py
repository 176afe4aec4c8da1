"""Per-camera near planes from the capture's sparse points.

Fog and floaters in front of a camera sit in space that the training cameras constrain badly. Structure
from motion already says how close the scene comes to each camera: the sparse points inside its frustum.
A camera's near plane is ``margin x`` a low percentile of those points' depths; marching (training and
rendering) starts there, so no density is learned or drawn in front of it. Held-out and novel cameras get
theirs the same way (the points are projected, not looked up in the observations), so evaluation and
camera paths are handled like training views. ``rays.near > 0`` overrides it with one distance for all.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


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
