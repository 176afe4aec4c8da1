"""`nerf-app eval RUN`: held-out metrics of a trained run -> RUN/metrics.json."""
from __future__ import annotations

import json
from pathlib import Path

from .arguments import int_in, output_file


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder made by `nerf-app train`")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or name (last/final; default: newest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value for this evaluation (e.g. eval.n_points=200000)")
    parser.add_argument("--split", default=None, help="(nerf) split to evaluate")
    parser.add_argument("--limit", type=int_in(1), default=None, help="(nerf) evaluate at most N images")
    parser.add_argument("--out", type=output_file, default=None, help="metrics file (default: RUN/metrics.json; RUN/metrics_mesh.json with --mesh)")
    parser.add_argument("--mesh", default=None,
                        help="score an exported mesh instead: rendered at the held-out cameras (PSNR/SSIM next to "
                             "the NeRF's own) and Chamfer to the truth where there is one")
    parser.add_argument("--splats", default=None,
                        help="(nerf) score a splat PLY (export --splats) instead: rendered at the held-out cameras, "
                             "PSNR/SSIM next to the NeRF's own -> RUN/metrics_splats.json")
    parser.add_argument("--sheet", choices=("worst", "all"), default=None,
                        help="(nerf) contact sheet: worst (default: the 4 lowest-PSNR views, worst first, then the "
                             "median and the best, each labelled with its PSNR) or all (every view, worst first)")
    parser.add_argument("--supersample", type=int, default=2, help="(--mesh) rays per pixel side (default 2: 2x2)")


def run(args) -> int:
    from ..train.modes import open_run

    if args.mesh is not None and not Path(args.mesh).is_file():
        from ..errors import ConfigError
        raise ConfigError(f"--mesh {args.mesh}: no such file")
    if args.supersample < 1 or args.supersample > 8:
        from ..errors import ConfigError
        raise ConfigError(f"--supersample must be from 1 to 8, got {args.supersample}")
    if args.sheet is not None:
        from ..train.modes import load_run_config
        mode = load_run_config(args.run, args.overrides)[1].mode
        if mode != "nerf" or args.mesh is not None:
            from ..errors import ConfigError
            raise ConfigError(f"--sheet: only a nerf run's own evaluation has a contact sheet of held-out views "
                              f"(this is {'--mesh' if args.mesh is not None else f'a {mode} run'})")
    if args.splats is not None:
        from ..splats.export import check_mode, check_splat_file
        from ..train.modes import load_run_config
        check_splat_file(args.splats)
        check_mode(load_run_config(args.run, args.overrides)[1].mode)
    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    if args.splats is not None:
        from ..splats.views import evaluate_splats
        metrics = evaluate_splats(task, run_dir.path, args.splats, split=args.split or "test", limit=args.limit)
        path = run_dir.write_metrics(metrics, args.out or run_dir.path / "metrics_splats.json")
        print(json.dumps({k: v for k, v in metrics.items() if k != "per_image"}))
        print(f"wrote {path}")
        return 0
    if args.mesh is not None:
        from ..export.mesh_eval import evaluate_mesh
        metrics = evaluate_mesh(task, run_dir.path, args.mesh, split=args.split or "test", limit=args.limit,
                                supersample=args.supersample, out_dir=Path(args.out).parent if args.out else None)
        path = run_dir.write_metrics(metrics, args.out or run_dir.path / "metrics_mesh.json")
        print(json.dumps({k: v for k, v in metrics.items() if k != "per_image"}))
        print(f"wrote {path}")
        return 0
    opts = {k: v for k, v in {"split": args.split, "limit": args.limit, "sheet": args.sheet}.items() if v is not None}
    metrics = task.evaluate(run_dir.path, **opts)
    path = run_dir.write_metrics(metrics, args.out)
    print(json.dumps(metrics))
    print(f"wrote {path}")
    return 0
