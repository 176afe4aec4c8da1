"""Full NeRF training step throughput (field + marching + rendering + backward + optimizer), per backend,
in one run: samples/s and the ratio to the torch reference.

    python benchmarks/nerf_train.py [--scene ../shared/data/lego] [--samples 16384] [--steps 6]

Each backend trains the same model from the same seed; the first steps (grid warm-up) are not timed.
The torch reference marches rays in Python, so the sample target is kept modest for both.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine  # noqa: E402

from nerf_app.nerf.config import NerfConfig  # noqa: E402
from nerf_app.nerf.task import NerfTask  # noqa: E402
from nerf_app.train.trainer import seed_everything  # noqa: E402

DEFAULT_SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "lego"


def measure(scene: str, backend: str, samples: int, steps: int, warmup: int, downscale: float,
            mlp_backend: str = ""):
    seed_everything(0)
    cfg = NerfConfig(input=scene, backend=backend)
    cfg.data.downscale = downscale
    cfg.rays.target_samples = samples
    cfg.rays.initial_rays = max(64, samples // 32)
    cfg.grid.warmup_steps = 1
    task = NerfTask(cfg)
    task.build()
    if mlp_backend:  # e.g. "torch": everything compiled but the MLPs (the fused MLP's before/after)
        task.model.field.density_net.backend = mlp_backend
        task.model.field.color_net.backend = mlp_backend
    task.prepare(0)
    times, counts = [], []
    for step in range(warmup + steps):
        task.budget_fraction = 0.0
        start = time.perf_counter()
        task.optimizer.zero_grad(set_to_none=True)
        out = task.train_step(step)
        task.optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
            counts.append(out["samples"])
    return statistics.median([c / t for c, t in zip(counts, times)]), statistics.median(times), statistics.median(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default=str(DEFAULT_SCENE))
    parser.add_argument("--samples", type=int, default=16384, help="target samples per step")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per backend (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--downscale", type=float, default=1.0)
    args = parser.parse_args()
    base = {"bench": "nerf_train_step", "scene": Path(args.scene).name, "target_samples": args.samples, **machine()}
    reference = None
    runs = [("torch", "", "torch"), ("auto", "torch", "cpp kernels, torch MLPs"), ("auto", "", "cpp")]
    for backend, mlp, label in runs:
        sps, sec, n = measure(args.scene, backend, args.samples, args.steps, args.warmup, args.downscale, mlp)
        reference = reference or sps
        emit({**base, "backend": label, "samples_per_s": round(sps), "median_step_s": round(sec, 4),
              "median_samples": int(n), "ratio_to_torch": round(sps / reference, 2)})


if __name__ == "__main__":
    main()
