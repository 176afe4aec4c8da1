"""Helpers shared by the benchmarks: timing with medians, and one JSON line per measurement."""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import statistics
import time
from typing import Callable, List

import torch

from nerf_app import backend
from nerf_app.ops.mlp import PRECISION_ENV


@contextlib.contextmanager
def precision(value: str):
    """Within: NERF_APP_MLP_PRECISION=value (the MLPs' inference precision); restored after."""
    old = os.environ.get(PRECISION_ENV)
    os.environ[PRECISION_ENV] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PRECISION_ENV, None)
        else:
            os.environ[PRECISION_ENV] = old


def machine() -> dict:
    report = backend.build_report()
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": report["gpu"],
        "torch": report["torch"],
        "date": datetime.date.today().isoformat(),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], None], device: torch.device, reps: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``reps`` runs after ``warmup`` runs (medians resist the noise of
    shared machines)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: List[float] = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)
