"""Continuity as a constraint for video input (issue 24, part 2).

A walk around a near-symmetric object on a repetitive floor gives image pairs that match by
symmetry: frame i and a frame j from the other side look alike, their features match (point X
with its mirror image), and geometric verification accepts them, because the false matches are
consistent with a small relative motion. Incremental mapping then folds the walk. Short-range pairs
(frames at most ``window`` apart in time) cannot match that way: a hand moves little in a few
frames. So with ``--continuity on``, ``process`` maps in two passes (:func:`map_in_time_order`; it
unfolds the rendered quarter-turn walk-around, 16.7 % -> 2.05 % centre error, but on the half-turn one,
which one pass does not fold, it came out worse; docs/data.md). Hence the default for video,
``--continuity auto`` (:func:`map_video_auto`): one pass with all pairs, as ``off``; only when that
trajectory jumps severely (a fold) where the video has no cut, the two passes below, and the more
continuous model is kept.

1. **Short range**: map with only the pairs at most ``window`` frames apart (all other pairs'
   verified geometries are removed from a copy of the database). This trajectory cannot fold; it
   can only drift a little, having no loop closure.
2. **Long range, verified**: each other verified pair (the quadratic overlap and the first-vs-last
   frames that close an orbit) has its relative rotation estimated from its own inlier matches with
   the pass-1 cameras (:func:`pair_rotation`), and is kept only when that rotation agrees with the
   pass-1 poses within :data:`LOOP_MAX_ROTATION_DEG` (:func:`verify_long_pairs`). A pair that
   matches by a symmetry of order k disagrees by about 360/k degrees (a half turn: ~180); drift over
   a walk is a few degrees. Then the pass-1 model is closed with the short pairs and the kept long ones
   (:func:`close_loop`: re-triangulation with the poses kept, bundle adjustment with them free, 3 rounds).
   Before, pass 2 mapped again from scratch with those pairs; that could jump again (8 jumps on one run of
   the walk-around) and gave 2.37 % on the database where closing the continuous model gives 1.35 % (from 2.99).

The report says how many long pairs were checked and dropped, and which (``constraint``), and how the loop
was closed (``loop_closure``).

**Cuts.** Consecutive frames of a continuous video share many matches. Where the frames on either
side of a point in time share (almost) none (:func:`find_cuts`), the video is cut there: two clips
joined. The cut is reported; structure from motion may still place both clips in one model (if they
see the same scene) or in two, and the continuity check then reports two segments.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .pair_cycles import relative_pose_ransac, rotation_angles_deg

#: pairs at most this many frames apart are "short range" (= the sequential overlap)
WINDOW = 10
#: a long-range pair is kept when its own relative rotation agrees with the short-range
#: trajectory's within this many degrees
LOOP_MAX_ROTATION_DEG = 20.0
#: a point in time is a cut when no pair across it within the window has more than this fraction
#: of the median inliers of consecutive frames
CUT_INLIER_FRACTION = 0.1
#: ``--continuity auto``: a step shorter than this fraction of the median step (per frame index) is a
#: stall. A short-range-only model can collapse a stretch of the walk onto one point (measured: 19
#: frames within 0.001 median steps, 33.7 % centre error, yet no jump); the rendered true walk's
#: shortest step is 0.73x the median. A pause of the hand shows in both models alike.
STALL_RATIO = 0.05
#: ``--continuity auto`` re-maps only on a *severe* fold jump: one whose view change is at least
#: :data:`SEVERE_VIEW_CHANGE_DEG` or whose step is at least :data:`SEVERE_STEP_RATIO` times the median
#: step. Measured: each folded one-pass model of the rendered quarter-turn walk-around (3 runs) has a jump of
#: at least 10.7x and 34 degrees (its fold jumps: 34-131 degrees, 7.9-33x, plus one 3.6x / 4.5 deg beside a
#: 12.9x / 76 deg one); fox's 67 photos encoded as a video jump mildly (uneven photo spacing: 7.7-21.4 degrees,
#: steps 3.6-4.7x), where a re-map cost 1.22x the time and was not kept. Milder jumps are still warned about,
#: not re-mapped.
SEVERE_VIEW_CHANGE_DEG = 30.0
SEVERE_STEP_RATIO = 6.0
#: closing the short-range model with the verified long-range pairs (:func:`close_loop`): rounds of
#: re-triangulation (poses kept) + bundle adjustment (poses, points, focal length and distortion free). In
#: the first round a track may join observations up to :data:`LOOP_MERGE_PX` pixels / :data:`LOOP_ANGLE_DEG`
#: degrees off the short-range poses (COLMAP's 4 px / 2 deg), meant for a loop that has drifted apart; on the
#: walk-around it made little difference (COLMAP's thresholds: 1.94 % after one round, 1.52 % after two, and one
#: point sent far off until the next re-triangulation; these: 1.91 %, 1.52 %, none).
#: Measured on the walk-around's database: short-range 2.99 %, one round 1.91 %, two 1.52 %, three 1.35 % centre
#: error (~9 CPU s a round; the former second pass, a re-map from scratch, gave 2.37 % on that database).
LOOP_ROUNDS = 3
LOOP_MERGE_PX = 20.0
LOOP_ANGLE_DEG = 5.0


@dataclass
class Pair:
    i: int  # positions in time order
    j: int
    image_id1: int
    image_id2: int
    inliers: int

    @property
    def gap(self) -> int:
        return abs(self.j - self.i)


def read_pairs(database: Path, order: Sequence[str]) -> List[Pair]:
    """The verified pairs of ``database`` with inlier matches, as positions in ``order`` (time order)."""
    import pycolmap

    position = {name: k for k, name in enumerate(order)}
    db = pycolmap.Database.open(database)
    try:
        name_of = {int(im.image_id): im.name for im in db.read_all_images()}
        pair_ids, geometries = db.read_two_view_geometries()
    finally:
        db.close()
    out = []
    for pid, geom in zip(pair_ids, geometries):
        a, b = pycolmap.pair_id_to_image_pair(int(pid))
        n = len(geom.inlier_matches)
        if n == 0 or name_of.get(a) not in position or name_of.get(b) not in position:
            continue
        i, j = position[name_of[a]], position[name_of[b]]
        if i > j:
            i, j, a, b = j, i, b, a
        out.append(Pair(i, j, int(a), int(b), int(n)))
    return sorted(out, key=lambda p: (p.i, p.j))


def find_cuts(n_frames: int, pairs: Sequence[Pair], window: int = WINDOW,
              fraction: float = CUT_INLIER_FRACTION) -> List[dict]:
    """Points in time where the video is cut: between frames k and k+1 when no pair (i <= k < j,
    j - i <= window) has more than ``fraction`` of the median inliers of consecutive frames.
    Returns ``[{"after": k, "best_inliers": n}]``."""
    consecutive = [p.inliers for p in pairs if p.gap == 1]
    if n_frames < 2:
        return []
    median = float(np.median(consecutive)) if consecutive else 0.0
    best = np.zeros(n_frames - 1, int)
    for p in pairs:
        if p.gap <= window:
            seg = slice(p.i, p.j)
            best[seg] = np.maximum(best[seg], p.inliers)
    limit = fraction * median
    return [{"after": int(k), "best_inliers": int(best[k])} for k in range(n_frames - 1) if best[k] <= limit]


def _name_cuts(cuts: List[dict], order: Sequence[str], pairs: Sequence[Pair]) -> List[dict]:
    from .continuity import _LAST_NUMBER

    consecutive = [p.inliers for p in pairs if p.gap == 1]
    median = int(np.median(consecutive)) if consecutive else 0
    out = []
    for c in cuts:
        k = c["after"]
        m = _LAST_NUMBER.match(order[k])
        out.append({"from": order[k], "to": order[k + 1], "after_frame": int(m.group(2)) if m else k,
                    "best_inliers": c["best_inliers"], "median_inliers": median})
    return out


def restrict_database(src: Path, dst: Path, drop: Sequence[Tuple[int, int]]) -> None:
    """Copy ``src`` to ``dst`` and remove the verified geometries of the pairs ``drop`` there (the
    mapper then ignores their matches; the raw matches stay)."""
    import pycolmap

    shutil.copyfile(src, dst)
    db = pycolmap.Database.open(dst)
    try:
        for a, b in drop:
            db.delete_two_view_geometry(int(a), int(b))
    finally:
        db.close()


def pair_rotation(db, pair: Pair, camera1, camera2, keypoints: Dict[int, np.ndarray]) -> Optional[np.ndarray]:
    """The rotation of camera 2 relative to camera 1 (cam2_from_cam1) estimated from the pair's own
    inlier matches (already verified, so few RANSAC trials are needed) with the given (refined)
    cameras, or None if that fails. ``db``: an open pycolmap database; ``keypoints``: a cache."""
    pose = pair_relative_pose(db, pair, camera1, camera2, keypoints)
    return None if pose is None else pose[0]


def pair_relative_pose(db, pair: Pair, camera1, camera2,
                       keypoints: Dict[int, np.ndarray]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """As :func:`pair_rotation`: ``(R, t)`` of cam2_from_cam1 (``t`` of unit length), or None."""
    import pycolmap

    geom = db.read_two_view_geometry(pair.image_id1, pair.image_id2)  # answers in the order asked
    m = np.asarray(geom.inlier_matches)
    if len(m) < 8:
        return None
    for image_id in (pair.image_id1, pair.image_id2):
        if image_id not in keypoints:
            keypoints[image_id] = np.asarray(db.read_keypoints(image_id))[:, :2].astype(np.float64)
    p1, p2 = keypoints[pair.image_id1][m[:, 0]], keypoints[pair.image_id2][m[:, 1]]
    ransac = relative_pose_ransac()
    result = pycolmap.estimate_relative_pose(camera1, p1, camera2, p2, ransac)
    if result is None:
        return None
    pose = result["cam2_from_cam1"]
    t = np.asarray(pose.translation, float)
    return np.asarray(pose.rotation.matrix()), t / max(float(np.linalg.norm(t)), 1e-12)


#: :func:`loop_check`: the walk closes when the pairs linking its first and last frames agree with the model
#: within these medians (a spiral whose end sits above its start has its loop pairs' baselines pointing up)
LOOP_CHECK_ROTATION_DEG = 10.0
LOOP_CHECK_DIRECTION_DEG = 30.0
LOOP_CHECK_MIN_PAIRS = 3
#: ... and does not close when at least this many pairs link its ends but fewer than LOOP_CHECK_MIN_PAIRS agree in
#: rotation. Measured on the walk-around (100 pairs link its ends, 40 of them matched by symmetry): models within 1.4-6 %
#: of the truth had 32-39 pairs agreeing, medians of their baseline directions 4.8-7.5 deg; the folded one-pass model
#: (54 %) and a spiral without a jump (19.8 %) had none
LOOP_CHECK_MIN_ENDS_PAIRS = 10


def loop_check(database: Path, rec, order: Sequence[str], window: int = WINDOW) -> dict:
    """Does the model close the video's loop? The verified pairs of ``database`` between its first and last
    ``window`` frames (the sequential matcher pairs them to close an orbit) have their own relative pose
    estimated from their inliers with the model's cameras and compared with the model's: the rotation and the
    direction of the baseline. A fold shows as a jump (continuity check); a continuous model can still be wrong
    without one, e.g. a walk drawn as a spiral whose end does not meet its start (measured on the walk-around,
    19.8 % centre error, no jump): its loop pairs' baselines disagree. ``closes`` is set only when at least
    :data:`LOOP_CHECK_MIN_PAIRS` pairs agree in rotation, False when their median baseline direction is more than
    :data:`LOOP_CHECK_DIRECTION_DEG` off; also False when :data:`LOOP_CHECK_MIN_ENDS_PAIRS` or more pairs link the
    ends and too few agree; absent when fewer pairs link the ends (``pairs`` 0: not a loop)."""
    import pycolmap

    n = len(order)
    pairs = [p for p in read_pairs(database, order) if p.i < window and p.j >= n - window and p.gap > window]
    registered = {int(i) for i in rec.reg_image_ids()}
    rot, direction = [], []
    keypoints: Dict[int, np.ndarray] = {}
    db = pycolmap.Database.open(database)
    try:
        for p in pairs:
            if p.image_id1 not in registered or p.image_id2 not in registered:
                continue
            im1, im2 = rec.image(p.image_id1), rec.image(p.image_id2)
            measured = pair_relative_pose(db, p, rec.cameras[im1.camera_id], rec.cameras[im2.camera_id], keypoints)
            if measured is None:
                continue
            model = im2.cam_from_world() * im1.cam_from_world().inverse()
            R, t = np.asarray(model.rotation.matrix()), np.asarray(model.translation, float)
            if np.linalg.norm(t) < 1e-12:
                continue
            rot.append(float(rotation_angles_deg(measured[0].T @ R)))
            cos = float(np.clip(measured[1] @ (t / np.linalg.norm(t)), -1.0, 1.0))
            direction.append(float(np.degrees(np.arccos(cos))))
    finally:
        db.close()
    # pairs matched by symmetry disagree in rotation whatever the model (the walk-around: 40 of its 100 ends'
    # pairs by 60-180 deg); the pairs that agree in rotation are the true loop pairs, and their baselines must
    # point where the model says: a spiral's do not
    rot, direction = np.asarray(rot), np.asarray(direction)
    agree = rot <= LOOP_CHECK_ROTATION_DEG
    out = {"pairs": int(len(rot)), "window_frames": window, "max_rotation_deg": LOOP_CHECK_ROTATION_DEG,
           "max_direction_deg": LOOP_CHECK_DIRECTION_DEG, "pairs_agreeing_in_rotation": int(agree.sum())}
    if agree.sum() >= LOOP_CHECK_MIN_PAIRS:
        d = float(np.median(direction[agree]))
        out.update(direction_error_deg_median=round(d, 2), closes=bool(d <= LOOP_CHECK_DIRECTION_DEG))
    elif len(rot) >= LOOP_CHECK_MIN_ENDS_PAIRS:  # the ends match, yet the model turns every such pair another way
        out.update(rotation_error_deg_median=round(float(np.median(rot)), 2), closes=False)
    return out


def loop_lines(loop: dict, first: str, last: str) -> List[str]:
    """The warning ``process`` prints when a video's loop does not close (none otherwise)."""
    if loop.get("closes", True):
        return []
    if "direction_error_deg_median" in loop:
        why = (f"the {loop['pairs_agreeing_in_rotation']} of them that agree with the model in rotation disagree in the "
               f"direction between their cameras (median {loop['direction_error_deg_median']:.1f} deg)")
    else:
        why = (f"only {loop['pairs_agreeing_in_rotation']} agree with the model in rotation within "
               f"{loop['max_rotation_deg']:g} deg (median error {loop['rotation_error_deg_median']:.1f} deg)")
    return [f"warning: the walk does not close: {loop['pairs']} pairs match between its first and last "
            f"{loop['window_frames']} frames ({first} ... {last}), and {why}; the trajectory may be folded, a spiral "
            "or bent even where it has no jump (process_report.json: loop)"]


def verify_long_pairs(database: Path, rec, pairs: Sequence[Pair], window: int = WINDOW,
                      max_rotation_deg: float = LOOP_MAX_ROTATION_DEG) -> Tuple[List[Pair], List[dict]]:
    """Check each pair more than ``window`` frames apart against the (short-range) reconstruction
    ``rec``: ``(rejected, checks)``, one check per long pair in order. A pair with an image that
    ``rec`` did not register cannot be checked and is rejected (it would be the only thing placing
    that image)."""
    import pycolmap

    registered = {int(i) for i in rec.reg_image_ids()}
    rejected, checks = [], []
    keypoints: Dict[int, np.ndarray] = {}
    db = pycolmap.Database.open(database)
    try:
        for p in pairs:
            if p.gap <= window:
                continue
            entry = {"i": p.i, "j": p.j, "inliers": p.inliers}
            checks.append(entry)
            if p.image_id1 not in registered or p.image_id2 not in registered:
                entry.update(accepted=False, reason="not in the short-range model")
                rejected.append(p)
                continue
            im1, im2 = rec.image(p.image_id1), rec.image(p.image_id2)
            measured = pair_rotation(db, p, rec.cameras[im1.camera_id], rec.cameras[im2.camera_id], keypoints)
            if measured is None:
                entry.update(accepted=False, reason="no relative pose from its matches")
                rejected.append(p)
                continue
            R1 = np.asarray(im1.cam_from_world().rotation.matrix())
            R2 = np.asarray(im2.cam_from_world().rotation.matrix())
            err = float(rotation_angles_deg(measured.T @ (R2 @ R1.T)))
            entry.update(accepted=err <= max_rotation_deg, rotation_error_deg=round(err, 2))
            if err > max_rotation_deg:
                rejected.append(p)
    finally:
        db.close()
    return rejected, checks


def reconstruction_c2w(rec) -> Dict[str, np.ndarray]:
    """name -> 4x4 camera-to-world of each registered image of a pycolmap reconstruction."""
    out = {}
    for image_id in rec.reg_image_ids():
        image = rec.image(image_id)
        m = np.eye(4)
        m[:3, :4] = np.asarray(image.cam_from_world().inverse().matrix())
        out[image.name] = m
    return out


def map_in_time_order(database: Path, image_dir: Path, work_dir: Path, options, order: Sequence[str],
                      progress=None, window: int = WINDOW, max_rotation_deg: float = LOOP_MAX_ROTATION_DEG):
    """The two-pass mapping of the module docstring. ``order``: the image names in time order.
    Returns ``(reconstruction or None, model sizes, report section)``."""
    from .continuity import check_continuity
    from .sfm import map_images

    n = len(order)
    pairs = read_pairs(database, order)
    long = [p for p in pairs if p.gap > window]
    section: dict = {"mode": "video: short-range pairs first, long-range pairs verified against them",
                     "window_frames": window, "max_rotation_deg": max_rotation_deg,
                     "pairs_short": len(pairs) - len(long), "pairs_long": len(long),
                     "cuts": _name_cuts(find_cuts(n, pairs, window), order, pairs)}

    def step(k):
        if progress:
            progress(k)

    short_db = Path(work_dir) / "short_range.db"
    restrict_database(database, short_db, [(p.image_id1, p.image_id2) for p in long])
    rec1, sizes1 = map_images(short_db, image_dir, Path(work_dir) / "short_models", options, n, progress=step)
    if rec1 is None or not long:
        section.update(pairs_long_dropped=0, passes=1,
                       result="short-range model" if rec1 is not None else "no short-range model")
        if rec1 is None:  # nothing to verify against: the single pass of before, all pairs
            rec, sizes = map_images(database, image_dir, Path(work_dir) / "models", options, n, progress=step)
            section["result"] = "no short-range model; all pairs mapped together (unverified)"
            return rec, sizes, section
        return rec1, sizes1, section
    rejected, checks = verify_long_pairs(database, rec1, pairs, window, max_rotation_deg)
    errors = [c["rotation_error_deg"] for c in checks if "rotation_error_deg" in c]
    section.update(pairs_long_dropped=len(rejected),
                   dropped=[{"from": order[p.i], "to": order[p.j], "inliers": p.inliers,
                             **{k: v for k, v in c.items() if k in ("rotation_error_deg", "reason")}}
                            for p, c in zip(long, checks) if not c["accepted"]][:50],
                   rotation_error_deg_median=float(np.median(errors)) if errors else None)
    verified_db = Path(work_dir) / "verified.db"
    restrict_database(database, verified_db, [(p.image_id1, p.image_id2) for p in rejected])
    if len(rejected) == len(long):  # nothing long-range to close the walk with
        section.update(passes=1, result="short-range model (no long-range pair agreed with it)")
        return rec1, sizes1, section
    rec2 = close_loop(verified_db, rec1, image_dir, Path(work_dir) / "loop", options)
    step(n)  # the progress bar counted a second mapping pass here
    section["passes"] = 2
    section["loop_closure"] = {"rounds": LOOP_ROUNDS, "merge_px": LOOP_MERGE_PX, "angle_deg": LOOP_ANGLE_DEG,
                               "focal_px": [round(float(c.mean_focal_length()), 1) for c in rec2.cameras.values()],
                               "short_range_focal_px": [round(float(c.mean_focal_length()), 1)
                                                        for c in rec1.cameras.values()],
                               "reprojection_px": round(float(rec2.compute_mean_reprojection_error()), 3),
                               "points": int(rec2.num_points3D())}
    # keep the closed model unless it is less continuous or registers fewer frames than the short-range one
    short_registered = int(rec1.num_reg_images())
    c2w1, c2w2 = reconstruction_c2w(rec1), reconstruction_c2w(rec2)
    jumps = [len(check_continuity(order, c, "video")["jumps"]) for c in (c2w1, c2w2)]
    stalls = [count_stalls(order, c) for c in (c2w1, c2w2)]
    section.update(short_range_registered=short_registered, short_range_jumps=jumps[0], verified_jumps=jumps[1],
                   short_range_stalls=stalls[0], verified_stalls=stalls[1])
    if jumps[1] > jumps[0] or stalls[1] > stalls[0] or int(rec2.num_reg_images()) < short_registered:
        section["result"] = "short-range model (closing it with the verified long-range pairs made it worse)"
        return rec1, sizes1, section
    section["result"] = "short-range model closed with the verified long-range pairs"
    return rec2, [int(rec2.num_reg_images())] + list(sizes1[1:]), section


def close_loop(verified_db: Path, rec, image_dir: Path, work_dir: Path, options, rounds: int = LOOP_ROUNDS,
               merge_px: float = LOOP_MERGE_PX, angle_deg: float = LOOP_ANGLE_DEG):
    """The short-range model ``rec`` refined with every verified pair of ``verified_db`` (short-range ones and
    the long-range ones that agree with it): ``rounds`` times, re-triangulate all points from the database's
    matches with the poses kept (:func:`pycolmap.triangulate_points`; the first round with looser track
    thresholds, ``merge_px`` / ``angle_deg``, so that a feature seen at both ends of a drifted loop joins one
    track), then bundle-adjust poses, points and the camera together (robust loss: a wrong join costs little);
    last, re-triangulate once more with COLMAP's thresholds and the final poses (points filtered). Unlike a
    re-map from scratch (the former second pass, which jumped 8 times on a run of the walk-around), it starts
    from the continuous trajectory, so the symmetric matches it no longer has cannot fold it. Returns a new
    reconstruction; ``rec`` is left as it is."""
    import pycolmap

    from .sfm import MAPPING_THREADS

    level = pycolmap.logging.minloglevel
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    current = pycolmap.Reconstruction(rec)
    for r in range(rounds + 1):
        tri = pycolmap.IncrementalPipelineOptions()
        tri.num_threads = MAPPING_THREADS  # one thread, as the mappers (sfm.MAPPING_THREADS: repeatable)
        tri.random_seed = int(options.seed)
        if r == 0:
            tri.triangulation.merge_max_reproj_error = float(merge_px)
            tri.triangulation.complete_max_reproj_error = float(merge_px)
            tri.triangulation.create_max_angle_error = float(angle_deg)
            tri.triangulation.continue_max_angle_error = float(angle_deg)
        out = work_dir / f"round{r}"
        out.mkdir(exist_ok=True)
        current = pycolmap.triangulate_points(current, verified_db, image_dir, out, clear_points=True, options=tri)
        pycolmap.logging.minloglevel = level  # COLMAP's calls turn its log back on
        if r == rounds:
            break
        ba = pycolmap.BundleAdjustmentOptions()
        ba.print_summary = False
        ba.refine_focal_length = True
        ba.refine_extra_params = True
        ba.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
        ba.ceres.solver_options.num_threads = MAPPING_THREADS
        # the adjuster itself rather than pycolmap.bundle_adjustment, which turns COLMAP's log on (to stderr)
        config = pycolmap.BundleAdjustmentConfig()
        for image_id in current.reg_image_ids():
            config.add_image(image_id)
        config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
        pycolmap.create_default_bundle_adjuster(ba, config, current).solve()
    return current


def count_stalls(order: Sequence[str], c2w: Dict[str, np.ndarray], ratio: float = STALL_RATIO) -> int:
    """Steps between consecutive registered frames (in ``order``) shorter than ``ratio`` times the
    median step, both per frame index."""
    from .continuity import _LAST_NUMBER

    reg = [n for n in order if n in c2w]
    if len(reg) < 3:
        return 0
    number = [int(m.group(2)) if m else k for k, m in enumerate(_LAST_NUMBER.match(n) for n in reg)]
    centres = np.stack([np.asarray(c2w[n], float)[:3, 3] for n in reg])
    gaps = np.maximum(1, np.abs(np.diff(number)))
    rate = np.linalg.norm(np.diff(centres, axis=0), axis=1) / gaps
    return int((rate < ratio * np.median(rate)).sum())


def _jump_summary(rec, order: Sequence[str], cuts: List[dict]) -> dict:
    """The continuity check of a pycolmap model in video order, with each jump labelled fold or cut,
    and its stalls (:data:`STALL_RATIO`)."""
    from .continuity import check_continuity

    c2w = reconstruction_c2w(rec)
    cont = check_continuity(order, c2w, "video")
    label_cuts(cont, {"cuts": cuts}, [])
    folds = [j for j in cont["jumps"] if not j["cause"].startswith("cut")]
    return {"registered": int(rec.num_reg_images()), "jumps": len(cont["jumps"]), "fold_jumps": len(folds),
            "severe_fold_jumps": sum(is_severe(j) for j in folds),
            "stalls": count_stalls(order, c2w),
            "max_step_ratio": round(float(cont.get("max_step_ratio", float("nan"))), 3),
            "max_view_ratio": round(float(cont.get("max_view_ratio", float("nan"))), 3),
            "folds": [{"from": j["from"], "to": j["to"], "step_ratio": round(j["step_ratio"], 2),
                       "view_change_deg": round(j["view_change_deg"], 1)} for j in folds][:20]}


def is_severe(jump: dict) -> bool:
    """A jump of the continuity check large enough to be a fold worth re-mapping (:data:`SEVERE_VIEW_CHANGE_DEG`,
    :data:`SEVERE_STEP_RATIO`)."""
    return jump["view_change_deg"] >= SEVERE_VIEW_CHANGE_DEG or jump["step_ratio"] >= SEVERE_STEP_RATIO


def remap_is_better(first: dict, remap: dict, min_registered: int) -> bool:
    """Keep the re-mapped model (``--continuity auto``) when it registers enough frames and no fewer
    than the first (fox's photos as a video: the remap kept 37 of 67 frames with fewer jumps), stalls
    no more often than the first (a collapsed stretch has no jump but is wrong), and has fewer fold
    jumps than the first, or as few and a lower max step ratio."""
    if remap["registered"] < max(min_registered, first["registered"]) or remap["stalls"] > first["stalls"]:
        return False
    if remap["fold_jumps"] != first["fold_jumps"]:
        return remap["fold_jumps"] < first["fold_jumps"]
    return remap["max_step_ratio"] < first["max_step_ratio"]


def map_video_auto(database: Path, image_dir: Path, work_dir: Path, options, order: Sequence[str],
                   min_registered: int = 3, progress=None, on_remap=None):
    """``--continuity auto`` (the default for video): map all pairs at once, as ``--continuity off``
    does; check the trajectory's continuity in time order; only when it jumps where the video has no
    cut and severely (:func:`is_severe`: a fold), map again with the constraint (:func:`map_in_time_order`) and keep that model if it
    is better (:func:`remap_is_better`), else the first (whose warning then stays). ``on_remap``:
    called once before the re-mapping (the progress bar grows). Returns ``(reconstruction or None,
    model sizes, report section, constraint section or None)``."""
    import time

    from . import sfm

    n = len(order)
    t, c = time.perf_counter(), time.process_time()
    rec, sizes = sfm.map_images(database, image_dir, work_dir, options, n, progress=progress)
    section: dict = {"mode": "auto: one pass; re-mapped with the constraint only where it jumps severely without "
                             "a cut",
                     "first_pass_s": round(time.perf_counter() - t, 2),
                     "first_pass_cpu_s": round(time.process_time() - c, 2), "remapped": False, "kept": "first pass"}
    if rec is None:
        section["first_pass"] = None
        return rec, sizes, section, None
    pairs = read_pairs(database, order)
    section["cuts"] = _name_cuts(find_cuts(n, pairs), order, pairs)
    first = section["first_pass"] = _jump_summary(rec, order, section["cuts"])
    if first["fold_jumps"] == 0:
        section["not_remapped"] = "no jump without a cut"
        return rec, sizes, section, None
    if first["severe_fold_jumps"] == 0:  # uneven spacing (photos as a video), not a fold: warned, not re-mapped
        section["not_remapped"] = (f"jumps too mild to be a fold (view change < {SEVERE_VIEW_CHANGE_DEG:g} deg and "
                                   f"step < {SEVERE_STEP_RATIO:g}x the median)")
        return rec, sizes, section, None
    if on_remap:
        on_remap()
    t, c = time.perf_counter(), time.process_time()
    rec2, sizes2, constraint = map_in_time_order(database, image_dir, work_dir, options, order, progress=progress)
    section.update(remapped=True, remap_s=round(time.perf_counter() - t, 2),
                   remap_cpu_s=round(time.process_time() - c, 2))
    second = section["remap"] = None if rec2 is None else _jump_summary(rec2, order, section["cuts"])
    if second is not None and remap_is_better(first, second, min_registered):
        section["kept"] = "re-mapped with the constraint"
        return rec2, sizes2, section, constraint
    section["kept"] = "first pass (the re-mapped model was not better)"
    return rec, sizes, section, constraint


def label_cuts(continuity: dict, constraint: dict, model_sizes: Sequence[int]) -> None:
    """Mark the continuity check's jumps that span a cut of the video (``cause``: "cut in the
    video" or "fold"), and list the cuts' segments of the video (``constraint["video_segments"]``)."""
    from .continuity import _LAST_NUMBER

    def number(name):
        m = _LAST_NUMBER.match(name)
        return int(m.group(2)) if m else -1

    cuts = constraint.get("cuts", [])
    after = [c["after_frame"] for c in cuts]
    for jump in continuity.get("jumps", []):
        a, b = number(jump["from"]), number(jump["to"])
        jump["cause"] = "cut in the video" if any(a <= k < b for k in after) else "fold (no cut in the video there)"
    constraint["models"] = list(model_sizes)


def cut_lines(constraint: dict) -> List[str]:
    """One warning line per cut of the video (what ``process`` prints)."""
    lines = []
    for c in constraint.get("cuts", []):
        lines.append(f"warning: the video is cut between {c['from']} and {c['to']}: frames across it share at most "
                     f"{c['best_inliers']} matches (consecutive frames: median {c['median_inliers']}); its two "
                     "sides are separate clips" + ("" if len(constraint.get("models", [])) < 2 else
                                                   f" (structure from motion built {len(constraint['models'])} "
                                                   f"models of {', '.join(map(str, constraint['models']))} frames; "
                                                   "the capture holds the largest)"))
    return lines
