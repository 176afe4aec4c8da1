"""Random points on and around a triangle mesh (numpy Generators, so callers control seeding)."""
from __future__ import annotations

import numpy as np


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator):
    """Area-uniform points on the surface: ``(points [n,3], face index [n])``.

    A face is drawn with probability proportional to its area, then a point in it with the
    square-root barycentric map ``p = (1-sqrt(u)) a + sqrt(u)(1-v) b + sqrt(u) v c`` (uniform in area).
    """
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    cdf = np.cumsum(area)
    face = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right").clip(0, len(faces) - 1)
    su = np.sqrt(rng.random(n))[:, None]
    v = rng.random(n)[:, None]
    pts = (1.0 - su) * a[face] + su * (1.0 - v) * b[face] + su * v * c[face]
    return pts, face


def near_surface_points(vertices, faces, n: int, sigmas, rng: np.random.Generator):
    """Surface points moved by isotropic Gaussian noise; the ``n`` points are split evenly over ``sigmas``."""
    pts, _ = sample_surface(vertices, faces, n, rng)
    sig = np.repeat(np.asarray(sigmas, dtype=np.float64), -(-n // len(sigmas)))[:n]
    rng.shuffle(sig)
    return pts + rng.normal(size=(n, 3)) * sig[:, None]


def uniform_points(n: int, rng: np.random.Generator, lo=0.0, hi=1.0):
    return lo + (hi - lo) * rng.random((n, 3))
