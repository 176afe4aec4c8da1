"""The demo scene's cameras: one shared pinhole, a spiral of posed views over the upper hemisphere, their
rays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ..geometry.rotations import matrix_to_quat, quat_to_matrix
from .shapes import CAMERA_ANGLE_X, CAMERA_RADIUS, DECIMALS, ELEVATION_DEG, HEIGHT, N_VIEWS, TEST_EVERY, WIDTH

# ----------------------------------------------------------------------------- cameras

@dataclass
class View:
    """One posed camera: ``name`` (image file), ``qvec``/``tvec`` (COLMAP world-to-camera, w first,
    rounded to ``DECIMALS``), and ``c2w`` (4x4 OpenCV camera-to-world derived from those numbers)."""

    name: str
    qvec: np.ndarray
    tvec: np.ndarray
    c2w: np.ndarray
    split: str


def focal() -> float:
    return round(0.5 * WIDTH / math.tan(0.5 * CAMERA_ANGLE_X), DECIMALS)


def intrinsics() -> Tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of the shared pinhole camera (pixel centres at +0.5)."""
    return focal(), focal(), WIDTH / 2.0, HEIGHT / 2.0


def views() -> List[View]:
    """The ``N_VIEWS`` cameras: a spiral over the upper hemisphere (golden-angle azimuths,
    elevation rising evenly in sin), all looking at the origin with world +z up. Every
    ``TEST_EVERY``-th view (0, 8, ...) is a test view, so the test views span all elevations —
    and they are exactly the views the COLMAP loader holds out by default (every 8th by name)."""
    lo, hi = (math.sin(math.radians(e)) for e in ELEVATION_DEG)
    golden = math.pi * (3 - math.sqrt(5))
    out = []
    for k in range(N_VIEWS):
        elevation = math.asin(lo + (hi - lo) * (k + 0.5) / N_VIEWS)
        azimuth = k * golden
        centre = CAMERA_RADIUS * np.array([math.cos(elevation) * math.cos(azimuth),
                                           math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        forward = -centre / np.linalg.norm(centre)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)  # OpenCV: x right, y down, z forward (x cross y = z)
        R_w2c = np.stack([right, down, forward])  # rows: camera axes in world coordinates
        # round first, then derive everything (rendering, observations, both files) from the
        # rounded numbers: the files then agree with the pixels to ~1e-12, and tiny
        # platform differences in sin/cos vanish in the rounding
        qvec = matrix_to_quat(R_w2c).round(DECIMALS)
        tvec = (-R_w2c @ centre).round(DECIMALS)
        R = quat_to_matrix(qvec)
        c2w = np.eye(4)
        c2w[:3, :3] = R.T
        c2w[:3, 3] = -_apply(R.T, tvec)
        c2w = c2w.round(DECIMALS)  # what transforms_*.json stores, and what renders the pixels
        out.append(View(f"r_{k:03d}.png", qvec, tvec, c2w, "test" if k % TEST_EVERY == 0 else "train"))
    return out


def _apply(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v @ M.T`` for row vectors ``v (..., 3)`` with plain multiply-adds: BLAS matrix products
    may fuse or reorder them differently on other machines, which would change the last bits."""
    v = np.asarray(v, dtype=np.float64)
    return np.stack([v[..., 0] * M[i, 0] + v[..., 1] * M[i, 1] + v[..., 2] * M[i, 2] for i in range(3)], -1)


def pixel_rays(c2w: np.ndarray, pixels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """World ``(origins, unit directions)`` of continuous pixel coordinates ``(N, 2)`` (x, y)."""
    fx, fy, cx, cy = intrinsics()
    d_cam = np.stack([(pixels[:, 0] - cx) / fx, (pixels[:, 1] - cy) / fy, np.ones(len(pixels))], -1)
    d = _apply(c2w[:3, :3], d_cam)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], d.shape).copy(), d
