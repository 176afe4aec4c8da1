"""`nerf-app render RUN --path orbit`: images/videos of a trained run."""
from __future__ import annotations

import json

from .arguments import check_render_side, int_in, resolution


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder made by `nerf-app train`")
    parser.add_argument("--path", default="orbit", help="camera path: orbit (others depend on the mode)")
    parser.add_argument("--frames", type=int_in(1, 100000), default=None, help="number of frames")
    parser.add_argument("--fps", type=int_in(1, 240), default=None)
    parser.add_argument("--resolution", type=resolution, default=None,
                        help="image height and width in pixels (image mode: also WxH)")
    parser.add_argument("--shading", default=None, help="(sdf/occupancy) normals | lambert")
    parser.add_argument("--out", default=None, help="output file (default: RUN/render_<path>.mp4)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or name (last/final; default: newest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args) -> int:
    from ..train.modes import load_run_config, open_run

    if args.resolution is not None:
        check_render_side(load_run_config(args.run, args.overrides)[1].mode, args.resolution)
    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    opts = {k: v for k, v in {"path": args.path, "frames": args.frames, "fps": args.fps,
                              "resolution": args.resolution, "shading": args.shading, "out": args.out}.items()
            if v is not None}
    print(json.dumps(task.render(run_dir.path, **opts)))
    return 0
