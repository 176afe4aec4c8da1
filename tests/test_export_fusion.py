"""Issue 25: surfaces from depth maps (TSDF fusion), the region of interest, --crop, the appearance-corrected
photos and the depth-map visibility cull, on analytic scenes with known answers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nerf_app.errors import ConfigError
from nerf_app.export.depth import DepthView, pinhole_rays
from nerf_app.export.options import parse_crop
from nerf_app.export.region import Region, crop_region, region_from_json, region_pixels
from nerf_app.export.tsdf import fuse_views

ROOT = Path(__file__).resolve().parents[1]


def _look_at(eye, target):
    f = np.asarray(target, float) - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = r, np.cross(f, r), f, eye
    return c2w


def _ray_sphere(o, d, c, R):
    oc = o - c
    b = (oc * d).sum(1)
    disc = b * b - ((oc * oc).sum(1) - R * R)
    return np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)


def _ray_box(o, d, lo, hi):
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - o) / d, (hi - o) / d
    tn = np.minimum(t0, t1).max(1)
    tf = np.maximum(t0, t1).min(1)
    return np.where((tf >= tn) & (tf > 0), tn, np.inf)


def _views(hit, n=16, W=48, H=36, radius=1.4):
    """Depth maps (z-depth) of an analytic scene ``hit(o, d) -> t`` from ``n`` cameras around (0.5, 0.5, 0.5)."""
    K = (42.0, 42.0, W / 2, H / 2)
    c = np.full(3, 0.5)
    out = []
    for k in range(n):
        a = 2 * np.pi * k / n
        el = 0.6 * np.sin(3 * a)
        eye = c + radius * np.array([np.cos(a) * np.cos(el), np.sin(a) * np.cos(el), np.sin(el)])
        c2w = _look_at(eye, c)
        o, d, zs = pinhole_rays(c2w, K, W, H)
        out.append(DepthView(c2w, K, (hit(o, d) * zs).reshape(H, W), k))
    return out


def _surface_distance(points, sdf):
    return np.abs(sdf(points))


def test_tsdf_fusion_of_a_sphere_and_a_box_is_close_to_the_truth():
    c, R = np.array([0.5, 0.5, 0.5]), 0.22
    v, f, info = fuse_views(_views(lambda o, d: _ray_sphere(o, d, c, R)), [0, 0, 0], [1, 1, 1], 48)
    err = np.abs(np.linalg.norm(v - c, axis=1) - R)
    assert len(f) > 1000 and err.mean() < 0.2 * info["voxel"] and err.max() < info["voxel"], (err.mean(), err.max())
    # the whole sphere is there (coverage of the truth), closed, one piece
    import trimesh
    mesh = trimesh.Trimesh(v, f)
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 1
    assert abs(mesh.volume / (4 / 3 * np.pi * R ** 3) - 1) < 0.05
    # a box with sharp edges: vertices on its surface (to within a voxel), and every face of the box reached
    lo, hi = np.array([0.3, 0.35, 0.3]), np.array([0.7, 0.6, 0.65])
    v, f, info = fuse_views(_views(lambda o, d: _ray_box(o, d, lo, hi)), [0, 0, 0], [1, 1, 1], 48)
    q = np.maximum(lo - v, v - hi)
    box_sdf = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    assert np.abs(box_sdf).mean() < 0.25 * info["voxel"] and np.abs(box_sdf).max() < 1.5 * info["voxel"]
    assert np.allclose(v.min(0), lo, atol=info["voxel"]) and np.allclose(v.max(0), hi, atol=info["voxel"])


def test_fog_seen_by_one_view_is_outvoted_and_unseen_space_stays_open():
    c, R = np.array([0.5, 0.5, 0.5]), 0.2
    views = _views(lambda o, d: _ray_sphere(o, d, c, R))
    # view 0 mistakes a sheet of fog in front of the sphere for a surface
    fog = views[0]
    bad = fog.depth.copy()
    bad[8:24, 14:34] = np.minimum(bad[8:24, 14:34], 0.75)
    views[0] = DepthView(fog.c2w, fog.K, bad, 0)
    v, f, info = fuse_views(views, [0, 0, 0], [1, 1, 1], 48)
    err = np.abs(np.linalg.norm(v - c, axis=1) - R)
    assert err.max() < 0.03, err.max()
    # the band is made of points two views agree on: the fog adds no voxel to it (one view would widen it)
    clean = fuse_views(_views(lambda o, d: _ray_sphere(o, d, c, R)), [0, 0, 0], [1, 1, 1], 48)[2]["band_voxels"]
    assert info["band_voxels"] <= clean   # (view 0 loses its own points behind the fog patch)
    assert fuse_views(views, [0, 0, 0], [1, 1, 1], 48, min_views=1)[2]["band_voxels"] > clean + 500
    # with the export's settings (a band from one view's points, see-through votes at a quarter) the fog
    # widens the band but is still outvoted
    from nerf_app.export.nerf_surface import TSDF_BAND_MIN_VIEWS, TSDF_FREE_WEIGHT
    v, f, _ = fuse_views(views, [0, 0, 0], [1, 1, 1], 48, min_views=TSDF_BAND_MIN_VIEWS, free_weight=TSDF_FREE_WEIGHT)
    assert np.abs(np.linalg.norm(v - c, axis=1) - R).max() < 0.03
    # only half the views: the far side is unseen -> the mesh is open there rather than invented
    half = [w for w in _views(lambda o, d: _ray_sphere(o, d, c, R)) if np.cos(2 * np.pi * w.index / 16) > 0.9]
    v, f, _ = fuse_views(half, [0, 0, 0], [1, 1, 1], 48)
    import trimesh
    assert not trimesh.Trimesh(v, f).is_watertight                 # open where nobody looked
    assert (v[:, 0] - c[0]).min() > -0.9 * R   # the far pole (x = -R), which no camera saw, is not made up


def test_crop_parsing_and_bad_boxes():
    assert parse_crop("0,0,0,1,2,3") == (0, 0, 0, 1, 2, 3)
    assert parse_crop(None) is None
    for text, needle in [("1,2,3", "six numbers"), ("a,b,c,d,e,f", "six numbers"), ("0,0,0,1,nan,1", "finite"),
                         ("0,0,0,1,1,0", "empty or inverted along z"), ("1,0,0,0,1,1", "inverted along x")]:
        with pytest.raises(ConfigError, match=needle):
            parse_crop(text)
    norm = SimpleNamespace(to_normalized=lambda p: np.asarray(p) * 0.5 + 0.25,
                           to_capture=lambda p: (np.asarray(p) - 0.25) / 0.5)
    r = crop_region((0, 0, 0, 1, 1, 1), norm, np.array([[-0.5] * 3, [1.5] * 3]))
    assert np.allclose(r.lo, 0.25) and np.allclose(r.hi, 0.75) and r.source == "--crop"
    assert np.allclose(r.to_capture(norm), [0, 0, 0, 1, 1, 1])
    assert np.allclose(region_from_json(r.to_json(norm), norm).hi, 0.75)
    with pytest.raises(ConfigError, match="--crop box .* lies outside the scene"):
        crop_region((10, 10, 10, 11, 11, 11), norm, np.array([[-0.5] * 3, [1.5] * 3]))


def test_bad_crop_on_the_command_line_is_one_argparse_line(tmp_path):
    out = tmp_path / "m.glb"
    for crop in ("0,0,0,1,1", "0,0,0,-1,1,1"):
        res = subprocess.run([sys.executable, "-m", "nerf_app.cli", "export", str(tmp_path / "norun"), "--mesh",
                              str(out), "--texture", "--crop", crop], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
        assert res.returncode == 2 and "argument --crop" in res.stderr and "Traceback" not in res.stderr
        assert len([ln for ln in res.stderr.splitlines() if "error" in ln]) == 1
    res = subprocess.run([sys.executable, "-m", "nerf_app.cli", "export", str(tmp_path / "norun"), "--mesh", str(out),
                          "--texture", "--method", "marching"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2 and "argument --method: invalid choice" in res.stderr
    assert not out.exists()


def test_region_pixels_are_those_whose_depth_lands_in_the_box():
    region = Region(np.array([0.4, 0.4, 0.4]), np.array([0.6, 0.6, 0.6]), "test")
    o = np.zeros((4, 3))
    d = np.tile([1.0, 1.0, 1.0], (4, 1)) / np.sqrt(3)
    t_in = np.sqrt(3) * 0.5              # lands at (0.5, 0.5, 0.5)
    depth = np.array([t_in, t_in * 0.5, t_in * 0.2, 0.9 * 2 * t_in])   # expected depth = t * opacity
    opacity = np.array([1.0, 0.5, 0.2, 0.9])
    keep = region_pixels(region, o, d, depth, opacity)
    # 0: inside; 1: half opaque, its surface at t_in -> inside; 2: too transparent; 3: lands beyond the box
    assert keep.tolist() == [True, True, False, False]
    assert region.contains(np.array([[0.39, 0.5, 0.5]])).tolist() == [False]
    # the default region: the training cube grown by TRAINING_BOX_GROWTH per side (fox's snout at x ~ 1.1)
    from nerf_app.export.region import TRAINING_BOX_GROWTH, training_region
    box = training_region()
    assert box.source == "training box" and 0.1 <= TRAINING_BOX_GROWTH <= 0.25
    assert box.contains(np.array([[1.1, 0.5, 0.5], [-0.1, 1.1, 0.0]])).all()
    assert not box.contains(np.array([[0.5, 1.0 + TRAINING_BOX_GROWTH + 0.01, 0.5]])).any()
    assert crop_region(None, None).lo.tolist() == box.lo.tolist()


def test_appearance_correction_takes_each_photo_to_the_mean_appearance():
    from nerf_app.export.photos import TrainingPhotos
    rng = np.random.default_rng(0)
    A = torch.from_numpy(rng.normal(0, 0.1, (5, 3, 4)))
    scene = SimpleNamespace(split_indices=lambda s: np.array([0, 1, 3]), cameras=[], images=None)
    task = SimpleNamespace(model=SimpleNamespace(appearance=A), use_appearance=True, scene=scene)
    photos = TrainingPhotos(task)
    r = rng.random((50, 3))                                 # radiance
    An = A.numpy()
    mean = An[[0, 1, 3]].mean(0)
    want = r + r @ mean[:, :3].T + mean[:, 3]               # what the NeRF renders at a held-out view
    for i in (0, 1, 3):
        photo = r + r @ An[i, :, :3].T + An[i, :, 3]        # what photo i recorded
        assert np.allclose(photos.colour_map(i, photo), want, atol=1e-10)
    assert np.array_equal(photos.colour_map(2, r), r)       # not a training photo: unchanged
    task.use_appearance = False
    assert np.array_equal(TrainingPhotos(task).colour_map(0, r), r)


def test_depth_cull_drops_faces_no_view_sees_first():
    from nerf_app.export.photos import cull_unseen_by_depth
    # a square facing the cameras at z = 0.3 and a smaller one hidden right behind it at z = 0.5
    def square(z, h, n=8):
        g = np.linspace(0.5 - h, 0.5 + h, n + 1)
        xs, ys = np.meshgrid(g, g)
        v = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], 1)
        f = [[i * (n + 1) + j, i * (n + 1) + j + 1, (i + 1) * (n + 1) + j] for i in range(n) for j in range(n)]
        f += [[i * (n + 1) + j + 1, (i + 1) * (n + 1) + j + 1, (i + 1) * (n + 1) + j] for i in range(n) for j in range(n)]
        return v, np.array(f)
    v1, f1 = square(0.3, 0.3)
    v2, f2 = square(0.5, 0.1)
    v = np.concatenate([v1, v2])
    f = np.concatenate([f1, f2 + len(v1)])
    views = []
    for k in range(4):
        eye = np.array([0.5 + 0.05 * np.cos(k), 0.5 + 0.05 * np.sin(k), -1.0])
        c2w = _look_at(eye, [0.5, 0.5, 0.5])
        K = (60.0, 60.0, 32.0, 32.0)
        o, d, zs = pinhole_rays(c2w, K, 64, 64)
        t = np.where((np.abs(o + ((0.3 - o[:, 2]) / d[:, 2])[:, None] * d - 0.5)[:, :2] <= 0.3).all(1),
                     (0.3 - o[:, 2]) / d[:, 2], np.inf)
        views.append(DepthView(c2w, K, (t * zs).reshape(64, 64), k))
    v_out, f_out, dropped = cull_unseen_by_depth(views, v, f, tolerance=0.02, rings=0)
    assert dropped == len(f2) and len(f_out) == len(f1)
    assert np.allclose(v_out[:, 2], 0.3)


def test_the_fused_surface_crosses_the_box_faces_with_a_margin():
    """A floor (z = 0.45) seen from above, fused over a box smaller than the floor: without a margin the
    mesh stops short of the box's side faces (grid centres start half a voxel inside, and only cells with
    eight observed corners make faces), so the pixels at the box's edges miss it; with the export's margin
    it runs past every side face, and it stays flat there."""
    from nerf_app.export.nerf_surface import TSDF_MARGIN_VOXELS

    def floor(o, d):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (0.45 - o[:, 2]) / d[:, 2]
        return np.where((d[:, 2] < 0) & (t > 0), t, np.inf)

    W, H, K = 48, 36, (40.0, 40.0, 24.0, 18.0)
    views = []
    for k in range(12):
        a = 2 * np.pi * k / 12
        el = 0.7 + 0.2 * np.sin(2 * a)
        eye = np.array([0.5, 0.5, 0.45]) + 1.2 * np.array([np.cos(a) * np.cos(el), np.sin(a) * np.cos(el), np.sin(el)])
        c2w = _look_at(eye, [0.5, 0.5, 0.45])
        o, d, zs = pinhole_rays(c2w, K, W, H)
        views.append(DepthView(c2w, K, (floor(o, d) * zs).reshape(H, W), k))
    lo, hi = np.array([0.3, 0.3, 0.3]), np.array([0.7, 0.7, 0.7])
    v0, f0, info0 = fuse_views(views, lo, hi, 40)
    assert len(f0) and info0["margin_voxels"] == 0
    assert v0[:, 0].min() > lo[0] and v0[:, 0].max() < hi[0] and v0[:, 1].min() > lo[1] and v0[:, 1].max() < hi[1]
    assert TSDF_MARGIN_VOXELS >= 2
    v, f, info = fuse_views(views, lo, hi, 40, margin_voxels=TSDF_MARGIN_VOXELS)
    vox = info["voxel"]
    assert abs(vox - info0["voxel"]) < 1e-12 and info["margin_voxels"] == TSDF_MARGIN_VOXELS
    assert v[:, 0].min() < lo[0] - vox and v[:, 0].max() > hi[0] + vox
    assert v[:, 1].min() < lo[1] - vox and v[:, 1].max() > hi[1] + vox
    dz = np.abs(v[:, 2] - 0.45)
    assert dz.mean() < 0.25 * vox and dz.max() < vox, (dz.mean(), dz.max())


def test_free_space_votes_weigh_less_than_surface_votes():
    """A soft surface (one view in three sees through it, as a NeRF's fur or haze is seen from some sides)
    falls apart when a see-through vote weighs as much as a surface vote, and stays whole at the export's
    weight; a fog ball two neighbouring views take for a surface is still outvoted by the views that see
    through it."""
    import trimesh
    from nerf_app.export.nerf_surface import TSDF_FREE_WEIGHT

    c, R = np.array([0.5, 0.5, 0.5]), 0.2
    views = _views(lambda o, d: _ray_sphere(o, d, c, R))
    soft = [w if w.index % 3 != 1 else DepthView(w.c2w, w.K, np.full_like(w.depth, np.inf), w.index) for w in views]

    def area_near_sphere(v, f):
        if not len(f):
            return 0.0
        m = trimesh.Trimesh(v, f)
        near = np.abs(np.linalg.norm(m.triangles_center - c, axis=1) - R) < 0.03
        return float(m.area_faces[near].sum() / (4 * np.pi * R ** 2))

    assert TSDF_FREE_WEIGHT < 0.5
    v1, f1, _ = fuse_views(soft, [0, 0, 0], [1, 1, 1], 48, free_weight=1.0)
    v2, f2, _ = fuse_views(soft, [0, 0, 0], [1, 1, 1], 48, free_weight=TSDF_FREE_WEIGHT)
    a1, a2 = area_near_sphere(v1, f1), area_near_sphere(v2, f2)
    assert a1 < 0.2 and a2 > 0.9, (a1, a2)
    # a fog ball in front of the sphere, on the side of views 0 and 1 (the rest see through that place)
    fc, fr = c + np.array([0.38, 0.07, 0.0]), 0.04
    fogged = [DepthView(w.c2w, w.K, np.minimum(w.depth, (_ray_sphere(*pinhole_rays(w.c2w, w.K, 48, 36)[:2], fc, fr)
                                                          * pinhole_rays(w.c2w, w.K, 48, 36)[2]).reshape(36, 48)), w.index)
              if w.index in (0, 1) else w for w in views]
    assert all(np.isfinite(w.depth).any() for w in fogged)
    seen_fog = sum(bool((w.depth != v.depth).any()) for w, v in zip(fogged, views))
    assert seen_fog == 2
    v, f, _ = fuse_views(fogged, [0, 0, 0], [1, 1, 1], 48, free_weight=TSDF_FREE_WEIGHT)
    assert np.linalg.norm(v - fc, axis=1).min() > fr, "the fog ball became geometry"
    err = np.abs(np.linalg.norm(v - c, axis=1) - R)
    assert err.max() < 0.03, err.max()


def _floor_views(height=0.45, edge=None, n=12, W=48, H=36, slab=0.0):
    """Depth maps of a floor ``z = height`` (for ``x < edge`` only, when given: a table's edge, free space past
    it) from ``n`` cameras above and around (0.5, 0.5, height); also, per view, the x range ``[H,W,2]`` over
    which each pixel's ray crosses the slab ``|z - height| <= slab``."""
    K = (40.0, 40.0, W / 2, H / 2)
    views, hits = [], []
    for k in range(n):
        a = 2 * np.pi * k / n
        el = 0.7 + 0.2 * np.sin(2 * a)
        eye = np.array([0.5, 0.5, height]) + 1.2 * np.array([np.cos(a) * np.cos(el), np.sin(a) * np.cos(el), np.sin(el)])
        c2w = _look_at(eye, [0.5, 0.5, height])
        o, d, zs = pinhole_rays(c2w, K, W, H)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (height - o[:, 2]) / d[:, 2]
            xs = [o[:, 0] + (height + s - o[:, 2]) / d[:, 2] * d[:, 0] for s in (-slab, slab)]
        p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
        t = np.where((d[:, 2] < 0) & (t > 0) & ((p[:, 0] < edge) if edge is not None else True), t, np.inf)
        views.append(DepthView(c2w, K, (t * zs).reshape(H, W), k))
        hits.append(np.stack([np.minimum(*xs), np.maximum(*xs)], -1).reshape(H, W, 2))
    return views, hits


def _hits_surface(v, f, x, y):
    """Whether a vertical ray through (x, y) hits the mesh (and where)."""
    import trimesh
    m = trimesh.Trimesh(v, f, process=False)
    loc, ray, _ = m.ray.intersects_location(np.array([[x, y, 2.0]]), np.array([[0.0, 0.0, -1.0]]))
    return loc[:, 2] if len(ray) else None


def test_extension_closes_a_strip_no_view_observed_and_keeps_the_plane():
    """A floor with a strip 3 voxels wide that no view observed (the pixels whose rays cross it near the
    floor have weight 0, as the floor behind an object's edge): plain fusion leaves a slot through the mesh
    there (a held-out view's rays would miss, as on cup's lid rim and table); carrying the observed values
    the export's ``extend_voxels`` (TSDF_EXTEND_VOXELS) into the unobserved ones closes it, flat."""
    from nerf_app.export.nerf_surface import TSDF_EXTEND_VOXELS

    res, lo, hi = 40, np.array([0.2, 0.2, 0.2]), np.array([0.8, 0.8, 0.8])
    vox = 0.6 / res
    views, spans = _floor_views(slab=5 * vox)   # no pixel whose ray crosses the strip within the band counts
    strip = [((s[..., 1] < 0.5 - 1.5 * vox) | (s[..., 0] > 0.5 + 1.5 * vox)).astype(np.float32) for s in spans]
    v0, f0, _ = fuse_views(views, lo, hi, res, weights=strip)
    assert _hits_surface(v0, f0, 0.5, 0.5) is None and _hits_surface(v0, f0, 0.3, 0.5) is not None
    assert TSDF_EXTEND_VOXELS >= 2
    v, f, info = fuse_views(views, lo, hi, res, weights=strip, extend_voxels=TSDF_EXTEND_VOXELS)
    assert info["extend_voxels"] == TSDF_EXTEND_VOXELS
    for y in (0.3, 0.4, 0.5, 0.6, 0.7):
        z = _hits_surface(v, f, 0.5, y)
        assert z is not None and np.abs(z - 0.45).max() < 0.25 * vox, (y, z)
    assert np.abs(v[:, 2] - 0.45).max() < vox


def test_extension_does_not_grow_past_an_edge_views_see_past():
    """A table's edge (floor for x < 0.5, free space past it, which the views see through): the extension
    leaves the table top's edge where it was (within a voxel of the edge) and puts nothing above it."""
    views, _ = _floor_views(edge=0.5)
    res, lo, hi = 40, np.array([0.2, 0.2, 0.2]), np.array([0.8, 0.8, 0.8])
    vox = 0.6 / res

    def top_edge(v):
        return v[np.abs(v[:, 2] - 0.45) < 0.25 * vox, 0].max()
    v0, f0, _ = fuse_views(views, lo, hi, res)
    v, f, _ = fuse_views(views, lo, hi, res, extend_voxels=4)
    assert len(f) > len(f0)
    assert abs(top_edge(v) - top_edge(v0)) < 0.5 * vox and abs(top_edge(v) - 0.5) < vox
    assert v[:, 2].max() < 0.45 + 0.5 * vox


def test_default_region_fuses_a_backdrop_and_a_crop_box_does_not(monkeypatch):
    """Without --crop the fused grid reaches TSDF_BACKDROP_VOXELS past the region (the wall behind cup's rim
    is kept, so rays past a silhouette hit it rather than nothing); a --crop box gets the small margin only."""
    import nerf_app.export.nerf_surface as ns

    seen = []

    def fake_tsdf_mesh(task, region, res, progress, margin=ns.TSDF_MARGIN_VOXELS, **_):
        seen.append(margin)
        v = np.array([[0.4, 0.4, 0.5], [0.6, 0.4, 0.5], [0.5, 0.6, 0.5]])
        return v, np.array([[0, 1, 2]]), {"voxel": 0.01}, None
    monkeypatch.setattr(ns, "_tsdf_mesh", fake_tsdf_mesh)
    monkeypatch.setattr(ns, "nerf_colour_fn", lambda task, delta: None)
    norm = SimpleNamespace(to_normalized=lambda p: np.asarray(p, float), to_capture=lambda p: np.asarray(p, float),
                           inverse_matrix=np.eye(4))
    task = SimpleNamespace(scene=SimpleNamespace(normalization=norm, aabb=[[-1, -1, -1], [2, 2, 2]], bounded=False))
    ns.nerf_surface(task)
    ns.nerf_surface(task, crop=(0.2, 0.2, 0.2, 0.8, 0.8, 0.8))
    assert seen == [ns.TSDF_BACKDROP_VOXELS, ns.TSDF_MARGIN_VOXELS]
    assert ns.TSDF_BACKDROP_VOXELS >= 4 * ns.TSDF_MARGIN_VOXELS


def test_a_surface_only_one_view_saw_is_kept():
    """A strip of floor 12 voxels wide (more than the band reaches from its sides) that only one view has
    depth for (the others have none there: NaN, no evidence either way, as a steep held-out view's corner
    of the table): a band made of two views' points leaves a slot; the export's band
    (TSDF_BAND_MIN_VIEWS = 1) fuses it, flat."""
    from nerf_app.export.nerf_surface import TSDF_BAND_MIN_VIEWS

    res, lo, hi = 40, np.array([0.2, 0.2, 0.2]), np.array([0.8, 0.8, 0.8])
    vox = 0.6 / res
    views, spans = _floor_views(slab=5 * vox)
    views = [w if w.index == 0 else
             DepthView(w.c2w, w.K, np.where((sp[..., 1] < 0.5 - 6 * vox) | (sp[..., 0] > 0.5 + 6 * vox),
                                            w.depth, np.nan), w.index) for w, sp in zip(views, spans)]
    v2, f2, _ = fuse_views(views, lo, hi, res, min_views=2)
    assert _hits_surface(v2, f2, 0.5, 0.5) is None
    v, f, _ = fuse_views(views, lo, hi, res, min_views=TSDF_BAND_MIN_VIEWS)
    z = _hits_surface(v, f, 0.5, 0.5)
    assert z is not None and np.abs(z - 0.45).max() < 0.5 * vox, z


def test_the_export_fuses_with_its_settings(monkeypatch):
    """``_tsdf_mesh`` (the export's fusion) passes its settings on: on the floor whose strip only one view
    has depth for, the strip is fused, and the summary records the extension."""
    import nerf_app.export.depth as depth_mod
    import nerf_app.export.nerf_surface as ns

    res = 40
    vox = 0.6 / res
    views, spans = _floor_views(slab=5 * vox)
    views = [w if w.index == 0 else
             DepthView(w.c2w, w.K, np.where((sp[..., 1] < 0.5 - 6 * vox) | (sp[..., 0] > 0.5 + 6 * vox),
                                            w.depth, np.nan), w.index) for w, sp in zip(views, spans)]
    monkeypatch.setattr(depth_mod, "render_depth_views", lambda task, idx, side, progress=False: views)
    task = SimpleNamespace(scene=SimpleNamespace(split_indices=lambda s: np.arange(len(views))))
    region = Region(np.array([0.2, 0.2, 0.2]), np.array([0.8, 0.8, 0.8]), "test")
    v, f, info, _ = ns._tsdf_mesh(task, region, res, False, margin=0)
    assert info["extend_voxels"] == ns.TSDF_EXTEND_VOXELS >= 2 and info["margin_voxels"] == 0
    z = _hits_surface(v, f, 0.5, 0.5)
    assert z is not None and np.abs(z - 0.45).max() < 0.5 * vox, z
