"""`nerf-app view RUN`: a live web viewer of a trained run (NeRF, SDF, occupancy), served by this process."""
from __future__ import annotations


def add_arguments(parser) -> None:
    from ..viewer.server import DEFAULT_MAX_HEIGHT, DEFAULT_PORT, DEFAULT_PREVIEW_HEIGHT
    from .arguments import float_in, int_in
    parser.add_argument("run", help="run folder (from nerf-app train)")
    parser.add_argument("--port", type=int_in(0, 65535), default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT}; "
                        "the next free one if taken)")
    parser.add_argument("--host", default="0.0.0.0", help="interface to listen on (default all; 127.0.0.1 for "
                        "this machine only)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint name or file (default: the newest)")
    parser.add_argument("--preview-height", type=int_in(16, 400), default=DEFAULT_PREVIEW_HEIGHT,
                        help="frame height while the camera moves")
    parser.add_argument("--max-height", type=int_in(32, 1600), default=DEFAULT_MAX_HEIGHT, help="refined frame height")
    parser.add_argument("--splats", default="auto", metavar="auto|off|rebake|FILE.ply",
                        help="(nerf) splats the browser draws while the camera moves, the NeRF frame once it is "
                             "still: auto (default) = the bake cached in the run folder, baked in the background when "
                             "missing or older than the checkpoint; rebake; off; or a splat PLY from export --splats "
                             "(docs/viewer.md)")
    parser.add_argument("--max-splats", type=int_in(1, 10_000_000), default=None,
                        help="(--splats auto/rebake) splat budget of the viewer's bake (default 200000)")
    parser.add_argument("--refine-time", type=float_in(0), default=None,
                        help="(--splats auto/rebake) seconds of refinement against the photos (default 0: bake only)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value of the run (e.g. --set rays.near=0.2)")
    parser.add_argument("--exit-after", type=float_in(0), default=0.0, help=argparse_suppress())


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def _check_splats(args) -> str:
    """Before the (slow) run is opened: ``--splats`` is one of the words or a splat PLY; anything but ``auto``
    and ``off`` needs a nerf run (one line otherwise); ``auto`` on another run is quietly off."""
    from ..splats.export import check_mode, check_splat_file
    from ..train.modes import load_run_config
    from ..viewer.splat_panel import SOURCES
    value = str(args.splats)
    mode = load_run_config(args.run, args.overrides)[1].mode
    if value not in SOURCES:
        check_splat_file(value)
    if value not in ("auto", "off"):
        check_mode(mode)
    return value if mode == "nerf" else "off"


def run(args) -> int:
    import time
    from pathlib import Path

    from ..train.modes import open_run
    from ..viewer.server import Viewer

    t0 = time.perf_counter()
    splats = _check_splats(args)
    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    checkpoint = args.checkpoint
    if checkpoint and not Path(checkpoint).is_file():
        checkpoint = run_dir.checkpoint_path(checkpoint)
    viewer = Viewer(task, run_dir.path, host=args.host, port=args.port, preview_height=args.preview_height,
                    max_height=args.max_height, splats=splats, checkpoint=checkpoint or run_dir.latest_checkpoint(),
                    max_splats=args.max_splats, splat_refine=args.refine_time).start()
    viewer.log(f"[viewer] ready in {time.perf_counter() - t0:.1f} s; Ctrl-C to stop")
    if args.exit_after > 0:  # for scripted measurements
        time.sleep(args.exit_after)
        viewer.stop()
        return 0
    viewer.serve_forever()
    return 0
