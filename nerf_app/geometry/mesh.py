"""Mesh loading and normalisation into the unit cube the grids live in.

``x_unit = s * (x_orig - c) + 0.5`` with ``c`` the bbox centre and ``s = (1 - 2 * margin) / max_extent``,
so the mesh's bbox is centred in ``[0,1]^3`` with ``margin`` to spare on its longest axis. The 4x4
matrices ``to_unit`` / ``to_original`` hold this map and its inverse.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, reraise_if_bug

MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")


@dataclass
class TriMesh:
    vertices: np.ndarray  # [V,3] float64
    faces: np.ndarray     # [F,3] int64

    @property
    def bbox(self):
        return self.vertices.min(0), self.vertices.max(0)

    @property
    def diagonal(self) -> float:
        lo, hi = self.bbox
        return float(np.linalg.norm(hi - lo))

    @classmethod
    def from_trimesh(cls, mesh) -> "TriMesh":
        """A ``trimesh.Trimesh``'s vertices (float64) and faces (int64), copied into this type."""
        return cls(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64))

    def transformed(self, matrix: np.ndarray) -> "TriMesh":
        return TriMesh(self.vertices @ matrix[:3, :3].T + matrix[:3, 3], self.faces)


def load_mesh(path) -> TriMesh:
    """Read a triangle mesh (all scene geometry concatenated) with trimesh; errors name the file."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "mesh file not found")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise DatasetError(path, f"unsupported mesh format (expected one of {', '.join(MESH_SUFFIXES)})")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for broken files
        reraise_if_bug(exc)   # but not MemoryError, nor a mistake in the call above
        raise DatasetError(path, f"cannot read mesh: {exc}") from None
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    verts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
    if faces.ndim != 2 or faces.shape[0] == 0 or faces.shape[1] != 3:
        raise DatasetError(path, "no triangles in the mesh", field="faces")
    if not np.isfinite(verts).all():
        raise DatasetError(path, "vertex coordinates are not finite", field="vertices")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise DatasetError(path, "face indices out of range", field="faces")
    lo, hi = verts[faces.reshape(-1)].min(0), verts[faces.reshape(-1)].max(0)
    if float((hi - lo).max()) <= 0:
        raise DatasetError(path, "the mesh is degenerate (zero extent)", field="vertices")
    return TriMesh(verts, faces)


def unit_cube_transform(mesh: TriMesh, margin: float = 0.05):
    """``(to_unit, to_original)`` 4x4 float64 maps (see module docstring)."""
    used = mesh.vertices[np.unique(mesh.faces)]
    lo, hi = used.min(0), used.max(0)
    c = 0.5 * (lo + hi)
    s = (1.0 - 2.0 * margin) / float((hi - lo).max())
    to_unit = np.eye(4)
    to_unit[:3, :3] *= s
    to_unit[:3, 3] = 0.5 - s * c
    to_original = np.linalg.inv(to_unit)
    return to_unit, to_original
