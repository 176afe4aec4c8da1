"""Score a mesh against the demo scene's true surface: the one place both ``demo`` (its summary) and
``eval --mesh`` (a demo run's mesh report) get their Chamfer / normal consistency / F-score from.

The true surface is marching cubes of the analytic SDF at ``GT_RESOLUTION`` (vertices within ~1e-3 of
the exact surface), optionally cached as a PLY so a second evaluation of the same run does not pay for it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from ..geometry.mesh import TriMesh

GT_RESOLUTION = 256
GROUND_TRUTH = f"demo scene (marching cubes of the analytic SDF, {GT_RESOLUTION}^3)"


def is_demo_scene(scene_root) -> bool:
    """True when ``scene_root/scene.json`` says the folder was written by this project's demo generator."""
    try:
        generator = json.loads((Path(scene_root) / "scene.json").read_text()).get("generator", "")
    except (OSError, ValueError, AttributeError):
        return False
    return "nerf_app.demo_scene" in generator or "nerf_app.scenes.synthetic" in generator


def ground_truth(cache: Optional[Path] = None) -> TriMesh:
    """The demo's true surface as a :class:`TriMesh`; read from / written to ``cache`` when given."""
    import trimesh

    from ..results import atomic_write
    from .shapes import ground_truth_mesh

    if cache is not None and Path(cache).is_file():
        return TriMesh.from_trimesh(trimesh.load(str(cache), force="mesh", process=False))
    gt = ground_truth_mesh(GT_RESOLUTION)
    if cache is not None:
        atomic_write(Path(cache), lambda tmp: gt.export(tmp, file_type="ply"))
    return TriMesh.from_trimesh(gt)


def score_mesh(pred: TriMesh, cache: Optional[Path] = None, **metric_args) -> Dict[str, float]:
    """``chamfer_l1``, ``normal_consistency``, ``fscore`` of ``pred`` (world coordinates) against the demo's
    true surface; ``metric_args`` go to :func:`nerf_app.geometry.metrics.mesh_metrics`."""
    from ..geometry.metrics import mesh_metrics

    m = mesh_metrics(pred, ground_truth(cache), **metric_args)
    return {k: float(m[k]) for k in ("chamfer_l1", "normal_consistency", "fscore")}
