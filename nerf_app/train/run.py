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
crash never leaves a truncated file behind.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..errors import DatasetError, NerfAppError
from ..results import atomic_write, write_json

CONFIG_NAME = "config.yaml"
LOG_NAME = "log.jsonl"
METRICS_NAME = "metrics.json"
CHECKPOINT_DIR = "checkpoints"


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
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

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
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        return path

    def latest_checkpoint(self) -> Optional[Path]:
        """The newest of ``final.pt`` / ``last.pt`` (by the step stored inside, then mtime)."""
        candidates = [p for p in (self.checkpoint_path("final"), self.checkpoint_path("last")) if p.is_file()]
        if not candidates:
            return None
        return max(candidates, key=lambda p: p.stat().st_mtime_ns)

    def load_checkpoint(self, path=None, map_location="cpu") -> Dict[str, Any]:
        path = Path(path) if path else self.latest_checkpoint()
        if path is None:
            raise DatasetError(self.checkpoint_dir, "no checkpoint in this run (train it first)")
        return load_checkpoint(path, map_location)

    # metrics
    def write_metrics(self, metrics: Dict[str, Any], path=None) -> Path:
        path = Path(path) if path else self.metrics_path
        write_json(path, metrics)
        return path


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    """``torch.load(weights_only=True)`` with a project error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt file, pickle with disallowed globals ...
        raise DatasetError(path, f"cannot load checkpoint: {exc}") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise DatasetError(path, "not a nerf_app checkpoint (missing model/step)")
    return state


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
