"""The photo fit's fast paths against simple references (issue 25): Embree's own first hits against
trimesh's, the moment-summed normal equations (several flushes) and the solve over the touched texels
against dense linear algebra, and a photo's grid of rays against ``rays_at``. Small sizes, a few seconds."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from nerf_app.geometry.first_hits import FirstHits  # noqa: E402
from nerf_app.geometry.mesh_render import MeshRenderer, bilinear_taps  # noqa: E402
from nerf_app.geometry.texture import PhotoEvidence  # noqa: E402


def test_first_hits_match_trimesh_intersector():
    pytest.importorskip("embreex")
    sphere = trimesh.creation.icosphere(3)
    v = np.asarray(sphere.vertices) * 0.3 + [0.5, 0.4, 0.6]
    f = np.asarray(sphere.faces)
    rng = np.random.default_rng(0)
    n = 4000
    o = rng.uniform(-1, 2, (n, 3))
    d = (rng.uniform(0.15, 0.85, (n, 3)) - o) * rng.uniform(0.5, 2.0, (n, 1))   # not unit: t in d's units
    fast = FirstHits(v, f)
    assert fast.engine == "embree"
    ray, tri, bary, t = fast(o, d)
    ray0, tri0, bary0, t0 = MeshRenderer(v, f).first_hits(o, d)
    assert 0.3 * n < len(ray) and ray.tolist() == ray0.tolist()
    same = tri == tri0                      # a ray through an edge may name either face
    assert same.mean() > 0.99
    assert np.abs(bary[same] - bary0[same]).max() < 2e-3
    assert np.abs(t - t0).max() < 1e-4
    hit = np.einsum("nk,nkd->nd", bary, v[f[tri]])
    assert np.abs(hit - (o[ray] + t[:, None] * d[ray])).max() < 1e-4
    # one origin for all rays (a camera centre) is the same as the origin repeated
    r1 = fast(o[0], d)
    r2 = fast(np.repeat(o[:1], n, 0), d)
    assert r1[0].tolist() == r2[0].tolist() and np.array_equal(r1[2], r2[2])


def _dense_normal_equations(S, uv, c, w):
    n = len(uv)
    A = np.zeros((n, S * S))
    for r, col, b in bilinear_taps(uv, S, S):
        np.add.at(A, (np.arange(n), r * S + col), b)
    return A.T @ (w[:, None] * A), A.T @ (w[:, None] * c), A.T @ w


@pytest.mark.parametrize("flush_hits", [None, 37])
def test_moment_sums_equal_the_dense_normal_equations(flush_hits):
    # uvs past every edge (clamped taps), an awkward size, many adds; flush_hits=37 sums in many flushes
    rng = np.random.default_rng(7)
    S, n = 6, 1500
    uv = rng.uniform(-0.15, 1.15, (n, 2))
    uv[:50, 0] = 1.0                          # exactly on the last column / row: a zero-weight tap past it
    uv[50:100, 1] = 0.0
    c = rng.uniform(size=(n, 3))
    w = rng.uniform(0.1, 1.0, n)
    ev = PhotoEvidence(S, flush_hits=flush_hits)
    for s in range(0, n, 97):
        ev.add(uv[s:s + 97], c[s:s + 97], w[s:s + 97])
    G, r, wt = _dense_normal_equations(S, uv, c, w)
    x = rng.normal(size=(S * S, 3))
    assert np.allclose(ev.gram_times(x), G @ x, atol=1e-10)
    assert np.allclose(ev.rhs, r, atol=1e-10)
    assert np.allclose(ev.weights, wt, atol=1e-10)


def test_solve_over_touched_texels_equals_the_dense_solve():
    # hits only on the left half: the right half's texels keep the prior exactly, the rest is the
    # regularised least-squares minimiser
    rng = np.random.default_rng(11)
    S, n = 10, 2000
    uv = np.stack([rng.uniform(0.0, 0.4, n), rng.uniform(0, 1, n)], -1)
    c = rng.uniform(size=(n, 3))
    w = rng.uniform(0.1, 1.0, n)
    ev = PhotoEvidence(S)
    ev.add(uv, c, w)
    G, r, _ = _dense_normal_equations(S, uv, c, w)
    prior = rng.uniform(size=(S, S, 3))
    lam = 0.4
    want = np.clip(np.linalg.solve(G + lam * np.eye(S * S), r + lam * prior.reshape(-1, 3)), 0, 1)
    got = ev.solve(prior, lam, iterations=300).reshape(-1, 3)
    assert np.abs(got - want).max() < 1e-6
    untouched = ev.weights == 0
    assert untouched.sum() > S * S // 3
    assert np.array_equal(got[untouched], np.clip(prior.reshape(-1, 3)[untouched], 0, 1))


def test_grid_rays_are_the_rays_at_the_pixel_centres():
    # a distorted camera and a pose correction: grid_rays (one unprojection, c2w corrected once) must give
    # rays_at's rays (per-ray camera tables, correction applied to the rays) for the same pixel grid
    from nerf_app.data.cameras import Camera
    from nerf_app.data.rays import world_rays
    from nerf_app.export.photos import TrainingPhotos

    W, H = 37, 23
    cams = [Camera("OPENCV", W, H, [30.0, 32.0, 18.0, 11.0, -0.08, 0.02, 0.001, -0.002]),
            Camera("SIMPLE_RADIAL", W, H, [28.0, 18.5, 11.5, 0.05])]
    rng = np.random.default_rng(2)
    c2w = np.tile(np.eye(4), (2, 1, 1))
    for k in range(2):
        c2w[k, :3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        c2w[k, :3, 3] = rng.uniform(0, 1, 3)
    scene = SimpleNamespace(cameras=cams, c2w=c2w, images=None, split_indices=lambda split: np.array([0, 1]),
                            rays_at=lambda idx, px: world_rays(c2w, cams, idx, px))
    deltas = {0: torch.tensor([[0.05, -0.02, 0.03, 0.01, 0.0, -0.02]], dtype=torch.float64), 1: None}
    task = SimpleNamespace(scene=scene, model=None, pose_correction=lambda i: deltas[int(i)])
    photos = TrainingPhotos(task)
    for i in (0, 1):
        for s in (1, 2):
            ys, xs = np.meshgrid(np.arange(0, H, s) + 0.5, np.arange(0, W, s) + 0.5, indexing="ij")
            px = np.stack([xs.ravel(), ys.ravel()], -1)
            o_ref, d_ref = photos.rays_at(np.full(len(px), i), px)
            o, d = photos.grid_rays(i, s)
            assert d.shape == d_ref.shape
            assert np.abs(d - d_ref).max() < 1e-12
            assert np.abs(o[None] - o_ref).max() < 1e-12
    # and the correction matters here: image 0's uncorrected rays are elsewhere
    ys, xs = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    plain = scene.rays_at(np.zeros(W * H, np.int64), np.stack([xs.ravel(), ys.ravel()], -1))[1]
    assert np.abs(photos.grid_rays(0)[1] - plain).max() > 1e-2
