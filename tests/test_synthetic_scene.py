"""The embedded demo scene (data/demo): reproducible from the generator, both formats load to the
same cameras, sparse points reproject exactly, and the ground-truth SDF matches the geometry the
images show."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
from PIL import Image

from nerf_app.cli import main as cli_main
from nerf_app.data import load_scene
from nerf_app import demo as S

from conftest import REPO_ROOT

DEMO = REPO_ROOT / "data" / "demo"


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        return np.asarray(im)


def test_committed_files_are_what_the_generator_writes():
    text = S.text_files()
    names = sorted(list(text) + [f"images/{v.name}" for v in S.views()])
    committed = sorted(str(p.relative_to(DEMO)) for p in DEMO.rglob("*") if p.is_file())
    assert committed == names
    for rel, content in text.items():  # text: byte for byte
        assert (DEMO / rel).read_bytes() == content.encode(), rel
    total = sum((DEMO / n).stat().st_size for n in names)
    assert total < 5e6


@pytest.mark.parametrize("k", [0, 21, 42, 63])
def test_regenerated_views_match_committed_pixels(k):
    view = S.views()[k]
    again = S.render_view(view)
    committed = _pixels(DEMO / "images" / view.name)
    assert again.shape == committed.shape == (S.HEIGHT, S.WIDTH, 4)
    # Same machine: identical. The renderer avoids BLAS and rounds every pose, so another CPU can
    # differ only where a last-bit libm difference (arctan2 in a texture) flips a sub-sample; allow
    # a handful of such pixels, never a different silhouette.
    assert np.array_equal(again[..., 3], committed[..., 3])
    assert (again != committed).any(-1).mean() <= 1e-3
    assert np.array_equal(again, S.render_view(view))  # same process, same bytes


def test_colmap_and_transforms_give_the_same_cameras():
    colmap = load_scene(DEMO)
    assert colmap.format == "colmap-text" and len(colmap) == S.N_VIEWS
    train = load_scene(DEMO / "transforms_train.json")
    both = load_scene(DEMO, format="transforms")
    assert len(train) == S.N_VIEWS - S.N_VIEWS // S.TEST_EVERY and len(both) == S.N_VIEWS
    index = {name: i for i, name in enumerate(colmap.names)}
    for scene in (train, both):
        order = [index[n.split("/")[-1]] for n in scene.names]
        # capture coordinates: the same poses, whichever file they came from
        np.testing.assert_allclose(scene.c2w_capture, colmap.c2w_capture[order], atol=1e-9)
        # after each loader's own normalisation: the same centres up to scale and shift
        a, b = scene.c2w[:, :3, 3], colmap.c2w[order, :3, 3]
        a, b = a - a.mean(0), b - b.mean(0)
        np.testing.assert_allclose(a / np.linalg.norm(a), b / np.linalg.norm(b), atol=1e-9)
        np.testing.assert_allclose(scene.c2w[:, :3, :3], colmap.c2w[order, :3, :3], atol=1e-9)
        for cam in scene.cameras:
            assert cam.same_as(colmap.cameras[0]) or np.allclose(cam.params, colmap.cameras[0].params, atol=1e-9)
    # the held-out views agree too: COLMAP's default (every 8th by name) is transforms_test.json
    test_names = [both.names[i].split("/")[-1] for i in both.splits["test"]]
    assert sorted(test_names) == sorted(colmap.names[i] for i in colmap.splits["test"])
    assert both.bounded  # RGBA around the object: one cascade
    fx, fy, cx, cy = S.intrinsics()
    assert np.allclose(colmap.cameras[0].params, [fx, fy, cx, cy])


def test_sparse_points_reproject_exactly_and_lie_on_the_surface():
    scene = load_scene(DEMO)
    errors = scene.reprojection_errors()
    assert errors is not None and errors.size > 5000
    assert errors.max() < 1e-5
    xyz = scene.normalization.to_capture(scene.points3D.xyz)
    assert np.abs(S.scene_sdf(xyz)).max() < 1e-6
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["inspect", str(DEMO), "--json", "--png", "none"]) == 0
    report = json.loads(out.getvalue())
    assert report["reprojection_error_px"]["mean"] < 1e-5


def _known_points():
    sphere, torus, box = S.SHAPES
    c, R = np.array(sphere.centre), sphere.rotation
    yield c, -0.42                                        # sphere centre
    yield c + [0, 0, 0.42], 0.0                           # its top
    yield c + [0, 0, 0.52], 0.1                           # above it (nothing else is nearer)
    c, R = np.array(torus.centre), torus.rotation
    yield c, 0.40 - 0.14                                  # the middle of the hole
    yield c + 0.40 * R[:, 0], -0.14                       # on the tube's centre circle
    yield c + 0.54 * R[:, 1], 0.0                         # on the outer equator
    c, R = np.array(box.centre), box.rotation
    half = np.array(box.size["half"])
    yield c, -half.min()                                  # box centre: nearest face
    yield c + R @ [half[0], 0, 0], 0.0                    # a face centre
    r = box.size["radius"]
    yield c + R @ half, r * (np.sqrt(3) - 1)              # the sharp corner, outside the rounded one


def test_sdf_on_known_points_numpy_and_torch():
    pts, expected = map(np.array, zip(*_known_points()))
    np.testing.assert_allclose(S.scene_sdf(pts), expected, atol=1e-9)
    assert S.scene_sdf(np.array([10.0, 0, 0])) > 8.9
    # torch: the same values, and unit gradients (an exact distance) at random outside points
    x = torch.tensor(np.random.default_rng(0).uniform(-2, 2, (512, 3)), requires_grad=True)
    d = S.scene_sdf(x)
    np.testing.assert_allclose(d.detach().numpy(), S.scene_sdf(x.detach().numpy()), rtol=0, atol=1e-12)
    (g,) = torch.autograd.grad(d.sum(), x)
    outside = d.detach() > 1e-3
    assert outside.sum() > 400
    np.testing.assert_allclose(g[outside].norm(dim=1).numpy(), 1.0, atol=1e-9)


def test_alpha_matches_the_sdf_silhouette():
    """Independent of the sphere tracer: march every pixel-centre ray of a test view in small
    fixed steps through the analytic SDF and compare "ever inside" with the committed alpha."""
    view = S.views()[8]
    alpha = _pixels(DEMO / "images" / view.name)[..., 3]
    ys, xs = np.meshgrid(np.arange(S.HEIGHT) + 0.5, np.arange(S.WIDTH) + 0.5, indexing="ij")
    o, d = S.pixel_rays(view.c2w, np.stack([xs.ravel(), ys.ravel()], -1))
    t = np.arange(S.CAMERA_RADIUS - 1.5, S.CAMERA_RADIUS + 1.5, 0.004)
    closest = np.full(len(o), np.inf)
    for t0 in np.array_split(t, 25):
        sdf = S.scene_sdf(o[:, None] + t0[None, :, None] * d[:, None])
        closest = np.minimum(closest, sdf.min(1))
    inside = (closest < 0).reshape(alpha.shape)
    assert 0.05 < inside.mean() < 0.6
    # full coverage <=> the centre ray hits; pixels the silhouette crosses are partly covered
    wrong = (inside & (alpha == 0)) | (~inside & (alpha == 255))
    assert wrong.sum() <= 3, np.argwhere(wrong)
    edge = (alpha > 0) & (alpha < 255)
    assert edge.sum() < 0.2 * (alpha > 0).sum()


def test_ground_truth_mesh_matches_the_sdf():
    mesh = S.ground_truth_mesh(resolution=64)
    assert mesh.is_watertight
    cell = (S.bbox()[1] - S.bbox()[0]).max() / 63
    assert np.abs(S.scene_sdf(mesh.vertices)).max() < 0.5 * cell
    np.testing.assert_allclose(mesh.bounds, S.bbox(), atol=cell)
    description = json.loads((DEMO / "scene.json").read_text())
    np.testing.assert_allclose(description["bbox"], S.bbox(), atol=1e-8)
    assert [s["kind"] for s in description["shapes"]] == ["sphere", "torus", "rounded_box"]
