"""Pairs that match by symmetry or repetition, found by loops of rotations (issue 24, part 3: photo sets).

A photo set has no time order to say which pairs may match, so a pair of photos from opposite sides of a
near-symmetric object (or of a repetitive floor) can pass geometric verification with a relative pose that
is wrong by the symmetry (a half turn about the object's axis: ~180 degrees). Such a pair contradicts the
images around it: for three images a, b, c whose pairs are all verified, the relative rotations must close,
``R_ca R_bc R_ab = I``, up to a few degrees of estimation error. A pair matched by the same surface closes
most of its triangles; a pair matched by symmetry breaks every triangle whose other two pairs are right.

:func:`inconsistent_pairs` drops, one at a time, the pair whose triangles break most often (more than
:data:`BREAK_FRACTION` of at least :data:`MIN_TRIANGLES` triangles that close within
:data:`MAX_CYCLE_DEG` otherwise fail), recounting after each drop, so that a good pair that shared its
triangles with a bad one is cleared once the bad one is gone. Each pair's rotation comes from its own inlier
matches (:func:`relative_rotations`: 5-point RANSAC, seeded; no mapping). That needs focal lengths, and a
camera without a prior one has COLMAP's guess of 1.2 x its longer side, 0.6-1.7x off on cup, fox, king_statue
and the walk-around scene, where even right matches then give rotations that do not close; so the focal
length is the one at which the most triangles of a sample of pairs close (:func:`choose_focal_scale`: cup
570 px against the given model's 529-632, king_statue 1996 against ~2020, fox 1556 against 1375, the
walk-around 402 against 399). A few seconds for a hundred photos (fox, 67: 10 s).

What it cannot see: a set of pairs that is wrong by the same half turn on *both* sides of every triangle
(two images near each other that both match the far side by symmetry close their triangle, since the two
half turns cancel). It finds the false pairs only where a third image truly overlaps both sides (the floor
or walls seen from in between). The report says how many pairs were checked, in how many triangles, and
which were dropped.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: a triangle of pairs closes when the rotation around it is within this many degrees of the identity
MAX_CYCLE_DEG = 30.0
#: a pair is dropped when more than this fraction of its triangles break ...
BREAK_FRACTION = 0.5
#: ... out of at least this many triangles (fewer: not enough evidence either way)
MIN_TRIANGLES = 3

Pair = Tuple[int, int]


def rotation_angles_deg(R: np.ndarray) -> np.ndarray:
    """Angles (degrees) of a stack of rotation matrices (..., 3, 3)."""
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def triangles(pairs: Sequence[Pair]) -> np.ndarray:
    """Every triangle (a < b < c) whose three pairs are all in ``pairs`` (image ids, any order within
    a pair), as an (T, 3) int array."""
    neighbours: Dict[int, set] = {}
    for a, b in pairs:
        if a == b:
            continue
        neighbours.setdefault(int(a), set()).add(int(b))
        neighbours.setdefault(int(b), set()).add(int(a))
    out = []
    for a in sorted(neighbours):
        for b in sorted(n for n in neighbours[a] if n > a):
            for c in sorted(n for n in neighbours[a] & neighbours[b] if n > b):
                out.append((a, b, c))
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def cycle_errors_deg(rotations: Dict[Pair, np.ndarray], tris: np.ndarray) -> np.ndarray:
    """For each triangle (a, b, c): the angle of ``R_ac^T R_bc R_ab``, where ``R_xy`` is the rotation
    of camera y relative to camera x (``cam_y_from_cam_x``; a pair stored as (y, x) is transposed)."""
    def rot(x, y):
        if (x, y) in rotations:
            return rotations[(x, y)]
        return rotations[(y, x)].T

    if len(tris) == 0:
        return np.zeros(0)
    R_ab = np.stack([rot(a, b) for a, b, _ in tris])
    R_bc = np.stack([rot(b, c) for _, b, c in tris])
    R_ac = np.stack([rot(a, c) for a, _, c in tris])
    loop = np.einsum("nji,njk,nkl->nil", R_ac, R_bc, R_ab)
    return rotation_angles_deg(loop)


def inconsistent_pairs(rotations: Dict[Pair, np.ndarray], max_cycle_deg: float = MAX_CYCLE_DEG,
                       break_fraction: float = BREAK_FRACTION, min_triangles: int = MIN_TRIANGLES):
    """The pairs to drop (module docstring). ``rotations``: ``{(a, b): cam_b_from_cam_a rotation}``.
    Returns ``(dropped, stats)``: ``dropped`` lists ``{"pair": (a, b), "triangles": n, "broken": k}``
    in the order they were dropped; ``stats`` holds the counts before any drop."""
    keys = [tuple(int(v) for v in k) for k in rotations]
    index = {}
    for e, (a, b) in enumerate(keys):
        index[(a, b)] = index[(b, a)] = e
    tris = triangles(keys)
    errors = cycle_errors_deg(rotations, tris)
    broken = errors > max_cycle_deg
    n_edges = len(keys)
    if len(tris):
        edges = np.stack([[index[(a, b)] for a, b, _ in tris], [index[(b, c)] for _, b, c in tris],
                          [index[(a, c)] for a, _, c in tris]], axis=1)  # (T, 3) pair indices
    else:
        edges = np.zeros((0, 3), np.int64)
    total = np.bincount(edges.ravel(), minlength=n_edges).astype(np.int64)
    bad = np.bincount(edges[broken].ravel(), minlength=n_edges).astype(np.int64)
    stats = {"pairs": n_edges, "triangles": int(len(tris)), "broken_triangles": int(broken.sum()),
             "pairs_in_a_triangle": int((total > 0).sum()),
             "cycle_error_deg_median": round(float(np.median(errors)), 3) if len(errors) else None}
    # triangles of each pair, to retire them when one of their pairs is dropped
    members: List[List[int]] = [[] for _ in range(n_edges)]
    for t, row in enumerate(edges):
        for e in row:
            members[e].append(t)
    alive = np.ones(len(tris), bool)
    dropped = []
    while True:
        enough = total >= max(1, min_triangles)
        frac = np.where(enough, bad / np.maximum(total, 1), 0.0)
        worst = int(np.argmax(frac - 1e-9 * np.arange(n_edges))) if n_edges else -1  # ties: the first pair
        if worst < 0 or frac[worst] <= break_fraction:
            break
        dropped.append({"pair": keys[worst], "triangles": int(total[worst]), "broken": int(bad[worst])})
        gone = [t for t in members[worst] if alive[t]]
        alive[gone] = False
        for t in gone:
            for e in edges[t]:
                total[e] -= 1
                if broken[t]:
                    bad[e] -= 1
    return dropped, stats


#: candidate focal lengths for cameras without a prior one, as multiples of the image's longer side (fields of
#: view from 90 to 23 degrees; phones are ~0.7-0.85, king_statue's camera 2.0). Smaller ones are refused: there
#: every rotation shrinks and triangles close for the wrong reason (measured on the walk-around scene).
FOCAL_SCALES = tuple(float(v) for v in np.exp(np.linspace(np.log(0.5), np.log(2.5), 11)))
#: pairs sampled to choose the focal length
FOCAL_SAMPLE_PAIRS = 300
#: a triangle "closes" for the focal-length choice when its loop is within this many degrees
FOCAL_CLOSE_DEG = 5.0


def relative_pose_ransac():
    """RANSAC settings for a pair's relative pose from its already verified inliers: COLMAP's verification
    error (4 px), few trials (the inliers are already inliers), seeded. Shared with sequence.pair_rotation."""
    import pycolmap

    ransac = pycolmap.RANSACOptions()
    ransac.max_error = 4.0  # pixels, as COLMAP's two-view verification
    ransac.min_num_trials, ransac.max_num_trials, ransac.confidence = 20, 500, 0.999
    ransac.random_seed = 0
    return ransac


class _Pairs:
    """The verified pairs of a database with their inlier keypoints, and its cameras."""

    def __init__(self, database, min_inliers: int):
        import pycolmap

        db = pycolmap.Database.open(database)
        try:
            self.cameras = {int(c.camera_id): c for c in db.read_all_cameras()}
            self.camera_of = {int(im.image_id): int(im.camera_id) for im in db.read_all_images()}
            self.name_of = {int(im.image_id): im.name for im in db.read_all_images()}
            keypoints = {}
            self.points: Dict[Pair, Tuple[np.ndarray, np.ndarray]] = {}
            pair_ids, geometries = db.read_two_view_geometries()
            for pid, geom in zip(pair_ids, geometries):
                a, b = (int(v) for v in pycolmap.pair_id_to_image_pair(int(pid)))
                m = np.asarray(geom.inlier_matches)
                if len(m) < min_inliers or a not in self.camera_of or b not in self.camera_of:
                    continue
                for i in (a, b):
                    if i not in keypoints:
                        keypoints[i] = np.asarray(db.read_keypoints(i))[:, :2].astype(np.float64)
                self.points[(a, b)] = (keypoints[a][m[:, 0]], keypoints[b][m[:, 1]])
        finally:
            db.close()

    def cameras_at(self, scale: Optional[float]):
        """The cameras, those without a prior focal length given ``scale`` x their longer side."""
        import pycolmap

        if scale is None:
            return self.cameras
        out = {}
        for cid, cam in self.cameras.items():
            if cam.has_prior_focal_length:
                out[cid] = cam
                continue
            params = np.array(cam.params, dtype=np.float64)
            for k in cam.focal_length_idxs():
                params[k] = scale * max(cam.width, cam.height)
            out[cid] = pycolmap.Camera(model=cam.model, width=cam.width, height=cam.height, params=params)
        return out

    def rotations(self, keys, cameras) -> Dict[Pair, np.ndarray]:
        """cam2_from_cam1 of each pair from its own inliers (5-point RANSAC with ``cameras``; seeded)."""
        import pycolmap

        ransac = relative_pose_ransac()
        out = {}
        for a, b in keys:
            p1, p2 = self.points[(a, b)]
            result = pycolmap.estimate_relative_pose(cameras[self.camera_of[a]], p1, cameras[self.camera_of[b]], p2,
                                                     ransac)
            if result is not None:
                out[(a, b)] = np.asarray(result["cam2_from_cam1"].rotation.matrix(), dtype=np.float64)
        return out


def choose_focal_scale(pairs: "_Pairs", scales: Sequence[float] = FOCAL_SCALES,
                       sample: int = FOCAL_SAMPLE_PAIRS, close_deg: float = FOCAL_CLOSE_DEG):
    """For cameras without a prior focal length (COLMAP guesses 1.2 x the longer side, which is 0.6-1.7x off
    on cup, fox, king_statue and the walk-around, and then rotations from the pairs do not close their loops
    even where the matches are right): the focal length, as a multiple of the longer side, at which the most
    triangles of a sample of pairs close within ``close_deg``. Returns ``(scale or None, fraction closed)``;
    None when every camera has a prior or the sample has too few triangles (the database's cameras are used)."""
    if all(c.has_prior_focal_length for c in pairs.cameras.values()):
        return None, None
    keys = sorted(pairs.points)
    rng = np.random.default_rng(0)
    if len(keys) > sample:
        keys = [keys[i] for i in sorted(rng.choice(len(keys), sample, replace=False))]
    tris = triangles(keys)
    if len(tris) < 10:
        return None, None
    def closed_fraction(scale):
        rot = pairs.rotations(keys, pairs.cameras_at(scale))
        usable = np.array([t for t in tris if all(((x, y) in rot or (y, x) in rot)
                                                  for x, y in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))])
        return float(np.mean(cycle_errors_deg(rot, usable.reshape(-1, 3)) < close_deg)) if len(usable) else 0.0

    coarse = [closed_fraction(v) for v in scales]
    k = int(np.argmax(coarse))
    best = (float(scales[k]), coarse[k])
    lo, hi = scales[max(0, k - 1)], scales[min(len(scales) - 1, k + 1)]
    for scale in np.exp(np.linspace(np.log(lo), np.log(hi), 6)[1:-1]):  # between the neighbours of the best
        if not np.isclose(scale, best[0]):
            closed = closed_fraction(float(scale))
            if closed > best[1]:
                best = (float(scale), closed)
    return best


def relative_rotations(database, min_inliers: int = 15, focal: str = "auto"):
    """``({(image_id1, image_id2): cam2_from_cam1 rotation}, {pair: inliers}, info)`` for every verified pair
    of a COLMAP database (path) with at least ``min_inliers`` inliers: each rotation estimated from the pair's
    own inlier matches (5-point RANSAC, seeded), with the cameras' prior focal lengths or, where there is
    none and ``focal == "auto"``, the one of :func:`choose_focal_scale` (``"database"``: the database's guess).
    ``info`` says which focal length was used."""
    pairs = _Pairs(database, min_inliers)
    scale, closed = choose_focal_scale(pairs) if focal == "auto" else (None, None)
    cameras = pairs.cameras_at(scale)
    rotations = pairs.rotations(sorted(pairs.points), cameras)
    inliers = {k: int(len(pairs.points[k][0])) for k in rotations}
    info = {"focal_px": sorted({round(float(cameras[c].mean_focal_length()), 1) for c in cameras})[:10],
            "focal": "prior" if scale is None and focal == "auto" and pairs.cameras and
                     all(c.has_prior_focal_length for c in pairs.cameras.values()) else
                     (f"{scale:.3g} x the longer side (the most triangles of {FOCAL_SAMPLE_PAIRS} sampled pairs "
                      f"closed: {closed:.0%})" if scale is not None else "the database's"),
            "name_of": pairs.name_of}
    return rotations, inliers, info


def drop_inconsistent_pairs(database, max_cycle_deg: float = MAX_CYCLE_DEG, break_fraction: float = BREAK_FRACTION,
                            min_triangles: int = MIN_TRIANGLES, limit: int = 50) -> dict:
    """Find the pairs of :func:`inconsistent_pairs` among the verified pairs of ``database`` (a path) and
    delete their verified geometries there (the mappers then ignore their matches). Returns the report
    section: the counts, and the dropped pairs by image name (at most ``limit`` listed)."""
    import pycolmap

    rotations, inliers, info = relative_rotations(database)
    name_of = info.pop("name_of")
    dropped, stats = inconsistent_pairs(rotations, max_cycle_deg, break_fraction, min_triangles)
    db = pycolmap.Database.open(database)
    try:
        for d in dropped:
            db.delete_two_view_geometry(*d["pair"])
    finally:
        db.close()
    return {"rule": f"a verified pair is dropped when more than {break_fraction:g} of its (>= {min_triangles}) "
                    f"triangles of verified pairs do not close within {max_cycle_deg:g} degrees of rotation",
            **stats, **info, "pairs_with_a_pose": len(rotations), "dropped_count": len(dropped),
            "dropped": [{"pair": list(d["pair"]), "from": name_of.get(d["pair"][0]), "to": name_of.get(d["pair"][1]),
                         "inliers": inliers.get(d["pair"]), "triangles": d["triangles"], "broken": d["broken"]}
                        for d in dropped[:limit]]}


def summary_line(section: dict, shown: int = 8) -> str:
    """What ``process`` prints about the check (one line)."""
    n, total = section["dropped_count"], section["pairs_with_a_pose"]
    head = (f"pair check: dropped {n} of {total} verified pairs whose rotation contradicts most of the "
            f"{section['triangles']} triangles of pairs (matched by symmetry or repetition, not the same surface)")
    if not n:
        return (f"pair check: all {total} verified pairs agree with their triangles ({section['triangles']}); "
                "none dropped")
    names = ", ".join(f"{d['from']}-{d['to']}" for d in section["dropped"][:shown])
    return f"{head}: {names}" + (f" and {n - shown} more (process_report.json: pair_check)" if n > shown else "")
