"""`nerf-app train INPUT`: fit a field (sdf/occupancy from a mesh, nerf from a scene) into a run folder."""
from __future__ import annotations

from pathlib import Path

from .arguments import float_in, int_in, output_folder


def add_arguments(parser) -> None:
    parser.add_argument("input", nargs="?", help="mesh file (.obj/.ply/.off/.stl/.glb), folder of meshes (with --mode sdf: one "
                             "latent-conditioned sdf for all), or scene folder/transforms.json")
    parser.add_argument("--mode", default=None, help="sdf | occupancy | nerf (default: from the input)")
    parser.add_argument("--config", default=None, help="YAML config file, or a preset name (e.g. nerf_real, "
                        "nerf_synthetic), applied over the configs/<mode>.yaml preset")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted keys (e.g. --set train.log_every=10); repeatable")
    parser.add_argument("--out", type=output_folder, default=None, help="run folder to create (default: runs/<mode>-<input>-<time>)")
    parser.add_argument("--max-time", type=float_in(0, low_open=True), default=None, help="training time budget in seconds (alone, it replaces any step budget)")
    parser.add_argument("--max-steps", type=int_in(1), default=None, help="step budget (alone, it replaces any time budget)")
    parser.add_argument("--seed", type=int_in(0, 2 ** 63 - 1), default=None)
    parser.add_argument("--threads", type=int_in(0, 1024), default=None, help="torch CPU threads")
    parser.add_argument("--resume", default=None, metavar="RUN", help="continue RUN from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--viewer", action="store_true", help="serve the live web viewer while training (nerf, sdf, "
                        "occupancy); rendering happens only while a browser is connected")
    parser.add_argument("--viewer-port", type=int_in(0, 65535), default=None, help="viewer port (default 7007, or the next free one)")
    parser.add_argument("--nproc", type=int_in(1, 256), default=None, metavar="K",
                        help="data-parallel training on K local processes (gloo/NCCL; each gets cores/K threads unless "
                        "--threads); for several machines use torchrun -m nerf_app train (README: More than one machine)")


def _flag_overrides(args):
    out = []
    if args.max_time is not None:
        out.append(f"train.max_time={args.max_time}")
        if args.max_steps is None:
            out.append("train.max_steps=0")  # a time budget alone means: train until the time is up
    if args.max_steps is not None:
        out.append(f"train.max_steps={args.max_steps}")
        if args.max_time is None:
            out.append("train.max_time=0")  # likewise: a step budget alone replaces the time budget
    if args.seed is not None:
        out.append(f"seed={args.seed}")
    if args.threads is not None:
        out.append(f"threads={args.threads}")
    if args.no_progress:
        out.append("train.progress=false")
    return out


def _fit(trainer, args, resume: bool):
    """``trainer.fit``, with the live viewer hooked in after each step when ``--viewer`` is given (rank 0 only)."""
    if not getattr(args, "viewer", False) or not trainer.root:
        return trainer.fit(resume=resume)
    from ..viewer.server import DEFAULT_PORT, Viewer
    # splats="auto": a cached bake is shown while the camera moves (a live viewer never bakes: docs/viewer.md)
    viewer = Viewer(run_dir=trainer.run.path, port=args.viewer_port or DEFAULT_PORT, live=True, splats="auto").start()
    trainer.on_step.append(lambda step, metrics: viewer.on_step(step, metrics, trainer))
    try:
        return trainer.fit(resume=resume)
    finally:
        viewer.stop()


def _rank_argv(args, out) -> list:
    """The command line each rank of ``--nproc`` runs (the same flags, the run folder fixed by the launcher)."""
    argv = ["train"]
    if args.resume:
        argv += ["--resume", str(args.resume)]
    else:
        argv += [str(Path(args.input).resolve()), "--out", str(Path(out).resolve())]
        if args.mode:
            argv += ["--mode", args.mode]
        if args.config:
            argv += ["--config", args.config]
    for o in args.overrides:
        argv += ["--set", o]
    for flag, value in (("--max-time", args.max_time), ("--max-steps", args.max_steps), ("--seed", args.seed),
                        ("--threads", args.threads), ("--viewer-port", args.viewer_port)):
        if value is not None:
            argv += [flag, str(value)]
    argv += [f for f, on in (("--no-progress", args.no_progress), ("--viewer", args.viewer),
                             ("--debug", getattr(args, "debug", False))) if on]
    return argv


def _refuse_single(task_cls, mode: str, how: str) -> None:
    from ..errors import ConfigError
    if not task_cls.distributed:
        raise ConfigError(f"{how}: the {mode} mode cannot train on several processes (modes that can: nerf, "
                          f"image); train it in one process")


def run(args) -> int:
    from ..errors import ConfigError, NerfAppError
    from ..train.config import load_config
    from ..train.distributed import is_distributed_environment, launch
    from ..train.modes import detect_mode, get_task_class, load_run_config, resolve_mode
    from ..train.run import new_run_path
    from ..train.trainer import Trainer

    nproc = args.nproc or 1
    if nproc > 1 and is_distributed_environment():
        raise ConfigError("--nproc starts local ranks itself; under torchrun leave it out (torchrun --nproc-per-node K)")
    if args.resume:
        if args.mode or args.config or args.out:
            raise ConfigError("--resume takes the mode, config and folder from the run; use --set to change values")
        task_cls, cfg = load_run_config(args.resume, list(args.overrides) + _flag_overrides(args))
        if nproc > 1:
            _refuse_single(task_cls, cfg.mode, f"--nproc {nproc}")
            return launch(_rank_argv(args, None), nproc, args.threads)
        dist, result = _join_and_fit(task_cls, cfg.mode, cfg,
                                     lambda d: _fit(Trainer(task_cls, cfg, args.resume, dist=d), args, resume=True))
    else:
        if not args.input:
            raise ConfigError("train needs an INPUT (or --resume RUN)")
        mode = resolve_mode(args.mode or detect_mode(args.input), args.input)
        task_cls = get_task_class(mode)
        cfg = load_config(task_cls.config_class, mode, args.config, list(args.overrides) + _flag_overrides(args))
        cfg.input = str(Path(args.input).resolve())
        out = Path(args.out) if args.out else new_run_path("runs", mode, args.input)
        if nproc > 1:
            _refuse_single(task_cls, mode, f"--nproc {nproc}")
            if out.exists() and any(out.iterdir()) and not _unfinished(out):
                raise ConfigError(f"run folder {out} already exists and is not empty (use --resume {out} to continue)")
            return launch(_rank_argv(args, out), nproc, args.threads)
        dist, result = _join_and_fit(task_cls, mode, cfg, lambda d: _fit_fresh(task_cls, cfg, out, args, d))
    if result is None:
        return 2  # a rank failed; rank 0 printed the one line
    if dist is not None and not dist.is_root:
        return 0
    print(f"run: {result.run_dir}  steps: {result.steps}  train time: {result.elapsed:.1f} s  "
          f"checkpoint: {result.final_checkpoint}")
    return 0


def _join_and_fit(task_cls, mode: str, cfg, fit):
    """Join the torchrun group when there is one (modes that cannot run distributed refuse), run ``fit(dist)``
    and leave the group. Returns ``(dist, result)``; ``result`` is None when a rank failed and rank 0 has
    printed the one line for it."""
    from ..train.distributed import Distributed
    dist = Distributed.from_environment()
    if dist is not None:
        _refuse_single(task_cls, mode, f"torchrun (world size {dist.world})")
        dist.join(cfg.device)
        _rank_device(cfg, dist)
    try:
        return dist, fit(dist)
    except BaseException as exc:
        if dist is not None and _tell_the_others(dist, exc):
            return dist, None
        raise
    finally:
        if dist is not None:
            dist.close()


def _tell_the_others(dist, exc) -> bool:
    """Post this rank's failure for the other ranks (unless it only lost one of them); True when the line need
    not be printed here because rank 0 failed with the same one (a bad flag or checkpoint every rank finds)."""
    from ..errors import NerfAppError
    from ..train.distributed import RankLostError
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
    if not isinstance(exc, RankLostError):
        dist.report_failure(line)
    return isinstance(exc, NerfAppError) and not isinstance(exc, RankLostError) and dist.quiet_failure(line)


def _rank_device(cfg, dist) -> None:
    """On GPUs each rank of a machine takes its own: ``cuda`` -> ``cuda:LOCAL_RANK`` (NCCL; unverified, no GPU here)."""
    if str(cfg.device).strip().lower() == "cuda":
        cfg.device = f"cuda:{dist.local_rank}"


def _unfinished(out) -> bool:
    from ..train.run import RunDir
    return RunDir(out).is_unfinished()


def _fit_fresh(task_cls, cfg, out, args, dist):
    from ..errors import ConfigError
    from ..train.trainer import Trainer
    if dist is None or dist.is_root:  # only rank 0 looks at (and writes) the run folder
        if out.exists() and any(out.iterdir()):
            from ..train.run import RunDir
            if not RunDir(out).is_unfinished():
                raise ConfigError(f"run folder {out} already exists and is not empty (use --resume {out} to continue)")
            # a run that failed or was killed before its first checkpoint: nothing to resume, so the same
            # command starts it again (the trainer takes the folder's lock before touching anything)
            print(f"[train] {out} holds an unfinished run (no checkpoint): starting it again", flush=True)
    return _fit(Trainer(task_cls, cfg, out, dist=dist), args, resume=False)
