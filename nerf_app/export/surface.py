"""What a task hands the export pipeline: its surface (``Task.export_surface``), and the generic surface of a
scalar field (SDF / occupancy runs)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..errors import ConfigError, NerfAppError


@dataclass
class Surface:
    """A cleaned triangle mesh in the task's own (normalised) coordinates and how to colour it.

    - ``to_capture``: 4x4 map from those coordinates to the capture's (what the files are written in);
    - ``colour``: ``(points [N,3], normals [N,3]) -> rgb [N,3]`` baked into the texture before any photo fit;
    - ``photos``: the task has training photos the pipeline may cull hidden faces with and fit the texture to
      (the task must then also have ``scene`` and the NeRF abilities used by :mod:`nerf_app.export.photos`);
    - ``region``: the box the mesh claims to be (:class:`nerf_app.export.region.Region`), or None;
    - ``views``: depth maps the surface was fused from (:class:`nerf_app.export.depth.DepthView`): the
      hidden-face cull then reads visibility from them instead of casting every photo's rays;
    - ``info``: JSON-able facts for the export's summary (method, level, resolution, counts, seconds).
    """
    vertices: np.ndarray
    faces: np.ndarray
    to_capture: np.ndarray
    colour: Callable[[np.ndarray, np.ndarray], np.ndarray]
    colour_kind: str
    photos: bool = False
    region: Any = None
    views: Optional[List[Any]] = None
    info: Dict[str, Any] = field(default_factory=dict)


def clay_colour(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """A matte clay shading of the normal, for fields without colour (SDF/occupancy)."""
    light = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
    shade = 0.35 + 0.65 * np.abs(n @ light)
    return np.clip(shade[:, None] * np.array([0.85, 0.82, 0.78]), 0, 1)


def field_surface(fn, level: float, inside: str, to_capture, resolution: int, threshold=None, chunks=None,
                  min_component=None, fill_holes: bool = False, progress: bool = False, method=None, crop=None,
                  **_) -> Surface:
    """The level set of a scalar field over the unit cube (SDF: level 0 below; occupancy: 0.5 above), cleaned."""
    import torch

    from ..geometry.marching_cubes import extract_mesh
    from ..geometry.simplify import clean_mesh

    if method not in (None, "density"):
        raise ConfigError(f"--method {method} is for nerf runs (an SDF/occupancy field has its own surface)")
    if crop is not None:
        raise ConfigError("--crop is for nerf runs")
    if threshold not in (None, "auto"):
        level = float(threshold)
    res = int(resolution)
    if res < 8:
        raise ConfigError(f"--resolution must be >= 8, got {res}")
    with torch.no_grad():
        v, f = extract_mesh(fn, (0.0,) * 3, (1.0,) * 3, res, level, inside, chunks, progress=progress)
    if len(f) == 0:
        raise NerfAppError(f"no surface at level {level} inside the box")
    n = len(f)
    v, f = clean_mesh(v, f, 0.0 if min_component is None else float(min_component), fill_holes)
    return Surface(v, f, np.asarray(to_capture, np.float64), clay_colour, "clay shading (the field has no colour)",
                   info={"method": "level set", "level": level, "resolution": res, "extracted_faces": int(n)})
