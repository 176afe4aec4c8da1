"""`nerf-app export RUN --mesh OUT.{ply,obj,glb}`: marching-cubes mesh of a trained field."""
from __future__ import annotations

import json

from .arguments import MAX_MESH_RESOLUTION, float_in, int_in, number_or_auto


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder made by `nerf-app train`")
    parser.add_argument("--mesh", default=None, help="output mesh (.ply/.obj/.glb; default RUN/mesh.ply)")
    parser.add_argument("--resolution", type=int_in(8, MAX_MESH_RESOLUTION), default=None,
                        help="marching-cubes samples per axis")
    parser.add_argument("--threshold", type=number_or_auto, default=None,
                        help="iso level (default: the mode's: 0 for sdf, 0.5 for occupancy)")
    parser.add_argument("--chunks", type=int_in(1, 4096), default=None, help="evaluate the grid in this many slabs")
    parser.add_argument("--min-component", type=float_in(0, 1), default=None,
                        help="drop connected pieces with fewer faces than this fraction of the largest")
    parser.add_argument("--points", default=None, help="(nerf) also write a coloured point cloud from rendered depth (.ply)")
    parser.add_argument("--shape", default=None, help="(latent sdf) export this shape only (default: every shape)")
    parser.add_argument("--interpolate", nargs=2, default=None, metavar=("SHAPE_A", "SHAPE_B"),
                        help="(latent sdf) meshes along the straight line between two shapes' codes")
    parser.add_argument("--steps", type=int_in(2, 1000), default=None, help="(latent sdf) number of --interpolate meshes (default 5)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or name (last/final; default: newest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args) -> int:
    from ..train.modes import open_run

    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    opts = {k: v for k, v in {"mesh": args.mesh, "resolution": args.resolution, "threshold": args.threshold,
                              "chunks": args.chunks, "min_component": args.min_component, "points": args.points,
                              "shape": args.shape, "interpolate": args.interpolate, "steps": args.steps}.items()
            if v is not None}
    print(json.dumps(task.export(run_dir.path, **opts)))
    return 0
