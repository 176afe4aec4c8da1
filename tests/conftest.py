"""Shared test fixtures: where the real data lives, and which backends can run here.

CUDA tests carry the ``cuda`` marker (``requires_cuda``). Without a GPU or without the extension's CUDA
kernels they skip, unless ``NERF_APP_REQUIRE_CUDA=1`` is set (as scripts/gpu_check.sh does): then they
fail, so a GPU run cannot pass without executing a single kernel.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nerf_app import backend

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real scenes live beside the repository (../shared/data), in CI as on developer machines.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

HAS_CPP = backend.has_cpp()
HAS_CUDA = torch.cuda.is_available() and backend.has_cuda_kernels()
REQUIRE_CUDA = os.environ.get("NERF_APP_REQUIRE_CUDA", "0").strip().lower() in ("1", "true", "yes", "on")

requires_cpp = pytest.mark.skipif(not HAS_CPP, reason=f"C++ extension not built: {backend.extension_error()}")
requires_cuda = pytest.mark.cuda


def _why_no_cuda():
    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to torch {torch.__version__} (torch.version.cuda={torch.version.cuda})"
    if not backend.has_cpp():
        return f"C++ extension not built: {backend.extension_error()}"
    return "the extension was built without CUDA kernels"


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU and the extension's CUDA kernels "
                                       "(skips without them; fails instead under NERF_APP_REQUIRE_CUDA=1)")


# Skips: the only acceptable reasons to skip here are missing hardware: a GPU, or a CPU feature the machine lacks
# (AVX-512, AVX-512 BF16, AMX: CI machines differ; a skip of that kind says "this CPU has no ..."). Under CI
# (CI=true, as .ci/run runs) any other skip fails the run, listed by name, so a missing dependency, data set or
# browser cannot pass silently as "skipped"; elsewhere such skips are listed as a warning at the end.
GPU_SKIP_MARK = "needs a CUDA GPU"
CPU_SKIP_MARK = "this CPU has no "
_skips = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skips.append((report.nodeid, str(reason)))


def _enforce_skips() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_sessionfinish(session, exitstatus):
    other = [(node, why) for node, why in _skips if GPU_SKIP_MARK not in why
             and not why.removeprefix("Skipped: ").startswith(CPU_SKIP_MARK)]
    if not other:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter else print
    verdict = "FAILS the run (CI)" if _enforce_skips() else "would fail CI"
    say(f"{len(other)} skip(s) for a reason other than missing hardware (a GPU, a CPU feature) - {verdict}:")
    for node, why in other:
        say(f"  {node}: {why}")
    if _enforce_skips() and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") is not None and not HAS_CUDA:
        if REQUIRE_CUDA:
            pytest.fail(f"NERF_APP_REQUIRE_CUDA=1 but {_why_no_cuda()}", pytrace=False)
        pytest.skip(f"needs a CUDA GPU and the extension's CUDA kernels: {_why_no_cuda()}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA


# -- a tiny trained NeRF run (the viewer's tests) ------------------------------------------------------

DEMO = REPO_ROOT / "data" / "demo"
TINY_NERF = ["data.downscale=2", "model.log2_hashmap_size=14", "model.n_levels=8", "model.finest_resolution=256",
             "grid.resolution=32", "grid.warmup_steps=1", "rays.target_samples=8192", "rays.initial_rays=512",
             "rays.steps_per_unit_diagonal=256", "optim.warmup_steps=5", "train.progress=false", "threads=2"]


@pytest.fixture(scope="session")
def nerf_run(tmp_path_factory):
    """A tiny NeRF run of the embedded demo scene, trained through the Trainer with a step hook: ``(run folder,
    [(step, loss, has psnr, time)])``. Session-wide (test_viewer, test_viewer_splats): tests read it, never
    write into it (copy it first)."""
    from nerf_app.train.config import load_config
    from nerf_app.train.modes import get_task_class
    from nerf_app.train.trainer import Trainer
    task_cls = get_task_class("nerf")
    cfg = load_config(task_cls.config_class, "nerf", None, TINY_NERF + ["train.max_steps=12", "train.max_time=0"])
    cfg.input = str(DEMO)
    run = tmp_path_factory.mktemp("viewer") / "nerf"
    trainer = Trainer(task_cls, cfg, run)
    seen = []
    trainer.on_step.append(lambda step, metrics: seen.append((step, metrics["loss"], "psnr" in metrics,
                                                              metrics["time"])))
    trainer.fit()
    return run, seen


def synthetic_sfm_database(tmp_path, frames=8):
    """A pycolmap synthetic scene (one camera, ``frames`` images, 150 points) written to
    ``tmp_path/database.db`` with its matches and verified pairs -> ``(database path, true reconstruction)``."""
    import pycolmap

    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs, options.num_cameras_per_rig, options.num_frames_per_rig = 1, 1, frames
    options.num_points3D = 150
    path = tmp_path / "database.db"
    db = pycolmap.Database.open(path)
    try:
        rec = pycolmap.synthesize_dataset(options, db)
    finally:
        db.close()
    return path, rec
