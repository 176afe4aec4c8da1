"""`nerf-app info`: what was built and which backend each device gets."""
from __future__ import annotations

import json

from .. import backend


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    report = backend.build_report()
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>18}: {value}")
    return 0
