"""Continuity check of `process` (issue 24, part 1): synthetic trajectories only (no reconstruction).

A smooth walk-around has no jump; a stretch mirrored to the other side of the object (a fold) jumps
at both of its ends; two walks joined (a cut) split into two segments; frames missing in between do
not alarm; numbered names are ordered naturally; photos whose name order is no path do not warn."""
from __future__ import annotations

import numpy as np
from nerf_app.process.continuity import capture_order, check_continuity, jump_pairs, natural_key, summary_lines


def look_at(centre, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV camera-to-world: z forward towards the target, y down."""
    c = np.asarray(centre, float)
    z = np.asarray(target, float) - c
    z /= np.linalg.norm(z)
    x = np.cross(z, -np.asarray(up, float))
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(z, x), z, c
    return m


def walk(n, start=0.0, radius=2.0, turn=2 * np.pi, seed=0):
    """A hand-held walk around the origin: radius, height and aim wobble a little."""
    rng = np.random.default_rng(seed)
    angles = start + np.linspace(0.0, turn, n, endpoint=False)
    poses = []
    for a in angles:
        r = radius * (1 + 0.02 * rng.standard_normal())
        c = (r * np.cos(a), r * np.sin(a), 0.5 + 0.1 * np.sin(3 * a) + 0.01 * rng.standard_normal())
        poses.append(look_at(c, target=0.05 * rng.standard_normal(3)))
    return poses


def frames(n, step=1):
    return [f"frame_{i * step:06d}.jpg" for i in range(n)]


def mirrored(pose):
    """The pose seen from the other side of the object (a rotation by 180 degrees about the up axis)."""
    m = np.diag([-1.0, -1.0, 1.0])
    out = pose.copy()
    out[:3, :3] = m @ pose[:3, :3]
    out[:3, 3] = m @ pose[:3, 3]
    return out


def test_smooth_walk_has_no_jump():
    names = frames(100, step=7)
    r = check_continuity(names, dict(zip(names, walk(100))))
    assert r["checked"] and r["steps"] == 99
    assert r["jumps"] == [] and not r["warning"]
    assert r["max_step_ratio"] < 3 and r["max_view_change_deg"] < 15
    assert r["segments"] == [{"first": names[0], "last": names[-1], "registered": 100}]
    assert summary_lines(r)[-1].endswith("no jumps") and len(summary_lines(r)) == 1


def test_fold_is_found_at_both_ends():
    names = frames(100, step=7)
    poses = walk(100)
    poses[40:60] = [mirrored(p) for p in poses[40:60]]
    r = check_continuity(names, dict(zip(names, poses)))
    assert [(j["from"], j["to"]) for j in r["jumps"]] == [(names[39], names[40]), (names[59], names[60])]
    assert jump_pairs(r) == [(names[39], names[40]), (names[59], names[60])]
    for j in r["jumps"]:
        assert j["step_ratio"] > 10 and j["view_change_deg"] > 90 and j["reason"] == "step+view"
    assert [(s["first"], s["last"], s["registered"]) for s in r["segments"]] == [
        (names[0], names[39], 40), (names[40], names[59], 20), (names[60], names[99], 40)]
    assert r["warning"]
    lines = summary_lines(r)
    assert len(lines) == 3 and names[39] in lines[0] and names[40] in lines[0] and names[60] in lines[1]
    assert "2 jumps" in lines[2] and "3 segments" in lines[2]


def test_a_short_fold_of_a_few_frames_and_a_fold_by_a_small_angle():
    names = frames(120)
    poses = walk(120)
    poses[70:73] = [mirrored(p) for p in poses[70:73]]
    r = check_continuity(names, dict(zip(names, poses)))
    assert jump_pairs(r) == [(names[69], names[70]), (names[72], names[73])]
    # a stretch displaced by a quarter turn: no mirror, still far more than a hand moves in one frame
    poses = walk(120)
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for i in range(30, 50):
        poses[i] = poses[i].copy()
        poses[i][:3, :3] = rot @ poses[i][:3, :3]
        poses[i][:3, 3] = rot @ poses[i][:3, 3]
    r = check_continuity(names, dict(zip(names, poses)))
    assert jump_pairs(r) == [(names[29], names[30]), (names[49], names[50])]


def test_a_cut_gives_two_segments():
    """Two clips joined into one video: a walk, then a second walk started elsewhere (and further
    out) around the same object."""
    names = frames(80)
    poses = walk(40, start=0.0, turn=np.pi, seed=1) + walk(40, start=2.5, radius=2.6, turn=np.pi, seed=2)
    r = check_continuity(names, dict(zip(names, poses)))
    assert jump_pairs(r) == [(names[39], names[40])]
    assert [(s["first"], s["last"]) for s in r["segments"]] == [(names[0], names[39]), (names[40], names[79])]
    assert "2 segments" in summary_lines(r)[-1]


def test_unregistered_gaps_do_not_alarm():
    names = frames(100, step=7)
    poses = dict(zip(names, walk(100)))
    for i in (10, 11, 12, 13, 14, 15, 50, 51, 52, 53, 54, 55, 56, 57, 80):  # not registered
        del poses[names[i]]
    r = check_continuity(names, poses)
    assert r["checked"] and r["jumps"] == [] and r["steps"] == 100 - 15 - 1
    assert r["segments"] == [{"first": names[0], "last": names[-1], "registered": 85}]
    # the step over the 8-frame hole is far longer than 3 median steps: only the gap scaling keeps it quiet
    over_hole = np.linalg.norm(poses[names[58]][:3, 3] - poses[names[49]][:3, 3])
    assert over_hole > 3 * r["median_step"] * 7  # median_step is per frame index (7 per kept frame here)


def test_threshold_matters():
    """The rule is what finds the fold: a ratio so large that nothing is a jump finds nothing, and a
    fold of a far smaller size than the threshold allows is not reported."""
    names = frames(100)
    poses = walk(100)
    poses[40:60] = [mirrored(p) for p in poses[40:60]]
    table = dict(zip(names, poses))
    assert len(check_continuity(names, table)["jumps"]) == 2
    assert check_continuity(names, table, ratio=1000.0, view_floor_deg=180.0, step_floor=10.0)["jumps"] == []
    # a walk with one frame displaced by 2.5 median steps (a shaky hand) is not a jump; by 10 it is
    base = walk(100, seed=3)
    median = check_continuity(names, dict(zip(names, base)))["median_step"]
    for shift, expected in ((2.0, 0), (12.0, 2)):
        moved = list(base)
        moved[50] = moved[50].copy()
        moved[50][:3, 3] += np.array([0.0, 0.0, shift * median])
        assert len(check_continuity(names, dict(zip(names, moved)))["jumps"]) == expected, shift


def test_local_speed_change_is_not_a_jump():
    """Standing nearly still for a while, then walking: steps far above the (small) median but
    matching their neighbours are not jumps."""
    names = frames(100)
    still = [look_at((2.0 + 0.002 * i, 0.0, 0.5)) for i in range(60)]
    moving = walk(40, start=0.05, turn=np.pi, seed=4)
    r = check_continuity(names, dict(zip(names, still + moving)))
    assert r["max_step_ratio"] > 3  # against the global median the walk is fast ...
    assert [j for j in r["jumps"] if j["from"] != names[59]] == []  # ... but only the join may be flagged


def test_natural_order():
    assert sorted(["frame_10.jpg", "frame_2.jpg", "frame_1.jpg"], key=natural_key) == [
        "frame_1.jpg", "frame_2.jpg", "frame_10.jpg"]
    names = [f"frame_{i}.jpg" for i in (10, 2, 1, 3, 11, 20)] + ["cover.jpg"]
    sequences, left = capture_order(names)
    assert [n for n, _ in sequences[0]] == ["frame_1.jpg", "frame_2.jpg", "frame_3.jpg", "frame_10.jpg",
                                            "frame_11.jpg", "frame_20.jpg"]
    assert [k for _, k in sequences[0]] == [1, 2, 3, 10, 11, 20] and left == ["cover.jpg"]
    # two patterns (two cameras, or two folders) are two sequences; a pattern of 2 is no order
    sequences, left = capture_order([f"a/IMG_{i}.JPG" for i in range(5)] + [f"b/IMG_{i}.JPG" for i in range(6)]
                                    + ["DSC_1.jpg", "DSC_2.jpg"])
    assert [len(s) for s in sequences] == [5, 6] and left == ["DSC_1.jpg", "DSC_2.jpg"]


def test_order_follows_numbers_not_lexical_names():
    """frame_2 comes before frame_10: a smooth walk named without zero padding has no jump (lexical
    order would jump from frame_1 to frame_10)."""
    names = [f"frame_{i}.jpg" for i in range(30)]
    poses = dict(zip(names, walk(30)))
    shuffled = sorted(names)  # lexical: frame_0, frame_1, frame_10, ...
    r = check_continuity(shuffled, poses)
    assert r["jumps"] == [] and r["segments"][0]["first"] == "frame_0.jpg" and r["segments"][0]["last"] == "frame_29.jpg"


def test_unordered_photos_are_not_checked():
    names = ["kitchen.jpg", "table.jpg", "door.jpg", "window.jpg", "cup.jpg"]
    r = check_continuity(names, dict(zip(names, walk(5))), kind="images")
    assert not r["checked"] and "no order" in r["reason"] and r["jumps"] == []
    assert summary_lines(r) == [f"continuity: not checked ({r['reason']})"]


def test_photos_whose_order_is_no_path_do_not_warn():
    """Photos taken in short runs from scattered places (as cup's): many jumps in name order, reported but not a warning;
    the same as a video warns, and a photo set with one fold warns."""
    names = [f"IMG_{i:04d}.JPG" for i in range(60)]
    poses = walk(60)
    blocks = [7, 2, 10, 4, 0, 11, 5, 8, 1, 9, 3, 6]  # 12 short walks of 5 shots, taken in this order
    scrambled = [poses[5 * b + i] for b in blocks for i in range(5)]
    r = check_continuity(names, dict(zip(names, scrambled)), kind="images")
    assert r["checked"] and len(r["jumps"]) > 0.1 * r["steps"] and not r["order_is_path"] and not r["warning"]
    assert len(summary_lines(r)) == 1 and "no warning" in summary_lines(r)[0] and jump_pairs(r) == []
    assert check_continuity(names, dict(zip(names, scrambled)), kind="video")["warning"]
    folded = list(poses)
    folded[20:30] = [mirrored(p) for p in folded[20:30]]
    r = check_continuity(names, dict(zip(names, folded)), kind="images")
    assert r["order_is_path"] and r["warning"] and jump_pairs(r) == [(names[19], names[20]), (names[29], names[30])]


def test_frusta_png_marks_jumps(tmp_path, monkeypatch):
    """The frusta plot draws each jump as a magenta line between the two camera centres."""
    import nerf_app.data.frusta as inspect

    class Cam:
        width, height = 40, 30

        def unproject(self, pix):
            return np.concatenate([(pix - [20.0, 15.0]) / 30.0, np.ones((len(pix), 1))], 1)

    class Scene:
        def __init__(self, names, c2w):
            self.names, self.c2w = names, np.stack(c2w)
            self.cameras = [Cam() for _ in names]
            self.points3D, self.splits, self.n_cascades, self.source = None, {}, 1, tmp_path / "odd name [x]"
            self.aabb = np.array([[-3.0, -3.0, -1.0], [3.0, 3.0, 2.0]])

        def __len__(self):
            return len(self.names)

    names = frames(20)
    scene = Scene(names, walk(20))
    figures = []
    monkeypatch.setattr(inspect, "write_figure", lambda path, fig, dpi: figures.append(fig))
    inspect.write_frusta_png(scene, tmp_path / "f.png", jumps=[(names[3], names[4]), ("missing.jpg", names[5])])
    inspect.write_frusta_png(scene, tmp_path / "g.png")
    marked = [[ln for ln in ax.lines if ln.get_color() == "magenta"] for ax in figures[0].axes]
    assert [len(m) for m in marked] == [1, 1]
    assert all(not [ln for ln in ax.lines if ln.get_color() == "magenta"] for ax in figures[1].axes)
    assert "1 trajectory jump" in figures[0]._suptitle.get_text()
