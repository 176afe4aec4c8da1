"""Distance, winding-number sign and closest points against a triangle mesh, via libigl.

Sign convention: signed distance is **negative inside**. "Inside" is decided by the generalised
winding number ``w(x)`` (Jacobson et al. 2013, evaluated with libigl's fast hierarchical
approximation): ``w`` is the sum of the solid angles the triangles subtend at ``x`` over ``4 pi``;
it is 1 inside and 0 outside a closed surface and degrades gracefully (~0.5 across a hole) for
open meshes and triangle soups, so thresholding at 0.5 gives a robust inside test where ray
parity or pseudo-normals flip whole regions.
"""
from __future__ import annotations

import numpy as np

from ..errors import NerfAppError


def _igl():
    try:
        import igl
    except ImportError:  # pragma: no cover - depends on the install
        raise NerfAppError("sdf/occupancy modes need libigl for mesh distance and winding numbers: "
                           "pip install libigl") from None
    return igl


class MeshQuery:
    """Queries against one mesh; the AABB tree is built once. Points are ``[N,3]`` float64."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        igl = _igl()
        self.V = np.ascontiguousarray(vertices, dtype=np.float64)
        self.F = np.ascontiguousarray(faces, dtype=np.int64)
        self.tree = igl.AABB()
        self.tree.init(self.V, self.F)
        n = np.cross(self.V[self.F[:, 1]] - self.V[self.F[:, 0]], self.V[self.F[:, 2]] - self.V[self.F[:, 0]])
        self.face_normals = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)

    def closest(self, points: np.ndarray):
        """``(distance [N], face index [N], closest point [N,3])`` (unsigned)."""
        d2, face, closest = self.tree.squared_distance(self.V, self.F, np.ascontiguousarray(points, np.float64))
        return np.sqrt(np.maximum(d2, 0.0)), face.astype(np.int64), closest

    def winding_number(self, points: np.ndarray) -> np.ndarray:
        """Generalised winding number ``w [N]`` (1 inside, 0 outside, fractional near holes)."""
        return _igl().fast_winding_number(self.V, self.F, np.ascontiguousarray(points, np.float64))

    def inside(self, points: np.ndarray) -> np.ndarray:
        return self.winding_number(points) > 0.5

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Exact unsigned distance, sign from the winding number: ``[N]`` float64, negative inside."""
        d, _, _ = self.closest(points)
        return np.where(self.inside(points), -d, d)
