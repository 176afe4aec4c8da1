"""Pairs matched by symmetry, found by loops of rotations (issue 24, part 3), and the global mapper (part 2's
side-by-side comparison): synthetic rotations and pycolmap's synthetic databases, a second or two in all.

- A consistent set of pair rotations (a few degrees of noise) drops nothing; the same set with one pair
  turned half a turn about the vertical axis (what a symmetric object's far side does) drops exactly that
  pair, also where each camera only sees its neighbours (a walk) and the bad pair is a long one.
- Through a database: each verified pair's rotation is decomposed from its own geometry; a pair whose
  stored pose is turned half a turn is deleted from the database and named in the report line.
- ``--mapper global`` maps a synthetic database and finds the true cameras; bad option values are
  ``ConfigError`` (one line on the command line).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from nerf_app.errors import ConfigError  # noqa: E402
from nerf_app.process import ProcessOptions, process  # noqa: E402
from nerf_app.process.pair_cycles import (drop_inconsistent_pairs, inconsistent_pairs, relative_rotations,  # noqa: E402
                                          rotation_angles_deg, summary_line, triangles)

from conftest import synthetic_sfm_database as _synthetic  # noqa: E402


def _rot(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = math.radians(degrees)
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def _walk(n, rng):
    """World-to-camera rotations of ``n`` cameras on a circle around the vertical (z) axis, looking in."""
    out = []
    for k in range(n):
        yaw = 360.0 * k / n + rng.normal(0, 3)
        # columns: the camera's x (right), y (down), z (forward, towards the axis) in the world
        c2w = _rot([0, 0, 1], yaw) @ np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)
        out.append((c2w @ _rot(rng.normal(size=3), rng.normal(0, 2))).T)
    return out


def _pairs(world_to_cam, pairs, rng, noise_deg=2.0):
    """{(a, b): cam_b_from_cam_a} for the given pairs, each with a few degrees of noise."""
    return {(a, b): _rot(rng.normal(size=3), abs(rng.normal(0, noise_deg))) @ world_to_cam[b] @ world_to_cam[a].T
            for a, b in pairs}


def _half_turn(rotations, world_to_cam, a, b):
    """Pair (a, b) matched by a half-turn symmetry about the world's vertical axis: camera b is placed as if
    it stood on the other side of the object."""
    rotations[(a, b)] = world_to_cam[b] @ _rot([0, 0, 1], 180.0) @ world_to_cam[a].T


def test_consistent_rotations_drop_nothing():
    rng = np.random.default_rng(0)
    cams = _walk(12, rng)
    rotations = _pairs(cams, [(a, b) for a in range(12) for b in range(a + 1, 12)], rng)
    dropped, stats = inconsistent_pairs(rotations)
    assert dropped == []
    assert stats["triangles"] == 220 and stats["broken_triangles"] == 0


def test_a_pair_turned_half_way_about_the_vertical_is_dropped():
    rng = np.random.default_rng(1)
    cams = _walk(12, rng)
    rotations = _pairs(cams, [(a, b) for a in range(12) for b in range(a + 1, 12)], rng)
    _half_turn(rotations, cams, 2, 8)
    assert rotation_angles_deg(rotations[(2, 8)].T @ cams[8] @ cams[2].T) == pytest.approx(180.0, abs=1e-6)
    dropped, stats = inconsistent_pairs(rotations)
    assert [d["pair"] for d in dropped] == [(2, 8)]
    assert dropped[0]["triangles"] == 10 and dropped[0]["broken"] == 10  # every triangle through it breaks
    assert stats["broken_triangles"] == 10


def test_a_false_long_pair_in_a_walk_is_dropped_and_the_walk_kept():
    """Each camera paired with its next three (a video-like graph) plus a few long pairs; one long pair
    matched by symmetry. Its triangles go through true long pairs near it."""
    rng = np.random.default_rng(2)
    n = 24
    cams = _walk(n, rng)
    pairs = {(a, b) for a in range(n) for b in range(a + 1, min(n, a + 4))}
    pairs |= {(a, b) for a in range(0, 6) for b in range(12, 16)}  # long pairs between two stretches
    rotations = _pairs(cams, sorted(pairs), rng)
    _half_turn(rotations, cams, 3, 14)
    dropped, _ = inconsistent_pairs(rotations)
    assert [d["pair"] for d in dropped] == [(3, 14)]
    # the same graph without the false pair: nothing
    rotations = _pairs(cams, sorted(pairs), rng)
    assert inconsistent_pairs(rotations)[0] == []


def test_triangles_of_a_graph():
    assert triangles([(0, 1), (1, 2), (2, 0), (2, 3), (3, 1)]).tolist() == [[0, 1, 2], [1, 2, 3]]
    assert triangles([(0, 1), (1, 2)]).shape == (0, 3)


def _world_to_cam(rec, image_id):
    pose = rec.image(image_id).cam_from_world()
    return np.asarray(pose.rotation.matrix()), np.asarray(pose.translation)


def _match_by_symmetry(database, rec, a, b):
    """Replace pair (a, b)'s inlier matches by what a half-turn symmetric scene gives: image b's side of each
    match is the point turned 180 degrees about the scene's z axis (the synthetic points fill a cube centred
    on the origin, so the turned points look like the same cloud), appended to both images' keypoints."""
    X = np.array([p.xyz for p in rec.points3D.values()])
    turn = _rot([0, 0, 1], 180.0)
    camera = rec.cameras[rec.image(a).camera_id]
    Ra, ta = _world_to_cam(rec, a)
    Rb, tb = _world_to_cam(rec, b)
    in_a, in_b = X @ Ra.T + ta, (X @ turn.T) @ Rb.T + tb
    seen = (in_a[:, 2] > 0.1) & (in_b[:, 2] > 0.1)
    uv_a = camera.img_from_cam(in_a[seen], check_cheirality=False)
    uv_b = camera.img_from_cam(in_b[seen], check_cheirality=False)
    inside = np.all((uv_a > 0) & (uv_a < [camera.width, camera.height]) & (uv_b > 0) &
                    (uv_b < [camera.width, camera.height]), axis=1)
    uv_a, uv_b = uv_a[inside], uv_b[inside]
    db = pycolmap.Database.open(database)
    try:
        starts = []
        for image_id, uv in ((a, uv_a), (b, uv_b)):
            old = np.asarray(db.read_keypoints(image_id))
            extra = np.zeros((len(uv), old.shape[1]), np.float32)
            extra[:, :2] = uv
            if old.shape[1] == 6:
                extra[:, 2], extra[:, 5] = 1, 1  # the affine shape of a unit feature
            starts.append(len(old))
            db.update_keypoints(image_id, np.concatenate([old, extra]))
        geom = db.read_two_view_geometry(a, b)
        geom.inlier_matches = np.stack([starts[0] + np.arange(len(uv_a)), starts[1] + np.arange(len(uv_a))],
                                       axis=1).astype(np.uint32)
        db.update_two_view_geometry(a, b, geom)
    finally:
        db.close()
    return len(uv_a), Rb @ turn @ Ra.T


def test_database_pair_matched_by_symmetry_is_dropped_and_named(tmp_path):
    database, rec = _synthetic(tmp_path)
    clean = tmp_path / "clean.db"
    clean.write_bytes(database.read_bytes())
    rotations, inliers, info = relative_rotations(clean)
    assert len(rotations) == 28 and min(inliers.values()) > 50
    assert "longer side" in info["focal"] and abs(info["focal_px"][0] / 1280.0 - 1) < 0.1  # the true focal length
    for (a, b), R in rotations.items():  # from each pair's own inliers: the true rotations
        true = _world_to_cam(rec, b)[0] @ _world_to_cam(rec, a)[0].T
        assert rotation_angles_deg(R.T @ true) < 2.0
    section = drop_inconsistent_pairs(clean)
    assert section["dropped_count"] == 0 and section["triangles"] == 56
    assert "none dropped" in summary_line(section)

    a, b = sorted(rotations)[5]
    n, symmetric = _match_by_symmetry(database, rec, a, b)
    assert n > 30
    rotations, _, _ = relative_rotations(database)
    assert rotation_angles_deg(rotations[(a, b)].T @ symmetric) < 2.0  # the pair now says "half a turn"
    section = drop_inconsistent_pairs(database)
    assert section["dropped_count"] == 1 and section["dropped"][0]["pair"] == [a, b]
    names = (rec.image(a).name, rec.image(b).name)
    assert (section["dropped"][0]["from"], section["dropped"][0]["to"]) == names
    assert f"{names[0]}-{names[1]}" in summary_line(section)
    db = pycolmap.Database.open(database)
    try:
        assert not db.exists_two_view_geometry(a, b) and db.exists_two_view_geometry(*sorted(rotations)[0])
    finally:
        db.close()


def test_global_mapper_finds_the_synthetic_cameras(tmp_path):
    from nerf_app.process.report import compare_centres
    from nerf_app.process.sequence import reconstruction_c2w
    from nerf_app.process.sfm import SfmOptions, map_images

    database, truth = _synthetic(tmp_path, frames=10)
    (tmp_path / "images").mkdir()
    rec, sizes = map_images(database, tmp_path / "images", tmp_path / "work",
                            SfmOptions(threads=1, mapper="global"), 10)
    assert sizes == [10]
    found = {n: m[:3, 3] for n, m in reconstruction_c2w(rec).items()}
    given = {n: m[:3, 3] for n, m in reconstruction_c2w(truth).items()}
    assert compare_centres(found, given)["rms_percent_of_spread"] < 1.0


@pytest.mark.parametrize("field, value, flag", [("mapper", "glomap", "--mapper"),
                                               ("pair_check", "yes", "--pair-check")])
def test_bad_mapper_or_pair_check_is_a_config_error(tmp_path, field, value, flag):
    with pytest.raises(ConfigError, match=flag):
        process(tmp_path / "photos", tmp_path / "out", ProcessOptions(progress=False, **{field: value}))
    assert not (tmp_path / "out").exists()


CUP = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cup"


@pytest.mark.skipif(not (CUP / "images").is_dir(), reason="shared cup capture not found")
def test_matching_is_repeatable(tmp_path):
    """The geometric verification's RANSAC is seeded (it was seeded from the clock: another run, other inliers)."""
    import shutil

    from nerf_app.process.sfm import SfmOptions, extract, make_pairs, match

    names = [f"{i}.jpg" for i in range(3, 11)]
    (tmp_path / "images").mkdir()
    for n in names:
        shutil.copyfile(CUP / "images" / n, tmp_path / "images" / n)
    options = SfmOptions(max_size=400, max_features=1024, threads=2)
    extract(tmp_path / "features.db", tmp_path / "images", [names], options)
    inliers = []
    for run in range(2):
        database = tmp_path / f"run{run}.db"
        shutil.copyfile(tmp_path / "features.db", database)
        match(database, make_pairs(names, "exhaustive"), tmp_path, options)
        db = pycolmap.Database.open(database)
        try:
            ids, geometries = db.read_two_view_geometries()
            inliers.append({int(i): np.asarray(g.inlier_matches).tolist() for i, g in zip(ids, geometries)})
        finally:
            db.close()
    assert len(inliers[0]) >= 20 and inliers[0] == inliers[1]


@pytest.mark.skipif(not (CUP / "images").is_dir(), reason="shared cup capture not found")
def test_extraction_numbers_images_in_name_order(tmp_path):
    """Image ids follow the names (group by group), whatever order the extractor's threads finish in (the mappers
    order their work by id)."""
    import shutil

    from nerf_app.process.sfm import SfmOptions, extract

    names = [f"{i}.jpg" for i in range(3, 15)]
    (tmp_path / "images").mkdir()
    for n in names:
        shutil.copyfile(CUP / "images" / n, tmp_path / "images" / n)
    extract(tmp_path / "features.db", tmp_path / "images", [names[:6], names[6:]],
            SfmOptions(max_size=200, max_features=256, threads=2))
    db = pycolmap.Database.open(tmp_path / "features.db")
    try:
        images = sorted(db.read_all_images(), key=lambda im: im.image_id)
        assert [im.name for im in images] == sorted(names[:6]) + sorted(names[6:])  # COLMAP sorts one call's names
        assert len({im.camera_id for im in images}) == 2  # one camera per group, as before
        assert all(db.num_keypoints_for_image(im.image_id) > 20 for im in images)
    finally:
        db.close()
