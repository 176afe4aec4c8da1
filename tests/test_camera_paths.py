"""Camera paths: keyframe interpolation and nerfstudio camera_path.json round trips."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nerf_app.errors import DatasetError
from nerf_app.camera_paths.orbit import look_at
from nerf_app.camera_paths.keyframes import interpolate_poses, read_camera_path, write_camera_path


def keyframes():
    eyes = [(3, 0, 1), (0, 3, 2), (-3, 0.5, 0.5), (0, -3, 1.5)]
    return np.stack([look_at(e, (0, 0, 0)) for e in eyes])


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


# -- paths from the capture: synthetic camera rings ------------------------------------------------

from nerf_app.camera_paths import capture as cp  # noqa: E402

CENTRE = np.array([0.5, 0.5, 0.5])


def ring(azimuths_deg, radius=1.2, elevation_deg=25.0, jitter=0.0, seed=0):
    """Cameras on a circle around CENTRE (z up), each looking at it, azimuths in degrees."""
    rng = np.random.default_rng(seed)
    poses = []
    for az in azimuths_deg:
        t, e = np.radians(az), np.radians(elevation_deg + jitter * rng.normal())
        eye = CENTRE + radius * np.array([np.cos(e) * np.cos(t), np.cos(e) * np.sin(t), np.sin(e)])
        poses.append(look_at(eye, CENTRE + jitter * 0.02 * rng.normal(size=3)))
    return np.stack(poses)


def azimuth_of(poses, frame):
    off = poses[:, :3, 3] - frame.target
    return np.mod(np.degrees(np.arctan2(off @ frame.b, off @ frame.a)), 360.0)


def in_arc(az, start, extent, tol=1e-6):
    return np.mod(az - start + tol, 360.0) <= extent + 2 * tol


RINGS = {
    "full": np.arange(0, 360, 10.0),
    "half": np.arange(30, 211, 10.0),          # 180 degrees, starting at 30
    "quarter": np.arange(300, 391, 7.5) % 360,  # 90 degrees across the 0/360 seam
}


@pytest.mark.parametrize("name", ["full", "half", "quarter"])
def test_default_orbit_stays_where_the_cameras_were(name):
    cams = ring(RINGS[name], jitter=2.0)
    frame = cp.capture_frame(cams)
    assert np.allclose(frame.target, CENTRE, atol=0.05) and frame.radius == pytest.approx(1.2, rel=0.05)
    assert frame.elevation_deg == pytest.approx(25.0, abs=2.0)
    poses = cp.capture_orbit(frame, 90)
    cov = cp.path_coverage(poses, cams, frame.target)
    az = azimuth_of(poses, frame)
    if name == "full":
        assert frame.full_turn
        # one whole turn: equal steps the same way round, summing to 360 degrees
        steps = np.mod(np.diff(np.concatenate([az, az[:1]])), 360.0)
        assert np.allclose(steps, 4.0, atol=1e-6)
    else:
        extent = {"half": 180.0, "quarter": 90.0}[name]
        assert not frame.full_turn and frame.arc_deg == pytest.approx(extent, abs=4.0)  # jittered cameras
        assert in_arc(az, frame.arc_start_deg, frame.arc_deg).all(), az
        # it swings from one end of the arc to the other and back
        rel = np.mod(az - frame.arc_start_deg + 1e-6, 360.0)
        assert rel.min() < 1.0 and rel.max() > frame.arc_deg - 1.0
    assert cov["within"] == 1.0, (cov["angle_deg_max"], name)
    assert 0.9 < min(cov["distance_ratio_range"]) and max(cov["distance_ratio_range"]) < 1.1


def test_old_full_orbit_on_a_half_ring_leaves_the_capture():
    """The check above can fail: a full turn over a half ring has frames far from every camera."""
    cams = ring(RINGS["half"])
    frame = cp.capture_frame(cams)
    full = cp.capture_orbit(frame, 90, force_full=True)
    cov = cp.path_coverage(full, cams, frame.target)
    assert cov["within"] < 0.65 and cov["angle_deg_max"] > 60


def test_cameras_at_many_heights_pull_the_swing_to_where_they_were():
    """Hand-held: half the cameras high (50 degrees), half low (-10), alternating along a half ring. Their
    mean elevation (20) is 30 degrees from each; the swing climbs to one of the bands instead."""
    high = ring(np.arange(0, 181, 10.0), elevation_deg=50.0)
    low = ring(np.arange(5, 181, 10.0), elevation_deg=-10.0)
    cams = np.concatenate([high, low])
    frame = cp.capture_frame(cams)
    assert frame.elevation_deg == pytest.approx(20.0, abs=3.0) and not frame.full_turn
    cov = cp.path_coverage(cp.capture_orbit(frame, 60), cams, frame.target)
    assert cov["within"] == 1.0, cov["angle_deg_max"]
    mean_el = cp.poses_at(frame, cp.orbit_azimuths(frame, 60), np.full(60, frame.elevation_deg))
    assert cp.path_coverage(mean_el, cams, frame.target)["within"] < 0.5   # what the mean would have given


def test_forward_facing_capture():
    """LLFF-like: a 5x3 grid of cameras in a plane, all looking the same way at a scene 2 units ahead;
    the axes are parallel, so the orbit centres on the region of interest and swings over the small arc."""
    cams = []
    for x in np.linspace(-0.3, 0.3, 5):
        for z in np.linspace(-0.15, 0.15, 3):
            cams.append(look_at((0.5 + x, -1.5, 0.5 + z), (0.5 + x, 0.5, 0.5 + z)))
    cams = np.stack(cams)
    frame = cp.capture_frame(cams)
    assert np.allclose(frame.target, CENTRE)  # parallel axes: the fallback centre
    assert not frame.full_turn and frame.arc_deg < 30
    poses = cp.capture_orbit(frame, 60)
    cov = cp.path_coverage(poses, cams, frame.target)
    assert cov["within"] == 1.0, cov["angle_deg_max"]
    # the camera stays on the capture's side of the scene
    assert (poses[:, 1, 3] < 0.5 - 1.0).all()


def test_two_cameras_fall_back_to_a_full_turn_and_say_so():
    cams = ring([0.0, 40.0])
    frame = cp.capture_frame(cams)
    assert frame.full_turn and frame.notes and "only 2 training cameras" in frame.notes[0]
    az = azimuth_of(cp.capture_orbit(frame, 36), frame)
    steps = np.mod(np.diff(np.concatenate([az, az[:1]])), 360.0)
    assert np.allclose(steps, 10.0, atol=1e-6)
    assert cp.capture_frame(ring(np.arange(0, 90, 10.0))).notes == []


def test_covered_arc_takes_the_largest_gap_out():
    assert cp.covered_arc([350, 10, 20]) == pytest.approx((350.0, 30.0))
    assert cp.covered_arc([90, 0, 180, 270]) == pytest.approx((90.0, 270.0))  # ties: the first gap (0 to 90) out
    assert cp.covered_arc([45]) == (45.0, 0.0)


# -- the capture path -------------------------------------------------------------------------------

def test_capture_order_follows_names_naturally_or_falls_back_to_nearest_neighbours():
    cams = ring(np.arange(0, 180, 10.0))
    names = [f"frame_{i}.png" for i in range(len(cams))]  # frame_10 after frame_9 (natural order)
    order, how = cp.capture_order(names, cams[:, :3, 3])
    assert order == list(range(len(cams))) and how == "file-name order"
    rng = np.random.default_rng(1)
    shuffled = [f"IMG_{n:04d}.jpg" for n in rng.permutation(len(cams))]
    order, how = cp.capture_order(shuffled, cams[:, :3, 3])
    assert how == "nearest-neighbour order"
    assert order in (list(range(len(cams))), list(range(len(cams)))[::-1])


def test_capture_path_passes_near_the_cameras_in_order_at_constant_speed():
    cams = ring(np.arange(0, 200, 5.0), jitter=1.0, seed=3)  # 40 cameras over 195 degrees, a shaky hand
    n = 120
    path = cp.capture_path(cams, list(range(len(cams))), n, max_keys=16)
    assert path.shape == (n, 4, 4)
    for pose in path:
        R = pose[:3, :3]
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) == pytest.approx(1.0)
    spacing = np.median(np.linalg.norm(np.diff(cams[:, :3, 3], axis=0), axis=1))
    d = np.linalg.norm(cams[:, None, :3, 3] - path[None, :, :3, 3], axis=-1)  # [camera, frame]
    assert d.min(axis=1).max() < 1.5 * spacing            # every camera passed near
    nearest = d.argmin(axis=1)
    assert (np.diff(nearest) >= 0).all() and nearest[0] <= 1 and nearest[-1] >= n - 2  # in order, end to end
    cov = cp.path_coverage(path, cams, CENTRE)
    assert cov["within"] == 1.0 and cov["angle_deg_max"] < 5
    # constant speed in the middle, eased (slower) at both ends
    steps = np.linalg.norm(np.diff(path[:, :3, 3], axis=0), axis=1)
    mid = steps[int(0.3 * n):int(0.7 * n)]
    assert mid.max() < 1.1 * mid.min()
    assert steps[0] < 0.2 * np.median(mid) and steps[-1] < 0.2 * np.median(mid)


def test_eased_progress():
    s = cp.eased_progress(50)
    assert s[0] == 0.0 and s[-1] == pytest.approx(1.0) and (np.diff(s) > 0).all()


def test_coverage_numbers():
    cams = ring([0.0, 90.0], elevation_deg=0.0)
    poses = np.stack([cams[0], look_at(CENTRE + 0.6 * np.array([np.cos(np.pi / 4), np.sin(np.pi / 4), 0]), CENTRE),
                      look_at(CENTRE + np.array([-1.2, 0, 0]), CENTRE)])
    cov = cp.path_coverage(poses, cams, CENTRE, names=["a.png", "b.png"])
    ang = [f["angle_deg"] for f in cov["frames"]]
    assert ang == pytest.approx([0.0, 45.0, 90.0], abs=1e-3)
    assert [f["distance_ratio"] for f in cov["frames"]] == pytest.approx([1.0, 0.5, 1.0], abs=1e-4)
    assert cov["frames"][0]["nearest"] == "a.png" and cov["within"] == pytest.approx(1 / 3)
