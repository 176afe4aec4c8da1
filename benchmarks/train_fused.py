"""Training steps before and after the fused CPU compaction (issue 28 part 4), in one process, alternating.

    python benchmarks/train_fused.py RUN [--blocks 10] [--block-steps 5]

RUN is a trained nerf run folder (read only: nothing in it is written; the optimizer state stays in memory).
"before" is the composed compaction (``rays.train_fused=never``) with a fresh hash-table gradient per step
(the buffer path of ``nerf_app/ops/hashgrid.py`` switched off); "after" is the default: the fused pass and
the reused gradient buffer. Blocks of steps alternate between the two on the same model, so drift in the
box's load hits both alike; odd steps only (no occupancy-grid update). Each step's time is divided by its
ray count (the ray count adapts to the sample target, so it is about equal on both sides). JSON lines:
per side the median, quartiles and count of microseconds per ray, then the ratio before / after.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--block-steps", type=int, default=5)
    args = parser.parse_args()
    from nerf_app.ops import hashgrid
    from nerf_app.train.modes import open_run
    task, _, _ = open_run(args.run, lock=False)
    torch.manual_seed(0)
    task.budget_fraction = 0.5
    buffered = hashgrid._accumulates_into
    emit({"bench": "train_fused", "run": args.run, "load_avg_1m": os.getloadavg()[0], **machine()})

    def step(i: int, after: bool) -> float:
        task.train_fused = None if after else False
        hashgrid._accumulates_into = buffered if after else (lambda table: False)
        start = time.perf_counter()
        task.optimizer.zero_grad(set_to_none=True)
        out = task.train_step(i)
        task.optimizer.step()
        return (time.perf_counter() - start) / out["rays"] * 1e6

    for i in range(6):   # warm-up: allocations, the buffer, the first rounds
        step(1 + 2 * i, i % 2 == 1)
    times = {False: [], True: []}
    i = 101
    for _ in range(args.blocks):
        for after in (False, True):
            for _ in range(args.block_steps):
                times[after].append(step(i, after))
                i += 2
    hashgrid._accumulates_into = buffered
    for after, v in times.items():
        q = statistics.quantiles(v)
        emit({"bench": "train_fused", "side": "after" if after else "before", "us_per_ray_median": round(statistics.median(v), 3),
              "q1": round(q[0], 3), "q3": round(q[2], 3), "steps": len(v), "rays_last": task.n_rays})
    emit({"bench": "train_fused", "before_over_after": round(statistics.median(times[False]) / statistics.median(times[True]), 3),
          "load_avg_1m": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
