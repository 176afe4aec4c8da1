"""The viewer's splat layer (issue 27 part 4): while the camera moves the browser draws Gaussian splats baked
from the run's NeRF (viser's splat node, sorted and rasterised on the browser's GPU), so dragging costs the
server nothing; once the camera is still the NeRF's exact frame comes in as the background image and the
splats are hidden.

Why hide them: viser draws its background image at the far plane, behind every scene node, so splats left
visible would cover the NeRF frame. Why clear the background while moving: the background quad is glued to
the camera, so a stale NeRF frame would slide along with the drag behind the splats.

The bake is cached in the run folder: ``splats_viewer.ply`` (the INRIA splat PLY, in the capture's
coordinates like ``export --splats`` writes, so other splat viewers open it too) and ``splats_viewer.json``
(what it was baked from: the checkpoint's path, size, mtime and step, and the bake's settings). The PLY is
written first and the JSON last, each atomically, so the JSON is the commit mark: a Ctrl-C in between
leaves a PLY without a matching JSON, which counts as stale and is baked again. ``view RUN`` bakes in a
background thread when the cache is missing or stale (the page works meanwhile, NeRF frames as before);
``train --viewer`` never bakes (training owns the CPU), it shows a cached bake if there is one.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

CACHE_PLY = "splats_viewer.ply"
CACHE_JSON = "splats_viewer.json"
# A viewer bake must be quick on 2 CPU cores: 12 views at every 4th pixel (cup10: ~1 min loaded), colour as
# the SH constant only (viser's node has no view-dependent colour, and degree 0 skips the field's SH fit,
# the slowest part of the bake), no refinement. 200k splats are 6.4 MB on the wire (32 bytes each).
VIEWER_VIEWS = 12
VIEWER_PIXEL_STEP = 4
VIEWER_MAX_SPLATS = 200_000
VIEWER_REFINE_SECONDS = 0.0


class BakeAborted(Exception):
    """The viewer stopped while its bake was running: nothing is written."""


# -- the cache ------------------------------------------------------------------------------------------

def checkpoint_identity(path) -> Dict[str, Any]:
    """What a bake was made from: the checkpoint's path, size, modification time (ns) and step. A new
    ``last.pt``/``final.pt`` (training resumed or rerun) changes size or mtime; a symlinked checkpoint counts
    as its target."""
    from ..train.run import checkpoint_step
    path = Path(path)
    st = os.stat(path)
    try:
        step = checkpoint_step(path)
    except Exception:   # unreadable: the identity still differs from any good one
        step = None
    return {"checkpoint": str(path.resolve()), "bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
            "step": step}


def bake_settings(max_splats: int = VIEWER_MAX_SPLATS, refine_time: float = VIEWER_REFINE_SECONDS,
                  views: int = VIEWER_VIEWS, pixel_step: int = VIEWER_PIXEL_STEP) -> Dict[str, Any]:
    return {"views": int(views), "pixel_step": int(pixel_step), "max_splats": int(max_splats),
            "refine_time": float(refine_time), "sh_degree": 0}


def cache_key(checkpoint, settings: Dict[str, Any]) -> Dict[str, Any]:
    return {"source": checkpoint_identity(checkpoint), "settings": dict(settings)}


def cached_bake(run_dir, key: Optional[Dict[str, Any]] = None) -> Tuple[Optional[Path], Optional[Dict[str, Any]]]:
    """``(ply path, sidecar)`` of the run's cached viewer bake when it matches ``key`` (``key=None``: any
    complete bake, stale or not - ``train --viewer``); ``(None, sidecar or None)`` otherwise."""
    ply, side = Path(run_dir) / CACHE_PLY, Path(run_dir) / CACHE_JSON
    try:
        meta = json.loads(side.read_text())
        size = ply.stat().st_size
    except (OSError, ValueError):
        return None, None
    if not isinstance(meta, dict) or meta.get("ply_bytes") != size:
        return None, meta if isinstance(meta, dict) else None   # a PLY from another (interrupted) bake
    if key is not None and (meta.get("source"), meta.get("settings")) != (key["source"], key["settings"]):
        return None, meta
    return ply, meta


def write_bake(run_dir, splats_capture, key: Dict[str, Any], report: Dict[str, Any]) -> Path:
    """The PLY, then the sidecar naming it (both atomic: see the module)."""
    from ..results import write_json
    from ..splats.ply import write_splat_ply
    ply = Path(run_dir) / CACHE_PLY
    size = write_splat_ply(ply, splats_capture)
    write_json(Path(run_dir) / CACHE_JSON, {**key, "ply_bytes": int(size), "report": report})
    return ply


def bake_for_viewer(task, settings: Dict[str, Any], on_view=None):
    """``(Splats in capture coordinates, report)``: ``task``'s field baked (and refined, if the settings ask)
    with the viewer's budget. The caller writes the cache (:func:`write_bake`)."""
    from ..splats.bake import bake_splats
    s = settings
    t0 = time.perf_counter()
    # the unseen space is left out first, as every viewer render does (the bake then does not depend on
    # whether the page's first frame came before it)
    task.view_background()
    splats, report = bake_splats(task, max_splats=s["max_splats"], views=s["views"], step=s["pixel_step"],
                                 sh_degree=1 + s["sh_degree"], progress=False, on_view=on_view)
    if s["refine_time"] > 0:
        from ..splats.refine import refine_splats
        splats, rep = refine_splats(task, splats, s["refine_time"], s["max_splats"], progress=False)
        report.update(rep)
    norm = task.scene.normalization
    capture = splats.transformed(1.0 / float(norm.scale), -(np.asarray(norm.translation) / float(norm.scale)))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return capture, report


# -- viser's node -------------------------------------------------------------------------------------

def node_arrays(splats, scale: float = 1.0, translation=(0.0, 0.0, 0.0)) -> Dict[str, Any]:
    """:class:`~nerf_app.splats.model.Splats` -> the arguments of viser's ``add_gaussian_splats`` in the
    viewer's frame (``x -> scale * x + translation``: capture -> normalised): centres, covariances
    ``R diag(s^2) R^T``, RGB = the SH constant term (``SH_C0 f_dc + 0.5``, clipped; the node has no
    view-dependent colour), opacity = sigmoid of the logit.

    viser sends covariances as float16: a splat of std-dev 0.003 (variance 9e-6) would sit among float16's
    subnormals and lose most of its bits. So the node is drawn at ``node_scale`` with centres and covariances
    divided by it (its group scale multiplies both back): the median splat gets a std-dev of 1."""
    from ..geometry.rotations import quat_to_matrix
    from ..splats.model import SH_C0
    f = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    means = f(splats.means) * scale + np.asarray(translation, np.float64)
    std = np.exp(f(splats.log_scales)) * scale
    R = quat_to_matrix(f(splats.quats)) if len(splats) else np.zeros((0, 3, 3))
    cov = (R * (std ** 2)[:, None, :]) @ np.swapaxes(R, 1, 2)
    rgb = np.clip(SH_C0 * f(splats.sh)[:, 0, :] + 0.5, 0.0, 1.0)
    opacity = 1.0 / (1.0 + np.exp(-f(splats.opacity_logits)))[:, None]
    node_scale = float(np.median(std.max(1))) if len(splats) else 1.0
    if not math.isfinite(node_scale) or node_scale <= 0:
        node_scale = 1.0
    # float16's largest finite number is 65504 = 256^2: a splat over 240x the median std-dev is drawn at 240x
    # (an infinite covariance would cover the screen); cup10's largest is 6x
    ratio = std.max(1) / node_scale if len(splats) else np.zeros(0)
    shrink = np.minimum(1.0, 240.0 / np.maximum(ratio, 1e-30)) ** 2
    return {"centers": (means / node_scale).astype(np.float32),
            "covariances": (cov / node_scale ** 2 * shrink[:, None, None]).astype(np.float32),
            "rgbs": rgb.astype(np.float32), "opacities": opacity.astype(np.float32), "scale": node_scale}


def load_node_arrays(ply, normalization) -> Dict[str, Any]:
    """A splat PLY in capture coordinates -> :func:`node_arrays` in the viewer's (normalised) frame."""
    from ..splats.ply import read_splat_ply
    return node_arrays(read_splat_ply(ply), float(normalization.scale), np.asarray(normalization.translation))
