"""`nerf-app render RUN --path orbit`: images/videos of a trained run."""
from __future__ import annotations

import json

from .arguments import check_render_side, int_in, output_file, resolution


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder made by `nerf-app train`")
    parser.add_argument("--path", default="orbit", help="camera path (nerf): orbit (a full turn when the training cameras cover >= 300 degrees of "
                             "azimuth, else a swing over the arc they cover), orbit-full, spiral, capture (through "
                             "the training cameras in capture order), test, or a camera_path.json; other modes: "
                             "orbit. Prints the share of frames within 20 degrees of a training camera and writes "
                             "it to <video>_coverage.json")
    parser.add_argument("--frames", type=int_in(1, 100000), default=None, help="number of frames")
    parser.add_argument("--fps", type=int_in(1, 240), default=None)
    parser.add_argument("--resolution", type=resolution, default=None,
                        help="frame height and width in pixels: N (N x N) or WxH (image and nerf runs)")
    parser.add_argument("--shading", default=None, help="(sdf/occupancy) normals | lambert")
    parser.add_argument("--out", type=output_file, default=None, help="output file (default: RUN/render_<path>.mp4)")
    parser.add_argument("--splats", default=None,
                        help="(nerf) draw the frames from a splat PLY (export --splats) instead of the NeRF")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or name (last/final; default: newest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


# paths placed by a capture's cameras (or read from a camera_path.json): nerf runs only
CAMERA_PATHS = ("capture", "orbit-full", "spiral", "test")


def check_path(mode: str, path: str) -> None:
    """``--path`` against the run's mode, before the model is loaded: one line naming the flag."""
    if mode != "nerf" and (path in CAMERA_PATHS or str(path).endswith(".json")):
        from ..errors import ConfigError
        article = "an" if mode[:1] in "aeiou" else "a"
        raise ConfigError(f"--path {path}: {article} {mode} run has no training cameras to follow "
                          f"(camera paths from a capture need a nerf run)")


def run(args) -> int:
    from ..train.modes import load_run_config, open_run

    if args.resolution is not None:
        check_render_side(load_run_config(args.run, args.overrides)[1].mode, args.resolution)
    if args.path != "orbit":
        check_path(load_run_config(args.run, args.overrides)[1].mode, args.path)
    if args.splats is not None:
        from ..splats.export import check_mode, check_splat_file
        check_splat_file(args.splats)
        check_mode(load_run_config(args.run, args.overrides)[1].mode)
    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    if args.splats is not None:
        from ..splats.views import render_splat_path
        opts = {k: v for k, v in {"path": args.path, "frames": args.frames, "fps": args.fps,
                                  "resolution": args.resolution, "out": args.out}.items() if v is not None}
        opts.setdefault("frames", 60)
        print(json.dumps(render_splat_path(task, run_dir.path, args.splats, **opts)))
        return 0
    opts = {k: v for k, v in {"path": args.path, "frames": args.frames, "fps": args.fps,
                              "resolution": args.resolution, "shading": args.shading, "out": args.out}.items()
            if v is not None}
    from ..results import videos_as_written  # without imageio-ffmpeg the videos are PNG-frame folders
    print(json.dumps(videos_as_written(task.render(run_dir.path, **opts))))
    return 0
