"""The NeRF training step on a GPU: at most two host synchronisations per step (the march's sample count,
and the trainer's one read of the loss and gradient finiteness), counted by CUDA itself with
``torch.cuda.set_sync_debug_mode("warn")`` over the real Trainer loop, on lego (the default synthetic
setting) and on the embedded demo capture (the default real-capture setting: appearance, distortion and
free-space losses, near planes). Steps that update the occupancy grid (step 0 here), the first steps
(lazy allocations) and the logging step are excluded. tests/test_sync_guard.py is the CPU twin.

Needs a GPU (cuda marker: skipped without one, failed under NERF_APP_REQUIRE_CUDA=1) and the prepared
lego data: ``bash scripts/gpu_check.sh --prepare`` writes it to .gpu_data/ (git-ignored; carry it to the
GPU machine), or set NERF_APP_DATA to a folder holding ``lego/``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, requires_cuda
from sync_budget import ALLOWED_SITES, DEMO, MAX_READS_PER_STEP, HostReadCounter, quiet_budget

STEPS = 8
MEASURED = range(3, STEPS - 1)   # after the grid update (0) and two warm-up steps; before the logging step


def gpu_data_dir() -> Path:
    """Where the GPU tests and scripts/gpu_check.sh find their data: $NERF_APP_DATA, else .gpu_data/."""
    return Path(os.environ.get("NERF_APP_DATA") or REPO_ROOT / ".gpu_data")


@pytest.fixture
def lego() -> Path:
    path = gpu_data_dir() / "lego"
    if not (path / "transforms_train.json").is_file():
        pytest.fail(f"GPU test data not found: {path}/transforms_train.json is missing (run `bash "
                    f"scripts/gpu_check.sh --prepare`, or set NERF_APP_DATA to a folder holding lego/)",
                    pytrace=False)
    return path


def cuda_syncs_per_step(config, run_dir, steps):
    """Train ``steps`` steps on CUDA with the real Trainer loop; per step, the synchronisations CUDA reports
    (sync debug mode "warn", switched on at the start of each step after a device synchronise) and the host
    reads the counter of tests/sync_budget.py attributes to lines of code."""
    from nerf_app.nerf.task import NerfTask
    from nerf_app.train.trainer import Trainer

    counter = HostReadCounter()
    marks = {}

    class CountedTask(NerfTask):
        def train_step(self, step):
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
            marks[step] = len(caught)
            counter.step, counter.counting = step, True
            torch.cuda.set_sync_debug_mode("warn")
            return super().train_step(step)

    quiet_budget(config, steps)
    with warnings.catch_warnings(record=True) as caught, counter:
        warnings.simplefilter("always")
        try:
            Trainer(CountedTask, config, run_dir, log=lambda msg: None).fit()
        finally:
            torch.cuda.set_sync_debug_mode("default")
            counter.counting = False
    ends = [marks[s] for s in range(1, steps)] + [len(caught)]
    syncs = {s: [str(w.message).splitlines()[0][:160] for w in caught[marks[s]:ends[s]]
                 if "synchroniz" in str(w.message)] for s in range(steps)}
    return syncs, {s: counter.events.get(s, []) for s in range(steps)}


def _config(input_path):
    from nerf_app.nerf.config import NerfConfig
    cfg = NerfConfig(input=str(input_path))
    cfg.device = "cuda"
    cfg.grid.update_every = 1000  # only step 0 updates the grid
    return cfg


@requires_cuda
@pytest.mark.parametrize("setting", ["lego", "capture"])
def test_training_step_host_syncs(setting, request, tmp_path):
    path = request.getfixturevalue("lego") if setting == "lego" else DEMO
    cfg = _config(path)
    syncs, reads = cuda_syncs_per_step(cfg, tmp_path / "run", STEPS)
    report = "\n".join(f"step {s}: {len(syncs[s])} syncs {syncs[s]}; reads {reads[s]}" for s in MEASURED)
    print(report)
    assert max(len(syncs[s]) for s in MEASURED) <= MAX_READS_PER_STEP, report
    for s in MEASURED:  # and each at one of the two places a step may read the host
        assert all(site.startswith(tuple(ALLOWED_SITES)) for _, site in reads[s]), report


@requires_cuda
def test_adam_is_fused_on_cuda():
    from nerf_app.nerf.task import NerfTask
    task = NerfTask(_config(DEMO))
    task.build()
    assert all(g.get("fused") for g in task.optimizer.param_groups), "Adam must be fused on CUDA"
