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
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value of the run (e.g. --set rays.near=0.2)")
    parser.add_argument("--exit-after", type=float_in(0), default=0.0, help=argparse_suppress())


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def run(args) -> int:
    import time

    from ..train.modes import open_run
    from ..viewer.server import Viewer

    t0 = time.perf_counter()
    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    viewer = Viewer(task, run_dir.path, host=args.host, port=args.port, preview_height=args.preview_height,
                    max_height=args.max_height).start()
    viewer.log(f"[viewer] ready in {time.perf_counter() - t0:.1f} s; Ctrl-C to stop")
    if args.exit_after > 0:  # for scripted measurements
        time.sleep(args.exit_after)
        viewer.stop()
        return 0
    viewer.serve_forever()
    return 0
