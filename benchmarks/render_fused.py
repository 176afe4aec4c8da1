"""Render time and quality of the fused CPU render against the composed ops, side by side, on one trained run.

    python benchmarks/render_fused.py RUN [--set data.downscale=2] [--views 3] [--frames 4]
                                          [--resolution 400x224] [--reps 3] [--fused-rounds 4,4]
                                          [--paths composed:fp32,fused:fp32,fused:auto]

Held-out views (at the run's data.downscale) and default-orbit frames (at --resolution) are each rendered
--reps times with the composed ops (render_rays_early_stop; the code path before the fused pass) and with the
fused pass, alternating, from the same model, rays and near planes. Held-out views are scored against their
photos as ``nerf-app eval`` scores them. ``--fused-rounds K,KMAX`` renders the fused path with other render
rounds than the run's (rays.round_samples, rays.round_samples_max): main before and after a change of defaults,
as a run trained before it (8/16) and one trained after it (4/4) would render. One JSON line per view/frame and
a summary: median seconds of each path, their ratio, PSNR of each and the largest pixel difference. Nothing is
written into RUN. ``--paths`` names the code path and MLP inference precision of each side (baseline first; the
ratio is first over last): the default compares main before the fused pass (composed, fp32: its ``auto``) with
today's default (fused, ``auto``: bf16 on AMX where the CPU has it, issue 28).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine, precision  # noqa: E402

from nerf_app.camera_paths.orbit import pinhole_rays  # noqa: E402
from nerf_app.data.rays import pixel_grid, world_rays  # noqa: E402
from nerf_app.metrics import psnr  # noqa: E402
from nerf_app.nerf.evaluate import eval_background, eval_views  # noqa: E402
from nerf_app.nerf.outputs import camera_path_info, frame_size  # noqa: E402
from nerf_app.nerf.renderer import render_image  # noqa: E402
from nerf_app.train.modes import open_run  # noqa: E402

DEFAULT_PATHS = "composed:fp32,fused:auto"


def parse_paths(text):
    """``--paths composed:fp32,fused:auto`` -> [(label, fused, precision)]: the code path and the MLP inference
    precision (NERF_APP_MLP_PRECISION) each path renders with. The first is the baseline of the ratios, the
    last the new code. Main before the fused pass rendered composed in fp32 (its ``auto``), and its held-out
    views' rays came from :func:`old_scene_rays`: the baseline path renders with those."""
    out = []
    for item in text.split(","):
        path, _, precision = item.partition(":")
        if path not in ("composed", "fused") or precision not in ("auto", "fp32", "bf16"):
            raise SystemExit(f"--paths: {item!r} is not composed|fused:auto|fp32|bf16")
        out.append((f"{path}_{precision}", path == "fused", precision))
    return out


def old_scene_rays(scene, index):
    """Scene.rays as main had it before issue 28's last session: every pixel through world_rays, the camera's
    undistortion recomputed for each view (the same rays bit for bit, ~2 s a 720x1280 distorted view)."""
    cam = scene.cameras[index]
    grid = pixel_grid(cam.width, cam.height).reshape(-1, 2)
    o, d = world_rays(scene.c2w, scene.cameras, np.full(len(grid), index), grid)
    return o.reshape(cam.height, cam.width, 3), d.reshape(cam.height, cam.width, 3)


@contextlib.contextmanager
def old_rays(task, on):
    """Held-out views' rays as main before (``on``), or as now."""
    if not on:
        yield
        return
    task.scene.rays = lambda index: old_scene_rays(task.scene, index)
    try:
        yield
    finally:
        del task.scene.rays




def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--resolution", default="400x224")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fused-rounds", default=None, metavar="K,KMAX")
    parser.add_argument("--paths", default=DEFAULT_PATHS, help="label:precision pairs, baseline first "
                        f"(default {DEFAULT_PATHS}: main before the fused pass, and now)")
    args = parser.parse_args()
    PATHS = parse_paths(args.paths)
    base, new = PATHS[0][0], PATHS[-1][0]
    task, _, _ = open_run(args.run, overrides=args.overrides, lock=False)
    bg = eval_background(task.config)
    task.hide_unseen()   # once, before anything is timed (render and eval do it on their first frame)
    marches = {name: task.march for name, _, _ in PATHS}
    if args.fused_rounds:
        k, k_max = (int(v) for v in args.fused_rounds.split(","))
        for name, fused, _ in PATHS:
            if fused:
                marches[name] = dataclasses.replace(task.march, round_samples=k, round_samples_max=k_max)
    seconds = {name: [] for name, _, _ in PATHS}
    scores = {name: [] for name, _, _ in PATHS}
    max_diff = 0.0
    views = list(eval_views(task.scene, "test", args.views))[: args.views]
    for i in views:
        gt = task.scene.images.rgb(int(i), background=np.array(bg, np.float32))[..., :3].astype(np.float32)
        mask = task.scene.images.mask(int(i))
        t = {name: [] for name, _, _ in PATHS}
        img = {}
        for _ in range(args.reps):
            for name, fused, prec in PATHS:
                task.march = marches[name]
                with precision(prec), old_rays(task, name == base):
                    (img[name], _, _), s = timed(lambda: task.render_view(int(i), bg, fused=fused))
                t[name].append(s)
        for name, _, _ in PATHS:
            seconds[name].append(statistics.median(t[name]))
            scores[name].append(psnr(img[name], gt, mask=mask))
        diff = float(np.abs(img[new] - img[base]).max())
        max_diff = max(max_diff, diff)
        emit({"bench": "render_fused", "kind": "held-out", "view": task.scene.names[int(i)],
              "size": "x".join(map(str, img[new].shape[1::-1])),
              **{f"s_{n}": [round(v, 3) for v in t[n]] for n, _, _ in PATHS},
              **{f"psnr_{n}": round(scores[n][-1], 4) for n, _, _ in PATHS}, "max_abs_pixel_diff": round(diff, 6),
              "load_avg_1m": round(os.getloadavg()[0], 2)})
    poses, fovs, _ = camera_path_info(task, "orbit", args.frames)
    cam = task.scene.cameras[int(task.scene.split_indices("train")[0])]
    width, height = frame_size(args.resolution, cam.width, cam.height)
    transform = task.eval_color_transform(None)
    frame_s = {name: [] for name, _, _ in PATHS}
    for k, (c2w, fov) in enumerate(zip(poses, fovs)):
        o, d = pinhole_rays(c2w, width, height, fov)
        o = torch.from_numpy(o).float().reshape(height, width, 3)
        d = torch.from_numpy(d).float().reshape(height, width, 3)
        f = 0.5 * height / math.tan(math.radians(fov) / 2)
        near = (task.near_for_poses(c2w[None], f, f, width, height) or [None])[0]
        t = {name: [] for name, _, _ in PATHS}
        img = {}
        for _ in range(args.reps):
            for name, fused, prec in PATHS:
                with precision(prec):
                    (img[name], _, _), s = timed(lambda: render_image(
                        task.model.field, task.model.grid, o, d, torch.tensor(bg), marches[name],
                        backend=task.config.backend, near=near, color_transform=transform, fused=fused))
                t[name].append(s)
        for name, _, _ in PATHS:
            frame_s[name].append(statistics.median(t[name]))
        diff = float((img[new] - img[base]).abs().max())
        max_diff = max(max_diff, diff)
        emit({"bench": "render_fused", "kind": "orbit", "frame": k, "size": f"{width}x{height}",
              **{f"s_{n}": [round(v, 3) for v in t[n]] for n, _, _ in PATHS}, "max_abs_pixel_diff": round(diff, 6),
              "load_avg_1m": round(os.getloadavg()[0], 2)})
    summary = {"bench": "render_fused", "run": args.run, "overrides": args.overrides, "reps": args.reps,
               "rounds": {n: [m.round_samples, m.round_samples_max] for n, m in marches.items()},
               "threads": torch.get_num_threads(), "max_abs_pixel_diff": round(max_diff, 6)}
    if views:
        summary.update({f"heldout_median_s_{n}": round(statistics.median(seconds[n]), 3) for n, _, _ in PATHS})
        summary["heldout_speedup"] = round(statistics.median(seconds[base]) / statistics.median(seconds[new]), 3)
        summary["heldout_per_view_speedups"] = [round(a / b, 3) for a, b in zip(seconds[base], seconds[new])]
        summary.update({f"psnr_{n}": round(float(np.mean(scores[n])), 4) for n, _, _ in PATHS})
    if frame_s[new]:
        summary.update({f"orbit_median_s_{n}": round(statistics.median(frame_s[n]), 3) for n, _, _ in PATHS})
        summary["orbit_speedup"] = round(statistics.median(frame_s[base]) / statistics.median(frame_s[new]), 3)
    emit({**summary, **machine(), "load_avg_1m": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
