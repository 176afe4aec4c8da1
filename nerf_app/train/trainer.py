"""The generic training loop shared by every mode (see :class:`~nerf_app.train.task.Task`).

It owns: seeding, thread count, step and time budgets, the tqdm bar (loss and steps/s), the JSONL
log, periodic (``last.pt``) and final (``final.pt``) checkpoints, ``--resume`` and the NaN guard.

Determinism: the RNGs are seeded from ``config.seed`` before ``task.build()`` - on a fresh run *and*
on resume, so the model is built identically - and a resumed run then restores the checkpoint's
parameters, optimizer, step, task state and RNG states. Since the loop draws nothing else, a CPU
run killed after checkpoint k and resumed ends bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Type

import numpy as np
import torch

from ..errors import ConfigError, NerfAppError
from .config import BaseConfig, save_config, to_dict
from .run import RunDir, get_rng_state, set_rng_state
from .task import Task


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global RNG and python's ``random`` (the RNGs the checkpoint stores)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)


def _scalar(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().float().item() if v.numel() == 1 else None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v if isinstance(v, (int, float, str, bool)) else None


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    elapsed: float            # seconds spent in the training loop (summed over resumes)
    build_seconds: float      # data preparation + model construction in this process
    reason: str               # "max_steps" | "max_time"
    final_checkpoint: Optional[Path]
    last_loss: float


def _all_finite(tensors) -> bool:
    """True when no element of any tensor is NaN or infinite.

    Checked every step on every gradient (a hash table's is ~50 MB), so the common case must be cheap:
    a tensor's sum is finite whenever all its elements are (one read, no [N] bool temporary; ~10x
    faster than ``isfinite(t).all()`` on CPU). A non-finite sum is confirmed element-wise, because a
    sum of large finite values can overflow.
    """
    for t in tensors:
        if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            return False
    return True


class Trainer:
    """Runs a :class:`Task` into a :class:`RunDir`.

    ``Trainer(task_cls, config, run_dir).fit(resume=False)``. On ``resume=True`` the run folder must
    hold a checkpoint; training continues from its step with the (possibly extended) budgets of
    ``config``.
    """

    def __init__(self, task_cls: Type[Task], config: BaseConfig, run_dir, log=None):
        self.task_cls = task_cls
        self.config = config
        self.run = RunDir(run_dir)
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.task: Optional[Task] = None

    # ------------------------------------------------------------------------------------------

    def _params_finite(self) -> bool:
        return _all_finite(self.task.model.parameters())

    def _grads_finite(self) -> bool:
        return _all_finite(p.grad for p in self.task.model.parameters() if p.grad is not None)

    def _checkpoint(self, step: int, elapsed: float, name: str) -> Optional[Path]:
        # Never replace a good checkpoint by NaN weights: a diverged model is not worth keeping.
        if not self._params_finite():
            self.log(f"[train] step {step}: parameters are not finite; checkpoint {name}.pt NOT written "
                     f"(the previous one is kept)")
            return None
        state = {
            "model": self.task.model.state_dict(),
            "optimizer": self.task.optimizer.state_dict(),
            "step": int(step),
            "elapsed": float(elapsed),
            "rng": get_rng_state(),
            "config": to_dict(self.config),
            "task": self.task.extra_state(),
        }
        return self.run.save_checkpoint(state, name)

    # ------------------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> TrainResult:
        cfg = self.config
        tcfg = cfg.train
        if tcfg.max_steps <= 0 and tcfg.max_time <= 0:
            raise ConfigError("set a budget: train.max_steps > 0 or train.max_time > 0 (--max-steps/--max-time)")
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)

        if resume:
            self.run.require()
            checkpoint = self.run.load_checkpoint()
        else:
            self.run.create()
            checkpoint = None
        save_config(cfg, self.run.config_path)

        t_build = time.perf_counter()
        seed_everything(cfg.seed)
        self.task = task = self.task_cls(cfg)
        task.build()
        if task.model is None or task.optimizer is None:
            raise NerfAppError(f"{self.task_cls.__name__}.build() must set model and optimizer")
        build_seconds = time.perf_counter() - t_build

        step, elapsed = 0, 0.0
        if checkpoint is not None:
            step = int(checkpoint["step"])
        t_prepare = time.perf_counter()
        task.prepare(step)
        build_seconds += time.perf_counter() - t_prepare
        if checkpoint is not None:
            task.model.load_state_dict(checkpoint["model"])
            task.optimizer.load_state_dict(checkpoint["optimizer"])
            task.load_extra_state(checkpoint.get("task", {}))
            set_rng_state(checkpoint["rng"])
            step, elapsed = int(checkpoint["step"]), float(checkpoint.get("elapsed", 0.0))
            self.run.truncate_log(step)
            self.log(f"[train] resumed {self.run.path} at step {step} ({elapsed:.1f} s trained)")
        else:
            self.run.append_log({"step": 0, "time": 0.0, "wall": time.time(), "event": "start",
                                 "build_seconds": build_seconds})

        def budget_left(step, elapsed):
            if tcfg.max_steps > 0 and step >= tcfg.max_steps:
                return "max_steps"
            if tcfg.max_time > 0 and elapsed >= tcfg.max_time:
                return "max_time"
            return None

        bar = None
        if tcfg.progress:
            from tqdm import tqdm
            bar = tqdm(total=tcfg.max_steps if tcfg.max_steps > 0 else None, initial=step,
                       desc=f"train {cfg.mode}", unit="step", dynamic_ncols=True, file=sys.stderr)
        bad_in_a_row = 0
        last_loss = float("nan")
        last_ckpt_time = elapsed
        reason = budget_left(step, elapsed)
        try:
            while reason is None:
                t0 = time.perf_counter()
                # how far through the budget this step is (for schedules): the larger of the two fractions
                task.budget_fraction = max(step / tcfg.max_steps if tcfg.max_steps > 0 else 0.0,
                                           elapsed / tcfg.max_time if tcfg.max_time > 0 else 0.0)
                task.optimizer.zero_grad(set_to_none=True)
                out = task.train_step(step)
                loss = _scalar(out["loss"])
                ok = loss is not None and math.isfinite(loss) and self._grads_finite()
                if ok:
                    task.optimizer.step()
                    task.after_step(step, out)
                    bad_in_a_row = 0
                    last_loss = loss
                else:
                    task.optimizer.zero_grad(set_to_none=True)
                    bad_in_a_row += 1
                    msg = (f"[train] step {step + 1}: non-finite loss or gradient (loss={loss}); step skipped "
                           f"({bad_in_a_row}/{tcfg.nan_patience} in a row)")
                    (bar.write(msg, file=sys.stderr) if bar else self.log(msg))
                step += 1
                elapsed += time.perf_counter() - t0
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step == 1:
                        bar.set_postfix_str(f"loss={last_loss:.3e} t={elapsed:.0f}s")
                if bad_in_a_row >= max(1, tcfg.nan_patience):
                    last = self.run.latest_checkpoint()
                    raise NerfAppError(f"training stopped at step {step}: {bad_in_a_row} non-finite steps in a "
                                       f"row; last good checkpoint: {last if last else 'none'}")
                reason = budget_left(step, elapsed)
                if ok and (step % max(1, tcfg.log_every) == 0 or reason is not None):
                    record = {"step": step, "time": round(elapsed, 4), "wall": time.time(), "loss": loss}
                    for k, v in out.items():
                        if k != "loss":
                            s = _scalar(v)
                            if s is not None:
                                record[k] = s
                    self.run.append_log(record)
                if reason is None and ((tcfg.checkpoint_every > 0 and step % tcfg.checkpoint_every == 0) or
                                       (tcfg.checkpoint_every_s > 0 and
                                        elapsed - last_ckpt_time >= tcfg.checkpoint_every_s)):
                    self._checkpoint(step, elapsed, "last")
                    last_ckpt_time = elapsed
        finally:
            if bar is not None:
                bar.close()
        final = self._checkpoint(step, elapsed, "final")
        self.log(f"[train] {reason}: {step} steps in {elapsed:.1f} s (+{build_seconds:.1f} s setup), "
                 f"loss {last_loss:.4g} -> {final if final else 'no final checkpoint'}")
        return TrainResult(self.run.path, step, elapsed, build_seconds, reason, final, last_loss)
