"""CPU rendering of a (textured) triangle mesh along given rays: an exact ray caster.

Each ray's first hit (Intel Embree through ``embreex`` when it is installed, else trimesh's own
intersector) gives a triangle and the barycentric coordinates of the hit point; the colour is the
texture sampled bilinearly at the interpolated UV (texel centres at ``(i + 0.5) / S``, edges clamped),
or the interpolated vertex colour for a vertex-coloured mesh. No lighting: the baked texture *is* the
outgoing radiance, which is what a NeRF's held-out photos are compared with. Rays that miss take the
background colour. Because the caster takes arbitrary rays, it renders through any of the scene's
cameras (distortion included) exactly where the NeRF renders its pixels.
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np


def bilinear_taps(uv: np.ndarray, H: int, W: int):
    """The four texels a bilinear lookup at ``uv [N,2]`` (v up, OBJ convention; texel centres at
    ``(i + 0.5) / S``, edges clamped) reads, with their weights: ``[(row [N], col [N], weight [N]) x 4]``.
    Shared by :func:`sample_bilinear` and its adjoint :func:`~nerf_app.geometry.texture.splat_bilinear`."""
    x = np.clip(uv[:, 0] * W - 0.5, 0, W - 1)
    y = np.clip((1.0 - uv[:, 1]) * H - 0.5, 0, H - 1)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = x - x0, y - y0
    return [(y0, x0, (1 - fx) * (1 - fy)), (y0, x1, fx * (1 - fy)), (y1, x0, (1 - fx) * fy), (y1, x1, fx * fy)]


def sample_bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """``texture [H,W,C]`` at ``uv [N,2]`` (v up, OBJ convention), bilinear, clamped at the edges."""
    H, W = texture.shape[:2]
    return sum(texture[r, c] * w[:, None] for r, c, w in bilinear_taps(uv, H, W))


class MeshRenderer:
    """``MeshRenderer(vertices, faces, uv=None, texture=None, vertex_colors=None)``; :meth:`cast` rays."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, uv: Optional[np.ndarray] = None,
                 texture: Optional[np.ndarray] = None, vertex_colors: Optional[np.ndarray] = None):
        import trimesh

        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.uv = None if uv is None else np.asarray(uv, np.float64)
        self.texture = None if texture is None else np.asarray(texture, np.float32)
        self.vertex_colors = None if vertex_colors is None else np.asarray(vertex_colors, np.float32)
        self.mesh = trimesh.Trimesh(self.vertices, self.faces, process=False)
        try:
            from trimesh.ray.ray_pyembree import RayMeshIntersector
            self.intersector = RayMeshIntersector(self.mesh)
            self.engine = "embree"
        except Exception:  # embreex missing: trimesh's rtree-based caster (exact, slower)
            from trimesh.ray.ray_triangle import RayMeshIntersector
            warnings.warn("embreex is not installed: ray casting falls back to trimesh's (slow) intersector")
            self.intersector = RayMeshIntersector(self.mesh)
            self.engine = "trimesh"

    def first_hits(self, origins: np.ndarray, directions: np.ndarray, chunk: int = 1 << 19):
        """Each ray's first hit: ``(ray [M] int64, face [M] int64, bary [M,3], t [M])`` for the M rays that hit
        (``t`` in units of the direction's length)."""
        import trimesh

        o = np.asarray(origins, np.float64).reshape(-1, 3)
        d = np.asarray(directions, np.float64).reshape(-1, 3)
        out = []
        for s in range(0, len(o), chunk):
            tri, ray, loc = self.intersector.intersects_id(o[s:s + chunk], d[s:s + chunk], multiple_hits=False,
                                                           return_locations=True)
            if len(tri) == 0:
                continue
            ray = ray + s
            bary = trimesh.triangles.points_to_barycentric(self.mesh.triangles[tri], loc)
            bary = np.clip(bary, 0.0, 1.0)
            bary /= np.maximum(bary.sum(1, keepdims=True), 1e-12)
            t = np.einsum("nd,nd->n", loc - o[ray], d[ray]) / np.einsum("nd,nd->n", d[ray], d[ray])
            out.append((ray.astype(np.int64), np.asarray(tri, np.int64), bary, t))
        if not out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0)
        return tuple(np.concatenate(parts) for parts in zip(*out))

    def cast(self, origins: np.ndarray, directions: np.ndarray, background=(1.0, 1.0, 1.0),
             chunk: int = 1 << 19) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``origins, directions [N,3]`` -> ``(rgb [N,3] float32, depth [N] (inf on a miss), hit [N] bool)``."""
        n = len(np.asarray(origins).reshape(-1, 3))
        rgb = np.empty((n, 3), np.float32)
        rgb[:] = np.asarray(background, np.float32)
        depth = np.full(n, np.inf)
        hit = np.zeros(n, bool)
        ray, tri, bary, t = self.first_hits(origins, directions, chunk)
        fv = self.faces[tri]
        if self.uv is not None and self.texture is not None:
            uv = np.einsum("nk,nkd->nd", bary, self.uv[fv])
            rgb[ray] = sample_bilinear(self.texture, uv)[:, :3]
        elif self.vertex_colors is not None:
            rgb[ray] = np.einsum("nk,nkd->nd", bary, self.vertex_colors[fv][..., :3])
        else:
            rgb[ray] = 0.8
        depth[ray] = t
        hit[ray] = True
        return rgb, depth, hit


def render_scene_view(renderer: MeshRenderer, scene, index: int, background=(1.0, 1.0, 1.0),
                      supersample: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of ``scene`` (normalised coordinates, the mesh in them too) rendered with
    ``supersample x supersample`` rays per pixel, averaged (antialiasing, as any viewer's MSAA).
    Returns ``(rgb [H,W,3] float32, coverage [H,W])``."""
    cam = scene.cameras[int(index)]
    H, W = cam.height, cam.width
    s = max(1, int(supersample))
    offs = (np.arange(s) + 0.5) / s
    ys, xs = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    acc = np.zeros((H * W, 3), np.float64)
    cov = np.zeros(H * W)
    for oy in offs:
        for ox in offs:
            px = np.stack([(xs + ox).ravel(), (ys + oy).ravel()], -1)
            o, d = scene.rays_at(np.full(len(px), int(index)), px)
            rgb, _, hit = renderer.cast(o, d, background)
            acc += rgb
            cov += hit
    return (acc / (s * s)).reshape(H, W, 3).astype(np.float32), (cov / (s * s)).reshape(H, W)


def seen_faces(renderer: MeshRenderer, scene, indices, stride: int = 1, spacing: Optional[float] = None,
               max_oversample: int = 4, progress: bool = False) -> np.ndarray:
    """``[F] bool``: faces that are the first hit of some pixel ray (every ``stride``-th pixel in x and y) of
    images ``indices`` of ``scene``. A face no camera sees can only be guessed, and it costs a face budget
    the seen surface needs. With ``spacing`` (the mesh's face size, normalised units), an image whose pixels
    are wider than that on the surface (median hit distance / focal length) is cast again with up to
    ``max_oversample`` x ``max_oversample`` rays per pixel, so small photos do not leave visible faces
    unhit between their rays."""
    seen = np.zeros(len(renderer.faces), bool)
    it = [int(i) for i in indices]
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="visible faces", unit="img")
    s = max(1, int(stride))

    def cast(i, step):
        cam = scene.cameras[i]
        ys, xs = np.meshgrid(np.arange(0, cam.height, step) + 0.5 * step,
                             np.arange(0, cam.width, step) + 0.5 * step, indexing="ij")
        o, d = scene.rays_at(np.full(xs.size, i), np.stack([xs.ravel(), ys.ravel()], -1))
        _, tri, _, t = renderer.first_hits(o, d)
        seen[tri] = True
        return t   # a distance: the scene's ray directions are unit vectors

    for i in it:
        t = cast(i, s)
        if spacing and len(t):
            cam = scene.cameras[i]
            footprint = float(np.median(t)) * s / max(float(cam.fx), float(cam.fy), 1e-9)
            k = min(int(max_oversample), int(np.ceil(footprint / float(spacing))))
            if k > 1:
                cast(i, s / k)
    return seen


def grow_faces(faces: np.ndarray, keep: np.ndarray, rings: int = 1) -> np.ndarray:
    """``keep [F] bool`` grown by ``rings`` rings of faces that share a vertex with a kept face."""
    keep = np.asarray(keep, bool).copy()
    faces = np.asarray(faces, np.int64)
    for _ in range(int(rings)):
        vert = np.zeros(int(faces.max()) + 1 if len(faces) else 0, bool)
        vert[faces[keep].ravel()] = True
        keep |= vert[faces].any(1)
    return keep
