"""`nerf-app export RUN --mesh OUT.{ply,obj,glb}`: marching-cubes mesh of a trained field;
`--texture`: a UV-mapped mesh with a baked texture (nerf_app.export)."""
from __future__ import annotations

import json
from pathlib import Path

from ..splats.export import DEFAULT_SH_DEGREE, DEFAULT_TOTAL_SECONDS
from .arguments import MAX_MESH_RESOLUTION, float_in, int_in, number_or_auto, output_file, output_mesh


def crop_box(text: str):
    """``--crop``: six numbers (argparse names the flag in its one-line error)."""
    import argparse

    from ..errors import ConfigError
    from ..export.options import parse_crop
    try:
        return parse_crop(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace('--crop ', '', 1)) from None


crop_box.__name__ = "box"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder made by `nerf-app train`")
    parser.add_argument("--mesh", type=output_mesh, default=None, help="output mesh (.ply/.obj/.glb; default RUN/mesh.ply)")
    parser.add_argument("--resolution", type=int_in(8, MAX_MESH_RESOLUTION), default=None,
                        help="marching-cubes samples per axis")
    parser.add_argument("--threshold", type=number_or_auto, default=None,
                        help="iso level (default: the mode's: 0 for sdf, 0.5 for occupancy; nerf density 2.5, "
                             "or 0.17/dt_min = 100 with --texture, docs/export.md)")
    parser.add_argument("--chunks", type=int_in(1, 4096), default=None, help="evaluate the grid in this many slabs")
    parser.add_argument("--min-component", type=float_in(0, 1), default=None,
                        help="drop connected pieces with fewer faces than this fraction of the largest")
    parser.add_argument("--texture", action="store_true",
                        help="textured mesh (.glb, or .obj + .mtl + .png): cleaned, decimated to --faces, "
                             "UV-unwrapped (xatlas) and its texture baked from the field (docs/export.md)")
    parser.add_argument("--texture-size", type=int, default=2048, help="(--texture) texture side in pixels (default 2048)")
    parser.add_argument("--faces", type=int, default=200_000, help="(--texture) face budget (default 200000)")
    parser.add_argument("--fill-holes", action="store_true", help="(--texture) close small boundary loops")
    parser.add_argument("--bake", choices=("photos", "field"), default=None,
                        help="(--texture, nerf) texture from the training photos projected onto the mesh, with "
                             "the field's colour where no photo sees it (photos, the default), or from the field "
                             "alone (field)")
    parser.add_argument("--keep-hidden", action="store_true",
                        help="(--texture, nerf) keep the faces no training camera sees (default: dropped before "
                             "decimation, so the face budget goes to the surface the photos show)")
    parser.add_argument("--method", choices=("density", "tsdf"), default=None,
                        help="(--texture, nerf) the surface: the density level set (density; default for objects on "
                             "a known background) or TSDF fusion of depth rendered at the training cameras (tsdf; "
                             "default for real captures); docs/export.md")
    parser.add_argument("--crop", type=crop_box, default=None, metavar="x0,y0,z0,x1,y1,z1",
                        help="(--texture, nerf) mesh only this box, in the capture's coordinates (default: the box "
                             "the training cameras look at, the unit cube training normalises into)")
    parser.add_argument("--blender", action="store_true",
                        help="(--texture) z-up capture turned y-up, so Blender's glTF/OBJ importers restore it")
    parser.add_argument("--points", type=output_file, default=None, help="(nerf) also write a coloured point cloud from rendered depth (.ply)")
    parser.add_argument("--shape", default=None, help="(latent sdf) export this shape only (default: every shape)")
    parser.add_argument("--interpolate", nargs=2, default=None, metavar=("SHAPE_A", "SHAPE_B"),
                        help="(latent sdf) meshes along the straight line between two shapes' codes")
    parser.add_argument("--steps", type=int_in(2, 1000), default=None, help="(latent sdf) number of --interpolate meshes (default 5)")
    parser.add_argument("--splats", type=output_file, default=None,
                        help="(nerf) bake the field into Gaussian splats, refine them against the photos and write "
                             "the INRIA 3DGS PLY (.ply) that splat viewers read (docs/splats.md)")
    parser.add_argument("--max-splats", type=int_in(1, 50_000_000), default=1_000_000,
                        help="(--splats) splat budget (default 1000000: <= ~250 MB at SH degree 3)")
    parser.add_argument("--refine-time", type=float_in(0), default=None,
                        help=f"(--splats) seconds of refinement against the photos (default: what is left of "
                             f"{DEFAULT_TOTAL_SECONDS:g} s after the bake; 0: bake only)")
    parser.add_argument("--sh-degree", type=int_in(0, 3), default=DEFAULT_SH_DEGREE,
                        help=f"(--splats) spherical-harmonics degree of the colours (default {DEFAULT_SH_DEGREE})")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or name (last/final; default: newest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run(args) -> int:
    from ..train.modes import open_run

    if args.splats is not None:
        from ..splats.export import check_mode, export_splats
        from ..train.modes import load_run_config
        check_mode(load_run_config(args.run, args.overrides)[1].mode)
        task, _, _ = open_run(args.run, args.checkpoint, args.overrides)
        print(json.dumps(export_splats(task, args.splats, args.max_splats, args.refine_time, args.sh_degree)))
        return 0
    if args.texture:
        from ..export.options import check_options
        check_options(args.texture_size, args.faces, args.mesh)  # before the (slow) run is opened
    elif args.blender or args.fill_holes or args.bake or args.keep_hidden or args.method or args.crop:
        from ..errors import ConfigError
        raise ConfigError("--blender, --fill-holes, --bake, --keep-hidden, --method and --crop go with --texture")
    task, run_dir, _ = open_run(args.run, args.checkpoint, args.overrides)
    if args.texture:
        from ..export.pipeline import export_textured
        result = export_textured(task, run_dir.path, mesh=args.mesh, texture_size=args.texture_size,
                                 faces=args.faces, resolution=args.resolution, threshold=args.threshold,
                                 chunks=args.chunks, min_component=args.min_component,
                                 fill_holes=args.fill_holes, blender=args.blender,
                                 bake_from=args.bake or "photos", keep_hidden=args.keep_hidden,
                                 method=args.method, crop=args.crop)
        if args.points:
            from ..nerf.outputs import export_points
            result.update(export_points(task, Path(args.points)))
        print(json.dumps(result))
        return 0
    opts = {k: v for k, v in {"mesh": args.mesh, "resolution": args.resolution, "threshold": args.threshold,
                              "chunks": args.chunks, "min_component": args.min_component, "points": args.points,
                              "shape": args.shape, "interpolate": args.interpolate, "steps": args.steps}.items()
            if v is not None}
    print(json.dumps(task.export(run_dir.path, **opts)))
    return 0
