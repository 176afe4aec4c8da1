"""transforms.json scenes: fox (instant-ngp, distortion), lego (Blender splits), generated per-frame files."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from nerf_app.data import load_scene
from nerf_app.errors import DatasetError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # never skipped: CI has it


def test_fox_has_67_frames_with_the_files_distortion():
    s = load_scene(DATA / "fox")
    assert len(s) == 67 and s.format == "transforms"
    cam = s.cameras[0]
    assert all(c is cam for c in s.cameras)  # one shared camera
    assert cam.model == "OPENCV" and (cam.width, cam.height) == (1080, 1920)
    assert cam.distortion == {"k1": 0.0578421, "k2": -0.0805099, "p1": -0.000980296, "p2": 0.00015575}
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (1375.52, 1374.49, 554.558, 965.268)
    assert s.splits["train"].size + s.splits["test"].size == 67 and s.splits["test"].size == 9  # every 8th
    assert s.meta["aabb_scale"] == 4 and 2 <= s.n_cascades <= 5


def test_transforms_opengl_poses_become_opencv():
    # README: every fox/lego camera's OpenGL -z axis points at the origin; in OpenCV that is +z
    for name in ("fox", "lego"):
        s = load_scene(DATA / name, check_images=False)
        c2w = s.c2w_capture
        to_origin = -c2w[:, :3, 3] / np.linalg.norm(c2w[:, :3, 3], axis=1, keepdims=True)
        assert np.mean(np.einsum("ij,ij->i", to_origin, c2w[:, :3, 2])) > 0.98
        R = c2w[:, :3, :3]
        assert np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max() < 1e-5 and np.all(np.linalg.det(R) > 0)


def test_lego_splits_focal_and_alpha():
    s = load_scene(DATA / "lego")
    assert {k: len(v) for k, v in s.splits.items()} == {"train": 100, "val": 100, "test": 200}
    cam = s.cameras[int(s.splits["val"][0])]
    assert cam.model == "PINHOLE" and (cam.width, cam.height) == (400, 400)
    assert abs(cam.fx - 555.56) < 0.01 and cam.fx == cam.fy and (cam.cx, cam.cy) == (200, 200)
    assert s.image_paths[0].name == "r_0.png"  # extension appended
    assert s.bounded and s.n_cascades == 1
    rgba = s.images.load(0)
    assert rgba.shape == (400, 400, 4) and rgba[0, 0, 3] == 0  # transparent background kept
    white, black = s.images.rgb(0, "white"), s.images.rgb(0, "black")
    assert np.allclose(white[0, 0], 1) and np.allclose(black[0, 0], 0)
    a = rgba[..., 3:] / 255.0
    assert np.allclose(white, rgba[..., :3] / 255.0 * a + (1 - a), atol=1e-6)


def _png(path, w, h, alpha=False):
    import cv2
    img = np.full((h, w, 4 if alpha else 3), 128, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def _frame(name, **extra):
    c2w = np.eye(4)
    c2w[:3, 3] = [0, 0, 3]
    return {"file_path": name, "transform_matrix": c2w.tolist(), **extra}


def test_per_frame_intrinsics_are_honoured(tmp_path):
    _png(tmp_path / "a.png", 40, 30)
    _png(tmp_path / "b.png", 20, 10)
    _png(tmp_path / "c.png", 40, 30)
    _png(tmp_path / "d.png", 40, 30)
    doc = {
        "fl_x": 50.0, "fl_y": 51.0, "cx": 20.0, "cy": 15.0, "w": 40, "h": 30, "k1": 0.01,
        "frames": [
            _frame("a.png"),  # global intrinsics
            _frame("b", fl_x=25.0, fl_y=26.0, cx=10.5, cy=5.5, w=20, h=10, k1=-0.1, p2=0.001),  # its own
            _frame("c.png", camera_model="OPENCV_FISHEYE", k1=0.02, k2=0.0, k3=0.001, k4=0.0),
            _frame("d.png", k3=0.002),  # a rational/k3 term switches to FULL_OPENCV
        ],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    s = load_scene(tmp_path)
    a, b, c, d = s.cameras
    assert a.model == "OPENCV" and list(a.params) == [50, 51, 20, 15, 0.01, 0, 0, 0]
    assert b.model == "OPENCV" and (b.width, b.height) == (20, 10) and list(b.params) == [25, 26, 10.5, 5.5, -0.1, 0, 0, 0.001]
    assert c.model == "OPENCV_FISHEYE" and list(c.params) == [50, 51, 20, 15, 0.02, 0, 0.001, 0]
    assert d.model == "FULL_OPENCV" and d.distortion["k3"] == 0.002 and d.distortion["k1"] == 0.01


def test_ambiguous_perspective_k4_is_refused(tmp_path):
    _png(tmp_path / "0.png", 8, 8)
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 5, "k4": 0.01, "frames": [_frame("0.png")]}))
    with pytest.raises(DatasetError, match=r"frames\[0\]\.k4.*ambiguous"):
        load_scene(tmp_path)
    # with k5/k6 it is OpenCV's rational model, which FULL_OPENCV is
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 5, "k4": 0.01, "k5": 0.002, "frames": [_frame("0.png")]}))
    cam = load_scene(tmp_path).cameras[0]
    assert cam.model == "FULL_OPENCV" and cam.distortion["k4"] == 0.01 and cam.distortion["k5"] == 0.002


def test_focal_from_camera_angles_and_missing_size(tmp_path):
    _png(tmp_path / "img" / "0.png", 64, 32)
    doc = {"camera_angle_x": 1.2, "camera_angle_y": 0.7, "frames": [_frame("img/0")]}
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    cam = load_scene(tmp_path).cameras[0]
    assert (cam.width, cam.height) == (64, 32)  # read from the PNG header
    assert math.isclose(cam.fx, 32 / math.tan(0.6)) and math.isclose(cam.fy, 16 / math.tan(0.35))


def test_wrong_size_and_bad_rotation_are_reported(tmp_path):
    _png(tmp_path / "0.png", 8, 8)
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 5, "w": 9, "h": 8, "frames": [_frame("0.png")]}))
    with pytest.raises(DatasetError, match="9x8 but 0.png is 8x8"):
        load_scene(tmp_path)
    bad = _frame("0.png")
    bad["transform_matrix"][0][0] = 2.0
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 5, "frames": [bad]}))
    with pytest.raises(DatasetError, match=r"frames\[0\].transform_matrix.*not orthonormal"):
        load_scene(tmp_path)


def test_missing_images_listed_and_escape_refused(tmp_path):
    scene = tmp_path / "scene"
    _png(scene / "0.png", 8, 8)
    doc = {"fl_x": 5, "frames": [_frame("0.png"), _frame("1.png"), _frame("sub/2")]}
    (scene / "transforms.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"2 images missing: .*1\.png.*sub/2"):
        load_scene(scene)
    _png(tmp_path / "outside.png", 8, 8)
    doc["frames"][1]["file_path"] = "../outside.png"
    (scene / "transforms.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="leaves the scene folder"):
        load_scene(scene)
