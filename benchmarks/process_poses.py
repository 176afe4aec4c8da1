"""Pose accuracy of `nerf-app process` against captures that come with poses.

For each capture: copy its images alone into a temporary folder, run ``process`` on them, align the
recovered camera centres to the given ones by a similarity (Umeyama) and print one JSON line:
registered fraction, RMS centre error as a percentage of the camera spread (RMS distance of the
given centres from their centroid), reprojection error, time per stage.

    python benchmarks/process_poses.py                       # cup, fox, king_statue
    python benchmarks/process_poses.py --scenes cup --max-size 800 --every 2
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nerf_app.data import load_scene  # noqa: E402
from nerf_app.process import ProcessOptions, process  # noqa: E402
from nerf_app.process.report import centres_of_scene, compare_centres  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
# scene -> (posed capture to compare with, its images folder)
SCENES = {
    "cup": ("cup", "cup/images"),
    "fox": ("fox", "fox/images"),
    "king_statue": ("king_statue/dense/0", "king_statue/dense/0/images"),
    "liberty": ("liberty", "liberty/images"),
}


def _encode_video(src: Path, names, size: str, path: Path) -> Path:
    """The photos in name order as an h264 mp4 of ``size`` (WxH), 10 fps."""
    import imageio_ffmpeg
    import numpy as np
    from PIL import Image

    w, h = (int(v) for v in size.split("x"))
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=10, quality=9, macro_block_size=2,
                                         ffmpeg_log_level="error")
    writer.send(None)
    try:
        for n in names:
            with Image.open(src / n) as im:
                writer.send(np.ascontiguousarray(np.asarray(im.convert("RGB").resize((w, h), Image.LANCZOS))))
    finally:
        writer.close()
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", default=["cup", "fox", "king_statue"], choices=sorted(SCENES))
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--every", type=int, default=1, help="use every k-th image (sorted by name)")
    ap.add_argument("--max-size", type=int, default=ProcessOptions.max_size)
    ap.add_argument("--max-features", type=int, default=ProcessOptions.max_features)
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--mapper", default=ProcessOptions.mapper, choices=("incremental", "global"))
    ap.add_argument("--pair-check", default=ProcessOptions.pair_check, choices=("auto", "on", "off"))
    ap.add_argument("--camera-model", default=None)
    ap.add_argument("--camera-mode", default="auto", choices=("auto", "single", "per-folder", "per-image"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--keep", default=None, help="keep each processed capture under this folder")
    ap.add_argument("--video", default=None, metavar="WxH",
                    help="encode the photos (sorted by name) into an mp4 of this size, 10 fps, and process the video "
                         "(frame k is compared with the k-th photo)")
    ap.add_argument("--continuity", default=ProcessOptions.continuity, choices=("auto", "off", "on"),
                    help="process's --continuity (default auto; photos: always one pass unless on)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    for name in args.scenes:
        posed, images = SCENES[name]
        ref_scene = load_scene(data / posed, check_images=False)
        reference = centres_of_scene(ref_scene)
        axes = centres_of_scene(ref_scene, column=2)
        with tempfile.TemporaryDirectory(prefix=f"process_{name}_") as tmp:
            src = Path(tmp) / "photos"
            src.mkdir()
            names = sorted(p.name for p in (data / images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            names = names[::args.every]
            for n in names:
                shutil.copyfile(data / images / n, src / n)
            out = Path(args.keep) / name if args.keep else Path(tmp) / "capture"
            if args.video:
                src = _encode_video(src, names, args.video, Path(tmp) / f"{name}.mp4")
            t = time.perf_counter()
            report = process(src, out, ProcessOptions(matcher=args.matcher, camera_model=args.camera_model,
                                                      camera_mode=args.camera_mode, frames=len(names),
                                                      max_size=args.max_size, max_features=args.max_features,
                                                      continuity=args.continuity, mapper=args.mapper,
                                                      pair_check=args.pair_check,
                                                      threads=args.threads, overwrite=True, progress=False))
            wall = time.perf_counter() - t
            recovered = centres_of_scene(load_scene(out, check_images=False))
            if args.video:  # frame_00000k.jpg is the k-th photo
                recovered = {names[int(n[6:12])]: c for n, c in recovered.items()}
            ref = {n: reference[n] for n in names if n in reference}
            cmp = compare_centres(recovered, ref, axes)
            print(json.dumps({
                "scene": name, "images": len(names), "registered": cmp["registered"],
                "registered_fraction": round(cmp["registered_fraction"], 4),
                "rms_percent_of_spread": round(cmp["rms_percent_of_spread"], 3),
                "max_percent_of_spread": round(cmp["max_percent_of_spread"], 3),
                "along_axis_percent": round(cmp["along_axis_percent"], 3),
                "across_axis_percent": round(cmp["across_axis_percent"], 3),
                "unregistered": cmp["unregistered"],
                "points": report["points"], "reprojection_px": round(report["mean_reprojection_error_px"], 3),
                "track_length": round(report["mean_track_length"], 2), "matcher": report["options"]["matcher"],
                "mapper": args.mapper,
                "pair_check": report.get("pair_check") and {k: v for k, v in report["pair_check"].items()
                                                            if k != "dropped"},
                "camera_model": report["options"]["camera_model"],
                "camera_mode": args.camera_mode, "cameras": len(report["cameras"]), "max_size": args.max_size,
                "max_features": args.max_features, "threads": report["options"]["threads"],
                "continuity": {k: report["continuity"].get(k) for k in ("checked", "warning", "max_step_ratio",
                                                                         "max_view_change_deg")},
                "jumps": len(report["continuity"].get("jumps", [])),
                "constraint": {k: v for k, v in report.get("constraint", {}).items() if k != "dropped"},
                "continuity_auto": {k: v for k, v in report.get("continuity_auto", {}).items() if k != "constraint"},
                "continuity_option": report["options"]["continuity"],
                "video": args.video,
                "timings_s": report["timings_s"], "cpu_s": report["cpu_s"], "wall_s": round(wall, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
