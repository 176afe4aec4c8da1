"""`nerf-app eval RUN`: held-out metrics of a trained run -> RUN/metrics.json."""
from __future__ import annotations

import json

from .arguments import int_in


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder made by `nerf-app train`")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or name (last/final; default: newest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value for this evaluation (e.g. eval.n_points=200000)")
    parser.add_argument("--split", default=None, help="(nerf) split to evaluate")
    parser.add_argument("--limit", type=int_in(1), default=None, help="(nerf) evaluate at most N images")
    parser.add_argument("--out", default=None, help="metrics file (default: RUN/metrics.json)")


def run(args) -> int:
    from ..train.modes import open_run

    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    opts = {k: v for k, v in {"split": args.split, "limit": args.limit}.items() if v is not None}
    metrics = task.evaluate(run_dir.path, **opts)
    path = run_dir.write_metrics(metrics, args.out)
    print(json.dumps(metrics))
    print(f"wrote {path}")
    return 0
