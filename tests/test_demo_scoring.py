"""nerf_app/demo/scoring.py: the one scorer of a mesh against the demo scene's true surface (used by
`demo`'s summary and by `eval --mesh` on a demo run)."""
from __future__ import annotations

import json

import numpy as np

from conftest import REPO_ROOT
from nerf_app.demo import ground_truth_mesh
from nerf_app.demo.scoring import is_demo_scene, score_mesh
from nerf_app.geometry.mesh import TriMesh


def test_the_demo_folder_is_recognised_and_other_folders_are_not(tmp_path):
    assert is_demo_scene(REPO_ROOT / "data" / "demo")
    assert not is_demo_scene(tmp_path)                                   # no scene.json
    (tmp_path / "scene.json").write_text(json.dumps({"generator": "someone else"}))
    assert not is_demo_scene(tmp_path)
    (tmp_path / "scene.json").write_text("{not json")
    assert not is_demo_scene(tmp_path)


def test_score_reads_the_cached_surface_and_ranks_a_shifted_mesh_worse(tmp_path):
    # a coarse true surface planted as the cache (the real one, 256^3, takes ~30 s to build)
    gt = ground_truth_mesh(48)
    cache = tmp_path / "ground_truth_mesh.ply"
    gt.export(cache, file_type="ply")
    same = score_mesh(TriMesh.from_trimesh(gt), cache=cache, n_points=5000, n_volume=2000)
    assert same["chamfer_l1"] < 1e-3 and same["fscore"] > 0.99 and same["normal_consistency"] > 0.99
    shifted = TriMesh(np.asarray(gt.vertices) + [0.05, 0.0, 0.0], np.asarray(gt.faces))
    worse = score_mesh(shifted, cache=cache, n_points=5000, n_volume=2000)
    assert worse["chamfer_l1"] > 10 * same["chamfer_l1"] and worse["fscore"] < same["fscore"]
