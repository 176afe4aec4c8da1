"""Textured meshes: UV unwrapping (xatlas), texture baking from a colour field, dilation, GLB/OBJ writing.

Conventions (trimesh's, which are OBJ's): ``uv`` in [0, 1]^2 with v pointing **up**, so texel row ``r`` of
an ``S x S`` image holds ``v = 1 - (r + 0.5) / S``; glTF stores v downwards and trimesh flips it on write
and read, so the same arrays round-trip through both formats.

Baking: every texel whose centre falls inside a triangle of the atlas gets the 3D point and the
(interpolated, normalised) normal at that centre, and ``colour_fn(points, normals)`` colours it. Texels
outside every chart are then filled with the colour of the nearest baked texel (a Euclidean distance
transform: "dilation past the chart borders"), so bilinear filtering and mip-mapping at a chart's edge
never blend in the empty background.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from ..results import atomic_write

TEXTURE_FORMATS = (".glb", ".obj")


def _spatial_pieces(vertices: np.ndarray, faces: np.ndarray, n_pieces: int) -> np.ndarray:
    """Piece label per face: face centroids sorted along their longest extent, recursively halved
    (a k-d split), so pieces are compact blocks of about equal face counts."""
    cent = vertices[faces].mean(1)
    labels = np.zeros(len(faces), np.int64)
    groups = [np.arange(len(faces))]
    while len(groups) < n_pieces:
        groups.sort(key=len)
        g = groups.pop()
        c = cent[g]
        axis = int(np.argmax(c.max(0) - c.min(0)))
        order = g[np.argsort(c[:, axis], kind="stable")]
        half = len(order) // 2
        groups += [order[:half], order[half:]]
    for k, g in enumerate(groups):
        labels[g] = k
    return labels


def unwrap(vertices: np.ndarray, faces: np.ndarray, texture_size: int = 2048, padding: int = 2,
           faces_per_piece: int = 20_000, chart_faces: float = 1000.0):
    """xatlas charts + packing -> ``(vertices [V',3], faces [F,3], uv [V',2], vmapping [V'])``; seams split
    vertices (``vmapping`` gives each new vertex's index in the input).

    Large meshes are cut into compact spatial pieces of about ``faces_per_piece`` faces, charted as
    separate xatlas meshes (in parallel, and xatlas' chart merging grows faster than linearly with the
    number of charts in one mesh) and packed together into one atlas; the cuts are extra seams.

    A chart's area is capped at ``chart_faces`` mean faces (0: no cap). xatlas grows a chart face by face
    and checks the chart's parameterisation after each one at a cost that grows with the chart, so a few
    big charts (the cup's table) took almost all of the time (py-spy: 97 % in chart building, packing
    negligible). On the cup's 200k faces the cap of 1000 cut xatlas from 58 to 22 s (same loaded box, one
    after the other) with the same packing (83 % of the atlas used, 5497 charts instead of 6210)."""
    import xatlas

    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    n_pieces = max(1, int(round(len(faces) / max(1, faces_per_piece))))
    labels = _spatial_pieces(vertices, faces, n_pieces) if n_pieces > 1 else np.zeros(len(faces), np.int64)
    atlas = xatlas.Atlas()
    pieces = []
    for k in range(n_pieces):
        fk = faces[labels == k]
        used, local = np.unique(fk, return_inverse=True)
        pieces.append(used)
        atlas.add_mesh(np.ascontiguousarray(vertices[used], np.float32),
                       np.ascontiguousarray(local.reshape(-1, 3), np.uint32))
    chart = xatlas.ChartOptions()
    if chart_faces and len(faces):
        tri = vertices[faces]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
        chart.max_chart_area = float(chart_faces * area / len(faces))
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(chart, pack)
    out_v, out_f, out_uv, offset = [], [], [], 0
    for k in range(n_pieces):
        vmapping, indices, uv = atlas[k]
        out_v.append(pieces[k][np.asarray(vmapping, np.int64)])
        out_f.append(np.asarray(indices, np.int64) + offset)
        out_uv.append(np.asarray(uv, np.float64))
        offset += len(vmapping)
    vmap = np.concatenate(out_v)
    return vertices[vmap], np.concatenate(out_f), np.concatenate(out_uv), vmap


def rasterize_uv(uv: np.ndarray, faces: np.ndarray, size: int, chunk: int = 1 << 22):
    """Which triangle covers each texel centre: ``(face [S,S] int64, -1 for none; bary [S,S,3])``.

    Vectorised over triangles: each triangle's texel bounding box is enumerated (small for an atlas of
    many triangles), centres are tested with barycentric coordinates (a small tolerance closes the
    cracks between neighbours), and a texel claimed by two triangles keeps the one it is deepest in."""
    S = int(size)
    # texel space: x = u * S, y = (1 - v) * S; centres at integer + 0.5
    tri = np.stack([uv[faces][..., 0] * S, (1.0 - uv[faces][..., 1]) * S], -1)  # [F,3,2]
    lo = np.clip(np.floor(tri.min(1) - 0.5).astype(np.int64), 0, S - 1)
    hi = np.clip(np.ceil(tri.max(1) - 0.5).astype(np.int64), 0, S - 1)
    w = hi[:, 0] - lo[:, 0] + 1
    h = hi[:, 1] - lo[:, 1] + 1
    counts = w * h
    face_img = np.full(S * S, -1, np.int64)
    best = np.full(S * S, -np.inf)
    bary_img = np.zeros((S * S, 3))
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1 = b - a, c - a
    det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    ok = np.abs(det) > 1e-20
    det = np.where(ok, det, 1.0)
    starts = np.concatenate([[0], np.cumsum(counts)])
    f0 = 0
    while f0 < len(faces):
        # a run of triangles holding at most ``chunk`` candidate texels
        f1 = int(np.searchsorted(starts, starts[f0] + chunk, side="right")) - 1
        f1 = max(f1, f0 + 1)
        sel = np.arange(f0, min(f1, len(faces)))
        n = counts[sel]
        fid = np.repeat(sel, n)
        local = np.arange(n.sum()) - np.repeat(starts[sel] - starts[sel[0]], n)
        px = lo[fid, 0] + local % w[fid]
        py = lo[fid, 1] + local // w[fid]
        qx, qy = px + 0.5 - a[fid, 0], py + 0.5 - a[fid, 1]
        l1 = (qx * v1[fid, 1] - qy * v1[fid, 0]) / det[fid]
        l2 = (v0[fid, 0] * qy - v0[fid, 1] * qx) / det[fid]
        l0 = 1.0 - l1 - l2
        depth = np.minimum(l0, np.minimum(l1, l2))
        inside = (depth > -1e-6) & ok[fid]
        pix = (py * S + px)[inside]
        d = depth[inside]
        order = np.argsort(d)            # ascending: the deepest write lands last
        pix, d = pix[order], d[order]
        fi = fid[inside][order]
        bc = np.stack([l0, l1, l2], -1)[inside][order]
        better = d > best[pix]
        pix, d, fi, bc = pix[better], d[better], fi[better], bc[better]
        # duplicates inside one chunk: numpy keeps the last write, which is the deepest (sorted)
        face_img[pix] = fi
        best[pix] = d
        bary_img[pix] = bc
        f0 = int(sel[-1]) + 1
    return face_img.reshape(S, S), bary_img.reshape(S, S, 3)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (outward for counter-clockwise faces)."""
    fn = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-20)


def dilate(texture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Every texel outside ``mask`` takes the value of the nearest texel inside it."""
    from scipy.ndimage import distance_transform_edt

    if mask.all() or not mask.any():
        return texture
    _, (iy, ix) = distance_transform_edt(~mask, return_indices=True)
    return texture[iy, ix]


def bake(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, size: int,
         colour_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], normals: Optional[np.ndarray] = None,
         batch: int = 1 << 18, progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Bake ``colour_fn(points [N,3], normals [N,3]) -> rgb [N,3]`` in [0,1] into an ``size x size``
    texture; returns ``(texture [S,S,3] float32 dilated, mask [S,S] bool of baked texels)``."""
    face_img, bary = rasterize_uv(uv, faces, size)
    mask = face_img >= 0
    fi = face_img[mask]
    bc = bary[mask]
    pts = np.einsum("nk,nkd->nd", bc, vertices[faces[fi]])
    vn = vertex_normals(vertices, faces) if normals is None else normals
    nrm = np.einsum("nk,nkd->nd", bc, vn[faces[fi]])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-20)
    out = np.empty((len(pts), 3), np.float32)
    steps = range(0, len(pts), batch)
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc="bake texture", unit="batch")
    for s in steps:
        out[s:s + batch] = np.clip(np.asarray(colour_fn(pts[s:s + batch], nrm[s:s + batch]), np.float32), 0, 1)
    tex = np.zeros((size, size, 3), np.float32)
    tex[mask] = out
    return dilate(tex, mask), mask


def bake_prior(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, size: int,
               colour_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], normals: Optional[np.ndarray] = None,
               factor: int = 2, progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`bake` on a ``size / factor`` raster of the same atlas, bilinearly enlarged to ``size``: the
    prior of the photo fit, which the photos outweigh on almost every texel, for ``factor^2`` fewer calls
    of ``colour_fn``. Returns ``(texture [S,S,3] float32, mask [S,S] bool of the texels inside a chart at
    the full size)``."""
    from .mesh_render import sample_bilinear

    S = int(size)
    small = max(1, S // max(1, int(factor)))
    if small == S:
        return bake(vertices, faces, uv, S, colour_fn, normals=normals, progress=progress)
    coarse, _ = bake(vertices, faces, uv, small, colour_fn, normals=normals, progress=progress)
    mask = rasterize_uv(uv, faces, S)[0] >= 0
    c = (np.arange(S) + 0.5) / S
    centres = np.stack([np.broadcast_to(c[None, :], (S, S)).ravel(),
                        np.broadcast_to(1.0 - c[:, None], (S, S)).ravel()], -1)
    return sample_bilinear(coarse, centres).reshape(S, S, 3).astype(np.float32), mask


def splat_bilinear(uv: np.ndarray, values: np.ndarray, weights: np.ndarray, size: int, taps=None):
    """Adjoint of :func:`~nerf_app.geometry.mesh_render.sample_bilinear`: each ``values[n]`` (weighted by
    ``weights[n]``) is spread over the four texels around ``uv[n]`` with the bilinear weights a lookup at
    ``uv[n]`` would use (``taps``: those of ``bilinear_taps(uv, S, S)`` when the caller has them already).
    Returns ``(sums [S,S,C], weights [S,S])``."""
    from .mesh_render import bilinear_taps

    S = int(size)
    C = values.shape[1]
    sums = np.zeros((S * S, C))
    wsum = np.zeros(S * S)
    for r, c, w in (bilinear_taps(uv, S, S) if taps is None else taps):
        k = r * S + c
        ww = w * weights
        wsum += np.bincount(k, ww, S * S)
        for ch in range(C):
            sums[:, ch] += np.bincount(k, ww * values[:, ch], S * S)
    return sums.reshape(S, S, C), wsum.reshape(S, S)


#: texel index offsets (row-major, ``S`` wide) two taps of one bilinear lookup can have: the 3x3 neighbourhood
def _band_offsets(S: int):
    return [dy * S + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


class PhotoEvidence:
    """Least-squares texture evidence: for lookups ``l_n(T) = sum_k b_nk T_k`` (the bilinear taps of hit
    ``n``) that should equal photo colours ``c_n`` with weights ``w_n``, the normal equations
    ``G T = r`` of ``min_T sum_n w_n |l_n(T) - c_n|^2``: ``r = sum_n w_n b_nk c_n`` (the weighted splat) and
    the Gram matrix ``G_kl = sum_n w_n b_nk b_nl``, which couples a texel only to its 3x3 neighbours and is
    kept as nine bands ``gram[j][k] = G[k, k + offsets[j]]``. ``weights`` is the plain splat of ``w``
    (``sum_n w_n b_nk``) for weighted means and coverage.

    How it is summed: a hit's four taps are its base texel ``k0`` (``x0, y0`` of :func:`bilinear_taps`) and
    ``k0 + 1, k0 + S, k0 + S + 1`` with weights ``X_i Y_j`` (``X = (1 - fx, fx)``, ``Y = (1 - fy, fy)``), so
    every product of two taps is ``X_a X_b Y_c Y_d``, which depends only on ``a + b`` and ``c + d``. Per
    base texel nine moments ``sum_n w_n P_p(fx) Q_q(fy)`` (``P = ((1-fx)^2, fx (1-fx), fx^2)``, Q alike)
    therefore hold the whole Gram matrix, and four (times colours: twelve) the splat; each is one
    ``bincount`` over the hits, and shifted adds put them into the bands. Hits are buffered so each
    ``bincount``'s pass over its ``S^2`` outputs is paid once per million-odd hits, not once per photo. (A tap
    past the last column or row has weight 0, ``fx = 0`` or ``fy = 0`` there, so the shift that wraps or
    runs off the end adds nothing.)"""

    def __init__(self, size: int, flush_hits: Optional[int] = None):
        S = self.size = int(size)
        N = S * S
        self.offsets = _band_offsets(S)
        self._rhs = np.zeros((3, N))           # channels first: every pass below runs along contiguous texels
        self._weights = np.zeros(N)
        self.gram = np.zeros((len(self.offsets), N))
        self._pending, self._n_pending = [], 0
        self._flush_hits = max(N, 1 << 20) if flush_hits is None else int(flush_hits)
        # (band, shift) for each pair of taps (ix, iy), (jx, jy) by moment (p, q) = (ix + jx, iy + jy): the
        # pair adds G[k0 + ix + iy S, k0 + jx + jy S], i.e. band (jx - ix, jy - iy) at row k0 + (ix + iy S)
        self._pairs = {}
        for ix in (0, 1):
            for jx in (0, 1):
                for iy in (0, 1):
                    for jy in (0, 1):
                        band = self.offsets.index((jx - ix) + (jy - iy) * S)
                        self._pairs.setdefault((ix + jx, iy + jy), []).append((band, ix + iy * S))

    @property
    def rhs(self) -> np.ndarray:
        """``r [S*S, 3]``, the weighted splat of the colours."""
        self._flush()
        return self._rhs.T

    @property
    def weights(self) -> np.ndarray:
        """``[S*S]``, the plain splat of the weights."""
        self._flush()
        return self._weights

    def add(self, uv: np.ndarray, colours: np.ndarray, w: np.ndarray) -> None:
        """Hits at ``uv [n,2]`` that saw ``colours [n,3]``, with weights ``w [n]``."""
        S = self.size
        uv = np.asarray(uv, np.float64)
        # the base tap and fractions exactly as bilinear_taps computes them (edges clamped)
        x = np.clip(uv[:, 0] * S - 0.5, 0, S - 1)
        y = np.clip((1.0 - uv[:, 1]) * S - 0.5, 0, S - 1)
        x0, y0 = np.floor(x), np.floor(y)
        base = y0.astype(np.int64) * S + x0.astype(np.int64)
        self._pending.append((base, x - x0, y - y0, np.asarray(w, np.float64),
                              np.asarray(colours, np.float64).reshape(-1, 3)))
        self._n_pending += len(base)
        if self._n_pending >= self._flush_hits:
            self._flush()

    @staticmethod
    def _shift_add(target: np.ndarray, values: np.ndarray, shift: int) -> None:
        n = len(values)
        target[shift:] += values[:n - shift]

    def _flush(self) -> None:
        if not self._pending:
            return
        N = self.size * self.size
        base, fx, fy, w, c = [np.concatenate(p) for p in zip(*self._pending)]
        self._pending, self._n_pending = [], 0
        X, Y = (1.0 - fx, fx), (1.0 - fy, fy)
        P = (X[0] * X[0], X[0] * X[1], X[1] * X[1])
        Q = (Y[0] * Y[0], Y[0] * Y[1], Y[1] * Y[1])
        for p in range(3):
            wp = w * P[p]
            for q in range(3):
                m = np.bincount(base, wp * Q[q], N)
                for band, shift in self._pairs[(p, q)]:
                    self._shift_add(self.gram[band], m, shift)
        for ix in (0, 1):
            wx = w * X[ix]
            for iy in (0, 1):
                wt = wx * Y[iy]
                shift = ix + iy * self.size
                self._shift_add(self._weights, np.bincount(base, wt, N), shift)
                for ch in range(3):
                    self._shift_add(self._rhs[ch], np.bincount(base, wt * c[:, ch], N), shift)

    def _gram_times(self, x: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
        """``out = G @ x`` for channels-first ``x [C, S*S]`` (``tmp``: scratch of x's shape)."""
        n = x.shape[1]
        out[:] = 0.0
        for b, d in zip(self.gram, self.offsets):
            if d >= 0:
                t = tmp[:, :n - d]
                np.multiply(b[None, :n - d], x[:, d:], out=t)
                out[:, :n - d] += t
            else:
                t = tmp[:, -d:]
                np.multiply(b[None, -d:], x[:, :d], out=t)
                out[:, -d:] += t
        return out

    def gram_times(self, x: np.ndarray) -> np.ndarray:
        """``G @ x`` for ``x [S*S, C]``."""
        self._flush()
        xc = np.ascontiguousarray(np.asarray(x, np.float64).T)
        return self._gram_times(xc, np.empty_like(xc), np.empty_like(xc)).T

    def _active_matrix(self):
        """``(active texels [M], G restricted to them as a CSR matrix [M, M])``. A texel no hit touches has an
        empty row and column (``G_kl != 0`` needs a hit with taps on both ``k`` and ``l``, so ``G_ll > 0``):
        its normal equation is ``prior_weight (T_k - prior_k) = 0`` on its own, and the solve only iterates
        over the others (about half of a 2048^2 atlas), nine stored neighbours a row at most."""
        from scipy.sparse import csr_matrix

        N = self.size * self.size
        act = np.flatnonzero(self.gram[self.offsets.index(0)] > 0)
        pos = np.full(N, -1, np.int64)
        pos[act] = np.arange(len(act))
        cols = act[:, None] + np.asarray(self.offsets)[None, :]
        inside = (cols >= 0) & (cols < N)
        cols = pos[np.clip(cols, 0, N - 1)]
        vals = self.gram[:, act].T
        keep = inside & (vals != 0) & (cols >= 0)
        indptr = np.concatenate([[0], np.cumsum(keep.sum(1))])
        return act, csr_matrix((vals[keep], cols[keep], indptr), shape=(len(act), len(act)))

    def solve(self, prior: np.ndarray, prior_weight: float, iterations: int = 25,
              start: Optional[np.ndarray] = None) -> np.ndarray:
        """``argmin_T sum_n w_n |l_n(T) - c_n|^2 + prior_weight |T - prior|^2`` for ``prior [S,S,3]``
        (texels no photo sees keep the prior): Jacobi-preconditioned conjugate gradients from ``start``
        (default: the weighted mean), over the texels some hit touches (:meth:`_active_matrix`). Returns
        ``[S,S,3]`` clipped to [0, 1]."""
        self._flush()
        S = self.size
        lam = float(prior_weight)
        p0 = np.asarray(prior, np.float64).reshape(S * S, 3)
        out = p0.copy()
        act, G = self._active_matrix()
        if len(act) == 0 or lam < 0:
            return np.clip(out, 0.0, 1.0).reshape(S, S, 3)
        b = self._rhs[:, act].T + lam * p0[act]
        diag = (self.gram[self.offsets.index(0)][act] + lam)[:, None]
        if start is None:
            x = b / (self._weights[act] + lam)[:, None]
        else:
            x = np.asarray(start, np.float64).reshape(S * S, 3)[act].copy()

        def op(v):
            y = G @ v
            y += lam * v
            return y

        def dot(u, v):
            return np.einsum("ij,ij->j", u, v)

        r = b - op(x)
        z = r / diag
        p = z.copy()
        rz = dot(r, z)
        for _ in range(int(iterations)):
            if not np.any(rz > 0):
                break
            q = op(p)
            a = rz / np.maximum(dot(p, q), 1e-300)
            x += a * p
            r -= a * q
            np.divide(r, diag, out=z)
            rz_new = dot(r, z)
            p *= rz_new / np.maximum(rz, 1e-300)
            p += z
            rz = rz_new
        out[act] = x
        return np.clip(out, 0.0, 1.0).reshape(S, S, 3)


def project_photos(renderer, scene, indices, uv: np.ndarray, size: int, background=(1.0, 1.0, 1.0),
                   progress: bool = False, colour_map=None, stride: int = 1) -> PhotoEvidence:
    """Texture evidence from photos: every pixel of images ``indices`` of ``scene`` is cast (through its
    own camera) onto the mesh ``renderer`` holds (normalised coordinates; faces indexing ``uv``); its
    colour should be what a bilinear lookup at the hit's UV gives, with a weight: the cosine between the
    ray and the face normal (grazing views smear). Visibility is exact (first hit, Embree:
    :class:`~nerf_app.geometry.first_hits.FirstHits`). Masked pixels are skipped. ``colour_map(index,
    rgb [N,3]) -> rgb``: a per-photo colour correction (appearance); ``stride``: every ``stride``-th pixel
    in x and y only. A ``scene`` with ``grid_rays(index, stride) -> (origin, directions)`` (the pixel centres
    row by row, as below) gives its rays that way, else ``rays_at``. Returns the :class:`PhotoEvidence`
    (weighted splat and normal equations)."""
    from .first_hits import FirstHits

    ev = PhotoEvidence(size)
    cast = FirstHits(renderer.vertices, renderer.faces)
    fn = renderer.mesh.face_normals
    face_uv = np.asarray(uv, np.float64)[renderer.faces]
    grid_rays = getattr(scene, "grid_rays", None)
    bg = np.asarray(background, np.float32)
    s = max(1, int(stride))
    it = indices
    if progress:
        from tqdm import tqdm
        it = tqdm(indices, desc="project photos", unit="img")
    for i in it:
        i = int(i)
        cam = scene.cameras[i]
        H, W = cam.height, cam.width
        if grid_rays is not None:
            o, d = grid_rays(i, s)
        else:
            ys, xs = np.meshgrid(np.arange(0, H, s, dtype=np.float64) + 0.5,
                                 np.arange(0, W, s, dtype=np.float64) + 0.5, indexing="ij")
            px = np.stack([xs.ravel(), ys.ravel()], -1)
            o, d = scene.rays_at(np.full(len(px), i), px)
        rgb = scene.images.rgb(i, background=bg, keep=False)[::s, ::s, :3].reshape(-1, 3)  # one pass: not kept
        mask = scene.images.mask(i)
        if mask is not None:
            sel = np.flatnonzero(np.asarray(mask, bool)[::s, ::s].reshape(-1))
            d, rgb = d[sel], rgb[sel]
            o = o[sel] if np.ndim(o) == 2 and len(o) > 1 else o
        ray, tri, bary, _ = cast(o, d)
        if len(ray) == 0:
            continue
        dr = d[ray]
        cos = np.abs(np.einsum("nd,nd->n", dr, fn[tri])) / np.maximum(np.linalg.norm(dr, axis=1), 1e-12)
        hit_uv = np.einsum("nk,nkd->nd", bary, face_uv[tri])
        colours = np.asarray(rgb[ray], np.float64)
        if colour_map is not None:
            colours = colour_map(i, colours)
        ev.add(hit_uv, colours, cos)
    return ev


def textured_trimesh(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture: np.ndarray,
                     name: str = "texture"):
    """A ``trimesh.Trimesh`` with TextureVisuals: a PBR material (base colour = the texture, metallic 0,
    roughness 1: a matte surface whose colour is the baked one under white light)."""
    import trimesh
    from PIL import Image

    from ..results import to_uint8

    image = Image.fromarray(to_uint8(texture)[..., :3], "RGB")
    material = trimesh.visual.material.PBRMaterial(name=name, baseColorTexture=image, metallicFactor=0.0,
                                                   roughnessFactor=1.0, doubleSided=False)
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return trimesh.Trimesh(vertices=vertices, faces=faces, visual=visual, process=False)


def write_textured(path, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture: np.ndarray,
                   metadata: Optional[dict] = None) -> list:
    """``.glb`` (one file, texture embedded as PNG) or ``.obj`` + ``.mtl`` + ``.png`` beside it. Each file is
    written atomically; the OBJ (which names the others) is renamed into place last, so a failure leaves
    no OBJ pointing at missing files, and the side files this call created are removed again (a full disk
    after the PNG leaves no orphan PNG/MTL). Returns the paths written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXTURE_FORMATS:
        raise ConfigError(f"textured mesh {path}: format must be one of {', '.join(TEXTURE_FORMATS)}")
    mesh = textured_trimesh(vertices, faces, uv, texture, name=path.stem)
    if suffix == ".glb":
        import trimesh
        scene = trimesh.Scene(mesh)
        if metadata:
            scene.metadata.update(metadata)
        atomic_write(path, lambda tmp: scene.export(tmp, file_type="glb"))
        return [path]
    from trimesh.exchange.obj import export_obj

    text, files = export_obj(mesh, include_normals=False, include_color=False, include_texture=True,
                             return_texture=True, mtl_name=f"{path.stem}.mtl")
    written, created = [], []
    try:
        for name, data in files.items():
            target = path.with_name(name)
            existed = os.path.lexists(target)
            atomic_write(target, lambda tmp, data=data: Path(tmp).write_bytes(data))
            written.append(target)
            if not existed:
                created.append(target)
        header = "".join(f"# {k}: {v}\n" for k, v in (metadata or {}).items())
        atomic_write(path, lambda tmp: Path(tmp).write_text(header + text))
    except BaseException:
        for target in created:
            try:
                os.unlink(target)
            except OSError:
                pass
        raise
    return written + [path]


def load_textured(path):
    """Read a textured mesh -> ``(vertices, faces, uv, texture [H,W,3] float32 in [0,1], metadata)``; ``uv``
    and ``texture`` are None for a mesh without them (then ``texture`` may be vertex colours, see
    :class:`~nerf_app.geometry.mesh_render.MeshRenderer`)."""
    import trimesh

    from ..errors import DatasetError, reraise_if_bug

    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "mesh file not found")
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises many types for broken files
        reraise_if_bug(exc)   # but not MemoryError, nor a mistake in the call above
        raise DatasetError(path, f"cannot read mesh: {exc}") from None
    metadata = dict(getattr(loaded, "metadata", {}) or {})
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        if not geoms:
            raise DatasetError(path, "no triangles in the mesh", field="faces")
        mesh = geoms[0] if len(geoms) == 1 else trimesh.util.concatenate(geoms)
    else:
        mesh = loaded
    if path.suffix.lower() == ".obj":
        for line in path.read_text(errors="replace").splitlines()[:20]:
            if line.startswith("# ") and ": " in line:
                k, v = line[2:].split(": ", 1)
                metadata.setdefault(k.strip(), v.strip())
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64)
    uv, tex = None, None
    visual = mesh.visual
    if getattr(visual, "kind", None) == "texture" and getattr(visual, "uv", None) is not None:
        mat = visual.material
        img = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
        if img is not None:
            uv = np.asarray(visual.uv, np.float64)
            tex = np.asarray(img.convert("RGB"), np.float32) / 255.0
    elif getattr(visual, "kind", None) == "vertex":
        tex = np.asarray(visual.vertex_colors, np.float32)[:, :3] / 255.0
    return v, f, uv, tex, metadata
