"""`nerf-app make-scene OUT`: (re)generate the embedded synthetic demo scene into OUT.

The repository ships the result in ``data/demo``; this command reproduces it (same pixels, same
text) from :mod:`nerf_app.demo`, as COLMAP text + images and transforms_{train,test}.json.
"""
from __future__ import annotations

import json
import time

from .arguments import output_folder


def add_arguments(parser) -> None:
    parser.add_argument("out", type=output_folder, help="output folder (created; the scene's own files in it are overwritten)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..demo import generate

    start = time.perf_counter()
    summary = generate(args.out, progress=not args.json)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    files = summary.pop("files")
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>14}: {value}")
        print(f"{'files':>14}: {len(files)} (images/, sparse/0/, transforms_{{train,test}}.json, scene.json)")
    return 0
