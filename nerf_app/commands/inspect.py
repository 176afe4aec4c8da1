"""`nerf-app inspect PATH`: is this capture sane? Format, splits, cameras, bounds, cascades,
reprojection error of the sparse points with our own projection, and a PNG of the camera frusta
and points seen from above and from the side."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.frusta import write_frusta_png
from .arguments import output_file_or_none


def add_arguments(parser) -> None:
    parser.add_argument("path", help="scene folder, COLMAP model folder or transforms*.json")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--png", type=output_file_or_none, default=None,
                        help="where to write the frusta plot (default: ./inspect_<scene>.png; 'none' to skip)")
    parser.add_argument("--format", default="auto", choices=["auto", "colmap", "transforms", "llff"])
    parser.add_argument("--no-image-check", action="store_true", help="skip comparing image headers with cameras")


def run(args) -> int:
    from ..data import load_scene

    scene = load_scene(args.path, format=args.format, check_images=not args.no_image_check)
    report = scene.summary()
    errors = scene.reprojection_errors()
    if errors is not None:
        report["reprojection_error_px"] = {"mean": float(errors.mean()), "median": float(np.median(errors)),
                                           "p95": float(np.percentile(errors, 95)), "observations": int(errors.size)}
    png = args.png
    if png is None:
        png = f"inspect_{_scene_name(scene)}.png"
    if png.lower() != "none":
        write_frusta_png(scene, Path(png))
        report["png"] = str(png)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>24}: {value}")
    return 0


def _scene_name(scene) -> str:
    root = scene.root.resolve()
    return root.name if root.name not in ("0", "sparse", "dense") else "_".join(root.parts[-3:])
