"""Held-out quality and render time with the MLPs in fp32 and in bf16, side by side, on one trained run.

    python benchmarks/mlp_precision.py RUN [--set data.downscale=2] [--limit N]

Every held-out view is rendered twice in a row (fp32, then bf16 MLP inference: NERF_APP_MLP_PRECISION=fp32 /
auto), from the same model, rays and near planes, and scored against its photo as ``nerf-app eval`` scores
it (the mask, the eval background). Nothing is written into RUN. One JSON line per view and a summary:
mean PSNR of each, their difference (issue 28: within 0.05 dB), and the render-time ratio (both paths run
alternately, so the load of a shared box falls on both).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine  # noqa: E402

from nerf_app.metrics import psnr  # noqa: E402
from nerf_app.nerf.evaluate import eval_background, eval_views  # noqa: E402
from nerf_app.ops.mlp import PRECISION_ENV, inference_dtype  # noqa: E402
from nerf_app.train.modes import open_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    task, _, _ = open_run(args.run, overrides=args.overrides, lock=False)
    os.environ[PRECISION_ENV] = "auto"
    fast = inference_dtype(task.device)
    if fast == "fp32":
        emit({"bench": "mlp_precision", "error": "this CPU/build has no bf16 MLP path; nothing to compare"})
        return
    bg = eval_background(task.config)
    scores = {"fp32": [], fast: []}
    seconds = {"fp32": [], fast: []}
    for i in eval_views(task.scene, args.split, args.limit):
        gt = task.scene.images.rgb(int(i), background=np.array(bg, np.float32))[..., :3].astype(np.float32)
        mask = task.scene.images.mask(int(i))
        images = {}
        for label, env in (("fp32", "fp32"), (fast, "auto")):
            os.environ[PRECISION_ENV] = env
            start = time.perf_counter()
            images[label], _, _ = task.render_view(int(i), bg)
            seconds[label].append(time.perf_counter() - start)
            scores[label].append(psnr(images[label], gt, mask=mask))
        emit({"bench": "mlp_precision", "view": task.scene.names[int(i)], "psnr_fp32": round(scores["fp32"][-1], 4),
              f"psnr_{fast}": round(scores[fast][-1], 4), "diff_db": round(scores[fast][-1] - scores["fp32"][-1], 4),
              "max_abs_pixel_diff": round(float(np.abs(images[fast] - images["fp32"]).max()), 5),
              "s_fp32": round(seconds["fp32"][-1], 3), f"s_{fast}": round(seconds[fast][-1], 3),
              "load_avg_1m": round(os.getloadavg()[0], 2)})
    emit({"bench": "mlp_precision", "run": args.run, "overrides": args.overrides, "views": len(scores["fp32"]),
          "resolution": "x".join(map(str, images["fp32"].shape[1::-1])),
          "psnr_fp32": round(float(np.mean(scores["fp32"])), 4), f"psnr_{fast}": round(float(np.mean(scores[fast])), 4),
          "mean_diff_db": round(float(np.mean(scores[fast]) - np.mean(scores["fp32"])), 4),
          "max_view_diff_db": round(max(abs(a - b) for a, b in zip(scores[fast], scores["fp32"])), 4),
          "time_ratio_fp32_over_bf16": round(sum(seconds["fp32"]) / sum(seconds[fast]), 3),
          "median_s_fp32": round(statistics.median(seconds["fp32"]), 3),
          f"median_s_{fast}": round(statistics.median(seconds[fast]), 3), **machine(),
          "load_avg_1m": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
