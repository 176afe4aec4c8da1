"""Full NeRF training step throughput (field + marching + rendering + backward + optimizer), per backend,
in one run: samples/s and the ratio to the torch reference.

    python benchmarks/nerf_train.py [--device cpu|cuda] [--scene ../shared/data/lego] [--samples 16384]
                                    [--steps 6] [--backends torch,mixed,native]

Each backend trains the same model from the same seed; the first steps (grid warm-up) are not timed.
The torch reference marches rays in Python, so the sample target is kept modest for both. On CUDA each
step is synchronised before its clock stops (kernels run asynchronously), and ``host_syncs`` counts the
step's host synchronisations (torch.cuda.set_sync_debug_mode("warn") warnings).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine, sync  # noqa: E402

from nerf_app.nerf.config import NerfConfig  # noqa: E402
from nerf_app.nerf.task import NerfTask  # noqa: E402
from nerf_app.train.trainer import seed_everything  # noqa: E402

DEFAULT_SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "lego"


def measure(scene: str, backend: str, samples: int, steps: int, warmup: int, downscale: float,
            mlp_backend: str = "", device: str = "cpu"):
    seed_everything(0)
    cfg = NerfConfig(input=scene, backend=backend)
    cfg.device = device
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
    dev = torch.device(device)
    times, counts, syncs = [], [], []
    for step in range(warmup + steps):
        task.budget_fraction = 0.0
        sync(dev)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if dev.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            try:
                task.optimizer.zero_grad(set_to_none=True)
                out = task.train_step(step)
                task.optimizer.step()
            finally:
                if dev.type == "cuda":
                    torch.cuda.set_sync_debug_mode("default")
        sync(dev)
        if step >= warmup:
            times.append(time.perf_counter() - start)
            counts.append(out["samples"])
            syncs.append(sum("synchroniz" in str(w.message) for w in caught))
    return (statistics.median([c / t for c, t in zip(counts, times)]), statistics.median(times),
            statistics.median(counts), max(syncs) if dev.type == "cuda" else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default=str(DEFAULT_SCENE))
    parser.add_argument("--samples", type=int, default=16384, help="target samples per step")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per backend (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--downscale", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--backends", default="torch,mixed,native",
                        help="comma list of: torch (the reference), mixed (compiled kernels, torch MLPs), native")
    args = parser.parse_args()
    native = "cuda" if args.device == "cuda" else "cpp"
    base = {"bench": "nerf_train_step", "device": args.device, "scene": Path(args.scene).name,
            "target_samples": args.samples, **machine()}
    reference = None
    runs = {"torch": ("torch", "", "torch"), "mixed": ("auto", "torch", f"{native} kernels, torch MLPs"),
            "native": ("auto", "", native)}
    for key in args.backends.split(","):
        backend, mlp, label = runs[key.strip()]
        sps, sec, n, syncs = measure(args.scene, backend, args.samples, args.steps, args.warmup, args.downscale, mlp,
                                     args.device)
        reference = reference or sps
        emit({**base, "backend": label, "samples_per_s": round(sps), "median_step_s": round(sec, 4),
              "median_samples": int(n), "host_syncs": syncs, "ratio_to_first": round(sps / reference, 2)})


if __name__ == "__main__":
    main()
