"""``nerf-app export RUN --splats X.ply``: bake, refine for ``--refine-time`` seconds (by default what is left of
a 180 s budget after the bake), write the INRIA PLY (capture coordinates) atomically; the report says how many
splats and how large the file is."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import ConfigError

DEFAULT_MAX_SPLATS = 1_000_000   # 248 bytes a splat at SH degree 3: the file stays under ~250 MB
# degree 2 against 1, lego10 at the same 769 refinement steps (25 held-out views, quiet, 2-core EPYC): 31.75 against
# 31.49 dB, the step's time unchanged (143.7 against 144.0 s); 164 bytes a splat against 104 (docs/splats.md)
DEFAULT_SH_DEGREE = 2
# bake + refinement within 180 s on a quiet 2-core box. The refinement gets what the bake left: the bake's time
# depends on the CPU (cup10: 14 s with AMX, 29 s on an AVX2-only EPYC) and on the run, and a fixed 150 s of
# refinement put the AVX2 box's export at 179.5 s, on the line (docs/splats.md)
DEFAULT_TOTAL_SECONDS = 180.0
MIN_REFINE_SECONDS = 30.0   # a bake slower than 150 s still gets this much refinement (then over the 180 s)


def check_mode(mode: str, flag: str = "--splats") -> None:
    """Before a run is opened: splats come from radiance fields only (one line otherwise)."""
    if mode != "nerf":
        article = "an" if mode[:1] in "aeiou" else "a"
        raise ConfigError(f"{flag}: splats are baked from a radiance field (a nerf run); this is {article} {mode} run")


def check_splat_file(path, flag: str = "--splats") -> None:
    """Before a run is opened: the file exists and its header is a splat PLY's (one line otherwise)."""
    if not Path(path).is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    from .ply import check_splat_header
    check_splat_header(path)


BAKE_SAMPLES = 200   # bake samples along a training view's longer side (the pixel step follows from it)


def bake_step(task, samples: int = BAKE_SAMPLES) -> int:
    """The bake's pixel step: the training views' longer side over ``samples`` (at least 1). Measured on lego10
    (400x400 photos), refined 90 s, 25 held-out views: step 4 (the former fixed default) 29.67 dB, 2 30.99 dB,
    1 27.22 dB (562k splats, 165 steps); cup's 800x600 photos keep step 4."""
    scene = task.scene
    longest = max(max(scene.cameras[int(i)].width, scene.cameras[int(i)].height) for i in scene.split_indices("train"))
    return max(1, int(round(longest / samples)))


def export_splats(task, out, max_splats: int = DEFAULT_MAX_SPLATS, refine_time: Optional[float] = None,
                  sh_degree: int = DEFAULT_SH_DEGREE, views: int = 32, step: Optional[int] = None) -> Dict[str, Any]:
    """Bake ``task``'s field into at most ``max_splats`` splats of SH degree ``sh_degree`` (3DGS's: 0..3),
    refine them against the photos for ``refine_time`` seconds (0: bake only; None: what is left of
    ``DEFAULT_TOTAL_SECONDS`` after the bake, at least ``MIN_REFINE_SECONDS``) and write ``out``. ``step``:
    the bake's pixel step (default :func:`bake_step`)."""
    from .bake import bake_splats
    from .ply import write_splat_ply
    t0 = time.perf_counter()
    step = bake_step(task) if step is None else int(step)
    splats, report = bake_splats(task, max_splats=max_splats, views=views, step=step, sh_degree=sh_degree + 1)
    if refine_time is None:
        refine_time = max(MIN_REFINE_SECONDS, DEFAULT_TOTAL_SECONDS - (time.perf_counter() - t0))
    report["refine_budget_seconds"] = round(float(refine_time), 2)
    if refine_time > 0:
        from .refine import refine_splats
        splats, rep = refine_splats(task, splats, refine_time, max_splats)
        report.update(rep)
    norm = task.scene.normalization
    capture = splats.transformed(1.0 / float(norm.scale), -(norm.translation / float(norm.scale)))
    size = write_splat_ply(out, capture)
    report.update({"splats_file": str(out), "splats": len(splats), "file_bytes": int(size),
                   "file_mb": round(size / 2 ** 20, 2), "coordinates": "capture", "layout": "INRIA 3DGS PLY",
                   "seconds": round(time.perf_counter() - t0, 2)})
    return report
