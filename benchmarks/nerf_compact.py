"""Training-step throughput with and without compaction (``rays.train_compact``), on a trained run, in one run.

    python benchmarks/nerf_compact.py RUN [--rays 2048] [--steps 8]

A trained run is the regime that matters: early in training nothing is opaque and compaction keeps every
sample. Both variants take the same number of rays per step (no ray-count adaptation) and alternate step by
step on the same model (Adam steps included), so drift and machine noise fall on both. Prints one JSON line
per variant (median step time, rays/s, samples evaluated with gradients and marched per ray) and one with
the ratio; the loss of the two variants on the same rays is compared too (they must agree).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine  # noqa: E402

from nerf_app.train.modes import open_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained nerf run folder")
    parser.add_argument("--rays", type=int, default=2048, help="rays per step (fixed)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant (median)")
    args = parser.parse_args()
    task, _, _ = open_run(args.run, lock=False)
    task.budget_fraction = 0.5
    times = {False: [], True: []}
    stats = {False: [], True: []}
    losses = {}
    for i in range(2 * (args.steps + 1)):
        compact = bool(i % 2)
        task.train_compact = compact
        task.n_rays = args.rays
        # the same rays for both variants of a pair (the sampler's generator state is replayed)
        if not compact:
            rng = task.sampler.generator.get_state()
        else:
            task.sampler.generator.set_state(rng)
        task.optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = task.train_step(1 + 2 * i)   # never a grid-update step
        if i >= 2:   # the first pair compares losses on the same model
            task.optimizer.step()
        elapsed = time.perf_counter() - start
        if i == 0 or i == 1:
            losses[compact] = float(out["loss"].detach())
        if i >= 2:   # the first pair warms caches up
            times[compact].append(elapsed)
            stats[compact].append((out["samples_per_ray"], out["marched_per_ray"]))
    med = {}
    for compact in (False, True):
        t = statistics.median(times[compact])
        med[compact] = t
        emit({"bench": "nerf_train_compact", "run": args.run, "compact": compact, "rays": args.rays,
              "step_s": round(t, 4), "rays_per_s": round(args.rays / t),
              "samples_per_ray": round(statistics.median(s for s, _ in stats[compact]), 1),
              "marched_per_ray": round(statistics.median(m for _, m in stats[compact]), 1), **machine()})
    emit({"bench": "nerf_train_compact", "run": args.run, "speedup": round(med[False] / med[True], 3),
          "loss_full": losses[False], "loss_compact": losses[True],
          "loss_rel_diff": abs(losses[False] - losses[True]) / max(abs(losses[False]), 1e-12)})


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
