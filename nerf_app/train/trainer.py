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
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import numpy as np
import torch

from ..errors import ConfigError, DatasetError, NerfAppError
from .config import BaseConfig, save_config, to_dict
from .run import RunDir, check_checkpoint_mode, get_rng_state, set_rng_state
from .task import Task


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global RNG and python's ``random`` (the RNGs the checkpoint stores)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)


def _scalar(v: Any) -> Any:
    """A log value as a plain number (None if it is not one). Tensors are read here, on logging steps only;
    a floating tensor keeps its precision (a float64 PSNR logs as the float it was before it stayed a tensor)."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return None
        v = v.detach()
        return v.item() if v.is_floating_point() else v.float().item()
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

    def __init__(self, task_cls: Type[Task], config: BaseConfig, run_dir, log=None, dist=None):
        self.task_cls = task_cls
        self.config = config
        self.run = RunDir(run_dir)
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        #: this process's place in a data-parallel run (:class:`~nerf_app.train.distributed.Distributed`), or
        #: None: one process, the path as it always was. Only rank 0 (``root``) writes the run folder, logs and
        #: shows progress; every rank trains.
        self.dist = dist
        self.root = dist is None or dist.is_root
        self.task: Optional[Task] = None
        #: callbacks ``fn(steps_done, metrics)`` run after every step (e.g. the live viewer); ``metrics`` holds
        #: ``loss`` (float), ``time`` (training seconds) and the task's other outputs, unconverted. Keep them O(1).
        self.on_step: List[Callable[[int, Dict[str, Any]], None]] = []

    # ------------------------------------------------------------------------------------------

    def _params_finite(self) -> bool:
        return _all_finite(self.task.model.parameters())

    def _grads_finite(self) -> bool:
        return _all_finite(p.grad for p in self.task.model.parameters() if p.grad is not None)

    def _loss_and_grads_finite(self, loss_value: Any):
        """The step's loss as a float, and whether it and every gradient are finite, for one host
        synchronisation on a GPU (the loss and each gradient's sum are stacked on the device and copied
        once; a per-tensor check costs one sync per parameter). A non-finite sum of finite values (an
        overflow) is confirmed element-wise, as :func:`_all_finite` does."""
        grads = [p.grad for p in self.task.model.parameters() if p.grad is not None]
        if not isinstance(loss_value, torch.Tensor) or loss_value.numel() != 1 or \
                any(g.device != loss_value.device for g in grads):
            loss = _scalar(loss_value)
            return loss, loss is not None and math.isfinite(loss) and self._grads_finite()
        values = torch.stack([loss_value.detach().float().reshape(())] +
                             [g.sum().float() for g in grads]).tolist()   # the one synchronisation
        loss = values[0]
        if not math.isfinite(loss):
            return loss, False
        return loss, all(math.isfinite(v) for v in values[1:]) or self._grads_finite()

    def step(self, step: int) -> Tuple[Dict[str, Any], Any, bool]:
        """One optimizer step of the built task -> ``(the task's outputs, the loss as a number, whether it
        was applied)``: gradients zeroed, the task's step, the finiteness check of the loss and every
        gradient, then the update and ``after_step``, or the gradients dropped when anything is not finite.
        :meth:`fit` runs it in its loop; the GPU tests time and count its host reads."""
        task = self.task
        task.optimizer.zero_grad(set_to_none=True)
        out = task.train_step(step)
        if self.dist is not None:  # the mean gradient and loss over the ranks (distributed.py)
            self.dist.step = step
            out["loss"] = self.dist.average_gradients(task.model.parameters(), out["loss"])
        loss, ok = self._loss_and_grads_finite(out["loss"])
        if ok:
            task.optimizer.step()
            task.after_step(step, out)
        else:
            task.optimizer.zero_grad(set_to_none=True)
        return out, loss, ok

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
        try:
            return self._fit(resume)
        except BaseException as exc:
            if self.dist is not None:
                from .distributed import RankLostError
                if not isinstance(exc, RankLostError):  # this rank is where it went wrong: tell the others
                    self.dist.report_failure(str(exc).strip().splitlines()[0][:400] if str(exc).strip()
                                             else type(exc).__name__)
            raise
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    _lock = None

    def _fit(self, resume: bool) -> TrainResult:
        # Nothing is written to the run folder until the model is built and the checkpoint loaded: a
        # command that fails on a bad --set, a foreign checkpoint or a broken input leaves the run as it was.
        cfg = self.config
        tcfg = cfg.train
        checkpoint = None
        if resume:
            self.run.require()
            if self.root:
                self._lock = self.run.lock(exclusive=True, command="train --resume")
            checkpoint = self.run.load_checkpoint(for_resume=True, log=self.log if self.root else None)
            check_checkpoint_mode(checkpoint, cfg.mode, self.run.checkpoint_dir)

        t_build = time.perf_counter()
        seed_everything(cfg.seed)
        self.task = task = self.task_cls(cfg)
        task.dist = self.dist
        try:
            task.build()
        except ValueError as exc:  # torch's own argument checks (e.g. a negative learning rate)
            raise ConfigError(f"cannot build the {cfg.mode} model from this config: {exc}") from None
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
            try:
                task.model.load_state_dict(checkpoint["model"])
                task.optimizer.load_state_dict(checkpoint["optimizer"])
                task.load_extra_state(checkpoint.get("task", {}))
                set_rng_state(checkpoint["rng"])
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
                raise DatasetError(self.run.checkpoint_dir, "the checkpoint does not fit this config (was a model "
                                   f"setting changed with --set?): {str(exc).strip().splitlines()[0][:300]}") from None
            step, elapsed = int(checkpoint["step"]), float(checkpoint.get("elapsed", 0.0))
        if checkpoint is not None and self.root:
            save_config(cfg, self.run.config_path)  # now known to be valid: the resumed budgets are kept
            self.run.remove_stale_temp_files()
            self.run.truncate_log(step)
            self.log(f"[train] resumed {self.run.path} at step {step} ({elapsed:.1f} s trained)")
        elif self.root:
            self.run.create()
            self._lock = self.run.lock(exclusive=True, command="train")
            if any(self.run.checkpoint_path(n).is_file() for n in ("last", "final")):
                raise ConfigError(f"run folder {self.run.path} already holds a trained run "
                                  f"(use --resume {self.run.path} to continue it)")
            self.run.remove_stale_temp_files()
            save_config(cfg, self.run.config_path)
            self.run.reset_log({"step": 0, "time": 0.0, "wall": time.time(), "event": "start",
                                "build_seconds": build_seconds})
        if self.dist is not None:
            self.dist.ready()                        # every rank built and loaded (or one rank's error line)
            self.dist.broadcast_module(task.model)   # identical from the start (they are: same seed, same file)
            if self.root:
                self.log(f"[train] {self.dist.world} ranks ({self.dist.backend}), {cfg.threads or torch.get_num_threads()} "
                         f"thread(s) each; rank 0 writes {self.run.path}")

        def budget_left(step, elapsed):
            if tcfg.max_steps > 0 and step >= tcfg.max_steps:
                return "max_steps"
            if tcfg.max_time > 0 and elapsed >= tcfg.max_time:
                return "max_time"
            return None

        bar = None
        if tcfg.progress and self.root:
            from tqdm import tqdm
            bar = tqdm(total=tcfg.max_steps if tcfg.max_steps > 0 else None, initial=step,
                       desc=f"train {cfg.mode}", unit="step", dynamic_ncols=True, file=sys.stderr)
        bad_in_a_row = 0
        last_loss = float("nan")
        # the first time-based checkpoint comes after half the interval, so that a crash within the first
        # minute of a run (say, at 55 s of a 60 s example) still keeps most of its work
        next_ckpt_time = elapsed + (0.5 * tcfg.checkpoint_every_s if step == 0 else tcfg.checkpoint_every_s)
        reason = budget_left(step, elapsed)
        try:
            while reason is None:
                t0 = time.perf_counter()
                # how far through the budget this step is (for schedules): the larger of the two fractions
                task.budget_fraction = max(step / tcfg.max_steps if tcfg.max_steps > 0 else 0.0,
                                           elapsed / tcfg.max_time if tcfg.max_time > 0 else 0.0)
                out, loss, ok = self.step(step)
                if ok:
                    bad_in_a_row = 0
                    last_loss = loss
                else:
                    bad_in_a_row += 1
                    msg = (f"[train] step {step + 1}: non-finite loss or gradient (loss={loss}); step skipped "
                           f"({bad_in_a_row}/{tcfg.nan_patience} in a row)")
                    (bar.write(msg, file=sys.stderr) if bar else self.log(msg))
                step += 1
                elapsed += time.perf_counter() - t0
                if self.dist is not None:
                    elapsed = self.dist.shared_elapsed(elapsed)  # rank 0's clock: every rank stops alike
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step == 1:
                        bar.set_postfix_str(f"loss={last_loss:.3e} t={elapsed:.0f}s")
                if bad_in_a_row >= max(1, tcfg.nan_patience):
                    found = self.run.checkpoints()
                    # checkpoints are never written with non-finite weights, so the newest one is usable
                    last = f"{found[0][1]} (step {found[0][0]})" if found else "none"
                    raise NerfAppError(f"training stopped at step {step}: {bad_in_a_row} non-finite steps in a "
                                       f"row; newest checkpoint (finite weights): {last}")
                reason = budget_left(step, elapsed)
                if self.on_step:  # optional step hooks (viewer); nothing runs when the list is empty
                    metrics = dict(out, loss=last_loss, time=elapsed)
                    for callback in self.on_step:
                        callback(step, metrics)
                if ok and self.root and (step % max(1, tcfg.log_every) == 0 or reason is not None):
                    record = {"step": step, "time": round(elapsed, 4), "wall": time.time(), "loss": loss}
                    for k, v in out.items():
                        if k != "loss":
                            s = _scalar(v)
                            if s is not None:
                                record[k] = s
                    self.run.append_log(record)
                if reason is None and self.root and ((tcfg.checkpoint_every > 0 and step % tcfg.checkpoint_every == 0) or
                                       (tcfg.checkpoint_every_s > 0 and elapsed >= next_ckpt_time)):
                    self._checkpoint(step, elapsed, "last")
                    next_ckpt_time = elapsed + tcfg.checkpoint_every_s
        finally:
            if bar is not None:
                bar.close()
        if not self.root:
            return TrainResult(self.run.path, step, elapsed, build_seconds, reason, None, last_loss)
        final = self._checkpoint(step, elapsed, "final")
        self.log(f"[train] {reason}: {step} steps in {elapsed:.1f} s (+{build_seconds:.1f} s setup), "
                 f"loss {last_loss:.4g} -> {final if final else 'no final checkpoint'}")
        return TrainResult(self.run.path, step, elapsed, build_seconds, reason, final, last_loss)
