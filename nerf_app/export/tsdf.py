"""TSDF fusion of depth maps into a surface (Curless & Levoy 1996; KinectFusion's truncated variant).

Every voxel of a regular grid over the region holds a weighted mean of truncated signed distances
``clamp((depth(pixel) - z(voxel)) / trunc, -1, 1)`` over the views that see it: positive in front of
a view's surface, negative just behind it, left alone further behind (``< -trunc``: occluded, unknown). A
pixel with no surface (``inf``) says the whole ray is free (+1). The surface is the zero level set,
extracted by marching cubes only in cells whose eight corners some view observed, so what no camera saw
stays open rather than invented.

Why fusion instead of the density level set on real captures: each view contributes one surface (its
median depth), and every other view that sees *through* a place votes it empty, so fog that one view
mistakes for a surface is outvoted; a density level set keeps every sheet of fog dense enough anywhere.

Written here in vectorised numpy rather than taken from Open3D (whose CPU wheel is 105 MB and pulls
pandas/dash/scikit-learn as dependencies): only voxels in a narrow band around the back-projected depth
points are fused (a few percent of the grid), which makes each view one batched projection of those
voxels. Pinhole views only (:mod:`nerf_app.export.depth` renders pinhole twins of any camera).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def view_points(view, stride: int = 1):
    """Back-projected surface points of a DepthView (finite depths): ``[N,3]`` normalised coordinates."""
    depth = view.depth[::stride, ::stride]
    H, W = depth.shape
    fx, fy, cx, cy = view.K
    ys, xs = np.meshgrid((np.arange(H) * stride) + 0.5 * stride, (np.arange(W) * stride) + 0.5 * stride, indexing="ij")
    ok = np.isfinite(depth)
    z = depth[ok]
    p_cam = np.stack([(xs[ok] - cx) / fx * z, (ys[ok] - cy) / fy * z, z], -1)
    c2w = np.asarray(view.c2w, np.float64)
    return p_cam @ c2w[:3, :3].T + c2w[:3, 3]


def depth_normals(view) -> np.ndarray:
    """Per-pixel unit normals ``[H,W,3]`` (world, facing the camera) from the depth map's neighbours; NaN
    where a neighbour has no depth."""
    H, W = view.depth.shape
    fx, fy, cx, cy = view.K
    ys, xs = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    z = view.depth
    with np.errstate(invalid="ignore"):
        p = np.stack([(xs - cx) / fx * z, (ys - cy) / fy * z, z], -1)
        dx = np.zeros_like(p)
        dy = np.zeros_like(p)
        dx[:, 1:-1] = p[:, 2:] - p[:, :-2]
        dy[1:-1] = p[2:] - p[:-2]
        n = np.cross(dy, dx)   # OpenCV axes: x right, y down -> (dy x dx) points towards the camera (-z)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~np.isfinite(n).all(-1)] = np.nan
    n[0], n[-1], n[:, 0], n[:, -1] = np.nan, np.nan, np.nan, np.nan
    return n @ np.asarray(view.c2w, np.float64)[:3, :3].T


class TSDFVolume:
    """A dense ``res^3`` grid over the box ``[lo, hi]`` (voxel centres at ``lo + (i + 0.5) * voxel``),
    fused only on a band of voxels (:meth:`set_band`)."""

    def __init__(self, lo: Sequence[float], hi: Sequence[float], resolution: int, trunc_voxels: float = 4.0):
        self.lo = np.asarray(lo, np.float64)
        self.hi = np.asarray(hi, np.float64)
        ext = self.hi - self.lo
        self.voxel = float(ext.max()) / int(resolution)
        self.dims = np.maximum(1, np.ceil(ext / self.voxel - 1e-9).astype(np.int64))
        self.trunc = float(trunc_voxels) * self.voxel
        self.band: Optional[np.ndarray] = None       # flat indices of the fused voxels
        self.centres: Optional[np.ndarray] = None    # [M,3] float32 centres of the band voxels
        self.tsdf: Optional[np.ndarray] = None       # [M] float32 weighted mean of the truncated distances
        self.weight: Optional[np.ndarray] = None     # [M] float32 sum of the weights

    def _flat(self, ijk: np.ndarray) -> np.ndarray:
        nx, ny, nz = self.dims
        return (ijk[:, 0] * ny + ijk[:, 1]) * nz + ijk[:, 2]

    def set_band(self, points, min_views: int = 1) -> int:
        """Fuse the voxels within ``trunc`` (rounded up to whole voxels) of a surface point: ``points`` is one
        ``[N,3]`` array per view, and a voxel counts once the points of ``min_views`` different views fall in
        it (a floater one view mistakes for a surface does not widen the band). Returns how many voxels."""
        from scipy.ndimage import maximum_filter1d

        nx, ny, nz = (int(d) for d in self.dims)
        if isinstance(points, np.ndarray):
            points = [points]
        cells = []
        for pts in points:
            ijk = np.floor((np.asarray(pts, np.float64).reshape(-1, 3) - self.lo) / self.voxel).astype(np.int64)
            ok = ((ijk >= 0) & (ijk < self.dims)).all(1)
            cells.append(np.unique(self._flat(ijk[ok])))
        cells = np.concatenate(cells) if cells else np.zeros(0, np.int64)
        views_per_cell = np.bincount(cells, minlength=nx * ny * nz)
        occ = (views_per_cell >= max(1, int(min_views))).astype(np.uint8).reshape(nx, ny, nz)
        r = int(np.ceil(self.trunc / self.voxel))
        for axis in range(3):   # a cube of side 2r+1 around every point, as three 1-D passes
            occ = maximum_filter1d(occ, 2 * r + 1, axis=axis, mode="constant")
        idx = np.flatnonzero(occ)
        self.band = idx
        ijk = np.stack([idx // (ny * nz), (idx // nz) % ny, idx % nz], 1)
        # float32: a voxel is ~1/256 of the box, far above float32's resolution, and the per-view pass is
        # memory-bound (half the bytes of float64)
        self.centres = (self.lo[None] + (ijk + 0.5) * self.voxel).astype(np.float32)
        self.tsdf = np.zeros(len(idx), np.float32)
        self.weight = np.zeros(len(idx), np.float32)
        return int(len(idx))

    def integrate(self, view, pixel_weight: Optional[np.ndarray] = None, free_weight: float = 1.0) -> None:
        """Fuse one pinhole DepthView (``pixel_weight [H,W]``: how much to trust each pixel, default 1).
        ``free_weight`` scales the vote of a voxel this view sees *through* (more than ``trunc`` in front of
        its surface, the +1 of a free ray): below 1, a surface some views see survives more views that
        pass through it (a NeRF's soft surfaces, fur or a hazy lid, are seen through from some sides),
        while fog that most views see through is still outvoted.
        numpy, one thread: a view is a few vectorised passes over the band, where a thread pool's start-up
        and a loaded machine's contention cost more than they save."""
        c2w = np.asarray(view.c2w, np.float64)
        fx, fy, cx, cy = view.K
        H, W = view.depth.shape
        R = c2w[:3, :3].astype(np.float32)
        p = self.centres @ R - (c2w[:3, 3] @ c2w[:3, :3]).astype(np.float32)   # world -> camera: R^T (x - t)
        z = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.floor(p[:, 0] / z * fx + cx)
            v = np.floor(p[:, 1] / z * fy + cy)
        sel = np.nonzero((z > 1e-9) & (u >= 0) & (u < W) & (v >= 0) & (v < H))[0]
        if not len(sel):
            return
        pix = v[sel].astype(np.int64) * W + u[sel].astype(np.int64)
        sdf = np.asarray(view.depth, np.float32).reshape(-1)[pix] - z[sel]   # inf (a free ray) -> +1 below
        keep = sdf > -self.trunc
        sel, sdf, pix = sel[keep], sdf[keep], pix[keep]
        if pixel_weight is None:
            w = np.ones(len(sel), np.float32)
        else:
            w = np.asarray(pixel_weight, np.float32).reshape(-1)[pix]
            pos = w > 0
            sel, sdf, w = sel[pos], sdf[pos], w[pos]
        if free_weight != 1.0:
            w = np.where(sdf > self.trunc, np.float32(free_weight) * w, w).astype(np.float32)
        val = np.clip(sdf / self.trunc, -1.0, 1.0).astype(np.float32)
        new_w = self.weight[sel] + w
        self.tsdf[sel] = (self.tsdf[sel] * self.weight[sel] + val * w) / new_w
        self.weight[sel] = new_w

    def extract(self, min_weight: float = 1e-3, extend_voxels: int = 0):
        """Marching cubes of the zero level set in cells whose 8 corners are observed (weight > min_weight)
        -> ``(vertices [V,3] float64 normalised, faces [F,3] int64)``, outward normals (towards +tsdf).
        ``extend_voxels``: first carry the observed values that many voxels into the unobserved ones around
        them (:func:`extend_observed`), so surfaces go on that far past where the views stopped seeing them."""
        from skimage.measure import marching_cubes

        nx, ny, nz = (int(d) for d in self.dims)
        vol = np.ones(nx * ny * nz, np.float32)
        seen = np.zeros(nx * ny * nz, bool)
        ok = self.weight > min_weight
        vol[self.band[ok]] = self.tsdf[ok]
        seen[self.band[ok]] = True
        vol = vol.reshape(nx, ny, nz)
        seen = seen.reshape(nx, ny, nz)
        if extend_voxels > 0:
            extend_observed(vol, seen, int(extend_voxels))
        # a cell (i, j, k) spans corners (i..i+1, ...): observed when all 8 are
        mask = np.zeros((nx, ny, nz), bool)
        cell = seen[:-1, :-1, :-1].copy()
        for di in (0, 1):
            for dj in (0, 1):
                for dk in (0, 1):
                    cell &= seen[di:nx - 1 + di, dj:ny - 1 + dj, dk:nz - 1 + dk]
        mask[:-1, :-1, :-1] = cell
        if not mask.any():
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        v_np = vol
        if not (v_np.min() < 0 < v_np.max()):
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        try:
            verts, faces, _, _ = marching_cubes(v_np, 0.0, gradient_direction="descent")
        except (ValueError, RuntimeError):   # no crossing
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        # keep the faces of observed cells only (a face lies in one cell: the one holding its centroid)
        cid = np.floor(verts[faces].mean(1)).astype(np.int64)
        cid = np.minimum(np.maximum(cid, 0), np.array([nx - 2, ny - 2, nz - 2]).clip(0))
        m = mask
        faces = faces[m[cid[:, 0], cid[:, 1], cid[:, 2]]]
        if not len(faces):
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        used, faces = np.unique(faces, return_inverse=True)
        verts, faces = verts[used], faces.reshape(-1, 3)
        verts = self.lo + (verts.astype(np.float64) + 0.5) * self.voxel
        return verts, faces.astype(np.int64)


def extend_observed(vol: np.ndarray, seen: np.ndarray, steps: int) -> None:
    """In place: ``steps`` times, every unobserved voxel with an observed face-neighbour takes the mean of
    their values and counts as observed. A plane's signed distance goes on as the same plane (a voxel past
    its edge copies the voxel beside it at the same height), the free side stays positive and the occluded
    side negative, so new zero crossings are only the surfaces' own continuations; holes narrower than
    ``2 * steps`` voxels close."""
    for _ in range(int(steps)):
        acc = np.zeros(vol.shape, np.float32)
        cnt = np.zeros(vol.shape, np.uint8)
        val = np.where(seen, vol, np.float32(0))
        for axis in range(3):
            for lo_s, hi_s in ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None))):
                dst = [slice(None)] * 3
                src = [slice(None)] * 3
                dst[axis], src[axis] = lo_s, hi_s
                acc[tuple(dst)] += val[tuple(src)]
                cnt[tuple(dst)] += seen[tuple(src)]
        new = ~seen & (cnt > 0)
        if not new.any():
            return
        vol[new] = acc[new] / cnt[new]
        seen |= new


def fuse_views(views, lo, hi, resolution: int = 256, trunc_voxels: float = 4.0, weights=None,
               band_stride: int = 1, min_views: int = 2, margin_voxels: int = 0, free_weight: float = 1.0,
               extend_voxels: int = 0, progress: bool = False):
    """Fuse pinhole DepthViews into a TSDF over ``[lo, hi]`` and extract its surface: ``(vertices, faces,
    info)``. ``weights``: one ``[H,W]`` array per view (None: 1); the band: voxels near points of at least
    ``min_views`` views (fewer views than that: 1); ``free_weight``: :meth:`TSDFVolume.integrate`'s.
    ``margin_voxels``: the grid reaches that many voxels (of the size ``resolution`` gives the box) past the
    box on every side, so the surface crosses the box's faces instead of stopping short of them (marching
    cubes keeps only cells whose eight corners were observed, and the fused surface wanders by a voxel or
    so: at the box's faces that left a ragged strip of the box's pixels uncovered)."""
    m = max(0, int(margin_voxels))
    if m:
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        voxel = float((hi - lo).max()) / int(resolution)
        lo, hi, resolution = lo - m * voxel, hi + m * voxel, int(resolution) + 2 * m   # same voxel size
    vol = TSDFVolume(lo, hi, resolution, trunc_voxels)
    n_band = vol.set_band([view_points(v, band_stride) for v in views], min(int(min_views), max(1, len(views))))
    it = range(len(views))
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="tsdf fusion", unit="view")
    for k in it:
        vol.integrate(views[k], None if weights is None else weights[k], free_weight)
    v, f = vol.extract(extend_voxels=extend_voxels)
    return v, f, {"voxel": vol.voxel, "trunc": vol.trunc, "band_voxels": n_band,
                  "grid": [int(d) for d in vol.dims], "margin_voxels": m,
                  "free_weight": float(free_weight), "extend_voxels": int(extend_voxels)}
