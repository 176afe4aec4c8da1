"""The splat rasteriser against the NeRF on the same view (issue 27), in one run.

For a trained nerf run and its splat file (``nerf-app export RUN --splats X.ply``): a held-out camera of the
run drawn at ``--width``x``--height`` (default 800x600, the cup's photos) by

- ``splat_forward``: projection + the C++ rasteriser (no autograd), what a viewer frame costs;
- ``splat_forward_backward``: the same with gradients to every splat parameter, one refinement step's render;
- ``nerf_render``: the NeRF's own render of the same rays (occupancy-grid marching, early termination);

interleaved repetition by repetition so load from other processes hits all alike; medians. One JSON line per
measurement, with the machine and its 1-minute load average. ``--simd scalar,avx2`` measures the splat
rasteriser once per per-pixel loop (NERF_APP_SPLAT_SIMD; ``[loop]`` after the measure's name), interleaved too.
``--adam`` adds one refinement step's optimiser update over the file's splats (refine.py's Adam, gradients
random), ``adam_step[foreach]`` against ``adam_step[fused]`` (what refine.py uses).

    python benchmarks/splats.py RUN X.ply [--reps 5] [--nerf-reps 3] [--width 800 --height 600] [--simd auto] [--adam]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from common import emit, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("splats")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--nerf-reps", type=int, default=3)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--view", type=int, default=0, help="which held-out view (position in the test split)")
    parser.add_argument("--simd", default="auto", help="comma-separated per-pixel loops: auto, scalar, avx2, avx512")
    parser.add_argument("--adam", action="store_true", help="also time the refinement's Adam step, foreach vs fused")
    args = parser.parse_args()

    from nerf_app.nerf.renderer import render_image
    from nerf_app.ops.splat import SplatCamera, render_splats
    from nerf_app.splats.bake import corrected_c2w
    from nerf_app.splats.views import load_for_run
    from nerf_app.train.modes import open_run

    task, _, _ = open_run(args.run, None, [], lock=False)
    splats = load_for_run(task, args.splats)
    scene = task.scene
    index = int(scene.split_indices("test")[args.view])
    cam = scene.cameras[index]
    sx, sy = args.width / cam.width, args.height / cam.height
    scam = SplatCamera(corrected_c2w(task, index), cam.fx * sx, cam.fy * sy, cam.cx * sx, cam.cy * sy,
                       args.width, args.height)
    bg = torch.tensor([1.0, 1.0, 1.0])
    # the NeRF's rays of that same pinhole camera
    u, v = np.meshgrid(np.arange(args.width) + 0.5, np.arange(args.height) + 0.5)
    d = np.stack([(u - scam.cx) / scam.fx, (v - scam.cy) / scam.fy, np.ones_like(u)], -1) @ scam.c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    dirs = torch.from_numpy(d).float()
    origins = torch.from_numpy(np.broadcast_to(scam.c2w[:3, 3], d.shape).copy()).float()
    params = [t.clone().requires_grad_() for t in splats.tensors()]

    def with_loop(loop, fn):
        def run():
            os.environ["NERF_APP_SPLAT_SIMD"] = loop
            fn()
        return run

    def splat_forward():
        with torch.no_grad():
            render_splats(*splats.tensors(), scam, bg)

    def splat_forward_backward():
        img, _, _ = render_splats(*params, scam, bg)
        img.sum().backward()

    def nerf():
        render_image(task.model.field, task.model.grid, origins, dirs, bg, task.march, backend=task.config.backend,
                     near=task.image_near(index), color_transform=task.eval_color_transform(None))

    loops = args.simd.split(",")
    runs = {}
    for loop in loops:
        tag = "" if loops == ["auto"] else f"[{loop}]"
        runs[f"splat_forward{tag}"] = (with_loop(loop, splat_forward), args.reps)
        runs[f"splat_forward_backward{tag}"] = (with_loop(loop, splat_forward_backward), args.reps)
    if args.adam:
        for kind in ("foreach", "fused"):
            runs[f"adam_step[{kind}]"] = (adam_step(splats, kind == "fused"), args.reps)
    runs["nerf_render"] = (nerf, args.nerf_reps)
    for fn, _ in runs.values():   # warm-up
        fn()
    times = {k: [] for k in runs}
    loads = []
    for r in range(max(n for _, n in runs.values())):
        for name, (fn, n) in runs.items():
            if r < n:
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
    base = {"run": args.run, "splats_file": args.splats, "n_splats": len(splats), "view": scene.names[index],
            "width": args.width, "height": args.height, "load_avg_1m": round(float(np.mean(loads)), 2), **machine()}
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, v in times.items():
        emit({"bench": "splats", "measure": name, "median_s": round(med[name], 4), "reps": len(v),
              "all_s": [round(x, 4) for x in v],
              "speedup_vs_nerf": round(med["nerf_render"] / med[name], 2), **base})


def adam_step(splats, fused: bool):
    """One Adam update of every splat parameter (the refinement's optimiser: one group per tensor, eps 1e-15)."""
    g = torch.Generator().manual_seed(0)
    params = [t.detach().clone().requires_grad_() for t in splats.tensors()]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    opt = torch.optim.Adam([{"params": [p], "lr": 1e-3} for p in params], eps=1e-15, fused=fused,
                           foreach=None if fused else True)
    return opt.step


if __name__ == "__main__":
    main()
