"""End to end through the CLI: train a tiny SDF run, eval, export, render, resume; occupancy too."""
from __future__ import annotations

import json

import numpy as np
import trimesh

from nerf_app.cli import main
from nerf_app.train.run import load_checkpoint

SMALL = ["--set", "data.pool_size=40000", "--set", "data.refresh_size=8192", "--set", "model.log2_hashmap_size=14",
         "--set", "model.finest_resolution=128", "--set", "optim.batch_size=4096", "--set", "eval.resolution=64",
         "--set", "eval.n_points=5000", "--set", "eval.n_volume=20000", "--no-progress", "--threads", "2"]


def write_mesh(tmp_path):
    # a torus, offset and scaled so the unit-cube normalisation matters
    m = trimesh.creation.torus(major_radius=2.0, minor_radius=0.8, major_sections=48, minor_sections=24)
    m.apply_translation([10.0, -3.0, 5.0])
    path = tmp_path / "torus.obj"
    m.export(path)
    return path, m


def test_train_eval_export_render_sdf(tmp_path, capsys):
    mesh_path, gt = write_mesh(tmp_path)
    run = tmp_path / "run"
    # a step budget (CPU training is deterministic), not wall time, so the bounds below mean the same on any
    # machine: measured at 60 steps chamfer_l1 1.28e-3, IoU 0.973, normal consistency 0.942
    assert main(["train", str(mesh_path), "--max-steps", "60", "--out", str(run)] + SMALL) == 0
    state = load_checkpoint(run / "checkpoints" / "final.pt")
    assert state["config"]["mode"] == "sdf" and state["step"] > 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"chamfer_l1", "normal_consistency", "fscore", "iou", "train_seconds"} <= set(metrics)
    assert metrics["chamfer_l1"] < 2.5e-3 and metrics["iou"] > 0.95 and metrics["normal_consistency"] > 0.9
    assert main(["export", str(run), "--mesh", str(tmp_path / "out.obj"), "--resolution", "48"]) == 0
    out = trimesh.load(tmp_path / "out.obj", force="mesh")
    # in the input's original coordinates
    assert np.allclose(out.bounds, gt.bounds, atol=0.25)
    assert main(["render", str(run), "--frames", "2", "--resolution", "32"]) == 0
    video = run / "render_orbit_lambert.mp4"
    assert video.is_file() and video.stat().st_size > 0
    # resume with a bigger step budget continues from the final step
    steps = state["step"]
    assert main(["train", "--resume", str(run), "--max-steps", str(steps + 3), "--no-progress"]) == 0
    assert load_checkpoint(run / "checkpoints" / "final.pt")["step"] == steps + 3


def test_occupancy_mode_and_bad_input(tmp_path, capsys):
    mesh_path, _ = write_mesh(tmp_path)
    run = tmp_path / "occ"
    assert main(["train", str(mesh_path), "--mode", "occupancy", "--max-steps", "60", "--out", str(run)] + SMALL) == 0
    assert main(["eval", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # measured at 60 steps: chamfer_l1 1.40e-3, IoU 0.974, normal consistency 0.940
    assert metrics["mode"] == "occupancy"
    assert metrics["chamfer_l1"] < 2.5e-3 and metrics["iou"] > 0.95 and metrics["normal_consistency"] > 0.9
    assert main(["export", str(run), "--resolution", "32"]) == 0
    mesh = trimesh.load(run / "mesh.ply", force="mesh")
    assert len(mesh.faces) > 100 and mesh.is_watertight
    assert main(["train", str(tmp_path / "nope.obj"), "--max-steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "nope.obj" in capsys.readouterr().err
    assert main(["train", str(mesh_path), "--set", "optim.lr=fast", "--out", str(tmp_path / "y")]) == 2
    assert "optim.lr" in capsys.readouterr().err


def test_sdf_resume_is_bit_identical(tmp_path):
    """The sample pool is rebuilt from (seed, step) on resume: same data, same bits."""
    import torch

    from nerf_app.sdf.config import MeshFieldConfig
    from nerf_app.sdf.task import SDFTask
    from nerf_app.train.config import apply_overrides
    from nerf_app.train.trainer import Trainer

    mesh_path, _ = write_mesh(tmp_path)

    def cfg(steps):
        c = MeshFieldConfig(mode="sdf", input=str(mesh_path))
        apply_overrides(c, ["data.pool_size=8192", "data.refresh_size=2048", "data.refresh_every=3",
                            "model.log2_hashmap_size=12", "model.finest_resolution=64", "optim.batch_size=512",
                            "optim.lr_final=0.01", "train.progress=false", f"train.max_steps={steps}",
                            "train.max_time=0", "train.checkpoint_every=0", "threads=2"])
        return c

    a = Trainer(SDFTask, cfg(16), tmp_path / "a")
    a.fit()
    Trainer(SDFTask, cfg(7), tmp_path / "b").fit()   # "interrupted" after 7 steps (mid refresh cycle)
    b = Trainer(SDFTask, cfg(16), tmp_path / "b")
    b.fit(resume=True)
    for p, q in zip(a.task.model.parameters(), b.task.model.parameters()):
        assert torch.equal(p, q)
