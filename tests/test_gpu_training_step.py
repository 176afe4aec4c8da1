"""The NeRF training step on a GPU: at most two host synchronisations per step (the march's sample
count, and the trainer's one read of the loss and gradient finiteness), counted with
torch.cuda.set_sync_debug_mode("warn"). Steps that update the occupancy grid are excluded (every
grid.update_every steps, by design). Needs a GPU (cuda marker) and the lego scene."""
from __future__ import annotations

import warnings

import torch

from conftest import requires_cuda

MAX_SYNCS_PER_STEP = 2


@requires_cuda
def test_training_step_host_syncs(shared_data):
    from nerf_app.nerf.config import NerfConfig
    from nerf_app.nerf.task import NerfTask
    from nerf_app.train.trainer import Trainer, seed_everything

    seed_everything(0)
    cfg = NerfConfig(input=str(shared_data / "lego"), backend="auto")
    cfg.device = "cuda"
    cfg.grid.update_every = 1000  # only step 0 updates the grid
    task = NerfTask(cfg)
    task.build()
    task.prepare(0)
    trainer = Trainer.__new__(Trainer)  # only its per-step check is used
    trainer.task = task
    assert any(g.get("fused") for g in task.optimizer.param_groups), "Adam must be fused on CUDA"

    def step(i):
        task.budget_fraction = 0.0
        task.optimizer.zero_grad(set_to_none=True)
        out = task.train_step(i)
        loss, ok = trainer._loss_and_grads_finite(out["loss"])
        if ok:
            task.optimizer.step()
            task.after_step(i, out)
        return loss

    for i in range(3):  # warm-up: grid update at step 0, lazy allocations, kernel caches
        step(i)
    per_step = []
    for i in range(3, 8):
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step(i)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        per_step.append([str(w.message)[:160] for w in caught if "synchroniz" in str(w.message)])
    assert max(len(s) for s in per_step) <= MAX_SYNCS_PER_STEP, per_step
