"""Continuity as a constraint for video (issue 24, parts 2 and 4), without real structure from motion:
pycolmap's synthetic dataset gives a database of verified pairs and the true model in a fraction
of a second; the walk-around scene is rendered at a few dozen pixels.

- A long-range pair is kept when its own relative rotation agrees with the (short-range) model, and
  dropped when the model places one of its frames half a turn away (what a fold does).
- Cuts: where no pair within the window bridges a point in time.
- The two-pass mapping on a synthetic sequence: every long pair checked, none dropped, all registered.
- The walk-around scene: its true path is continuous; under a half turn (quarter turn) about the
  cylinder's axis the symmetric rooms look the same (that is what folds SfM), the room with differing
  walls does not; two stretches joined (a cut) are two segments for the continuity check.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from nerf_app.process.continuity import check_continuity  # noqa: E402
from nerf_app.process.sequence import (Pair, close_loop, find_cuts, loop_check, loop_lines,  # noqa: E402
                                       map_in_time_order, read_pairs, reconstruction_c2w, restrict_database,
                                       verify_long_pairs)
from nerf_app.process import walkaround_scene as ws  # noqa: E402

from conftest import synthetic_sfm_database  # noqa: E402


def _synthetic(tmp_path, frames=8):
    path, rec = synthetic_sfm_database(tmp_path, frames)
    names = [rec.image(i).name for i in sorted(rec.reg_image_ids())]
    return path, rec, names


def _turn_frame(rec, image_id, degrees):
    """Rotate one frame's pose about the world z axis (through the origin) by ``degrees``."""
    a = math.radians(degrees) / 2
    turn = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0.0, 0.0, math.sin(a), math.cos(a)])), np.zeros(3))
    frame = rec.frame(rec.image(image_id).frame_id)
    frame.rig_from_world = frame.rig_from_world * turn.inverse()


def test_long_pairs_agreeing_with_the_model_are_kept_and_a_folded_frame_is_dropped(tmp_path):
    database, rec, names = _synthetic(tmp_path)
    pairs = read_pairs(database, names)
    assert len(pairs) == 28 and all(p.inliers > 100 for p in pairs)
    rejected, checks = verify_long_pairs(database, rec, pairs, window=2)
    assert len(checks) == 15 and rejected == []  # the 15 pairs more than 2 frames apart
    assert max(c["rotation_error_deg"] for c in checks) < 0.5
    last = rec.image(sorted(rec.reg_image_ids())[-1])
    _turn_frame(rec, last.image_id, 180.0)  # the model places the last frame half a turn away
    rejected, checks = verify_long_pairs(database, rec, pairs, window=2)
    assert sorted((p.i, p.j) for p in rejected) == [(i, 7) for i in range(5)]
    assert all(c["rotation_error_deg"] > 150 for c in checks if not c["accepted"])
    _turn_frame(rec, last.image_id, -180.0 + 10.0)  # 10 degrees of drift: still kept
    rejected, _ = verify_long_pairs(database, rec, pairs, window=2)
    assert rejected == []


def test_restricted_database_lacks_the_dropped_pairs_only(tmp_path):
    database, rec, names = _synthetic(tmp_path)
    pairs = read_pairs(database, names)
    drop = [p for p in pairs if p.gap > 3]
    restrict_database(database, tmp_path / "short.db", [(p.image_id1, p.image_id2) for p in drop])
    kept = read_pairs(tmp_path / "short.db", names)
    assert sorted((p.i, p.j) for p in kept) == sorted((p.i, p.j) for p in pairs if p.gap <= 3)
    assert len(read_pairs(database, names)) == len(pairs)  # the original is untouched


def test_cuts_are_where_no_pair_bridges_the_window():
    def pairs_of(links):
        return [Pair(i, j, i + 1, j + 1, n) for i, j, n in links]

    n = 12
    links = [(i, j, 200 - 10 * (j - i)) for i in range(n) for j in range(i + 1, min(n, i + 4))]
    assert find_cuts(n, pairs_of(links), window=3) == []
    cut = [(i, j, m if (i > 5 or j <= 5) else 4) for i, j, m in links]  # across 5|6 only weak matches
    assert find_cuts(n, pairs_of(cut), window=3) == [{"after": 5, "best_inliers": 4}]
    # a long-range pair across the cut does not bridge it (only pairs within the window count)
    assert find_cuts(n, pairs_of(cut + [(2, 9, 150)]), window=3) == [{"after": 5, "best_inliers": 4}]


def test_two_pass_mapping_checks_every_long_pair(tmp_path):
    from nerf_app.process.sfm import SfmOptions

    database, _, names = _synthetic(tmp_path, frames=10)
    (tmp_path / "images").mkdir()
    rec, sizes, section = map_in_time_order(database, tmp_path / "images", tmp_path, SfmOptions(threads=1), names,
                                            window=3)
    assert section["passes"] == 2 and section["pairs_long"] == 21 and section["pairs_long_dropped"] == 0
    assert section["cuts"] == [] and section["result"] == "short-range model closed with the verified long-range pairs"
    assert rec.num_reg_images() == 10 and sizes[0] == 10
    assert section["loop_closure"]["points"] > 100 and section["loop_closure"]["reprojection_px"] < 0.5


def test_closing_a_drifted_model_brings_its_cameras_back(tmp_path):
    """A short-range model drifts (no loop closure): here each frame of the true synthetic model is turned a
    little more about the vertical than the one before (the last by 4 degrees, its centre moved with it) and
    its points dropped. Closing it with every verified pair must put the cameras back near the truth."""
    from nerf_app.process.report import compare_centres
    from nerf_app.process.sfm import SfmOptions

    database, truth, names = _synthetic(tmp_path)
    (tmp_path / "images").mkdir()
    true_centres = {n: c[:3, 3] for n, c in reconstruction_c2w(truth).items()}
    drifted = pycolmap.Reconstruction(truth)
    for k, image_id in enumerate(sorted(drifted.reg_image_ids())):
        _turn_frame(drifted, image_id, 4.0 * k / 7)
    before = compare_centres({n: c[:3, 3] for n, c in reconstruction_c2w(drifted).items()}, true_centres)
    closed = close_loop(database, drifted, tmp_path / "images", tmp_path / "loop", SfmOptions(threads=1))
    after = compare_centres({n: c[:3, 3] for n, c in reconstruction_c2w(closed).items()}, true_centres)
    assert after["registered"] == 8 and closed.num_points3D() > 100
    assert before["rms_percent_of_spread"] > 1.0  # the drift is visible ...
    assert after["rms_percent_of_spread"] < 0.2 * before["rms_percent_of_spread"]  # ... and mostly gone
    assert len(drifted.points3D) == len(truth.points3D)  # the input model is left as it was


def test_loop_check_closes_on_the_truth_and_not_on_a_spiral_or_a_turned_end(tmp_path):
    """The pairs linking a 12-frame sequence's first and last 4 frames (16 pairs) against the model: the truth
    closes; the last 4 frames lifted off (a spiral: rotations kept, baselines turned) or turned a quarter turn
    (every pair disagrees in rotation) do not, and the warning says which."""
    database, truth, names = _synthetic(tmp_path, frames=12)
    ok = loop_check(database, truth, names, window=4)
    assert ok["pairs"] == 16 and ok["pairs_agreeing_in_rotation"] == 16 and ok["closes"] is True
    assert ok["direction_error_deg_median"] < 1.0 and loop_lines(ok, names[0], names[-1]) == []
    centres = np.stack([c[:3, 3] for c in reconstruction_c2w(truth).values()])
    lift = 3.0 * float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
    spiral, turned = pycolmap.Reconstruction(truth), pycolmap.Reconstruction(truth)
    for image_id in sorted(truth.reg_image_ids())[-4:]:
        frame = spiral.frame(spiral.image(image_id).frame_id)
        frame.rig_from_world = frame.rig_from_world * pycolmap.Rigid3d(pycolmap.Rotation3d(), np.array([0, 0, -lift]))
        _turn_frame(turned, image_id, 90.0)
    up = loop_check(database, spiral, names, window=4)
    assert up["pairs_agreeing_in_rotation"] == 16 and up["direction_error_deg_median"] > 30 and up["closes"] is False
    assert "disagree in the direction" in loop_lines(up, names[0], names[-1])[0]
    bent = loop_check(database, turned, names, window=4)
    assert bent["pairs_agreeing_in_rotation"] == 0 and bent["closes"] is False
    assert "only 0 agree" in loop_lines(bent, names[0], names[-1])[0]
    assert "closes" not in loop_check(database, turned, names, window=2)  # 4 pairs: too few to tell


# --------------------------------------------------------------------------- the walk-around scene

def _turned(c2w, degrees):
    a = math.radians(degrees)
    R = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
    out = c2w.copy()
    out[:3, :4] = R @ c2w[:3, :4]
    return out


def test_true_walk_is_continuous_and_a_cut_is_two_segments():
    cfg = ws.WalkaroundConfig(frames=100)
    poses = ws.camera_path(cfg)
    names = [ws.frame_name(k) for k in range(len(poses))]
    r = check_continuity(names, dict(zip(names, poses)))
    assert r["jumps"] == [] and r["max_step_ratio"] < 2 and r["max_view_ratio"] < 2
    azimuth = np.degrees(np.unwrap([math.atan2(p[1, 3], p[0, 3]) for p in poses]))
    assert 340 < azimuth[-1] - azimuth[0] < 360 and np.all(np.diff(azimuth) > 0)  # once around, forwards
    cut = ws.cut_poses(cfg)
    names = [ws.frame_name(k) for k in range(len(cut))]
    r = check_continuity(names, dict(zip(names, cut)))
    assert len(r["jumps"]) == 1 and r["jumps"][0]["from"] == ws.frame_name(49) and len(r["segments"]) == 2


@pytest.mark.parametrize("walls,turn,same", [("half-turn", 180, True), ("quarter-turn", 90, True),
                                             ("differ", 180, False), ("half-turn", 90, False)])
def test_symmetric_rooms_look_the_same_from_the_other_side(walls, turn, same):
    cfg = ws.WalkaroundConfig(width=64, height=48, supersample=1, walls=walls, logo_deg=0.0, cue=False,
                              aim_height=1.2)  # looking level: the walls fill half the view
    pose = ws.camera_path(cfg)[7]
    a = ws.render_frame(cfg, pose).astype(float)
    b = ws.render_frame(cfg, _turned(pose, turn)).astype(float)
    differ = np.abs(a - b).mean()
    assert (differ < 1.0) if same else (differ > 8.0), differ


def test_jumps_across_a_cut_are_labelled_and_the_cut_is_printed():
    from nerf_app.process.sequence import cut_lines, label_cuts

    continuity = {"jumps": [{"from": "frame_000049.jpg", "to": "frame_000050.jpg"},
                            {"from": "frame_000070.jpg", "to": "frame_000071.jpg"}]}
    constraint = {"cuts": [{"from": "frame_000049.jpg", "to": "frame_000050.jpg", "after_frame": 49,
                            "best_inliers": 3, "median_inliers": 400}]}
    label_cuts(continuity, constraint, [50, 48])
    assert [j["cause"] for j in continuity["jumps"]] == ["cut in the video", "fold (no cut in the video there)"]
    (line,) = cut_lines(constraint)
    assert line.startswith("warning: the video is cut between frame_000049.jpg and frame_000050.jpg")
    assert "2 models of 50, 48 frames" in line


def test_unknown_continuity_mode_is_a_config_error(tmp_path):
    from nerf_app.errors import ConfigError
    from nerf_app.process import ProcessOptions, process

    with pytest.raises(ConfigError, match="--continuity"):
        process(tmp_path / "missing", tmp_path / "out", ProcessOptions(continuity="sometimes"))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- --continuity auto (the default)

class _Pose:
    def __init__(self, m):
        self.m = m

    def inverse(self):
        return _Pose(np.linalg.inv(self.m))

    def matrix(self):
        return self.m[:3, :4]


class _Image:
    def __init__(self, name, c2w):
        self.name, self.c2w = name, c2w

    def cam_from_world(self):
        return _Pose(np.linalg.inv(self.c2w))


class _Model:
    """What map_video_auto reads of a pycolmap reconstruction: registered images and their poses."""

    def __init__(self, names, poses):
        self.images = {k + 1: _Image(n, p) for k, (n, p) in enumerate(zip(names, poses))}

    def reg_image_ids(self):
        return list(self.images)

    def image(self, image_id):
        return self.images[image_id]

    def num_reg_images(self):
        return len(self.images)


def _walk(frames=40, fold=None, cut=False):
    cfg = ws.WalkaroundConfig(frames=frames)
    poses = [p.copy() for p in (ws.cut_poses(cfg) if cut else ws.camera_path(cfg))]
    for k in fold or ():
        poses[k] = _turned(poses[k], 180.0)  # a stretch placed on the other side: a fold
    return [ws.frame_name(k) for k in range(len(poses))], poses


def _auto(monkeypatch, tmp_path, first, remap, weak_after=None, min_registered=3):
    """Run map_video_auto with the mappers replaced: ``first``/``remap`` are (names, poses) models.
    Consecutive frames share 300 matches (4 across ``weak_after``: a cut). Returns (model, section, calls)."""
    from nerf_app.process import sequence, sfm
    from nerf_app.process.sequence import map_video_auto
    from nerf_app.process.sfm import SfmOptions

    names = first[0]
    calls = {"first": 0, "remap": 0, "grow": 0}
    first_model, remap_model = _Model(*first), _Model(*remap)

    def fake_map_images(database, image_dir, work_dir, options, n, progress=None):
        calls["first"] += 1
        return first_model, [first_model.num_reg_images()]

    def fake_time_order(database, image_dir, work_dir, options, order, progress=None):
        calls["remap"] += 1
        assert list(order) == names
        return remap_model, [remap_model.num_reg_images()], {"passes": 2}

    def fake_pairs(database, order):
        return [Pair(k, k + 1, k + 1, k + 2, 4 if k == weak_after else 300) for k in range(len(order) - 1)]

    monkeypatch.setattr(sfm, "map_images", fake_map_images)
    monkeypatch.setattr(sequence, "map_in_time_order", fake_time_order)
    monkeypatch.setattr(sequence, "read_pairs", fake_pairs)
    model, sizes, section, constraint = map_video_auto(
        tmp_path / "db", tmp_path, tmp_path, SfmOptions(threads=1), names, min_registered=min_registered,
        on_remap=lambda: calls.__setitem__("grow", calls["grow"] + 1))
    calls["kept"] = "first" if model is first_model else "remap"
    assert constraint == (None if calls["remap"] == 0 else {"passes": 2})
    return section, calls


def test_auto_a_continuous_first_pass_is_not_remapped(monkeypatch, tmp_path):
    walk = _walk()
    section, calls = _auto(monkeypatch, tmp_path, walk, walk)
    assert calls == {"first": 1, "remap": 0, "grow": 0, "kept": "first"}
    assert section["remapped"] is False and section["kept"] == "first pass" and section["cuts"] == []
    assert section["first_pass"]["jumps"] == 0 and section["first_pass"]["registered"] == 40
    assert "remap_s" not in section and section["first_pass_s"] >= 0
    assert section["not_remapped"] == "no jump without a cut"


def test_auto_a_folded_first_pass_is_remapped_once_and_the_continuous_remap_kept(monkeypatch, tmp_path):
    section, calls = _auto(monkeypatch, tmp_path, _walk(fold=range(20, 26)), _walk())
    assert calls == {"first": 1, "remap": 1, "grow": 1, "kept": "remap"}
    assert section["remapped"] is True and section["kept"] == "re-mapped with the constraint"
    first = section["first_pass"]
    assert first["fold_jumps"] == 2 and [(j["from"], j["to"]) for j in first["folds"]] == \
        [(ws.frame_name(19), ws.frame_name(20)), (ws.frame_name(25), ws.frame_name(26))]
    assert first["max_step_ratio"] > 10 and section["remap"]["fold_jumps"] == 0
    assert section["remap"]["max_step_ratio"] < 3 and section["remap_s"] >= 0


def test_auto_keeps_the_first_pass_when_the_remap_is_not_better(monkeypatch, tmp_path):
    folded = _walk(fold=range(20, 26))
    section, calls = _auto(monkeypatch, tmp_path, folded, _walk(fold=list(range(5, 9)) + list(range(20, 26))))
    assert calls == {"first": 1, "remap": 1, "grow": 1, "kept": "first"}
    assert section["remapped"] is True and section["kept"].startswith("first pass")
    assert section["remap"]["fold_jumps"] == 4 > section["first_pass"]["fold_jumps"] == 2
    # continuous, but registering fewer frames than the run needs, or than the first pass: not kept either
    names, poses = _walk()
    section, calls = _auto(monkeypatch, tmp_path, folded, (names[:15], poses[:15]), min_registered=20)
    assert calls["remap"] == 1 and calls["kept"] == "first" and section["remap"]["fold_jumps"] == 0
    section, calls = _auto(monkeypatch, tmp_path, folded, (names[:30], poses[:30]), min_registered=3)
    assert calls["kept"] == "first" and section["remap"]["registered"] == 30 < section["first_pass"]["registered"]
    # no jump, but the last ten frames collapsed onto one point (seen in a short-range-only model)
    names, poses = _walk()
    poses = poses[:30] + [poses[30]] * 10
    section, calls = _auto(monkeypatch, tmp_path, folded, (names, poses))
    assert calls["remap"] == 1 and calls["kept"] == "first"
    assert section["remap"]["fold_jumps"] == 0 and section["remap"]["stalls"] == 9
    assert section["first_pass"]["stalls"] == 0


def test_auto_does_not_remap_a_jump_at_a_cut_of_the_video(monkeypatch, tmp_path):
    walk = _walk(frames=100, cut=True)  # two stretches of the walk joined after frame 49
    section, calls = _auto(monkeypatch, tmp_path, walk, walk, weak_after=49)
    assert calls["remap"] == 0 and calls["kept"] == "first"
    assert [c["after_frame"] for c in section["cuts"]] == [49]
    assert section["first_pass"]["jumps"] == 1 and section["first_pass"]["fold_jumps"] == 0


def _mild(frames=40, every=8, extra=4.0):
    """The true walk with every ``every``-th step ``extra`` times longer (uneven spacing, as fox's photos encoded
    as a video: steps 3.6-4.7x the median, view change 8-21 degrees): jumps, but no fold."""
    names, poses = _walk(frames)
    out = [poses[0]]
    turn = 0.0
    for k in range(1, frames):
        turn += (extra if k % every == 0 else 1.0) * 180.0 / frames  # half the walk's pace, 4.5 deg a step
        out.append(_turned(poses[0], turn))
    jumps = check_continuity(names, dict(zip(names, out)))["jumps"]
    assert jumps and all(j["view_change_deg"] < 30 and j["step_ratio"] < 6 for j in jumps), jumps
    return names, out


def test_auto_does_not_remap_mild_jumps_but_a_severe_one(monkeypatch, tmp_path):
    from nerf_app.process.sequence import SEVERE_STEP_RATIO, SEVERE_VIEW_CHANGE_DEG

    assert (SEVERE_VIEW_CHANGE_DEG, SEVERE_STEP_RATIO) == (30.0, 6.0)
    mild = _mild()
    section, calls = _auto(monkeypatch, tmp_path, mild, _walk())
    assert calls == {"first": 1, "remap": 0, "grow": 0, "kept": "first"}
    first = section["first_pass"]
    assert first["fold_jumps"] >= 3 and first["severe_fold_jumps"] == 0
    assert section["remapped"] is False and section["kept"] == "first pass"
    assert section["not_remapped"].startswith("jumps too mild to be a fold")
    # one severe jump among the mild ones (a stretch half a turn away) is re-mapped
    names, poses = mild
    poses = poses[:20] + [_turned(p, 180.0) for p in poses[20:26]] + poses[26:]
    section, calls = _auto(monkeypatch, tmp_path, (names, poses), _walk())
    assert calls == {"first": 1, "remap": 1, "grow": 1, "kept": "remap"}
    assert section["first_pass"]["severe_fold_jumps"] == 2 and "not_remapped" not in section


def test_auto_is_the_default_and_the_cli_offers_all_three_modes():
    import argparse

    from nerf_app.commands import process as command
    from nerf_app.process import CONTINUITY_MODES, ProcessOptions

    assert ProcessOptions().continuity == "auto" and set(CONTINUITY_MODES) == {"auto", "on", "off"}
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert parser.parse_args(["in.mp4", "--out", "o"]).continuity == "auto"
    assert parser.parse_args(["in.mp4", "--out", "o", "--continuity", "off"]).continuity == "off"
