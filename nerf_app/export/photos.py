"""The training photos in the export: which faces they see (hidden-face cull) and the texture that best
reproduces them (least squares), with each photo's pose correction and appearance correction applied.

Appearance: a real-capture run learns a per-photo affine colour map ``A_i(c) = c + D_i c + b_i`` (exposure,
white balance) and renders held-out views with the mean map ``A_m``. A photo's pixel ``c`` is taken back to
the radiance ``A_i^-1(c)`` and on to ``A_m(A_i^-1(c))`` before it is fitted, so photos taken at different
exposures agree on the texture (no seams where one photo's faces meet another's) and the texture is in the
held-out views' colours.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


class TrainingPhotos:
    """A scene-like view of a task's training photos for :func:`nerf_app.geometry.texture.project_photos`
    and :func:`nerf_app.geometry.mesh_render.seen_faces`: ``cameras``, ``images`` and ``rays_at`` (with the
    run's pose correction), plus :meth:`colour_map` (the appearance correction)."""

    def __init__(self, task):
        self.task = task
        self.scene = task.scene
        self.cameras = self.scene.cameras
        self.images = self.scene.images
        self.indices = [int(i) for i in self.scene.split_indices("train")]
        self._affine = self._appearance_maps(task)

    @staticmethod
    def _appearance_maps(task):
        """``{image: (M [3,3], b [3])}`` with ``A_m(A_i^-1(c)) = M c + b``, or None without appearance."""
        model = getattr(task, "model", None)
        A = getattr(model, "appearance", None)
        if A is None or not getattr(task, "use_appearance", False):
            return None
        A = A.detach().double().cpu().numpy()
        train = [int(i) for i in task.scene.split_indices("train")]
        mean = A[train].mean(0)
        Mm, bm = np.eye(3) + mean[:, :3], mean[:, 3]
        out = {}
        for i in train:
            Mi = np.eye(3) + A[i, :, :3]
            inv = np.linalg.inv(Mi)
            out[i] = (Mm @ inv, bm - Mm @ inv @ A[i, :, 3])
        return out

    def colour_map(self, index: int, rgb: np.ndarray) -> np.ndarray:
        if self._affine is None or int(index) not in self._affine:
            return rgb
        M, b = self._affine[int(index)]
        return np.einsum("nj,ij->ni", rgb, M) + b   # not ``rgb @ M.T``: that took ~0.1 s a photo in the export

    def grid_rays(self, index: int, stride: int = 1):
        """The rays through the pixel centres ``(x + 0.5, y + 0.5)`` of every ``stride``-th pixel of image
        ``index``, row by row (as :func:`~nerf_app.geometry.texture.project_photos` reads the photo):
        ``(origin [3], unit directions [n, 3])``, the pose correction applied: the rays of :meth:`rays_at`
        without its per-ray camera tables (one camera here, so one unprojection with its parameters)."""
        from ..data.cameras import MODELS_BY_NAME, unproject
        from .depth import corrected_c2w

        i, s = int(index), max(1, int(stride))
        cam = self.cameras[i]
        ys, xs = np.meshgrid(np.arange(0, cam.height, s, dtype=np.float64) + 0.5,
                             np.arange(0, cam.width, s, dtype=np.float64) + 0.5, indexing="ij")
        d_cam = unproject(MODELS_BY_NAME[cam.model], np.asarray(cam.params, np.float64),
                          np.stack([xs.ravel(), ys.ravel()], -1))
        c2w = corrected_c2w(self.task, i)
        d = np.einsum("nj,ij->ni", d_cam, c2w[:3, :3])   # einsum, as colour_map
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return c2w[:3, 3].copy(), d

    def rays_at(self, image_index, pixels):
        o, d = self.scene.rays_at(image_index, pixels)
        idx = np.asarray(image_index).reshape(-1)
        if len(idx) == 0:
            return o, d
        delta = self.task.pose_correction(int(idx[0]))
        if delta is None:
            return o, d
        if not (idx == idx[0]).all():
            raise ValueError("TrainingPhotos.rays_at takes one image at a time")
        from .depth import corrected_c2w
        c2w0 = np.asarray(self.scene.c2w[int(idx[0])], np.float64)
        c2w1 = corrected_c2w(self.task, int(idx[0]))
        R = c2w1[:3, :3] @ c2w0[:3, :3].T
        return o - c2w0[:3, 3] + c2w1[:3, 3], d @ R.T


def cull_hidden(task_or_photos, vertices, faces, progress: bool = False, stride: int = 1, rings: int = 1,
                spacing: Optional[float] = None):
    """Drop the faces (normalised coordinates) no training camera sees: those that are not the first hit of
    any of their pixel rays (every ``stride``-th pixel; more rays per pixel where a pixel covers more than
    ``spacing`` on the surface, see :func:`~nerf_app.geometry.mesh_render.seen_faces`), grown by ``rings``
    rings of neighbours so the ray spacing leaves no pinholes. Returns ``(vertices, faces, number dropped)``."""
    from ..geometry.mesh_render import MeshRenderer, grow_faces, seen_faces
    from ..geometry.simplify import compact

    photos = task_or_photos if hasattr(task_or_photos, "rays_at") else task_or_photos.scene
    indices = getattr(photos, "indices", None)
    if indices is None:
        indices = photos.split_indices("train")
    seen = seen_faces(MeshRenderer(vertices, faces), photos, indices, stride, spacing, progress=progress)
    keep = grow_faces(faces, seen, rings)
    if keep.all() or not keep.any():
        return vertices, faces, 0
    return (*compact(vertices, faces[keep]), int((~keep).sum()))


def cull_unseen_by_depth(views, vertices, faces, tolerance: float, rings: int = 2):
    """The hidden-face cull from depth maps instead of ray casting: a face is seen when its centroid projects
    into some view within ``tolerance`` of that view's depth there (it is that pixel's first surface).
    Faces no view sees as a first hit — the inside of a closed piece, fog sheets behind the surface — are
    dropped after growing the seen set by ``rings`` rings. Returns ``(vertices, faces, number dropped)``."""
    from ..geometry.mesh_render import grow_faces
    from ..geometry.simplify import compact

    cent = vertices[faces].mean(1)
    seen = np.zeros(len(faces), bool)
    for view in views:
        c2w = np.asarray(view.c2w, np.float64)
        p = (cent - c2w[:3, 3]) @ c2w[:3, :3]
        z = p[:, 2]
        fx, fy, cx, cy = view.K
        H, W = view.depth.shape
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.floor(p[:, 0] / z * fx + cx)
            v = np.floor(p[:, 1] / z * fy + cy)
        ok = (z > 1e-9) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        idx = np.nonzero(ok)[0]
        d = view.depth[v[idx].astype(np.int64), u[idx].astype(np.int64)]
        hit = np.abs(d - z[idx]) < tolerance
        seen[idx[hit]] = True
    keep = grow_faces(faces, seen, rings)
    if keep.all() or not keep.any():
        return vertices, faces, 0
    return (*compact(vertices, faces[keep]), int((~keep).sum()))


def photo_texture(task, vertices, faces, uv, field_texture, mask, progress: bool = False,
                  prior: float = 0.5, iterations: int = 25, max_pixels: int = 60_000_000):
    """The texture that best reproduces the training photos: least squares over the training pixels that
    hit the mesh (its colour, appearance-corrected, against the bilinear lookup at its hit, weighted by the
    cosine of the view; see :class:`~nerf_app.geometry.texture.PhotoEvidence`), pulled towards the
    field-baked ``field_texture`` with weight ``prior`` per texel, so a texel no photo sees keeps the field's
    colour. Solving rather than averaging undoes the blur of splatting each pixel over four texels. Held-out
    images are never used. Photos with more than ``max_pixels`` pixels in all are cast at every 2nd (3rd...)
    pixel. Returns ``(texture dilated past the charts, fraction of chart texels some photo saw, stride)``."""
    from ..geometry.mesh_render import MeshRenderer
    from ..geometry.texture import dilate, project_photos
    from ..nerf.evaluate import eval_background

    photos = TrainingPhotos(task)
    renderer = MeshRenderer(vertices, faces)
    S = field_texture.shape[0]
    total = sum(photos.cameras[i].width * photos.cameras[i].height for i in photos.indices)
    stride = max(1, int(np.ceil(np.sqrt(total / max_pixels))))
    ev = project_photos(renderer, photos, photos.indices, uv, S, eval_background(task.config), progress=progress,
                        colour_map=photos.colour_map, stride=stride)
    out = ev.solve(field_texture, prior, iterations)
    tex = np.where(mask[..., None], out, field_texture).astype(np.float32)
    w = ev.weights.reshape(S, S)
    seen = float((w[mask] > 0).mean()) if mask.any() else 0.0
    return dilate(tex, mask), seen, stride
