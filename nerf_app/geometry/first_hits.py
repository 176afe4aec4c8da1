"""Each ray's first hit on a triangle mesh, straight from Embree (``embreex``): face, barycentric coordinates
and distance as Embree reports them.

Why not :meth:`nerf_app.geometry.mesh_render.MeshRenderer.first_hits` (trimesh's ``intersects_id``): asked for
hit locations, trimesh intersects every hit face's plane again in numpy, and the caller then recomputes the
barycentric coordinates from those locations (``trimesh.triangles.points_to_barycentric``); on the cup
export's photo fit (480 000 rays a photo) that was about three times Embree's own time. Embree's ``u, v`` are
the barycentric coordinates of its hit, ``tfar`` its ray parameter. Without ``embreex`` this falls back to
``MeshRenderer.first_hits`` (same answers, slower).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


class FirstHits:
    """``FirstHits(vertices, faces)(origins, directions)`` -> ``(ray [M] int64, face [M] int64, bary [M,3],
    t [M])`` for the M rays that hit, as :meth:`MeshRenderer.first_hits` (``t`` in units of the direction's
    length; ``bary`` weights the face's three vertices in order). ``origins`` may be one ``[3]`` point for
    all rays (a camera centre)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        try:
            from embreex import rtcore_scene
            from embreex.mesh_construction import TriangleMesh
        except ImportError:
            from .mesh_render import MeshRenderer
            self._fallback = MeshRenderer(self.vertices, self.faces)
            self.engine = self._fallback.engine
            return
        self._fallback = None
        self.engine = "embree"
        # Embree works in float32: shift the mesh to start at the origin so its coordinates keep their precision
        self._origin = self.vertices.min(0) if len(self.vertices) else np.zeros(3)
        self._scene = rtcore_scene.EmbreeScene()
        TriangleMesh(scene=self._scene, vertices=np.ascontiguousarray(self.vertices - self._origin, np.float32),
                     indices=np.ascontiguousarray(self.faces, np.int32))

    def __call__(self, origins: np.ndarray, directions: np.ndarray,
                 chunk: int = 1 << 19) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        d = np.asarray(directions, np.float64).reshape(-1, 3)
        o = np.broadcast_to(np.asarray(origins, np.float64).reshape(-1, 3), d.shape)
        if self._fallback is not None:
            return self._fallback.first_hits(np.ascontiguousarray(o), d)
        out = []
        for s in range(0, len(d), chunk):
            oc = np.ascontiguousarray(o[s:s + chunk] - self._origin, np.float32)
            dc = np.ascontiguousarray(d[s:s + chunk], np.float32)
            res = self._scene.run(oc, dc, output=1)
            prim = np.asarray(res["primID"])
            ray = np.flatnonzero((prim >= 0) & (np.asarray(res["geomID"]) >= 0))
            if len(ray) == 0:
                continue
            u = np.asarray(res["u"], np.float64)[ray]
            v = np.asarray(res["v"], np.float64)[ray]
            bary = np.clip(np.stack([1.0 - u - v, u, v], -1), 0.0, 1.0)
            bary /= np.maximum(bary.sum(1, keepdims=True), 1e-12)
            out.append((ray + s, prim[ray].astype(np.int64), bary, np.asarray(res["tfar"], np.float64)[ray]))
        if not out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0)
        return tuple(np.concatenate(parts) for parts in zip(*out))
