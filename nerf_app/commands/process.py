"""`nerf-app process INPUT --out DIR`: photos or a video -> a posed capture (structure from motion on
the CPU through pycolmap). DIR gets ``images/``, a binary COLMAP model ``sparse/0`` that inspect,
train, eval, render and export read as it is, ``process_report.json`` and ``process_frusta.png``."""
from __future__ import annotations

import json
import sys

from .arguments import output_folder


def add_arguments(parser) -> None:
    from ..process import MAPPERS, MATCHERS, ProcessOptions

    d = ProcessOptions()
    parser.add_argument("input", help="a folder of JPEG/PNG photos (subfolders too; any mix of sizes) or a video file")
    parser.add_argument("--out", type=output_folder, required=True, help="the capture folder to create (must be empty or new)")
    parser.add_argument("--frames", type=int, default=d.frames,
                        help=f"video: how many frames to keep, the sharpest of each equal window (default {d.frames})")
    parser.add_argument("--matcher", default=d.matcher, choices=MATCHERS,
                        help="auto: exhaustive for up to 100 photos, sequential (by name) for more and for video")
    parser.add_argument("--camera-model", default=None,
                        help="COLMAP camera model, e.g. SIMPLE_PINHOLE, SIMPLE_RADIAL (default), OPENCV")
    parser.add_argument("--camera-mode", default=d.camera_mode, choices=("auto", "single", "per-folder", "per-image"),
                        help="which images share a camera; auto: one for a video, one per folder+size+EXIF camera "
                             "for photos")
    parser.add_argument("--max-size", type=int, default=d.max_size,
                        help=f"features are found on copies at most this many pixels wide/high (default {d.max_size}); "
                             "poses and intrinsics are written for the full-size images")
    parser.add_argument("--max-features", type=int, default=d.max_features,
                        help=f"SIFT features per image (default {d.max_features})")
    parser.add_argument("--masks", default=None,
                        help="folder of masks named like the images (or <name>.png): black = no features there; "
                             "copied into DIR/masks")
    parser.add_argument("--continuity", default=d.continuity, choices=("auto", "off", "on"),
                        help="auto (default): map all pairs at once; for a video whose trajectory then jumps "
                             "where the video has no cut (a folded walk-around), map again with pairs a few frames "
                             "apart, then close that model with the long-range pairs that agree with it, and keep "
                             "it if it is more continuous and registers as many frames (photos: one pass); on: "
                             "always that constrained mapping; off: one pass, a fold is only warned about")
    parser.add_argument("--mapper", default=d.mapper, choices=MAPPERS,
                        help="structure from motion's mapping: incremental (COLMAP's, default) or global (GLOMAP in "
                             "COLMAP: rotation averaging, then positions); --continuity's re-map uses the same one")
    parser.add_argument("--pair-check", default=d.pair_check, choices=("auto", "on", "off"),
                        help="drop verified pairs whose relative rotation contradicts most triangles of pairs they "
                             "are in (matched by symmetry or repetition) before mapping; auto (default): photos on, "
                             "video off (a video has --continuity)")
    parser.add_argument("--min-registered", type=float, default=d.min_registered,
                        help=f"fail unless this fraction of the images registers (default {d.min_registered})")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all this process may use)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing non-empty DIR (only once the new capture is complete)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's own log")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args) -> int:
    from ..process import ProcessOptions, process

    report = process(args.input, args.out, ProcessOptions(
        frames=args.frames, matcher=args.matcher, camera_model=args.camera_model, camera_mode=args.camera_mode,
        max_size=args.max_size, max_features=args.max_features, masks=args.masks,
        min_registered=args.min_registered, continuity=args.continuity, mapper=args.mapper,
        pair_check=args.pair_check, threads=args.threads,
        overwrite=args.overwrite, seed=args.seed,
        verbose=args.verbose, progress=not args.no_progress))
    if args.json:
        print(json.dumps(report))
        return 0
    n, r = report["images_in"], report["images_registered"]
    print(f"registered {r}/{n} images ({report['options']['matcher']} matching, "
          f"{len(report['cameras'])} {report['options']['camera_model']} camera(s)), {report['points']} points, "
          f"reprojection error {report['mean_reprojection_error_px']:.2f} px, "
          f"track length {report['mean_track_length']:.1f}, {report['timings_s']['total']:.0f} s")
    if report["unregistered"]:
        shown = ", ".join(report["unregistered"][:10]) + (" ..." if len(report["unregistered"]) > 10 else "")
        print(f"not registered ({len(report['unregistered'])}): {shown}", file=sys.stderr)
    if report.get("unreadable"):
        print(f"unreadable ({len(report['unreadable'])}): {', '.join(sorted(report['unreadable'])[:10])}",
              file=sys.stderr)
    print(f"wrote {args.out}: images/, sparse/0, process_report.json, process_frusta.png"
          + (", masks/" if args.masks else "") + f"\nnext: nerf-app train {args.out} --out runs/<name>")
    return 0
