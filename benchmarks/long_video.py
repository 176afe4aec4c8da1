"""A long hand-held video with known poses, posed by `nerf-app process` with both mappers (issue 29).

shared/ has no long phone video, so one is rendered from a trained real capture: a smooth path through
its training cameras in capture order (``render --path capture``'s :func:`capture_path`) with hand-held
shake added (position: a smooth random walk of ~``--shake`` of the camera-object distance; rotation:
a smooth wobble of ~``--wobble-deg``, both band-limited to a few Hz at 30 fps), drawn by the splat
rasteriser (`nerf-app render RUN --splats PLY --path PATH.json`: a 720p frame in ~0.3 s, the NeRF ~15 s)
at the training cameras' horizontal field of view. The path's poses are the ground truth; every frame is
posed (``--frames`` = the video's frame count) and the centres are compared after a similarity.

    nerf-app export RUN --splats SPLATS.ply
    python benchmarks/long_video.py RUN SPLATS.ply --work /tmp/long_video                  # path, render, both mappers
    python benchmarks/long_video.py RUN SPLATS.ply --work DIR --steps path render          # the video only
    python benchmarks/long_video.py RUN SPLATS.ply --work DIR --steps compare --captures DIR/cap_incremental

Writes WORK/path.json (nerfstudio camera path, the capture's coordinates), WORK/truth.json (frame name ->
c2w, OpenCV axes, capture coordinates; the focal length), WORK/video.mp4, WORK/cap_<mapper>/ and prints one
JSON line per step (time per stage, registered, reprojection error, RMS/max centre error % of the spread).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def smooth_noise(rng, n: int, dims: int, sigma: float) -> np.ndarray:
    """``[n, dims]`` Gaussian-filtered white noise scaled to unit standard deviation per column."""
    from scipy.ndimage import gaussian_filter1d
    x = gaussian_filter1d(rng.standard_normal((n + 8 * int(sigma), dims)), sigma, axis=0, mode="wrap")
    x = x[4 * int(sigma):4 * int(sigma) + n]
    return (x - x.mean(0)) / x.std(0)


def hand_held(poses: np.ndarray, distance: float, shake: float, wobble_deg: float, seed: int) -> np.ndarray:
    """``poses`` [N,4,4] (OpenCV c2w) with hand shake: position offsets in the camera's own axes (a slow
    wander, sigma 1 s, plus a tremor, sigma 3 frames, at 30 fps) of RMS ``shake * distance``; rotation
    wobble of RMS ``wobble_deg`` per axis (the same two bands)."""
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(seed)
    n = len(poses)
    pos = 0.8 * smooth_noise(rng, n, 3, 30.0) + 0.6 * smooth_noise(rng, n, 3, 3.0)
    rot = 0.8 * smooth_noise(rng, n, 3, 30.0) + 0.6 * smooth_noise(rng, n, 3, 3.0)
    out = np.array(poses, np.float64, copy=True)
    R = out[:, :3, :3]
    out[:, :3, 3] += np.einsum("nij,nj->ni", R, pos * shake * distance)
    out[:, :3, :3] = R @ Rotation.from_rotvec(np.radians(rot * wobble_deg)).as_matrix()
    return out


def build_path(run: str, work: Path, frames: int, width: int, height: int, fps: int, shake: float,
               wobble_deg: float, seed: int) -> dict:
    from nerf_app.camera_paths import capture as cp
    from nerf_app.camera_paths.keyframes import write_camera_path
    from nerf_app.nerf.outputs import scene_capture_frame
    from nerf_app.data import load_scene
    from nerf_app.train.modes import load_run_config

    cfg = load_run_config(run)[1]       # the run's scene and split, without loading its model and images
    scene = load_scene(cfg.input, format=cfg.data.format, downscale=cfg.data.downscale,
                       holdout_every=cfg.data.holdout_every)
    train = scene.split_indices("train")
    names = [scene.names[int(i)] for i in train]
    order, how = cp.capture_order(names, scene.c2w[train, :3, 3])
    smooth = cp.capture_path(scene.c2w[train], order, frames)              # normalised coordinates
    frame = scene_capture_frame(scene)
    poses = hand_held(smooth, float(frame.radius), shake, wobble_deg, seed)
    cam = scene.cameras[int(train[0])]
    f = cam.fx * width / cam.width                                         # the photos' horizontal field of view
    fov_v = math.degrees(2 * math.atan(0.5 * height / f))
    poses_cap = scene.normalization.c2w_to_capture(poses)
    work.mkdir(parents=True, exist_ok=True)
    write_camera_path(work / "path.json", poses_cap, [fov_v] * frames, width, height, fps)
    truth = {"focal_px": f, "width": width, "height": height, "order": how,
             "c2w": {f"frame_{k:06d}.jpg": p.tolist() for k, p in enumerate(poses_cap)}}
    (work / "truth.json").write_text(json.dumps(truth))
    cover = cp.path_coverage(poses, scene.c2w[train], frame.target, names)
    step = np.linalg.norm(np.diff(poses_cap[:, :3, 3], axis=0), axis=1)
    dist = np.linalg.norm(poses[:, :3, 3] - frame.target, axis=1).mean() / scene.normalization.scale
    return {"step": "path", "frames": frames, "order": how, "focal_px": round(f, 2), "fov_v_deg": round(fov_v, 3),
            "within_20deg": cover["within"], "angle_deg_max": round(cover["angle_deg_max"], 2),
            "distance_ratio_range": [round(v, 3) for v in cover["distance_ratio_range"]],
            "mean_distance": round(float(dist), 4), "step_median": float(np.median(step)),
            "spread": float(np.sqrt(((poses_cap[:, :3, 3] - poses_cap[:, :3, 3].mean(0)) ** 2).sum(1).mean()))}


def compare(work: Path, capture: Path) -> dict:
    from nerf_app.data import load_scene
    from nerf_app.process.report import centres_of_scene, compare_centres

    truth = json.loads((work / "truth.json").read_text())
    ref = {n: np.asarray(c)[:3, 3] for n, c in truth["c2w"].items()}
    axes = {n: np.asarray(c)[:3, 2] for n, c in truth["c2w"].items()}
    cmp = compare_centres(centres_of_scene(load_scene(capture, check_images=False)), ref, axes)
    report = json.loads((capture / "process_report.json").read_text())
    cams = report.get("cameras") or [{}]
    return {"step": "compare", "capture": str(capture), "mapper": report.get("options", {}).get("mapper"),
            "registered": cmp["registered"], "frames": len(ref),
            "rms_percent_of_spread": round(cmp["rms_percent_of_spread"], 3),
            "max_percent_of_spread": round(cmp["max_percent_of_spread"], 3),
            "along_across": [round(cmp.get(k, float("nan")), 3) for k in ("along_axis_percent", "across_axis_percent")],
            "focal_px": cams[0].get("params", [None])[0], "focal_true_px": round(truth["focal_px"], 2),
            "reprojection_px": report.get("mean_reprojection_error_px"), "points": report.get("points"),
            "pairs": report.get("pairs_matched"), "verified": report.get("pairs_verified"),
            "models": report.get("models"), "timings_s": report.get("timings_s"), "cpu_s": report.get("cpu_s")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a trained nerf run of a real capture")
    ap.add_argument("splats", help="its splats (nerf-app export RUN --splats PLY)")
    ap.add_argument("--work", default="/tmp/long_video")
    ap.add_argument("--steps", nargs="+", default=["path", "render", "pose"],
                    choices=("path", "render", "pose", "compare"))
    ap.add_argument("--frames", type=int, default=700)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--shake", type=float, default=0.01, help="RMS position shake, a fraction of the camera distance")
    ap.add_argument("--wobble-deg", type=float, default=0.5, help="RMS rotation wobble per axis, degrees")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mappers", nargs="+", default=["incremental", "global"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--process-args", default="", help="more `nerf-app process` arguments")
    ap.add_argument("--captures", nargs="*", default=None, help="(compare) capture folders")
    args = ap.parse_args(argv)
    work = Path(args.work)
    w, h = (int(v) for v in args.size.split("x"))
    video = work / "video.mp4"
    if "path" in args.steps:
        print(json.dumps(build_path(args.run, work, args.frames, w, h, args.fps, args.shake, args.wobble_deg,
                                    args.seed)), flush=True)
    if "render" in args.steps:
        t = time.perf_counter()
        subprocess.run(["nerf-app", "render", args.run, "--splats", args.splats, "--path", str(work / "path.json"),
                        "--resolution", args.size, "--frames", str(args.frames), "--fps", str(args.fps),
                        "--out", str(video)], check=True)
        print(json.dumps({"step": "render", "video": str(video), "wall_s": round(time.perf_counter() - t, 1)}),
              flush=True)
    captures = [Path(c) for c in args.captures] if args.captures else []
    if "pose" in args.steps:
        for mapper in args.mappers:
            out = work / f"cap_{mapper}"
            t = time.perf_counter()
            subprocess.run(["nerf-app", "process", str(video), "--out", str(out), "--frames", str(args.frames),
                            "--mapper", mapper, "--threads", str(args.threads), "--overwrite", "--no-progress",
                            *args.process_args.split()], check=True)
            print(json.dumps({"step": "pose", "mapper": mapper, "wall_s": round(time.perf_counter() - t, 1)}),
                  flush=True)
            captures.append(out)
    if "compare" in args.steps or "pose" in args.steps:
        for cap in captures:
            print(json.dumps(compare(work, cap)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
