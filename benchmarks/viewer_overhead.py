"""Training speed with the live viewer attached vs without (the viewer must cost ~nothing when no browser
is connected), and, for information, with a headless browser watching.

    python benchmarks/viewer_overhead.py [--input data/demo] [--steps 40] [--repeats 3] [--browser]

Alternates the variants ``repeats`` times (the machine is shared: medians) and prints one JSON line.
Steps/s = steps / wall time of ``Trainer.fit`` minus its setup (hooks included).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

TINY = ["data.downscale=2", "model.log2_hashmap_size=16", "grid.resolution=64", "rays.target_samples=16384",
        "rays.initial_rays=1024", "train.progress=false", "train.checkpoint_every=0", "train.checkpoint_every_s=0"]


def one(variant, args, root):
    from nerf_app.train.config import load_config
    from nerf_app.train.modes import get_task_class
    from nerf_app.train.trainer import Trainer
    task_cls = get_task_class("nerf")
    cfg = load_config(task_cls.config_class, "nerf", None, TINY + [f"train.max_steps={args.steps}",
                                                                  "train.max_time=0", f"threads={args.threads}"])
    cfg.input = os.path.abspath(args.input)
    run = tempfile.mkdtemp(dir=root)
    os.rmdir(run)
    trainer = Trainer(task_cls, cfg, run)
    viewer = page = None
    if variant != "plain":
        from nerf_app.viewer.server import Viewer
        viewer = Viewer(run_dir=run, host="127.0.0.1", port=0, live=True, log=lambda m: None).start()
        trainer.on_step.append(lambda step, metrics: viewer.on_step(step, metrics, trainer))
        if variant == "browser":
            from nerf_app.viewer.headless import Chromium
            page = Chromium()
            page.open(f"http://127.0.0.1:{viewer.port}")
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0 - result.build_seconds
    if page is not None:
        page.close()
    if viewer is not None:
        viewer.stop()
    return result.steps / wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", default="data/demo")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--browser", action="store_true")
    args = ap.parse_args()
    variants = ["plain", "viewer"] + (["browser"] if args.browser else [])
    rates = {v: [] for v in variants}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as root:
        for _ in range(args.repeats):
            for v in variants:
                rates[v].append(one(v, args, root))
                load.append(os.getloadavg()[0])
    med = {v: statistics.median(r) for v, r in rates.items()}
    out = {"steps": args.steps, "repeats": args.repeats, "threads": args.threads,
           "steps_per_s": {v: [round(x, 3) for x in r] for v, r in rates.items()},
           "median_steps_per_s": {v: round(m, 3) for v, m in med.items()},
           "viewer_no_client_slowdown_pct": round(100 * (1 - med["viewer"] / med["plain"]), 1),
           "load_1min": [round(x, 1) for x in load]}
    if "browser" in med:
        out["browser_connected_slowdown_pct"] = round(100 * (1 - med["browser"] / med["plain"]), 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
