"""Our COLMAP reader and camera models against pycolmap (a test-only dependency, installed in CI)."""
from pathlib import Path

import numpy as np
import pycolmap  # a declared test dependency (requirements-test.txt): a missing one is an error, not a skip
import pytest

from nerf_app.data.cameras import Camera
from nerf_app.data.colmap import build_capture

from test_scene_cameras import REALISTIC

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # never skipped: CI has it
MODELS = {  # every COLMAP model in the shared data: (model folder, scene folder, kind)
    "cup": ("cup/sparse/0", "cup", "binary"),
    "king_statue dense": ("king_statue/dense/0/sparse", "king_statue/dense/0", "binary"),
    "king_statue sparse": ("king_statue/sparse/0", "king_statue", "binary"),
    "liberty binary": ("liberty/sparse/0", "liberty", "binary"),
    "liberty text": ("liberty/sparse/0", "liberty", "text"),
}


def _pose(image):
    cfw = image.cam_from_world
    cfw = cfw() if callable(cfw) else cfw  # a method since pycolmap 3.12 (rigs and frames)
    return np.asarray(cfw.matrix())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reader_agrees_with_pycolmap(name):
    model, root, kind = MODELS[name]
    ours = build_capture(DATA / model, DATA / root, DATA / root / "images", kind)
    if kind == "text":  # pycolmap reads binary when both exist; give it the text files alone
        rec = pycolmap.Reconstruction()
        rec.read_text(str(DATA / model))
    else:
        rec = pycolmap.Reconstruction()
        rec.read_binary(str(DATA / model))
    by_name = {im.name: im for im in rec.images.values()}
    assert sorted(by_name) == ours.names
    for i, n in enumerate(ours.names):
        im = by_name[n]
        cam = rec.cameras[im.camera_id]
        mine = ours.cameras[i]
        assert (cam.model.name, cam.width, cam.height) == (mine.model, mine.width, mine.height)
        assert np.array_equal(np.asarray(cam.params), mine.params)
        w2c = np.linalg.inv(ours.c2w[i])[:3]
        # text quaternions (6 digits) are not quite unit: we normalise them, pycolmap may not
        assert np.abs(w2c - _pose(im)).max() < (1e-12 if kind == "binary" else 1e-6)
        assert np.allclose(np.asarray(im.projection_center()), ours.c2w[i, :3, 3], atol=1e-12 if kind == "binary" else 1e-5)
    pts = ours.points
    assert len(pts) == len(rec.points3D)
    for row in np.random.default_rng(0).choice(len(pts), 200, replace=False):
        p = rec.points3D[int(pts.ids[row])]
        assert np.allclose(np.asarray(p.xyz), pts.xyz[row], rtol=0, atol=1e-12)
        assert np.array_equal(np.asarray(p.color), pts.rgb[row])
        assert len(p.track.elements) == np.count_nonzero(pts.obs_point == row)
    # projection of every observed point with pycolmap's camera equals ours
    w2c = np.linalg.inv(ours.c2w)
    for i in range(0, len(ours.names), 5):
        sel = np.flatnonzero(pts.obs_image == i)
        X = pts.xyz[pts.obs_point[sel]] @ w2c[i, :3, :3].T + w2c[i, :3, 3]
        theirs = np.asarray(rec.cameras[by_name[ours.names[i]].camera_id].img_from_cam(X))
        assert np.abs(ours.cameras[i].project(X) - theirs).max() < 1e-8


@pytest.mark.parametrize("model", sorted(REALISTIC))
def test_camera_models_agree_with_pycolmap(model):
    rng = np.random.default_rng(3)
    params = REALISTIC[model]
    ours = Camera(model, 1000, 800, params)
    theirs = pycolmap.Camera(model=model, width=1000, height=800, params=params)
    pts = np.stack([rng.uniform(-1, 1, 3000), rng.uniform(-1, 1, 3000), rng.uniform(1, 3, 3000)], -1)
    # FOV: pycolmap switches to a series near the axis; agreement is then 1e-8 px, not 1e-12
    assert np.abs(ours.project(pts) - np.asarray(theirs.img_from_cam(pts))).max() < 1e-7
    pix = np.stack([rng.uniform(0, 1000, 3000), rng.uniform(0, 800, 3000)], -1)
    d = ours.unproject(pix)
    assert np.abs(d[:, :2] / d[:, 2:] - np.asarray(theirs.cam_from_img(pix))).max() < 1e-9
