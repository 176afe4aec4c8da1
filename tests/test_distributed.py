"""Data-parallel training (issue 29, nerf_app/train/distributed.py): 2 gloo ranks x B/2 rays equal 1 process x B
rays (parameters and loss curve, nerf and image modes, one thread each); a killed rank stops the other with one
line naming it, the run folder keeps its checkpoint and resumes on 1 rank; a rank that cannot join is an error,
not a hang; modes that cannot run distributed refuse with one line."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, requires_cpp

TINY_IMAGE = ["model.log2_hashmap_size=12", "model.n_levels=4", "optim.batch_size=510"]
# B = 510 rays would split evenly; the ray count below is dynamic (min 61), so odd global batches occur and the
# ranks' weighted halves are exercised
TINY_NERF = ["data.downscale=16", "model.log2_hashmap_size=12", "model.n_levels=4", "model.finest_resolution=128",
             "grid.resolution=32", "grid.warmup_steps=1", "grid.update_every=4", "rays.target_samples=3000",
             "rays.initial_rays=301", "rays.min_rays=61", "rays.steps_per_unit_diagonal=128", "optim.warmup_steps=5"]
COMMON = ["threads=1", "train.log_every=1", "train.progress=false", "train.max_time=0", "seed=5"]

WORKER = r"""
import json, sys, torch
from nerf_app.train.config import load_config
from nerf_app.train.distributed import Distributed, exit_rank
from nerf_app.train.modes import get_task_class
from nerf_app.train.trainer import Trainer
dist = Distributed.from_environment().join("cpu")
for mode, inp, out, overrides in json.loads(sys.argv[1]):
    cls = get_task_class(mode)
    cfg = load_config(cls.config_class, mode, None, overrides)
    cfg.input = inp
    trainer = Trainer(cls, cfg, out, dist=dist)
    trainer.fit()
    torch.save(trainer.task.model.state_dict(), out + f".rank{dist.rank}.pt")
    if dist.rank == 0:
        print("bytes_per_step", mode, dist.bytes_per_step, flush=True)
dist.close()
exit_rank(0)   # as python -m nerf_app ends a rank
"""


def _image(path: Path) -> Path:
    x = np.linspace(0, 1, 40)
    img = np.stack([np.sin(6 * x)[None, :] * np.cos(4 * x)[:, None], np.outer(x, x), np.cos(9 * x)[None, :] + 0 * x[:, None]], -1)
    import imageio.v3 as iio
    iio.imwrite(path, ((img * 0.5 + 0.5).clip(0, 1) * 255).astype(np.uint8))
    return path


def _spawn_ranks(world: int, args, env_extra=None):
    """``world`` local ranks of ``args`` (a command line after ``python``), the store hosted here as ``--nproc`` does."""
    from torch.distributed import TCPStore
    store = TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    procs = []
    for r in range(world):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(store.port), NERF_APP_LAUNCHER_STORE="1", OMP_NUM_THREADS="1", **(env_extra or {}))
        procs.append(subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return store, procs


def _fit_here(mode, inp, out, overrides):
    from nerf_app.train.config import load_config
    from nerf_app.train.modes import get_task_class
    from nerf_app.train.trainer import Trainer
    cls = get_task_class(mode)
    cfg = load_config(cls.config_class, mode, None, overrides)
    cfg.input = inp
    threads = torch.get_num_threads()
    try:
        return Trainer(cls, cfg, out).fit()
    finally:
        torch.set_num_threads(threads)


def _losses(run: Path):
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


def _model(path: Path):
    state = torch.load(path, weights_only=True)
    return state["model"] if "model" in state else state


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "nerf_app", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=timeout)


@requires_cpp
def test_two_ranks_equal_one_process(tmp_path, shared_data):
    """nerf (lego) and image: 2 gloo ranks x half the rays == 1 process x all of them, 12 steps, within float
    tolerance; both ranks end bit-equal to each other (one all-reduced gradient, one broadcast grid)."""
    image = str(_image(tmp_path / "img.png"))
    lego = str(shared_data / "lego")
    # optim.eps: Adam's default 1e-15 turns a rounding difference in a near-zero hash-table gradient into a
    # full-size step of either sign; 1e-8 keeps the update a smooth function of the gradient, so the tolerance
    # below measures the exchange and not Adam's sign flips
    jobs = [("image", image, str(tmp_path / "image_two"), TINY_IMAGE + COMMON + ["train.max_steps=12", "optim.eps=1e-8"]),
            ("nerf", lego, str(tmp_path / "nerf_two"), TINY_NERF + COMMON + ["train.max_steps=12", "optim.eps=1e-8"])]
    store, procs = _spawn_ranks(2, ["-c", WORKER, json.dumps(jobs)])
    for mode, inp, out, overrides in jobs:  # the one-process references, meanwhile
        _fit_here(mode, inp, out.replace("_two", "_one"), overrides)
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    print(outs[0][0])
    for mode, _, out, _ in jobs:
        one, two = Path(out.replace("_two", "_one")), Path(out)
        l1, l2 = _losses(one), _losses(two)
        assert len(l1) == len(l2) == 12
        np.testing.assert_allclose(l2, l1, rtol=2e-5, err_msg=f"{mode}: loss curves")
        a, b = _model(one / "checkpoints" / "final.pt"), _model(two / "checkpoints" / "final.pt")
        for key in a:
            if a[key].is_floating_point():
                scale = float(a[key].abs().max()) or 1.0
                diff = float((a[key].double() - b[key].double()).abs().max())
                assert diff <= 1e-4 * scale, f"{mode}: {key} differs by {diff:.3g} (scale {scale:.3g})"
            else:
                assert torch.equal(a[key], b[key]), f"{mode}: {key}"
        r0, r1 = _model(Path(out + ".rank0.pt")), _model(Path(out + ".rank1.pt"))
        for key in r0:
            assert torch.equal(r0[key], r1[key]), f"{mode}: ranks differ in {key}"
        if mode == "nerf":
            rays = [r["rays"] for r in map(json.loads, (one / "log.jsonl").read_text().splitlines()) if "rays" in r]
            assert any(n % 2 for n in rays) and len(set(rays)) > 1, rays  # odd and changing global batches ran


def _children(pid: int):
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(c) for c in (task / "children").read_text().split()]
    return kids


def test_killed_rank_stops_the_other_and_the_run_resumes_on_one(tmp_path):
    """SIGKILL rank 1 of a `--nproc 2` run: rank 0 stops within 60 s with one line naming rank 1 and the cause;
    the run keeps its checkpoint and `--resume` on one process continues it, deterministically."""
    image = str(_image(tmp_path / "img.png"))
    run = tmp_path / "run"
    sets = [a for s in TINY_IMAGE + ["train.checkpoint_every=20", "train.log_every=10"] for a in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "nerf_app", "train", image, "--out", str(run), "--nproc", "2",
                             "--max-steps", "1000000", "--threads", "1", "--no-progress", *sets], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    ckpt = run / "checkpoints" / "last.pt"
    while time.time() < deadline and proc.poll() is None and not ckpt.exists():
        time.sleep(0.05)
    time.sleep(0.3)
    ranks = _children(proc.pid)
    assert len(ranks) == 2 and proc.poll() is None, "the run ended before it could be killed"
    os.kill(ranks[1], signal.SIGKILL)
    t_kill = time.time()
    out, err = proc.communicate(timeout=120)
    assert time.time() - t_kill < 60
    assert proc.returncode == 2
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1, err
    assert "rank 0:" in errors[0] and "rank 1 failed: killed by SIGKILL" in errors[0], errors[0]
    assert "Traceback" not in err
    assert not (run / "checkpoints" / "final.pt").exists()
    step = torch.load(ckpt, weights_only=True)["step"]
    assert step > 0 and step % 20 == 0
    # resume on one process, twice from the same checkpoint: the same result, bit for bit
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    res = cli("train", "--resume", str(run), "--max-steps", str(step + 15), "--no-progress")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resumed {run} at step {step}" in res.stderr
    from nerf_app.train.modes import load_run_config
    from nerf_app.train.trainer import Trainer
    task_cls, cfg = load_run_config(copy, [f"train.max_steps={step + 15}", "train.max_time=0", "train.progress=false"])
    threads = torch.get_num_threads()
    try:
        Trainer(task_cls, cfg, copy).fit(resume=True)
    finally:
        torch.set_num_threads(threads)
    from nerf_app.train.run import RunLock
    RunLock.release_all()
    a, b = _model(run / "checkpoints" / "final.pt"), _model(copy / "checkpoints" / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rank_that_cannot_join_is_one_error_line(tmp_path):
    """Rank 0 of a world of 2 whose rank 1 never comes: one line after the (3 s) timeout, no run folder."""
    image = str(_image(tmp_path / "img.png"))
    from torch.distributed import TCPStore
    port = TCPStore("127.0.0.1", 0, 1, is_master=True, wait_for_workers=False).port  # a free port, then closed
    env = dict(os.environ, RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port + 0),
               NERF_APP_DIST_TIMEOUT="3", TORCH_CPP_LOG_LEVEL="ERROR")
    env.pop("NERF_APP_LAUNCHER_STORE", None)
    t0 = time.time()
    res = cli("train", image, "--out", str(tmp_path / "run"), "--max-steps", "5", "--no-progress",
              *[a for s in TINY_IMAGE for a in ("--set", s)], env=env, timeout=120)
    assert res.returncode == 2, res.stderr
    assert time.time() - t0 < 60
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "rank(s) 1 did not join within 3 s" in lines[0], res.stderr
    assert not (tmp_path / "run").exists()


def test_modes_that_cannot_run_distributed_refuse(tmp_path, shared_data):
    mesh = str(shared_data / "meshes" / "bunny.obj")
    res = cli("train", mesh, "--out", str(tmp_path / "run"), "--nproc", "2", "--max-steps", "5")
    assert res.returncode == 2
    assert res.stderr.strip() == ("nerf-app train: error: --nproc 2: the sdf mode cannot train on several processes "
                                  "(modes that can: nerf, image); train it in one process"), res.stderr
    assert not (tmp_path / "run").exists()


def test_ranks_started_with_different_world_sizes_say_so_in_one_line_each(tmp_path):
    """Rank 0 started with WORLD_SIZE=2, rank 1 with 3 (torchrun with another --nproc-per-node on one machine):
    each rank exits 2 within 60 s with one line naming both sizes, and no run folder (before: rank 1 said that
    rank 2 did not join, and rank 0 could wait for rank 1 until the setup timeout)."""
    image = str(_image(tmp_path / "img.png"))
    from torch.distributed import TCPStore
    store = TCPStore("127.0.0.1", 0, 3, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    sets = [a for s in TINY_IMAGE for a in ("--set", s)]
    procs = []
    try:
        for rank, world in ((0, 2), (1, 3)):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(store.port), NERF_APP_LAUNCHER_STORE="1",
                       NERF_APP_DIST_TIMEOUT="3", TORCH_CPP_LOG_LEVEL="ERROR", OMP_NUM_THREADS="1")
            procs.append(subprocess.Popen([sys.executable, "-m", "nerf_app", "train", image, "--out",
                                           str(tmp_path / "run"), "--max-steps", "5", "--threads", "1",
                                           "--no-progress", *sets], cwd=REPO_ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        t0 = time.time()
        errs = [p.communicate(timeout=120)[1] for p in procs]
        assert time.time() - t0 < 60
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [2, 2], errs
    lines = [e.strip().splitlines() for e in errs]
    assert all(len(x) == 1 for x in lines), errs
    said = "rank 1: started with world size 3 but rank 0 with 2"
    assert lines[1][0] == f"nerf-app train: error: {said}; start every rank with the same world size (torchrun: " \
                          "the same --nnodes and --nproc-per-node everywhere)", lines[1]
    assert "rank 0: stopped because rank 1 failed: " + said in lines[0][0], lines[0]
    assert not (tmp_path / "run").exists()


def test_resume_of_a_checkpoint_of_another_mode_on_two_ranks_is_one_line(tmp_path):
    """`train --resume RUN --nproc 2` where RUN's checkpoint is another mode's: exit 2, one line (rank 0's; rank 1
    finds the same and stays quiet), the run folder untouched."""
    image = str(_image(tmp_path / "img.png"))
    run = tmp_path / "run"
    _fit_here("image", image, run, TINY_IMAGE + COMMON + ["train.max_steps=3"])
    from nerf_app.train.run import RunLock
    RunLock.release_all()
    final = run / "checkpoints" / "final.pt"
    state = torch.load(final, weights_only=True)
    state["config"]["mode"] = "audio"
    torch.save(state, final)
    files = lambda: {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != ".lock"}  # the lock is taken
    before = files()
    res = cli("train", "--resume", str(run), "--nproc", "2", "--max-steps", "6", "--no-progress")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint is from a 'audio' run, this run is 'image'" in lines[0], res.stderr
    assert files() == before
