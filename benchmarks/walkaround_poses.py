"""Does `nerf-app process` fold a walk around a symmetric object? (issue 24)

Renders the walk-around scene of ``nerf_app/process/walkaround_scene.py`` (a near-uniform cylinder
on a repetitive tile floor in a room; a hand-held 360-degree walk; the true cameras known) as an mp4,
runs ``process`` on it and prints one JSON line per run: the continuity verdict (jumps, segments,
max step and view-change ratios), the RMS camera-centre error against the true cameras after a
similarity (% of the camera spread), registered frames and time per stage.

    python benchmarks/walkaround_poses.py                                   # walls differ
    python benchmarks/walkaround_poses.py --walls half-turn --constraint off auto on
    python benchmarks/walkaround_poses.py --walls quarter-turn --logo-deg 0 --supersample 1   # folds today
    python benchmarks/walkaround_poses.py --cut                             # two clips joined
    python benchmarks/walkaround_poses.py --walls quarter-turn --logo-deg 0 --supersample 1 --as-photos  # no order

The rendered video is cached under --work (default /tmp/walkaround_poses).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nerf_app.data import load_scene  # noqa: E402
from nerf_app.process import ProcessOptions, process  # noqa: E402
from nerf_app.process.report import centres_of_scene, compare_centres  # noqa: E402
from nerf_app.process.walkaround_scene import (WALL_MODES, WalkaroundConfig, cut_poses, load_truth,  # noqa: E402
                                               render_video)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--walls", default="differ", choices=WALL_MODES)
    ap.add_argument("--no-cue", action="store_true", help="no cue poster on symmetric walls")
    ap.add_argument("--logo-deg", type=float, default=30.0, help="the cylinder's logo (0: a uniform label)")
    ap.add_argument("--supersample", type=int, default=2)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", default="480x360")
    ap.add_argument("--turn", type=float, default=360.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cut", action="store_true", help="join 0-50 %% and 75-100 %% of the walk (a real cut)")
    ap.add_argument("--constraint", nargs="+", default=["auto"], choices=("auto", "on", "off"),
                    help="process's --continuity for video (auto: one pass, re-mapped only where it folds)")
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--mapper", default=ProcessOptions.mapper, choices=("incremental", "global"))
    ap.add_argument("--max-features", type=int, default=ProcessOptions.max_features)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--pair-check", default=ProcessOptions.pair_check, choices=("auto", "on", "off"))
    ap.add_argument("--as-photos", action="store_true",
                    help="process the video's frames as a folder of photos (no time order; exhaustive matching for "
                         "up to 100)")
    ap.add_argument("--work", default="/tmp/walkaround_poses")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    cfg = WalkaroundConfig(width=w, height=h, frames=args.frames, turn_deg=args.turn, walls=args.walls,
                           cue=not args.no_cue, seed=args.seed, logo_deg=args.logo_deg, supersample=args.supersample)
    tag = f"{args.walls}{'-nocue' if args.no_cue else ''}-logo{args.logo_deg:g}-ss{args.supersample}-{w}x{h}-" \
          f"{args.frames}-{args.turn:g}-s{args.seed}" + ("-cut" if args.cut else "")
    work = Path(args.work)
    video, truth_path = work / f"{tag}.mp4", work / f"{tag}_truth.json"
    if not (video.is_file() and truth_path.is_file()):
        t = time.perf_counter()
        render_video(cfg, work, tag, poses=cut_poses(cfg) if args.cut else None)
        print(f"rendered {video} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    truth = load_truth(truth_path)
    source = video
    if args.as_photos:
        from nerf_app.process.frames import select_video_frames

        source = work / f"{tag}-frames"
        if not source.is_dir():
            select_video_frames(video, len(truth), source)
    for constraint in args.constraint:
        out = work / f"{tag}-{'photos-' if args.as_photos else ''}{args.mapper}-{args.pair_check}-{constraint}"
        options = ProcessOptions(frames=len(truth), matcher=args.matcher, max_features=args.max_features,
                                 threads=args.threads, overwrite=True, progress=False, mapper=args.mapper,
                                 pair_check=args.pair_check)
        options.continuity = constraint
        t = time.perf_counter()
        report = process(source, out, options)
        wall = time.perf_counter() - t
        recovered = centres_of_scene(load_scene(out, check_images=False))
        cmp = compare_centres(recovered, {n: c[:3, 3] for n, c in truth.items()})
        cont = report["continuity"]
        print(json.dumps({
            "scene": tag, "as_photos": args.as_photos, "constraint": constraint, "mapper": args.mapper,
            "pair_check": report.get("pair_check") and {k: v for k, v in report["pair_check"].items()
                                                        if k != "dropped"},
            "registered": cmp["registered"], "frames": len(truth),
            "rms_percent_of_spread": round(cmp["rms_percent_of_spread"], 3),
            "max_percent_of_spread": round(cmp["max_percent_of_spread"], 3),
            "jumps": [(j["from"], j["to"], round(j["step_ratio"], 1), round(j["view_change_deg"])) for j in cont["jumps"]],
            "segments": len(cont["segments"]), "warning": cont["warning"], "loop": report.get("loop"),
            "max_step_ratio": round(cont.get("max_step_ratio", float("nan")), 2),
            "max_view_ratio": round(cont.get("max_view_ratio", float("nan")), 2),
            "models": report["models"], "pairs": report["pairs_matched"], "verified": report["pairs_verified"],
            "reprojection_px": round(report["mean_reprojection_error_px"], 3),
            "constraint_report": report.get("constraint"),
            "auto_report": {k: v for k, v in report.get("continuity_auto", {}).items() if k != "constraint"} or None,
            "auto_constraint": (report.get("continuity_auto") or {}).get("constraint"),
            "timings_s": report["timings_s"], "cpu_s": report["cpu_s"], "wall_s": round(wall, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
