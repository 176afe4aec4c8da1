"""Camera paths: keyframe interpolation and nerfstudio camera_path.json round trips."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nerf_app.errors import DatasetError
from nerf_app.camera_paths.orbit import look_at
from nerf_app.camera_paths.keyframes import (interpolate_poses, quaternion_to_rotation, read_camera_path,
                                       rotation_to_quaternion, write_camera_path)


def keyframes():
    eyes = [(3, 0, 1), (0, 3, 2), (-3, 0.5, 0.5), (0, -3, 1.5)]
    return np.stack([look_at(e, (0, 0, 0)) for e in eyes])


def test_quaternion_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = quaternion_to_rotation(q)
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12) and np.linalg.det(R) == pytest.approx(1.0)
        assert np.allclose(quaternion_to_rotation(rotation_to_quaternion(R)), R, atol=1e-12)


def test_interpolation_hits_keyframes_and_stays_orthonormal():
    keys = keyframes()
    n = 3 * (len(keys) - 1) + 1  # every third frame is a keyframe
    path = interpolate_poses(keys, n)
    assert path.shape == (n, 4, 4)
    for k in range(len(keys)):
        assert np.allclose(path[3 * k], keys[k], atol=1e-12)
    for pose in path:
        R = pose[:3, :3]
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-10) and np.linalg.det(R) == pytest.approx(1.0)
    steps = np.linalg.norm(np.diff(path[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 3 * np.median(steps)  # smooth: no jumps


def test_camera_path_json_round_trip(tmp_path):
    keys = keyframes()
    out = write_camera_path(tmp_path / "camera_path.json", keys, [40.0] * len(keys), 64, 48, 24)
    data = json.loads(out.read_text())
    assert data["render_width"] == 64 and data["render_height"] == 48 and len(data["camera_path"]) == 4
    c2w, fov, settings = read_camera_path(out)
    assert np.allclose(c2w, keys, atol=1e-12) and fov == [40.0] * 4 and settings["fps"] == 24
    (tmp_path / "bad.json").write_text('{"camera_path": [{"fov": 3}]}')
    with pytest.raises(DatasetError, match="bad.json"):
        read_camera_path(tmp_path / "bad.json")
