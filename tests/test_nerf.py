"""NeRF mode end to end on the real lego scene (tiny budgets), kill-and-resume, occupancy grid."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from nerf_app.nerf.occupancy import OccupancyGrid
from nerf_app.train.run import load_checkpoint

from conftest import REPO_ROOT, requires_cpp

# Small enough for CI: lego at 1/8 resolution (50x50), a small hash table and grid.
TINY = ["--set", "data.downscale=8", "--set", "model.log2_hashmap_size=14", "--set", "model.n_levels=8",
        "--set", "model.finest_resolution=256", "--set", "grid.resolution=32", "--set", "grid.warmup_steps=1",
        "--set", "rays.target_samples=8192", "--set", "rays.initial_rays=512", "--set", "rays.steps_per_unit_diagonal=256",
        "--set", "optim.warmup_steps=5", "--no-progress"]


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "nerf_app.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, **kw)


@pytest.fixture(scope="module")
def lego(shared_data):
    return str(shared_data / "lego")


def mean_colour_psnr(scene_path, indices, downscale=8):
    """PSNR of the best constant image (each view's own mean colour, over white) on those views."""
    from nerf_app.data import load_scene
    scene = load_scene(scene_path, downscale=downscale)
    mse = []
    for i in indices:
        rgb = scene.images.rgb(int(i), "white")
        mse.append(float(((rgb - rgb.reshape(-1, 3).mean(0)) ** 2).mean()))
    return float(np.mean([-10.0 * np.log10(m) for m in mse]))


@requires_cpp
def test_train_and_eval_end_to_end(lego, tmp_path):
    run = tmp_path / "run"
    out = cli("train", lego, "--out", str(run), "--max-steps", "60", "--set", "train.log_every=10", *TINY)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run / "checkpoints" / "final.pt").is_file() and (run / "config.yaml").is_file()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    psnrs = [r["psnr"] for r in log if "psnr" in r]
    # it learns: training-batch PSNR (one random batch per log line, so noisy) from ~14.5 dB at step 0 to
    # 16.2-16.6 at steps 50-60 in the runs seen; the last two lines' mean must gain 1 dB (a single last line
    # against +2 dB failed once in a fresh clone, 16.21 vs 14.54: two-thread runs are not bit-reproducible
    # between processes, docs/run-folder.md). The held-out PSNR below is the real quality bar.
    assert len(psnrs) >= 3 and np.mean(psnrs[-2:]) > psnrs[0] + 1.0, psnrs
    out = cli("eval", str(run), "--limit", "3")
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("psnr", "ssim", "n_images", "seconds_per_image"):
        assert key in metrics
    # measured: 14.5 dB for these 3 views after 60 steps (2026-11-29); the best constant image (each view's
    # own mean colour over white) scores ~10.7 dB, so the model must beat it clearly, not just exist
    assert metrics["n_images"] == 3 and 0.0 < metrics["ssim"] <= 1.0
    baseline = mean_colour_psnr(lego, [r["index"] for r in metrics["per_image"]])
    assert metrics["psnr"] > 13.5 and metrics["psnr"] > baseline + 2.5, (metrics["psnr"], baseline)
    assert (run / "contact_sheet_test.png").is_file() and (run / "training_curve.png").is_file()
    # orbit video: every frame decodes, with the requested count and size
    out = cli("render", str(run), "--path", "orbit", "--frames", "5", "--resolution", "34")
    assert out.returncode == 0, out.stderr[-2000:]
    import imageio.v2 as imageio
    for name in ("render_orbit.mp4", "render_orbit_depth.mp4"):
        frames = [f for f in imageio.get_reader(run / name)]
        assert len(frames) == 5 and frames[0].shape == (34, 34, 3), (name, len(frames), frames[0].shape)
    assert (run / "render_orbit_camera_path.json").is_file()
    cov = json.loads((run / "render_orbit_coverage.json").read_text())
    assert cov["frame_size"] == [34, 34] and cov["seconds"] > 0 and cov["n_frames"] == 5
    assert abs(cov["seconds_per_frame"] - cov["seconds"] / 5) < 1e-2
    # mesh in each format and a point cloud, all loadable, in the capture's coordinates (lego: ~[-1.3, 1.3])
    import trimesh
    for suffix in ("ply", "obj", "glb"):
        out = cli("export", str(run), "--mesh", str(run / f"mesh.{suffix}"), "--resolution", "48",
                  "--set", "model.log2_hashmap_size=14")
        assert out.returncode == 0, out.stderr[-2000:]
        mesh = trimesh.load(run / f"mesh.{suffix}", force="mesh")
        assert len(mesh.faces) > 0 and np.abs(mesh.vertices).max() < 3.0
    out = cli("export", str(run), "--points", str(run / "points.ply"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(trimesh.load(run / "points.ply").vertices) > 0
    # textured GLB, texture from the training photos and from the field alone: rendered at held-out views,
    # the photo-projected texture must score better (its colours are the photos', the field's are sampled on
    # a level set that sits in the haze in front of a 60-step NeRF's surface)
    scores = {}
    for bake in ("photos", "field"):
        glb = run / f"tex_{bake}.glb"
        out = cli("export", str(run), "--mesh", str(glb), "--texture", "--bake", bake, "--resolution", "64",
                  "--faces", "4000", "--texture-size", "256", "--threshold", "10")
        assert out.returncode == 0, out.stderr[-2000:]
        out = cli("eval", str(run), "--mesh", str(glb), "--limit", "3", "--out", str(run / f"mesh_{bake}.json"))
        assert out.returncode == 0, out.stderr[-2000:]
        scores[bake] = json.loads((run / f"mesh_{bake}.json").read_text())["psnr"]
    assert scores["photos"] > scores["field"] + 0.5, scores


def _params(run):
    state = load_checkpoint(run / "checkpoints" / "final.pt")
    return state["step"], state["model"]


@requires_cpp
def test_killed_and_resumed_run_is_bit_identical(lego, tmp_path):
    """SIGKILL a real training process after a checkpoint, resume it, and compare every parameter and
    buffer (hash table, MLPs, occupancy grid) with an uninterrupted run of the same budget."""
    # The default thread count (2 on the 2-core box): issue 31's two causes — gathers of repeated rows
    # adding their gradients in thread order, and MKL's first-call race (nerf_app/mkl_first_call.py) —
    # are fixed, and a resumed process makes its own first MKL call, so it would meet that race again.
    common = ["--max-steps", "30", "--set", "train.checkpoint_every=4", "--set", "train.log_every=1",
              *TINY]
    full = tmp_path / "full"
    assert cli("train", lego, "--out", str(full), *common).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nerf_app.cli", "train", lego, "--out", str(killed), *common],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600   # the log is polled, so this only bounds a loaded box (step 10: ~10 s quiet)
    log = killed / "log.jsonl"
    while time.time() < deadline and proc.poll() is None:
        steps = [json.loads(l).get("step", 0) for l in log.read_text().splitlines() if l.strip()] if log.exists() else []
        if steps and max(steps) >= 10:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "checkpoints" / "final.pt").exists()
    resumed = cli("train", "--resume", str(killed), *common)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed" in resumed.stderr
    step_a, a = _params(full)
    step_b, b = _params(killed)
    assert step_a == step_b == 30
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_occupancy_grid_update_and_visibility():
    grid = OccupancyGrid(n_cascades=2, resolution=16)
    # one camera at z = -2 looking at +z with a narrow field of view: sees only a cone of cells
    c2w = np.eye(4)[None].copy()
    c2w[0, :3, 3] = [0.5, 0.5, -2.0]
    grid.mark_visible(c2w, [(400.0, 400.0, 50.0, 50.0)], [(100, 100)], margin=0.0)
    assert 0 < grid.visible.float().mean() < 0.5
    sphere = lambda x: torch.where((x - 0.5).norm(dim=-1) < 0.25, 100.0, 0.0)
    grid.update(sphere, warmup=True, dt_min=0.01)
    occ = ((grid.bitfield[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1).reshape(2, -1).bool()
    assert not (occ & ~grid.visible).any()          # unseen cells never occupied
    R = grid.resolution
    idx = torch.arange(R ** 3)
    pts = grid.cell_points(0, idx, jitter=False)
    inside = (pts - 0.5).norm(dim=-1) < 0.2
    assert occ[0][inside & grid.visible[0]].all()  # visible cells well inside the sphere are occupied
    far = (pts - 0.5).norm(dim=-1) > 0.35
    assert not occ[0][far].any()
    assert not occ[1].any() or occ[1].float().mean() < 0.05
    # decay: without density the estimates fade and cells empty out
    for _ in range(100):
        grid.update(lambda x: torch.zeros(len(x)), warmup=False, dt_min=0.01)
    assert float(grid.density.max()) < 1.0


def test_occupancy_partial_update_draws_subset_fraction():
    # after warm-up an update evaluates fraction*R^3 uniform cells + as many occupied ones per cascade
    grid = OccupancyGrid(n_cascades=2, resolution=16)
    sphere = lambda x: torch.where((x - 0.5).norm(dim=-1) < 0.25, 100.0, 0.0)
    grid.update(sphere, warmup=True, dt_min=0.01)
    for fraction in (0.25, 1 / 16):
        seen = []
        grid.update(lambda x: seen.append(len(x)) or sphere(x), warmup=False, dt_min=0.01,
                    subset_fraction=fraction)
        n = int(16 ** 3 * fraction)
        # the sphere occupies cells of both cascades: uniform + occupied draws in each
        assert seen == [2 * n, 2 * n], (fraction, seen)


@requires_cpp
def test_diverging_run_stops_cleanly_and_keeps_last_good_checkpoint(lego, tmp_path):
    run = tmp_path / "run"
    assert cli("train", lego, "--out", str(run), "--max-steps", "4", *TINY).returncode == 0
    good = load_checkpoint(run / "checkpoints" / "final.pt")
    # an absurd learning rate makes the weights blow up: the steps must be skipped, then the run stopped
    out = cli("train", "--resume", str(run), "--max-steps", "40", "--set", "optim.lr=1e30",
              "--set", "train.checkpoint_every=1000")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "non-finite" in out.stderr and "newest checkpoint (finite weights)" in out.stderr
    assert "Traceback" not in out.stderr
    kept = load_checkpoint(run / "checkpoints" / "final.pt")
    assert not (run / "checkpoints" / "last.pt").exists()
    assert kept["step"] == good["step"] == 4
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])
    # and a nonsensical setting is refused up front, naming the key
    bad = cli("train", "--resume", str(run), "--max-steps", "8", "--set", "optim.lr=nan")
    assert bad.returncode == 2 and "optim.lr" in bad.stderr and "Traceback" not in bad.stderr


def test_render_near_distance_skips_what_lies_in_front_of_the_camera():
    # two opaque slabs along +z: red for z < 0.3, green for z > 0.7; a ray from z = 0.05 sees red,
    # and green once marching starts rays.near = 0.3 away (floaters in front of a camera are cut so)
    from nerf_app.nerf.renderer import MarchSettings, render_rays

    def field(x, d):
        z = x[:, 2]
        sigma = torch.where((z < 0.3) | (z > 0.7), 1e3, 0.0)
        rgb = torch.where((z < 0.3)[:, None], torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]))
        return sigma, rgb

    grid = OccupancyGrid(1, 16)                       # everything occupied before the first update
    o = torch.tensor([[0.5, 0.5, 0.05], [0.3, 0.6, 0.05]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    bg = torch.zeros(3)
    near0 = render_rays(field, grid, o, d, bg, MarchSettings(256, 0.0, 1024, 0.0), backend="torch")
    near3 = render_rays(field, grid, o, d, bg, MarchSettings(256, 0.0, 1024, 0.3), backend="torch")
    assert torch.allclose(near0.color, torch.tensor([[1.0, 0, 0]] * 2), atol=1e-3)
    assert torch.allclose(near3.color, torch.tensor([[0, 1.0, 0]] * 2), atol=1e-3)
    assert (near3.depth > 0.64).all() and (near0.depth < 0.3).all()


def test_bad_near_is_refused(lego, tmp_path):
    out = cli("train", lego, "--out", str(tmp_path / "run"), "--max-steps", "1", *TINY, "--set", "rays.near=-1")
    assert out.returncode == 2 and "rays.near" in out.stderr and "Traceback" not in out.stderr
