"""Mesh clean-up and decimation to a face budget.

``clean_mesh`` drops degenerate and duplicate faces, unreferenced vertices and small connected pieces
(fewer faces than ``min_component`` x the largest piece's), and optionally fills simple holes (trimesh:
boundary loops closed by a fan). ``decimate`` reduces the mesh to at most ``max_faces`` triangles with
quadric error metrics (``fast-simplification``, a wrapper of Sven Forstmann's Fast-Quadric-Mesh-
Simplification).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .marching_cubes import remove_small_components


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, min_component: float = 0.05, fill_holes: bool = False):
    """Cleaned ``(vertices [V,3] float64, faces [F,3] int64)`` (see module docstring)."""
    import trimesh

    v, f = remove_small_components(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), min_component)
    mesh = trimesh.Trimesh(v, f, process=False)
    mesh.update_faces(mesh.nondegenerate_faces(height=1e-12))
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    if fill_holes:
        mesh.merge_vertices()
        trimesh.repair.fill_holes(mesh)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int):
    """At most ``max_faces`` triangles (quadric decimation); a mesh already within budget is returned as is."""
    max_faces = int(max_faces)
    if max_faces < 4:
        raise ConfigError(f"--faces must be at least 4, got {max_faces}")
    if len(faces) <= max_faces:
        return vertices, faces
    import fast_simplification

    v, f = fast_simplification.simplify(np.asarray(vertices, np.float32), np.asarray(faces, np.int32),
                                        target_count=max_faces)
    v, f = np.asarray(v, np.float64), np.asarray(f, np.int64)
    if len(f) > max_faces:  # the library may stop a few faces short of the target: drop the smallest
        import trimesh
        area = trimesh.Trimesh(v, f, process=False).area_faces
        f = f[np.sort(np.argsort(-area)[:max_faces])]
    used = np.unique(f)
    remap = np.full(len(v), -1, np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[f]
