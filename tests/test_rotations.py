"""nerf_app/geometry/rotations.py: the one quaternion <-> matrix pair (COLMAP reader, demo scene, splats,
camera paths), checked against scipy's Rotation, at the awkward places (identity, half turns, trace -1)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nerf_app.geometry.rotations import matrix_to_quat, quat_to_matrix


def _awkward_rotations() -> np.ndarray:
    rng = np.random.default_rng(0)
    mats = [Rotation.random(300, random_state=1).as_matrix(), np.eye(3)[None]]
    for axis in np.eye(3):                      # half turns: w = 0, trace = -1, each axis branch
        mats.append(Rotation.from_rotvec(np.pi * axis).as_matrix()[None])
    near = Rotation.from_rotvec((np.pi - 1e-9) * rng.normal(size=(20, 3)) / 1.0)
    mats.append(near.as_matrix())
    return np.concatenate(mats)


def test_matrix_to_quat_matches_scipy_with_w_non_negative():
    R = _awkward_rotations()
    q = matrix_to_quat(R)
    ref = Rotation.from_matrix(R).as_quat()[:, [3, 0, 1, 2]]      # scipy is scalar-last
    ref *= np.where(ref[:, :1] < 0, -1.0, 1.0)
    assert np.all(q[:, 0] >= 0)
    # a half turn has w = 0, where q and -q are both "w >= 0": compare up to sign there
    agree = np.minimum(np.abs(q - ref).max(1), np.abs(q + ref).max(1))
    assert agree.max() < 1e-12
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-15)


def test_quat_to_matrix_matches_scipy_any_norm_and_batch_shape():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(5, 7, 4)) * rng.uniform(0.1, 10, size=(5, 7, 1))   # not unit: normalised inside
    R = quat_to_matrix(q)
    assert R.shape == (5, 7, 3, 3)
    ref = Rotation.from_quat(q.reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(5, 7, 3, 3)
    np.testing.assert_allclose(R, ref, atol=1e-14)
    one = quat_to_matrix(q[0, 0])
    assert one.shape == (3, 3) and np.array_equal(one, R[0, 0])


def test_round_trip_and_the_colmap_reader_use_the_same_matrix():
    from nerf_app.data.validate import quaternion_to_rotation
    R = _awkward_rotations()
    np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-12)
    q = matrix_to_quat(R[:50])
    for qi in q:        # the reader checks the norm, then must give exactly this module's matrix
        assert np.array_equal(quaternion_to_rotation(qi, "images.txt", "qvec"), quat_to_matrix(qi))
    with pytest.raises(Exception, match="unit length"):
        quaternion_to_rotation(np.array([2.0, 0, 0, 0]), "images.txt", "qvec")
