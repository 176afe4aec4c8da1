"""`nerf-app fit-latent RUN MESH`: a new shape's code in a latent-conditioned sdf run, decoder frozen.

Writes the reconstructed mesh and a JSON report (chamfer_l1 ...) into RUN/fit/ (or --out).
"""
from __future__ import annotations

import json

from .arguments import output_folder


def add_arguments(parser) -> None:
    parser.add_argument("run", help="a latent sdf run (`nerf-app train FOLDER_OF_MESHES --mode sdf`)")
    parser.add_argument("mesh", help="the new shape (.obj/.ply/.off/.stl/.glb)")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default latent.fit_steps)")
    parser.add_argument("--out", type=output_folder, default=None, help="output folder (default RUN/fit)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or name (last/final; default: newest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (e.g. latent.fit_lr=0.005, eval.resolution=128)")


def run(args) -> int:
    from ..train.modes import open_run

    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    result = task.fit_latent(run_dir.path, args.mesh, steps=args.steps, out=args.out)  # Task: one line otherwise
    print(json.dumps({k: v for k, v in result.items() if k != "code"}))
    return 0
