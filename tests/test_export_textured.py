"""Textured mesh export: decimation, UV unwrap + bake round trip, the ray caster against an analytic
render, the export pipeline on the demo scene's analytic field, and CLI errors. Fast (< 60 s)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("xatlas")
pytest.importorskip("fast_simplification")
trimesh = pytest.importorskip("trimesh")

from nerf_app.errors import ConfigError  # noqa: E402
from nerf_app.geometry.mesh_render import MeshRenderer, bilinear_taps, grow_faces, sample_bilinear, seen_faces  # noqa: E402
from nerf_app.geometry.simplify import clean_mesh, decimate  # noqa: E402
from nerf_app.geometry.texture import (PhotoEvidence, bake, load_textured, project_photos, rasterize_uv,  # noqa: E402
                                      splat_bilinear, unwrap, write_textured)

ROOT = Path(__file__).resolve().parents[1]


def smooth_colour(p, n=None):
    p = np.asarray(p, np.float64)
    return np.clip(0.5 + 0.4 * np.stack([np.sin(2 * p[:, 0]), np.cos(3 * p[:, 1]), p[:, 2]], -1), 0, 1)


def test_decimate_honours_budget_and_clean_drops_specks():
    sphere = trimesh.creation.icosphere(4)                              # 5120 faces
    speck = trimesh.creation.icosphere(0, radius=0.01)
    speck.vertices += 3.0
    both = trimesh.util.concatenate([sphere, speck])
    v, f = clean_mesh(both.vertices, both.faces, min_component=0.05)
    assert len(f) == len(sphere.faces)
    v2, f2 = decimate(v, f, 500)
    assert 0 < len(f2) <= 500 and f2.max() < len(v2)
    r = np.linalg.norm(v2, axis=1)
    assert np.abs(r - 1).max() < 0.05                                   # still the sphere
    with pytest.raises(ConfigError):
        decimate(v, f, 2)


def _grid(n: int, lo: float = 0.0, hi: float = 1.0):
    """An open n x n vertex grid over [lo, hi]^2 at z = 0, two triangles per cell: ``(vertices, faces)``."""
    ys, xs = np.meshgrid(np.linspace(lo, hi, n), np.linspace(lo, hi, n), indexing="ij")
    k = np.arange(n * n).reshape(n, n)[:-1, :-1].ravel()
    f = np.concatenate([np.stack([k, k + 1, k + n + 1], -1), np.stack([k, k + n + 1, k + n], -1)])
    return np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], -1), f


def test_decimate_open_grid_keeps_its_border_and_budget():
    # an open, gently curved sheet (a culled mesh has borders): the budget holds and the outline stays put
    v, f = _grid(60)
    v[:, 2] = 0.1 * np.sin(3 * v[:, 0]) * np.cos(2 * v[:, 1])
    v2, f2 = decimate(v, f, 400)
    assert 200 < len(f2) <= 400
    assert np.allclose(v2[:, :2].min(0), 0, atol=1e-6) and np.allclose(v2[:, :2].max(0), 1, atol=1e-6)
    z = 0.1 * np.sin(3 * v2[:, 0]) * np.cos(2 * v2[:, 1])
    assert np.abs(v2[:, 2] - z).max() < 0.01                            # vertices still on the sheet


def test_rasterize_uv_covers_a_full_square():
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    face, bary = rasterize_uv(uv, faces, 32)
    assert (face >= 0).all()
    assert np.allclose(bary.sum(-1), 1) and (bary > -1e-6).all()


def test_bake_prior_at_half_size_is_the_full_bake_enlarged():
    # a quarter of the colour calls; the same chart mask; the colours those of the full-size bake up to
    # the coarser raster (a half-texel misalignment of the enlargement would be ~10x the mean error)
    from nerf_app.geometry.texture import bake_prior
    sphere = trimesh.creation.icosphere(3)
    v, f, uv, _ = unwrap(np.asarray(sphere.vertices), np.asarray(sphere.faces), 256)
    calls = []

    def colour(p, n=None):
        calls.append(len(p))
        return np.clip(0.5 + 0.4 * np.stack([np.sin(4 * p[:, 0]), np.cos(5 * p[:, 1]), np.sin(3 * p[:, 2])], -1), 0, 1)
    full, mask = bake(v, f, uv, 256, colour)
    n_full = sum(calls)
    calls.clear()
    prior, mask2 = bake_prior(v, f, uv, 256, colour, factor=2)
    assert prior.shape == full.shape and prior.dtype == np.float32
    assert np.array_equal(mask, mask2)
    assert sum(calls) < 0.3 * n_full
    err = np.abs(prior - full)[mask]
    assert err.mean() < 0.002 and np.percentile(err, 99) < 0.02


def test_unwrap_caps_the_chart_area():
    # a gently curved sheet is one chart uncapped; with chart_faces=100 it is cut into many charts
    # (connected pieces of the output, whose seams split vertices) of at most about 100 faces. xatlas
    # exempts the nearly flat middle it takes as one planar region, so that one may stay larger.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    v, f = _grid(31)                                       # 1800 faces of about equal area
    v[:, 2] = 0.1 * np.sin(3 * v[:, 0]) * np.cos(2 * v[:, 1])
    for cap, most in ((0, None), (100, 100)):
        v2, f2, uv, _ = unwrap(v, f, 256, faces_per_piece=10_000, chart_faces=cap)
        e = np.concatenate([f2[:, [0, 1]], f2[:, [1, 2]]])
        n, label = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), (len(v2), len(v2))),
                                         directed=False)
        faces_per_chart = np.bincount(label[f2[:, 0]])
        faces_per_chart = faces_per_chart[faces_per_chart > 0]
        if most is None:
            assert len(faces_per_chart) == 1
        else:
            assert len(faces_per_chart) >= 10 and np.median(faces_per_chart) <= most
            assert (faces_per_chart > 1.2 * most).sum() <= 1


def test_bake_reads_back_the_colour_field(tmp_path):
    sphere = trimesh.creation.icosphere(3)
    v, f, uv, vmap = unwrap(np.asarray(sphere.vertices), np.asarray(sphere.faces), 512)
    assert uv.min() >= 0 and uv.max() <= 1 and len(f) == len(sphere.faces)
    tex, mask = bake(v, f, uv, 512, smooth_colour)
    assert mask.mean() > 0.3
    # random surface points: the texture sampled at their UV reproduces the field there
    rng = np.random.default_rng(0)
    fi = rng.integers(0, len(f), 4000)
    b = rng.dirichlet([1, 1, 1], 4000)
    pts = np.einsum("nk,nkd->nd", b, v[f[fi]])
    got = sample_bilinear(tex, np.einsum("nk,nkd->nd", b, uv[f[fi]]))
    err = np.abs(got - smooth_colour(pts))
    assert err.mean() < 0.01 and np.percentile(err, 99) < 0.05
    # GLB and OBJ round trips through trimesh: UVs in [0,1], an embedded / side-car texture
    for name in ("m.glb", "m.obj"):
        written = write_textured(tmp_path / name, v, f, uv, tex, metadata={"nerf_app_axes": "capture"})
        assert all(p.is_file() for p in written)
        v2, f2, uv2, tex2, meta = load_textured(tmp_path / name)
        assert len(f2) == len(f) and uv2 is not None and tex2.shape == (512, 512, 3)
        assert uv2.min() >= -1e-6 and uv2.max() <= 1 + 1e-6
        assert meta.get("nerf_app_axes") == "capture"
        # same colour at the same surface points after the round trip (v flips in glTF are undone)
        r = MeshRenderer(v2, f2, uv2, tex2)
        o = pts * 1.5
        rgb, _, hit = r.cast(o, -pts / np.linalg.norm(pts, axis=1, keepdims=True))
        assert hit.mean() > 0.99
        assert np.abs(rgb[hit] - smooth_colour(pts[hit])).mean() < 0.03
    assert (tmp_path / "m.mtl").is_file() and list(tmp_path.glob("*.png"))
    assert not list(tmp_path.glob(".*tmp*"))


def test_obj_write_that_fails_leaves_no_side_files(tmp_path):
    """Issue 25 (bad input): an OBJ export whose last file cannot be written (here a folder is in its way; a
    full disk after the PNG is the same) is one error and leaves no orphan PNG or MTL beside it; a side file
    that was there before is left alone."""
    from nerf_app.errors import NerfAppError
    v = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = v[:, :2].copy()
    tex = np.full((16, 16, 3), 0.5)
    (tmp_path / "m.obj").mkdir()
    with pytest.raises(NerfAppError):
        write_textured(tmp_path / "m.obj", v, f, uv, tex)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.obj"]
    # side files that were there before the call (an earlier export) are not its to remove
    written = write_textured(tmp_path / "n.obj", v, f, uv, tex)
    assert len(written) == 3 and all(p.is_file() for p in written)
    side = [p for p in written if p.suffix != ".obj"]
    (tmp_path / "n.obj").unlink()
    (tmp_path / "n.obj").mkdir()
    with pytest.raises(NerfAppError):
        write_textured(tmp_path / "n.obj", v, f, uv, tex)
    assert all(p.is_file() for p in side)


def test_ray_caster_matches_an_analytic_textured_quad():
    # quad z=0 over [-1,1]^2, uv = ((x+1)/2, (y+1)/2); a texture with a known bilinear pattern
    v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0.0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = (v[:, :2] + 1) / 2
    S = 64
    ys, xs = np.meshgrid((np.arange(S) + 0.5) / S, (np.arange(S) + 0.5) / S, indexing="ij")
    tex = np.stack([xs, 1 - ys, 0.5 * np.ones_like(xs)], -1).astype(np.float32)  # red = u, green = v
    r = MeshRenderer(v, f, uv, tex)
    # a pinhole camera at (0.2, -0.1, 3) looking down -z: 40x40 pixels, 30 degree fov
    W = 40
    fpx = 0.5 * W / np.tan(np.radians(15))
    px = np.stack(np.meshgrid(np.arange(W) + 0.5, np.arange(W) + 0.5), -1).reshape(-1, 2)
    d = np.stack([(px[:, 0] - W / 2) / fpx, -(px[:, 1] - W / 2) / fpx, -np.ones(len(px))], -1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to([0.2, -0.1, 3.0], d.shape)
    rgb, depth, hit = r.cast(o, d, background=(0, 0, 0))
    t = 3.0 / -d[:, 2]
    x = o + t[:, None] * d
    inside = (np.abs(x[:, 0]) < 0.999) & (np.abs(x[:, 1]) < 0.999)
    assert (hit == (np.abs(x[:, 0]) <= 1) & (np.abs(x[:, 1]) <= 1))[inside | ~hit].all()
    u_true = np.clip((x[:, 0] + 1) / 2, 0.5 / S, 1 - 0.5 / S)
    v_true = np.clip((x[:, 1] + 1) / 2, 0.5 / S, 1 - 0.5 / S)
    assert np.abs(rgb[inside, 0] - u_true[inside]).max() < 1e-4
    assert np.abs(rgb[inside, 1] - v_true[inside]).max() < 1e-4
    assert np.abs(depth[inside] - t[inside]).max() < 1e-4
    assert (rgb[~hit] == 0).all()


def test_splat_is_the_adjoint_of_the_bilinear_lookup():
    # <lookup(T, uv), v> == <T, splat(uv, v)> for every T and v: the splat spreads each value with
    # exactly the weights a lookup at the same uv reads with (edges clamped alike), at an awkward size
    rng = np.random.default_rng(3)
    S, n = 37, 5000
    uv = rng.uniform(-0.05, 1.05, (n, 2))
    vals = rng.normal(size=(n, 3))
    w = rng.uniform(0.1, 1.0, n)
    tex = rng.normal(size=(S, S, 3))
    sums, wsum = splat_bilinear(uv, vals, w, S)
    lhs = np.sum(sample_bilinear(tex, uv) * vals * w[:, None])
    rhs = np.sum(tex * sums)
    assert abs(lhs - rhs) < 1e-9 * max(1.0, abs(lhs))
    assert abs(wsum.sum() - w.sum()) < 1e-9 * w.sum()


class _QuadPhotos:
    """Pinhole photos of the textured quad z=0 over [-1,1]^2 (uv = (x+1)/2, (y+1)/2), cameras on a ring;
    image 0 has a mask hiding its left half."""

    def __init__(self, truth: np.ndarray, W: int = 48):
        self.W = W
        self.fpx = 0.5 * W / np.tan(np.radians(25))
        self.centres = [np.array([0.3 * np.cos(a), 0.3 * np.sin(a), 2.5]) for a in np.linspace(0, 6, 6)]
        self.cameras = [SimpleNamespace(width=W, height=W, fx=self.fpx, fy=self.fpx) for _ in self.centres]
        v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0.0]])
        self.uv = (v[:, :2] + 1) / 2
        self.truth = MeshRenderer(v, np.array([[0, 1, 2], [0, 2, 3]]), self.uv, truth)
        self.images = self

    def rays_at(self, index, px):
        d = np.stack([(px[:, 0] - self.W / 2) / self.fpx, -(px[:, 1] - self.W / 2) / self.fpx,
                      -np.ones(len(px))], -1)
        return np.stack([self.centres[int(i)] for i in index]), d / np.linalg.norm(d, axis=1, keepdims=True)

    def rgb(self, i, background=None, keep=True):
        ys, xs = np.meshgrid(np.arange(self.W) + 0.5, np.arange(self.W) + 0.5, indexing="ij")
        o, d = self.rays_at(np.full(self.W * self.W, i), np.stack([xs.ravel(), ys.ravel()], -1))
        img = self.truth.cast(o, d, background=(1, 1, 1))[0].reshape(self.W, self.W, 3)
        if i == 0:
            img[:, : self.W // 2] = 0.0   # what the mask hides is garbage: it must never reach the texture
        return img

    def mask(self, i):
        if i != 0:
            return None
        m = np.ones((self.W, self.W), bool)
        m[:, : self.W // 2] = False
        return m


def test_project_photos_recovers_the_photographed_texture():
    S = 16
    ys, xs = np.meshgrid((np.arange(S) + 0.5) / S, (np.arange(S) + 0.5) / S, indexing="ij")
    truth = np.stack([xs, 1 - ys, 0.3 + 0.4 * ((xs * 4).astype(int) % 2)], -1).astype(np.float32)
    scene = _QuadPhotos(truth)
    quad = MeshRenderer(scene.truth.vertices, scene.truth.faces)
    ev = project_photos(quad, scene, range(len(scene.centres)), scene.uv, S)
    sums, w = ev.rhs.reshape(S, S, 3), ev.weights.reshape(S, S)
    seen = w > 1.0
    assert seen.mean() > 0.6
    got = sums[seen] / w[seen][:, None]
    # photos of a bilinearly-sampled texture, splatted back: the texels come back (blurred only by the
    # bilinear footprint, so compare on the smooth red/green ramps tightly and the stripes loosely)
    assert np.abs(got[:, :2] - truth[seen][:, :2]).max() < 0.02
    assert np.abs(got[:, 2] - truth[seen][:, 2]).mean() < 0.06
    assert (got > 0.02).all()            # the masked-out black half of image 0 never landed
    # least squares undoes the bilinear blur: the stripes come back sharper than the weighted mean has them
    solved = ev.solve(np.full((S, S, 3), 0.5), prior_weight=1e-3, iterations=60)
    err_mean = np.abs(got[:, 2] - truth[seen][:, 2]).mean()
    err_ls = np.abs(solved[seen][:, 2] - truth[seen][:, 2]).mean()
    assert err_ls < 0.5 * err_mean, (err_ls, err_mean)


def test_photo_evidence_normal_equations_match_the_dense_ones():
    # G = A^T W A and r = A^T W c for the bilinear lookup matrix A, at an awkward size, uvs past the edges
    rng = np.random.default_rng(5)
    S, n = 7, 3000
    uv = rng.uniform(-0.1, 1.1, (n, 2))
    c = rng.uniform(size=(n, 3))
    w = rng.uniform(0.1, 1.0, n)
    ev = PhotoEvidence(S)
    ev.add(uv[:1000], c[:1000], w[:1000])
    ev.add(uv[1000:], c[1000:], w[1000:])        # evidence accumulates over calls (images)
    A = np.zeros((n, S * S))
    for r, col, b in bilinear_taps(uv, S, S):
        np.add.at(A, (np.arange(n), r * S + col), b)
    G = A.T @ (w[:, None] * A)
    x = rng.normal(size=(S * S, 3))
    assert np.allclose(ev.gram_times(x), G @ x, atol=1e-9)
    assert np.allclose(ev.rhs, A.T @ (w[:, None] * c), atol=1e-9)
    assert np.allclose(ev.weights, A.T @ w, atol=1e-9)
    # and the solve is the regularised least-squares minimiser
    prior = rng.uniform(size=(S, S, 3))
    lam = 0.3
    want = np.linalg.solve(G + lam * np.eye(S * S), A.T @ (w[:, None] * c) + lam * prior.reshape(-1, 3))
    got = ev.solve(prior, lam, iterations=200)
    assert np.abs(got.reshape(-1, 3) - np.clip(want, 0, 1)).max() < 1e-6


def test_hidden_faces_are_not_seen_and_rings_grow():
    # a small quad hidden behind the photographed one is never a first hit; the big quad is
    truth = np.full((8, 8, 3), 0.5, np.float32)
    scene = _QuadPhotos(truth, W=32)
    v = np.concatenate([scene.truth.vertices, scene.truth.vertices * [0.3, 0.3, 1] + [0, 0, -0.5]])
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    seen = seen_faces(MeshRenderer(v, f), scene, range(len(scene.centres)), stride=2)
    assert seen.tolist() == [True, True, False, False]
    strip = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6]])
    keep = np.array([True, False, False, False, False])
    assert grow_faces(strip, keep, 1).tolist() == [True, True, True, False, False]
    assert grow_faces(strip, keep, 2).tolist() == [True, True, True, True, True]


def _analytic_sdf_task():
    """A stand-in SDF task: the demo scene's exact SDF over its bounding box mapped into the unit cube."""
    from nerf_app import demo as demo_scene
    lo, hi = demo_scene.bbox()
    c, s = 0.5 * (lo + hi), 0.9 / float((hi - lo).max())
    to_original = np.eye(4)
    to_original[:3, :3] /= s
    to_original[:3, 3] = c - 0.5 / s

    def fn(x):
        world = (x.double() - 0.5) / s + torch.from_numpy(c)
        return demo_scene.scene_sdf(world).float() * s
    gt = demo_scene.ground_truth_mesh(64)
    from nerf_app.geometry.mesh import TriMesh
    cfg = SimpleNamespace(mode="sdf", eval=SimpleNamespace(resolution=48, n_points=5000, n_volume=5000, seed=0))
    from nerf_app.export.surface import field_surface
    # scene=None: a mode trained on a mesh, as Task declares it (no photos to render against)
    return SimpleNamespace(field_for_export=lambda: (fn, 0.0, "below"), to_original=to_original, config=cfg,
                           scene=None, mesh=TriMesh.from_trimesh(gt),
                           export_surface=lambda resolution=None, **o: field_surface(fn, 0.0, "below", to_original,
                                                                                     resolution or 48, **o))


def test_export_textured_analytic_field_and_evaluate(tmp_path):
    from nerf_app.export.mesh_eval import evaluate_mesh
    from nerf_app.export.pipeline import export_textured
    task = _analytic_sdf_task()
    out = export_textured(task, tmp_path, mesh=str(tmp_path / "demo.glb"), texture_size=256, faces=3000,
                          progress=False)
    assert out["faces"] <= 3000 and out["axes"] == "capture"
    loaded = trimesh.load(str(tmp_path / "demo.glb"))
    geom = list(loaded.geometry.values())[0]
    assert geom.visual.kind == "texture" and geom.visual.material.baseColorTexture is not None
    assert geom.visual.uv.min() >= 0 and geom.visual.uv.max() <= 1
    scores = evaluate_mesh(task, tmp_path, tmp_path / "demo.glb")
    assert scores["chamfer_l1"] < 0.01
    # --blender: y-up file, read back into the same capture coordinates
    export_textured(task, tmp_path, mesh=str(tmp_path / "demo_b.obj"), texture_size=128, faces=2000,
                    blender=True, progress=False)
    v_b = trimesh.load(str(tmp_path / "demo_b.obj"), force="mesh").vertices
    v_c = geom.vertices
    assert np.allclose(v_b[:, 1].max(), v_c[:, 2].max(), atol=0.05)   # capture z is the file's y
    assert evaluate_mesh(task, tmp_path, tmp_path / "demo_b.obj")["chamfer_l1"] < 0.01


@pytest.mark.parametrize("args,needle", [
    (["--faces", "2"], "--faces must be an integer >= 4"),
    (["--texture-size", "5"], "--texture-size must be an integer from 16"),
    (["--faces", "many"], "invalid int value"),
])
def test_cli_errors_are_one_line(tmp_path, args, needle):
    cmd = [sys.executable, "-m", "nerf_app.cli", "export", str(tmp_path / "norun"), "--mesh",
           str(tmp_path / "m.glb"), "--texture", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode != 0
    err = [line for line in res.stderr.strip().splitlines() if "error" in line]
    assert len(err) == 1 and needle in err[0], res.stderr
    assert "Traceback" not in res.stderr


def test_cull_hidden_drops_only_what_no_training_camera_sees():
    from nerf_app.export.photos import cull_hidden
    scene = _QuadPhotos(np.full((8, 8, 3), 0.5, np.float32), W=32)
    scene.split_indices = lambda split: list(range(len(scene.centres)))
    # the photographed quad split into a 10x10 grid (so ring growth stays local) and a quad hidden behind it
    grid_v, grid_f = _grid(11, -1.0, 1.0)
    hidden_v = np.array([[-0.3, -0.3, -0.5], [0.3, -0.3, -0.5], [0.3, 0.3, -0.5], [-0.3, 0.3, -0.5]])
    v = np.concatenate([grid_v, hidden_v])
    f = np.concatenate([grid_f, np.array([[0, 1, 2], [0, 2, 3]]) + len(grid_v)])
    v2, f2, dropped = cull_hidden(SimpleNamespace(scene=scene), v, f)
    assert dropped == 2 and len(f2) == len(grid_f)
    assert np.allclose(v2[f2], grid_v[grid_f])            # the kept faces, re-indexed, are the same triangles


def test_small_photos_are_cast_with_more_rays_per_pixel():
    # 8-pixel photos of a quad split into 40x40 cells: one ray per pixel misses most faces; with the faces'
    # size as the spacing, each photo is cast again with up to 4x4 rays per pixel
    scene = _QuadPhotos(np.full((8, 8, 3), 0.5, np.float32), W=8)
    v, f = _grid(41, -1.0, 1.0)
    ren = MeshRenderer(v, f)
    coarse = seen_faces(ren, scene, range(len(scene.centres))).sum()
    fine = seen_faces(ren, scene, range(len(scene.centres)), spacing=0.05).sum()
    assert coarse < 0.2 * len(f) and fine > 3 * coarse, (coarse, fine, len(f))
