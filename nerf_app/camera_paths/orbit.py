"""Generic camera paths: look-at poses and orbits around a bounding box (OpenCV convention).

Camera-to-world matrices are 4x4 float64 with columns (x right, y down, z forward, centre), the
project's internal convention (see docs/design.md).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """c2w [4,4] of a camera at ``eye`` looking at ``target``, image-up along ``up`` (OpenCV: y down)."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    up = np.asarray(up, dtype=np.float64)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking along `up`: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # completes a right-handed frame; points "down" in the image
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def orbit_path(center: Sequence[float], radius: float, n_frames: int = 60, elevation_deg: float = 20.0,
               up: Sequence[float] = (0.0, 0.0, 1.0), start_deg: float = 0.0) -> np.ndarray:
    """``n_frames`` look-at poses [n,4,4] on a circle of ``radius`` around ``center`` at ``elevation_deg``
    above the plane perpendicular to ``up``; one full turn, the last frame just before the first."""
    center = np.asarray(center, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    a = np.cross(up, [1.0, 0.0, 0.0])
    if np.linalg.norm(a) < 1e-6:
        a = np.cross(up, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    el = math.radians(elevation_deg)
    poses = []
    for i in range(n_frames):
        t = math.radians(start_deg) + 2.0 * math.pi * i / n_frames
        eye = center + radius * (math.cos(el) * (math.cos(t) * a + math.sin(t) * b) + math.sin(el) * up)
        poses.append(look_at(eye, center, up))
    return np.stack(poses)


def framing_radius(bbox_min: Sequence[float], bbox_max: Sequence[float], fov_y_deg: float, margin: float = 1.1) -> float:
    """Distance from the box centre at which its bounding sphere fills the vertical field of view."""
    r = 0.5 * float(np.linalg.norm(np.asarray(bbox_max, float) - np.asarray(bbox_min, float)))
    return margin * r / math.sin(math.radians(fov_y_deg) / 2.0)


def pinhole_rays(c2w: np.ndarray, width: int, height: int, fov_y_deg: float):
    """Rays of a pinhole camera (pixel centres at +0.5): ``(origins [H*W,3], directions [H*W,3] unit)``."""
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2.0)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(u - width / 2.0) / f, (v - height / 2.0) / f, np.ones_like(u)], axis=-1).reshape(-1, 3)
    d = d_cam @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape).copy()
    return o, d
