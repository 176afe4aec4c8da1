"""Mode registry: mode name -> the :class:`~nerf_app.train.task.Task` implementing it.

Adding a mode is one line in :data:`MODES` (``"module:Class"``, imported only when used).
``None`` marks a mode whose name is reserved but whose task is not implemented yet.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Type

from ..errors import ConfigError, DatasetError, NerfAppError
from ..geometry.mesh import MESH_SUFFIXES

MODES = {
    "sdf": "nerf_app.sdf.task:SDFTask",
    "occupancy": "nerf_app.sdf.task:OccupancyTask",
    "deepsdf": "nerf_app.sdf.deepsdf:DeepSDFTask",   # `--mode sdf` on a folder of meshes (see resolve_mode)
    "nerf": "nerf_app.nerf.task:NerfTask",
    "image": "nerf_app.inr.image:ImageTask",
    "audio": "nerf_app.inr.audio:AudioTask",
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr")
AUDIO_SUFFIXES = (".wav",)


def detect_mode(input_path: str) -> str:
    """A mesh file or a folder holding only meshes -> ``sdf``; a scene folder or ``transforms*.json`` ->
    ``nerf``; an image -> ``image``; a ``.wav`` -> ``audio``."""
    p = Path(input_path)
    if p.suffix.lower() in MESH_SUFFIXES:
        return "sdf"
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    if p.suffix.lower() in AUDIO_SUFFIXES:
        return "audio"
    if p.is_dir() and _is_mesh_folder(p):
        return "sdf"
    if p.is_dir() or (p.suffix.lower() == ".json" and p.name.startswith("transforms")):
        return "nerf"
    if not p.exists():
        raise NerfAppError(f"input not found: {input_path}")
    raise NerfAppError(f"cannot tell the mode of {input_path}: expected a mesh "
                       f"({'/'.join(MESH_SUFFIXES)}), a scene folder, transforms*.json, an image "
                       f"({'/'.join(IMAGE_SUFFIXES)}) or a .wav; pass --mode")


def _is_mesh_folder(p: Path) -> bool:
    # meshes and no capture (a capture may carry a point-cloud .ply beside its poses); the capture
    # formats' markers live in nerf_app.data only, so a new scene format is added in one place
    from ..data.scene import is_capture
    if is_capture(p) or (p / "images").is_dir():
        return False
    return any(c.suffix.lower() in MESH_SUFFIXES for c in p.iterdir())


def resolve_mode(mode: str, input_path: str) -> str:
    """The mode that trains ``input_path``: ``sdf`` on a folder of meshes is the latent-conditioned
    sdf (``deepsdf``: one decoder, one code per shape); any other combination is ``mode`` itself."""
    if mode == "sdf" and input_path and Path(input_path).is_dir():
        return "deepsdf"
    return mode


def get_task_class(mode: str) -> Type:
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; known modes: {', '.join(sorted(MODES))}")
    target = MODES[mode]
    if target is None:
        raise NerfAppError(f"{mode} mode is not available yet")
    module_name, _, cls_name = target.partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def load_run_config(run_path, overrides=()):
    """Read ``RUN/config.yaml`` into its mode's config dataclass (plus ``overrides``)."""
    from .config import apply_overrides, check_values, from_dict, read_yaml
    from .run import RunDir

    run = RunDir(run_path).require()
    data = read_yaml(run.config_path)
    mode = data.get("mode")
    if not mode or not isinstance(mode, str):
        raise ConfigError(f"{run.config_path}: no 'mode' key (or not a name: {mode!r})")
    task_cls = get_task_class(mode)
    cfg = from_dict(task_cls.config_class, data, str(run.config_path))
    apply_overrides(cfg, overrides)
    check_values(cfg)
    return task_cls, cfg


def open_run(run_path, checkpoint=None, overrides=(), lock: bool = True):
    """Load a trained run for eval/render/export: ``(task, run_dir, checkpoint_state)``.

    The task is built from the run's config and its model loaded from ``checkpoint`` (a path, a
    name such as ``last``/``final``, or the newest good checkpoint when None). With ``lock`` the run's
    lock is held shared for the life of the process (a trainer of the same run is refused, and so
    is a trainer started later); a read-only viewer passes ``lock=False``.
    """
    import sys

    from .run import RunDir, check_checkpoint_mode, load_checkpoint
    from .trainer import seed_everything

    task_cls, cfg = load_run_config(run_path, overrides)
    run = RunDir(run_path)
    if lock:
        run.lock(exclusive=False, command=" ".join(sys.argv[1:3]) or "nerf-app")
    if checkpoint and not Path(checkpoint).is_file():
        checkpoint = run.checkpoint_path(checkpoint)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    state = load_checkpoint(checkpoint) if checkpoint else run.load_checkpoint(log=log)
    check_checkpoint_mode(state, cfg.mode, checkpoint or run.checkpoint_dir)
    if cfg.threads > 0:
        import torch
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    task = task_cls(cfg)
    try:
        task.load_for_inference(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, NerfAppError):
            raise
        raise DatasetError(checkpoint or run.checkpoint_dir, "the checkpoint does not fit the run's config (was a "
                           f"model setting changed with --set?): {str(exc).strip().splitlines()[0][:300]}") from None
    return task, run, state
