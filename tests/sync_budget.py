"""Host reads of the NeRF training step: what a GPU step waits for, counted on any device.

On a GPU, every read of a device value by the host (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``,
``.numpy()``), every op whose output size depends on the data (``nonzero``, boolean-mask indexing,
``masked_select``, ``unique``) and every tensor made from host data inside the step (``torch.tensor``,
``torch.from_numpy``: a blocking copy once it is moved to the GPU) is a host synchronisation.
:class:`HostReadCounter` records each of these as it happens, with the line of the project's code that made
it, by watching the aten ops the step dispatches (a ``TorchDispatchMode``: it also sees the ops the C++
extension dispatches, such as the ``.item()`` in csrc/march.cpp) and the few Python-level reads that
dispatch no op on a CPU tensor (``tolist``, ``numpy``, ``cpu``, ``__array__``).

:func:`run_training` runs the real :class:`~nerf_app.train.trainer.Trainer` loop and returns the reads per
step. tests/test_sync_guard.py runs it on the CPU (it fails when the step gains a host read);
tests/test_gpu_training_step.py measures the same step on a GPU with ``torch.cuda.set_sync_debug_mode``.
"""
from __future__ import annotations

import traceback
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "data" / "demo"

#: the host reads a training step may make (neither a grid-update step nor a logging step), by site
ALLOWED_SITES = {
    # csrc/march.cpp reads the total sample count to size its packed outputs (one per step)
    "nerf_app/ops/march.py": "the march's sample count (csrc/march.cpp sizes its outputs with it)",
    # Trainer._loss_and_grads_finite: loss and every gradient's sum, stacked and read once
    "nerf_app/train/trainer.py": "the trainer's one read of the loss and gradient finiteness",
}
MAX_READS_PER_STEP = 2

_aten = torch.ops.aten
_SIZE_FROM_DATA = {_aten.nonzero.default, _aten.masked_select.default, _aten._unique2.default,
                   _aten.unique_dim.default, _aten.unique_consecutive.default, _aten.equal.default,
                   _aten.is_nonzero.default, _aten._local_scalar_dense.default}
_HOST_DATA = {_aten.lift_fresh.default}
_INDEX = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default, _aten._index_put_impl_.default}


def _site() -> str:
    """``path:line (function)`` of the innermost frame in the project's code (outside tests/)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = Path(frame.filename)
        try:
            rel = path.resolve().relative_to(REPO_ROOT)
        except ValueError:
            continue
        if rel.parts[0] == "nerf_app":
            return f"{rel.as_posix()}:{frame.lineno} ({frame.name})"
    return "<outside nerf_app>"


class HostReadCounter(TorchDispatchMode):
    """Records every host read while ``counting`` is true: ``events[step]`` is a list of ``(kind, site)``."""

    def __init__(self):
        super().__init__()
        self.counting = False
        self.step = None
        self.events: Dict[int, List[tuple]] = defaultdict(list)
        self._patched = []
        self._nested = False

    def record(self, kind: str) -> None:
        if self.counting:
            self.events[self.step].append((kind, _site()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.counting:
            if func in _SIZE_FROM_DATA:
                self.record(str(func.overloadpacket.__name__))
            elif func in _HOST_DATA:
                self.record("tensor from host data")
            elif func in _INDEX:
                indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
                if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices):
                    self.record("boolean-mask indexing")
            elif func is _aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
                self.record("repeat_interleave without output_size")
        return func(*args, **kwargs)

    def _patch(self, name: str) -> None:
        original = getattr(torch.Tensor, name)
        counter = self

        def patched(t, *a, **k):
            if counter._nested:  # np.asarray(t) -> __array__ -> numpy(): one read
                return original(t, *a, **k)
            counter.record(f"Tensor.{name}")
            counter._nested = True
            try:
                return original(t, *a, **k)
            finally:
                counter._nested = False
        setattr(torch.Tensor, name, patched)
        self._patched.append((name, original))

    def __enter__(self):
        for name in ("tolist", "numpy", "cpu", "__array__"):
            self._patch(name)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in reversed(self._patched):
            setattr(torch.Tensor, name, original)
        self._patched.clear()
        return super().__exit__(*exc)


def quiet_budget(config, steps: int) -> None:
    """``steps`` steps, no progress bar, no log line or checkpoint before the last step (their host reads
    are not the step's)."""
    config.train.max_steps = steps
    config.train.progress = False
    config.train.log_every = 10 ** 6
    config.train.checkpoint_every = 0
    config.train.checkpoint_every_s = 0


def run_training(config, run_dir, steps: int):
    """Train ``config`` for ``steps`` steps with the real Trainer loop; return the host reads of each step
    (from the start of ``train_step`` to the start of the next one: the step, the trainer's checks, the
    optimizer step and ``after_step``) and the trained task. Step 0 updates the occupancy grid; the last
    step also logs and writes the final checkpoint."""
    from nerf_app.nerf.task import NerfTask
    from nerf_app.train.trainer import Trainer

    counter = HostReadCounter()

    class CountedTask(NerfTask):
        def train_step(self, step):
            counter.step = step
            counter.counting = True
            return super().train_step(step)

    quiet_budget(config, steps)
    trainer = Trainer(CountedTask, config, run_dir, log=lambda msg: None)
    with counter:
        trainer.fit()
        counter.counting = False
    return {s: counter.events.get(s, []) for s in range(steps)}, trainer.task
