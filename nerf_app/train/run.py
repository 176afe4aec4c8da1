"""The run folder: resolved config, JSONL log, atomic checkpoints, metrics.

Layout::

    RUN/
      config.yaml          resolved config (mode, input, every section) - what `--resume`, eval,
                           render and export read back
      log.jsonl            one JSON object per logged step: {"step", "time" (s of training),
                           "wall" (unix time), "loss", ...task metrics}
      checkpoints/
        last.pt            newest periodic checkpoint (overwritten atomically)
        final.pt           written when training ends normally (budget reached)
      metrics.json         written by `nerf-app eval` (atomically)
      ...                  task outputs (renders, meshes, videos)

A checkpoint is one ``torch.save`` dict of tensors and plain Python values only (loadable with
``torch.load(weights_only=True)``): ``model``, ``optimizer``, ``step``, ``elapsed``, ``rng``
(torch / numpy / python states), ``config`` and ``task`` (the task's extra state).
Every file is written to a temporary name in the same folder and renamed over the target, so a
crash never leaves a truncated file behind (a temp file left by a kill is removed by the next
``train`` of that run).

Concurrency: ``RUN/.lock`` is an OS file lock (``flock``, released by the kernel when the process
dies, even on kill -9). ``train`` holds it exclusively; ``eval``/``render``/``export`` hold it shared,
so a second trainer, or a trainer and a reader, are refused with one clear line instead of
interleaving logs and overwriting each other's checkpoints. See docs/run-folder.md.
"""
from __future__ import annotations

import io
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import DatasetError, NerfAppError, reraise_if_bug
from ..results import atomic_write, raise_if_disk_full, write_bytes, write_json, write_text

CONFIG_NAME = "config.yaml"
LOG_NAME = "log.jsonl"
METRICS_NAME = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
LOCK_NAME = ".lock"
# keys every checkpoint has (what resume needs); eval/render/export need model/step/config only
CHECKPOINT_KEYS = ("model", "optimizer", "step", "elapsed", "rng", "config")


class RunBusyError(NerfAppError):
    """Another process holds the run folder's lock."""


class RunLock:
    """``flock`` on ``RUN/.lock``: exclusive for a trainer, shared for readers (eval/render/export).

    Locks held by this process are remembered per folder, so an in-process reader of a run that this
    process is training (the live viewer) does not lock itself out.
    """

    _held: Dict[str, "RunLock"] = {}

    def __init__(self, run_path, exclusive: bool, command: str = "nerf-app"):
        self.path = Path(run_path)
        self.exclusive = exclusive
        self.command = command
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl
        key = str(self.path.resolve())
        mine = RunLock._held.get(key)
        if mine is not None and (mine.exclusive or not self.exclusive):
            return self  # this process already holds a lock at least as strong
        lock_file = self.path / LOCK_NAME
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            try:
                holder = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            who = f" ({holder})" if holder else ""
            what = "train it" if self.exclusive else "read it"
            raise RunBusyError(f"run folder {self.path} is in use by another nerf-app process{who}; "
                               f"wait for it to finish before you {what} (the lock is released when it exits)") from None
        if self.exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {self.command}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self.fd = fd
        RunLock._held[key] = self
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl
        RunLock._held.pop(str(self.path.resolve()), None)
        if self.exclusive:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    @classmethod
    def release_all(cls) -> None:
        """Drop every lock this process holds (the CLI calls it when a command ends, so a library user
        running several commands in one process - tests, notebooks - is not locked out by an earlier one)."""
        for lock in list(cls._held.values()):
            lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# ----------------------------------------------------------------------------------------------
# RNG states as weights_only-safe values (tensors, ints, lists)


def get_rng_state() -> Dict[str, Any]:
    """torch (CPU, and CUDA when present), numpy legacy global and python ``random`` states."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------


class RunDir:
    """A run folder (see the module docstring for its layout)."""

    def __init__(self, path):
        self.path = Path(path)

    # paths
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.path / LOG_NAME

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def create(self) -> "RunDir":
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return self

    def require(self) -> "RunDir":
        """Check this is a run folder (for eval/render/export/resume)."""
        if not self.path.is_dir():
            raise NerfAppError(f"run folder not found: {self.path}")
        if not self.config_path.is_file():
            raise DatasetError(self.path, f"not a run folder (no {CONFIG_NAME})")
        return self

    # log
    def append_log(self, record: Dict[str, Any]) -> None:
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise_if_disk_full(exc, self.log_path)
            raise

    def reset_log(self, record: Dict[str, Any]) -> None:
        """Start the log afresh with one record (a fresh run replacing an unfinished one)."""
        write_text(self.log_path, json.dumps(record) + "\n")

    def remove_stale_temp_files(self) -> List[Path]:
        """Temp files of writes a killed process never finished (only call while holding the exclusive
        lock: then no other process can be writing them)."""
        stale = [p for folder in (self.path, self.checkpoint_dir) if folder.is_dir()
                 for p in folder.iterdir() if p.is_file() and p.name.startswith(".") and ".tmp" in p.name]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def lock(self, exclusive: bool, command: str = "nerf-app") -> RunLock:
        return RunLock(self.path, exclusive, command).acquire()

    def is_unfinished(self) -> bool:
        """A run folder that never reached its first checkpoint (a failed or killed start)."""
        return self.config_path.is_file() and not any(self.checkpoint_path(n).is_file() for n in ("last", "final"))

    def read_log(self):
        if not self.log_path.is_file():
            return []
        out = []
        with open(self.log_path, "r", encoding="utf-8") as f:
            for i, line in enumerate(f):
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    # a killed run can leave a half-written last line; everything before it is good
                    break
        return out

    def truncate_log(self, max_step: int) -> None:
        """Drop log lines after ``max_step`` (a resumed run re-logs the steps it redoes)."""
        records = [r for r in self.read_log() if r.get("step", 0) <= max_step]
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r) + "\n")
        atomic_write(self.log_path, write)

    # checkpoints
    def checkpoint_path(self, name: str = "last") -> Path:
        return self.checkpoint_dir / f"{name}.pt"

    def save_checkpoint(self, state: Dict[str, Any], name: str = "last") -> Path:
        path = self.checkpoint_path(name)
        # serialised in memory first: torch reports a failed file write (a full disk, a file-size limit) as a
        # RuntimeError; a plain write of the bytes fails with an OSError, which atomic_write turns into one
        # line naming the output flag, the previous checkpoint kept
        buf = io.BytesIO()
        torch.save(state, buf)
        write_bytes(path, buf.getbuffer())
        return path

    def checkpoints(self, log=None) -> List[Tuple[int, Path]]:
        """``(step, path)`` of the loadable checkpoints, newest (highest stored step) first; ``final``
        before ``last`` at the same step. Unreadable ones are skipped, saying so through ``log``."""
        found = []
        for rank, name in enumerate(("final", "last")):
            p = self.checkpoint_path(name)
            if not p.is_file():
                continue
            try:
                step = checkpoint_step(p)
            except DatasetError as exc:
                if log:
                    log(f"[run] skipping unreadable checkpoint: {exc}")
                continue
            found.append((step, -rank, p))
        found.sort(reverse=True)
        return [(s, p) for s, _, p in found]

    def latest_checkpoint(self, log=None) -> Optional[Path]:
        """The checkpoint with the highest stored step (not the newest file time: a resumed run's
        ``last.pt`` can be newer on disk and older in steps than ``final.pt``)."""
        found = self.checkpoints(log)
        return found[0][1] if found else None

    def load_checkpoint(self, path=None, map_location="cpu", for_resume: bool = False, log=None) -> Dict[str, Any]:
        """The given checkpoint, or the newest good one: a corrupt newest falls back to the next, saying so."""
        if path:
            return load_checkpoint(path, map_location, for_resume)
        candidates = self.checkpoints(log)
        if not candidates:
            raise DatasetError(self.checkpoint_dir, "no checkpoint in this run (it stopped before its first "
                               "checkpoint: train it again with the same command, the folder is replaced)")
        errors = []
        for _, p in candidates:
            try:
                return load_checkpoint(p, map_location, for_resume)
            except DatasetError as exc:
                errors.append(str(exc))
                if log:
                    log(f"[run] {exc}; trying an older checkpoint")
        raise DatasetError(self.checkpoint_dir, "no usable checkpoint: " + "; ".join(errors))

    # metrics
    def write_metrics(self, metrics: Dict[str, Any], path=None) -> Path:
        path = Path(path) if path else self.metrics_path
        write_json(path, metrics)
        return path


def checkpoint_step(path) -> int:
    """The step stored in a checkpoint, read through a memory map (no full load of a large file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # zero bytes, truncated, not a zip, a pickle with disallowed globals ...
        reraise_if_bug(exc)   # but not MemoryError, nor a mistake in the call above
        raise DatasetError(path, f"cannot read checkpoint: {_first_line(exc)}") from None
    # before any lookup: indexing a bare tensor with "step" is torch's (deprecated) sequence indexing
    _require_dict(path, state)
    if "step" not in state:
        raise DatasetError(path, "not a nerf_app checkpoint (missing key)", field="step")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DatasetError(path, f"bad step {step!r}", field="step")
    return step


def _require_dict(path, state) -> None:
    if not isinstance(state, dict):
        raise DatasetError(path, f"not a nerf_app checkpoint: holds a {type(state).__name__}, not a dict")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def load_checkpoint(path, map_location="cpu", for_resume: bool = False) -> Dict[str, Any]:
    """``torch.load(weights_only=True)`` and a check of what the loop relies on, with a project error
    naming the file and the key (a crafted or foreign file never reaches the model as a traceback)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt file, pickle with disallowed globals ...
        reraise_if_bug(exc)   # but not MemoryError, nor a mistake in the call above
        raise DatasetError(path, f"cannot load checkpoint: {_first_line(exc)}") from None
    _require_dict(path, state)
    for key in (CHECKPOINT_KEYS if for_resume else ("model", "step")):
        if key not in state:
            raise DatasetError(path, "not a nerf_app checkpoint (missing key)", field=key)
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DatasetError(path, f"bad step {step!r}", field="step")
    if not isinstance(state["model"], dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise DatasetError(path, "model must map names to tensors", field="model")
    for name, t in state["model"].items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise DatasetError(path, "holds non-finite weights (NaN/inf); use an earlier checkpoint", field=f"model.{name}")
    if "config" in state and not isinstance(state["config"], dict):
        raise DatasetError(path, "config must be a mapping", field="config")
    if for_resume:
        if not isinstance(state["optimizer"], dict) or not isinstance(state["rng"], dict):
            raise DatasetError(path, "optimizer and rng must be mappings", field="optimizer/rng")
        elapsed = state["elapsed"]
        if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed) or elapsed < 0:
            raise DatasetError(path, f"bad elapsed time {elapsed!r}", field="elapsed")
        if "task" in state and not isinstance(state["task"], dict):
            raise DatasetError(path, "task state must be a mapping", field="task")
    return state


def check_checkpoint_mode(state: Dict[str, Any], mode: str, path) -> None:
    """A checkpoint of another mode's run (copied into this run) is refused by name."""
    theirs = (state.get("config") or {}).get("mode")
    if theirs and theirs != mode:
        raise DatasetError(path, f"checkpoint is from a {theirs!r} run, this run is {mode!r}", field="config.mode")


def new_run_path(base, mode: str, input_path: str) -> Path:
    """``runs/<mode>-<input stem>-<YYYYmmdd-HHMMSS>`` (with a suffix if it exists)."""
    stem = Path(input_path.rstrip("/")).stem or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"{mode}-{stem}-{stamp}"
    k = 1
    while path.exists():
        path = Path(base) / f"{mode}-{stem}-{stamp}-{k}"
        k += 1
    return path
