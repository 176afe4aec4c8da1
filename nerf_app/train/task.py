"""The :class:`Task` interface every training mode implements (nerf, sdf, occupancy, image, audio).

The generic loop (:mod:`nerf_app.train.trainer`) owns seeding, budgets, progress, logging,
checkpoints, resume and the NaN guard; a task owns its data, model and loss. One step is::

    optimizer.zero_grad(set_to_none=True)        # trainer
    out = task.train_step(step)                  # task: sample a batch, forward, loss.backward()
    if loss and every grad are finite:           # trainer
        task.optimizer.step(); task.after_step(step, out)
    else:
        skip (one-line message), stop after `train.nan_patience` in a row

``step`` counts from 0; after ``train_step(step)`` the run has done ``step + 1`` steps.
For bit-identical resume, draw random numbers only from the global torch/numpy/python RNGs (the
trainer checkpoints them) or from generators whose state the task returns in ``extra_state``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ..errors import NerfAppError
from .config import BaseConfig


class Task(ABC):
    """One training mode. Subclasses set :attr:`config_class` and implement the abstract methods.

    Attributes the trainer uses after :meth:`build`:
      * ``model``: ``nn.Module`` - checkpointed with ``state_dict``;
      * ``optimizer``: ``torch.optim.Optimizer`` - checkpointed, stepped by the trainer.
    """

    #: the dataclass (a :class:`BaseConfig` subclass) holding this mode's settings
    config_class = BaseConfig
    #: file suffixes / detection are done by :mod:`nerf_app.train.modes`; this is for messages
    description = ""
    #: whether the mode trains data-parallel over several ranks (torchrun / ``--nproc``): its ``train_step``
    #: draws the global batch alike on every rank and keeps its :meth:`batch_part` (nerf_app/train/distributed.py)
    distributed = False

    def __init__(self, config: BaseConfig, device: Optional[torch.device] = None):
        self.config = config
        self.device = torch.device(device or config.device)
        self.model: Optional[torch.nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        #: set by the trainer before each step: fraction of the step/time budget used (for schedules;
        #: a time-based fraction makes runs depend on the clock, so bit-identical resume needs step budgets)
        self.budget_fraction = 0.0
        #: the data-parallel context (set by the trainer; None in a single process)
        self.dist = None
        #: the photo scene a mode trains on (``nerf_app.data.scene.Scene``); None for modes trained on
        #: meshes, images or audio (callers test ``task.scene is None``, never ``hasattr``)
        self.scene = None

    # ---- training ------------------------------------------------------------------------------

    @abstractmethod
    def build(self) -> None:
        """Load the input (``config.input``), create ``self.model`` and ``self.optimizer``.

        Called after the trainer has seeded the RNGs (so initialisation is reproducible) and
        before any checkpoint is restored (restoring overwrites parameters and RNG states).
        """

    def prepare(self, step: int) -> None:
        """Heavy data preparation, called once before the loop (after any checkpoint restore) with the
        first step to run; counted as setup time, not training time."""

    @abstractmethod
    def train_step(self, step: int) -> Dict[str, Any]:
        """Forward + ``loss.backward()`` for step ``step`` (0-based). Do **not** step the optimizer.

        Returns a dict with ``"loss"`` (a scalar tensor or float) and any other scalars to log
        (floats or 0-d tensors), e.g. ``{"loss": l, "psnr": p, "samples_per_step": n}``.
        """

    def after_step(self, step: int, out: Dict[str, Any]) -> None:
        """Called after a successful optimizer step (learning-rate schedules, grid updates...)."""

    def extra_state(self) -> Dict[str, Any]:
        """Task state to checkpoint beside model/optimizer (tensors and plain values only)."""
        return {}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def batch_part(self, n: int):
        """``(start, stop, weight)``: the rows of a global batch of ``n`` this rank computes, and the factor on its
        per-row mean losses that makes the ranks' mean the global batch's mean (``K * rows / n``; 1 when ``n``
        divides evenly). One process: ``(0, n, 1.0)``."""
        if self.dist is None:
            return 0, n, 1.0
        from .distributed import part
        a, b = part(n, self.dist.rank, self.dist.world)
        return a, b, self.dist.world * (b - a) / max(1, n)

    # ---- learning-rate schedules (shared by the modes) -------------------------------------------

    def decayed_lr(self, lr: float, lr_final: float) -> float:
        """Exponential decay from ``lr`` to ``lr_final`` over the budget (``lr_final <= 0``: constant)."""
        f = min(max(self.budget_fraction, 0.0), 1.0)
        return lr * (lr_final / lr) ** f if lr_final > 0 else lr

    def set_lr(self, lr: float) -> None:
        """Every parameter group to ``lr`` times its ``lr_scale`` (1 when the group has none)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    # ---- after training -----------------------------------------------------------------------

    @abstractmethod
    def evaluate(self, run_dir: Path, **opts) -> Dict[str, Any]:
        """Compute held-out metrics for the trained model; return a JSON-able dict.

        The ``eval`` command writes it to ``RUN/metrics.json``. ``opts`` are the verb's options.
        """

    def render(self, run_dir: Path, **opts) -> Dict[str, Any]:
        """Render images/videos into ``run_dir`` (``nerf-app render``); return what was written."""
        raise NerfAppError(f"mode {self.config.mode!r} cannot render")

    def export(self, run_dir: Path, **opts) -> Dict[str, Any]:
        """Export meshes/point clouds (``nerf-app export``); return what was written."""
        raise NerfAppError(f"mode {self.config.mode!r} cannot export")

    def export_surface(self, **opts):
        """The surface ``export --mesh X --texture`` textures (:class:`nerf_app.export.surface.Surface`); ``opts``:
        the verb's surface options (method, crop, resolution, threshold, chunks, min_component, fill_holes)."""
        from ..errors import ConfigError
        raise ConfigError(f"--texture works for nerf, sdf and occupancy runs, not {self.config.mode!r}")

    # ---- optional abilities: a mode without them keeps these defaults (callers never probe with hasattr)

    def near_for_poses(self, c2w, fx: float, fy: float, width: int, height: int) -> Optional[list]:
        """Near planes for novel pinhole cameras ``c2w [N,4,4]`` (camera paths, the viewer), or None: the
        mode has no per-camera near plane."""
        return None

    def eval_color_transform(self, index: Optional[int] = None):
        """The colour map applied when rendering image ``index`` (None: a novel view), or None: colours as
        the field gives them."""
        return None

    def image_near(self, index: int) -> Optional[float]:
        """Where marching starts for training image ``index``, or None: the mode's default near plane."""
        return None

    def pose_correction(self, index: int) -> Optional[torch.Tensor]:
        """The learned pose correction ``[1, 6]`` (axis-angle, translation) for image ``index``, or None: the
        mode does not optimise cameras."""
        return None

    def hide_unseen(self) -> Dict[str, Any]:
        """Leave out of later renders the space no training camera saw, and say what was done; a mode
        without such space hides nothing."""
        return {"mode": "keep"}

    def view_background(self) -> Optional[tuple]:
        """The colour behind a novel view (render, viewer), or None: the renderer's own default."""
        return None

    def fit_latent(self, run_dir: Path, mesh_path, steps=None, out=None) -> Dict[str, Any]:
        """A new shape's latent code with the decoder frozen (``nerf-app fit-latent``)."""
        raise NerfAppError(f"mode {self.config.mode!r} has no latent codes; fit-latent needs a run trained on a "
                           f"folder of meshes with --mode sdf")

    # ---- helpers ------------------------------------------------------------------------------

    def load_for_inference(self, checkpoint: Dict[str, Any]) -> None:
        """Build and load the model weights from a checkpoint (eval/render/export)."""
        self.build()
        self.model.load_state_dict(checkpoint["model"])
        self.load_extra_state(checkpoint.get("task", {}))
        self.model.eval()
