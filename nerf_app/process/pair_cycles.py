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
triangles with a bad one is cleared once the bad one is gone. Everything is numpy over the database's
two-view geometries (:func:`relative_rotations`: each pair's rotation decomposed from its stored E/F/H and
inliers; no RANSAC, no mapping), a fraction of a second to a few seconds for a hundred photos.

What it cannot see: a set of pairs that is wrong by the same half turn on *both* sides of every triangle
(two images near each other that both match the far side by symmetry close their triangle, since the two
half turns cancel). It finds the false pairs only where a third image truly overlaps both sides (the floor
or walls seen from in between). The report says how many pairs were checked, in how many triangles, and
which were dropped.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

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


def relative_rotations(database, min_inliers: int = 15) -> Tuple[Dict[Pair, np.ndarray], Dict[Pair, int]]:
    """``{(image_id1, image_id2): cam2_from_cam1 rotation}`` and the inlier counts of every verified pair
    of a COLMAP database (path), each rotation decomposed from the pair's stored geometry (E, F or H) and
    its inlier matches with the database's (prior) cameras, or taken from the database where a pose is
    stored. Pairs whose geometry gives no pose are left out."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        cameras = {int(c.camera_id): c for c in db.read_all_cameras()}
        camera_of = {int(im.image_id): int(im.camera_id) for im in db.read_all_images()}
        pair_ids, geometries = db.read_two_view_geometries()
        keypoints: Dict[int, np.ndarray] = {}

        def points(image_id):
            if image_id not in keypoints:
                keypoints[image_id] = np.asarray(db.read_keypoints(image_id))[:, :2].astype(np.float64)
            return keypoints[image_id]

        rotations, inliers = {}, {}
        for pid, geom in zip(pair_ids, geometries):
            a, b = (int(v) for v in pycolmap.pair_id_to_image_pair(int(pid)))
            m = np.asarray(geom.inlier_matches)
            if len(m) < min_inliers or a not in camera_of or b not in camera_of:
                continue
            pose = geom.cam2_from_cam1
            if pose is None or np.linalg.norm(np.asarray(pose.translation)) == 0:  # not stored: decompose E/F/H
                ok = pycolmap.estimate_two_view_geometry_pose(cameras[camera_of[a]], points(a)[m[:, 0]],
                                                              cameras[camera_of[b]], points(b)[m[:, 1]], geom)
                if not ok:
                    continue
                pose = geom.cam2_from_cam1
                if pose is None:
                    continue
            rotations[(a, b)] = np.asarray(pose.rotation.matrix(), dtype=np.float64)
            inliers[(a, b)] = int(len(m))
    finally:
        db.close()
    return rotations, inliers


def drop_inconsistent_pairs(database, max_cycle_deg: float = MAX_CYCLE_DEG, break_fraction: float = BREAK_FRACTION,
                            min_triangles: int = MIN_TRIANGLES, limit: int = 50) -> dict:
    """Find the pairs of :func:`inconsistent_pairs` among the verified pairs of ``database`` (a path) and
    delete their verified geometries there (the mappers then ignore their matches). Returns the report
    section: the counts, and the dropped pairs by image name (at most ``limit`` listed)."""
    import pycolmap

    rotations, inliers = relative_rotations(database)
    dropped, stats = inconsistent_pairs(rotations, max_cycle_deg, break_fraction, min_triangles)
    db = pycolmap.Database.open(database)
    try:
        name_of = {int(im.image_id): im.name for im in db.read_all_images()}
        for d in dropped:
            db.delete_two_view_geometry(*d["pair"])
    finally:
        db.close()
    return {"rule": f"a verified pair is dropped when more than {break_fraction:g} of its (>= {min_triangles}) "
                    f"triangles of verified pairs do not close within {max_cycle_deg:g} degrees of rotation",
            **stats, "pairs_with_a_pose": len(rotations), "dropped_count": len(dropped),
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
