"""The latent-conditioned SDF (`nerf-app train FOLDER --mode sdf`): one decoder, one code per shape.

One tiny run on a sphere and a box (trimesh primitives, placed and scaled differently so the per-shape
normalisation matters) is trained once through the CLI and shared by the tests below.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from nerf_app.cli import main
from nerf_app.train.run import load_checkpoint

# small grid (coarse levels only: smooth primitives, fast steps), small pools and eval
SMALL = ["--set", "data.pool_size=16384", "--set", "data.refresh_size=4096", "--set", "model.n_levels=8",
         "--set", "model.log2_hashmap_size=14", "--set", "model.finest_resolution=64", "--set", "optim.batch_size=4096",
         "--set", "eval.resolution=48", "--set", "eval.n_points=4000", "--set", "eval.n_volume=8000",
         "--set", "render.resolution=48", "--set", "latent.fit_pool=16384", "--set", "latent.fit_batch=4096",
         "--no-progress", "--threads", "2"]
EVAL = ["--set", "train.progress=false"]


def write_shapes(folder):
    folder.mkdir(parents=True, exist_ok=True)
    s = trimesh.creation.icosphere(subdivisions=3, radius=1.5)
    s.apply_translation([3.0, 1.0, -2.0])
    s.export(folder / "sphere.obj")
    b = trimesh.creation.box(extents=[2.0, 1.2, 0.8])
    b.apply_translation([-10.0, 4.0, 0.5])
    b.export(folder / "box.obj")
    return {"sphere": s, "box": b}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepsdf")
    gts = write_shapes(root / "shapes")
    run = root / "run"
    assert main(["train", str(root / "shapes"), "--mode", "sdf", "--max-steps", "120", "--out", str(run)] + SMALL) == 0
    return root, run, gts


def test_train_eval_per_shape(trained):
    root, run, gts = trained
    state = load_checkpoint(run / "checkpoints" / "final.pt")
    assert state["config"]["mode"] == "deepsdf" and state["step"] == 120
    assert state["task"]["names"] == ["box", "sphere"]
    codes = state["model"]["codes.weight"]
    assert codes.shape == (2, 32)
    # trained codes moved far from their N(0, 0.01^2) start and apart from each other
    assert float((codes[0] - codes[1]).norm()) > 0.1
    assert main(["eval", str(run)] + EVAL) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["per_shape"]) == {"box", "sphere"}
    for name, row in m["per_shape"].items():
        # measured 0.0013 (box) / 0.0007 (sphere) at 120 steps, eval resolution 48
        assert row["chamfer_l1"] < 0.006, (name, row)
        assert row["iou"] > 0.85, (name, row)
    assert m["mean"]["chamfer_l1"] == pytest.approx(np.mean([r["chamfer_l1"] for r in m["per_shape"].values()]))
    # meshes come back in each shape's own coordinates (specks dropped: a short run leaves a few)
    assert main(["export", str(run), "--min-component", "0.05"] + EVAL) == 0
    for name, gt in gts.items():
        out = trimesh.load(run / "meshes" / f"{name}.ply", force="mesh")
        assert np.allclose(out.bounds, gt.bounds, atol=0.05 * np.ptp(gt.bounds, axis=0).max())
    # the contact sheet: one tile per shape (2 columns x 48 px), the shape drawn in each
    import imageio.v2 as imageio
    sheet = imageio.imread(m["contact_sheet"])
    assert sheet.shape[:2] == (48, 96)
    for k in range(2):
        tile = sheet[:, 48 * k:48 * (k + 1)]
        assert (tile.min(-1) < 200).mean() > 0.1


def test_code_selects_the_shape(trained):
    """The sphere's code decodes a sphere, not the box: conditioning works (compare in the unit cube)."""
    from nerf_app.geometry.mesh import TriMesh
    from nerf_app.geometry.metrics import mesh_metrics
    from nerf_app.train.modes import open_run

    root, run, _ = trained
    task, _, _ = open_run(run, overrides=["train.progress=false"])
    out = {}
    for s in task.shapes:
        v, f = task.mesh_of_code(root / f"unit_{s.name}.ply", task.code(s.name), None, resolution=48)
        out[s.name] = TriMesh(v, f)
    box, sphere = (task.shapes[i].unit_mesh for i in (0, 1))
    right = mesh_metrics(out["sphere"], sphere, 4000, 4000)["chamfer_l1"]
    wrong = mesh_metrics(out["sphere"], box, 4000, 4000)["chamfer_l1"]
    assert wrong > 3 * right


def test_fit_latent_frozen_decoder(trained, tmp_path):
    """A new sphere elsewhere, at another scale, normalises to the trained one: its fitted code must
    reconstruct it, and the decoder must not change."""
    from nerf_app.train.modes import open_run

    root, run, _ = trained
    new = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    new.apply_translation([0.0, -7.0, 1.0])
    new.export(tmp_path / "ball.obj")
    task, run_dir, _ = open_run(run, overrides=["train.progress=false"])
    before = [p.detach().clone() for p in task.model.decoder_parameters()]
    codes_before = task.model.codes.weight.detach().clone()
    res = task.fit_latent(run_dir.path, tmp_path / "ball.obj", steps=60, out=tmp_path / "fit")
    for p, q in zip(before, task.model.decoder_parameters()):
        assert torch.equal(p, q)
    assert torch.equal(codes_before, task.model.codes.weight)
    assert all(p.requires_grad for p in task.model.decoder_parameters())
    assert res["nearest_training_shape"] == "sphere"
    assert res["chamfer_l1"] < 0.006, res   # measured 0.0010
    # the fit did the work: the starting code (mean of box and sphere) measured 0.035
    assert res["chamfer_l1"] < 0.3 * res["chamfer_l1_start_code"], res
    assert res["loss_last"] < res["loss_first"]
    report = json.loads((tmp_path / "fit" / "ball_fit.json").read_text())
    assert report["chamfer_l1"] == res["chamfer_l1"]
    # in the new mesh's coordinates
    out = trimesh.load(tmp_path / "fit" / "ball.ply", force="mesh")
    assert np.allclose(out.bounds, new.bounds, atol=0.06)
    # and through the CLI
    assert main(["fit-latent", str(run), str(tmp_path / "ball.obj"), "--steps", "5", "--out",
                 str(tmp_path / "cli")] + EVAL) == 0
    assert (tmp_path / "cli" / "ball.ply").is_file()


def test_interpolation_endpoints_and_validity(trained, tmp_path, capsys):
    root, run, _ = trained
    capsys.readouterr()
    assert main(["export", str(run), "--interpolate", "box", "sphere", "--steps", "3", "--resolution", "40",
                 "--mesh", str(tmp_path / "interp")] + EVAL) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["export", str(run), "--resolution", "40", "--mesh", str(tmp_path / "own")] + EVAL) == 0
    files = sorted((tmp_path / "interp").glob("*.ply"))
    assert [f.name for f in files] == ["box_sphere_00.ply", "box_sphere_01.ply", "box_sphere_02.ply"]
    assert [r["t"] for r in report["meshes"]] == [0.0, 0.5, 1.0] and report["all_valid"]
    for f, r in zip(files, report["meshes"]):
        m = trimesh.load(f, force="mesh", process=False)
        assert len(m.faces) > 100 and np.isfinite(m.vertices).all() and len(m.faces) == r["faces"]
        # closed: every edge has a second face (the midpoint may pinch at a few edges, so not is_watertight)
        _, counts = np.unique(np.sort(m.edges, axis=1), axis=0, return_counts=True)
        assert (counts >= 2).all()
    assert report["meshes"][0]["watertight"] and report["meshes"][-1]["watertight"]
    for end, name in ((files[0], "box"), (files[-1], "sphere")):
        a = trimesh.load(end, force="mesh", process=False)
        b = trimesh.load(tmp_path / "own" / f"{name}.ply", force="mesh", process=False)
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    # the midpoint is neither endpoint
    mid = trimesh.load(files[1], force="mesh", process=False)
    assert len(mid.vertices) != len(trimesh.load(files[0], force="mesh").vertices) or \
        not np.array_equal(mid.vertices, trimesh.load(files[0], force="mesh", process=False).vertices)


def test_resume_bit_identical(tmp_path):
    from nerf_app.sdf.deepsdf import DeepSDFTask
    from nerf_app.sdf.latent_config import DeepSDFConfig
    from nerf_app.train.config import apply_overrides
    from nerf_app.train.trainer import Trainer

    write_shapes(tmp_path / "shapes")

    def cfg(steps):
        c = DeepSDFConfig(mode="deepsdf", input=str(tmp_path / "shapes"))
        apply_overrides(c, ["data.pool_size=4096", "data.refresh_size=1024", "data.refresh_every=3",
                            "model.n_levels=4", "model.log2_hashmap_size=12", "model.finest_resolution=32",
                            "optim.batch_size=512", "optim.lr_final=0.01", "train.progress=false",
                            f"train.max_steps={steps}", "train.max_time=0", "train.checkpoint_every=0", "threads=2"])
        return c

    a = Trainer(DeepSDFTask, cfg(14), tmp_path / "a")
    a.fit()
    Trainer(DeepSDFTask, cfg(7), tmp_path / "b").fit()   # "interrupted" after 7 steps, mid refresh cycle
    b = Trainer(DeepSDFTask, cfg(14), tmp_path / "b")
    b.fit(resume=True)
    pa, pb = dict(a.task.model.named_parameters()), dict(b.task.model.named_parameters())
    assert set(pa) == set(pb) and "codes.weight" in pa
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def test_bad_inputs(trained, tmp_path, capsys):
    root, run, _ = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", str(empty), "--mode", "sdf", "--max-steps", "1", "--out", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "no mesh files" in err
    mixed = tmp_path / "mixed"
    write_shapes(mixed)
    (mixed / "notes.txt").write_text("hello")
    assert main(["train", str(mixed), "--mode", "sdf", "--max-steps", "1", "--out", str(tmp_path / "r2")]) == 2
    assert "notes.txt" in capsys.readouterr().err
    (mixed / "notes.txt").unlink()
    (mixed / "broken.obj").write_text("v 0 0 0\nthis is not a mesh\n")
    assert main(["train", str(mixed), "--mode", "sdf", "--max-steps", "1", "--out", str(tmp_path / "r3")]) == 2
    assert "broken.obj" in capsys.readouterr().err
    assert main(["export", str(run), "--interpolate", "box", "teapot"] + EVAL) == 2
    err = capsys.readouterr().err
    assert "teapot" in err and "--interpolate" in err and "box, sphere" in err
    assert main(["export", str(run), "--shape", "cone"] + EVAL) == 2
    assert "cone" in capsys.readouterr().err
    assert main(["fit-latent", str(run), str(tmp_path / "missing.obj")] + EVAL) == 2
    assert "missing.obj" in capsys.readouterr().err
