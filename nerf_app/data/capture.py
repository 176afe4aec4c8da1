"""What every reader produces: a capture in its own coordinates, before normalisation.

Readers (COLMAP, transforms.json, LLFF) only parse and validate; :mod:`nerf_app.data.scene` turns a
:class:`Capture` into the :class:`~nerf_app.data.scene.Scene` that consumers use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .cameras import Camera


@dataclass
class SparsePoints:
    """Sparse 3D points (COLMAP points3D) and their 2D observations.

    ``xyz`` (M, 3) float64, ``rgb`` (M, 3) uint8, ``error`` (M,) COLMAP's mean reprojection error,
    ``ids`` (M,) the file's point ids. Observations are flat arrays of length K: ``obs_image``
    (index into the scene's images), ``obs_point`` (row of ``xyz``) and ``obs_xy`` (K, 2) pixel
    coordinates at the scene's (possibly downscaled) resolution.
    """

    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray
    ids: np.ndarray
    obs_image: np.ndarray
    obs_point: np.ndarray
    obs_xy: np.ndarray

    def __len__(self) -> int:
        return len(self.xyz)


@dataclass
class Capture:
    format: str  # "colmap-binary", "colmap-text", "transforms", "llff"
    root: Path  # the scene folder: nothing outside it is ever opened
    source: Path  # the file or model folder the poses came from
    names: List[str]  # image names as written in the source
    image_paths: List[Path]
    cameras: List[Camera]  # one per image (shared cameras are the same object)
    c2w: np.ndarray  # (N, 4, 4) float64, OpenCV axes, capture coordinates
    splits: Optional[Dict[str, np.ndarray]] = None  # the file's own splits, if any
    points: Optional[SparsePoints] = None
    mask_paths: Optional[List[Path]] = None
    bounded: bool = False  # images carry alpha around a bounded object (Blender synthetic scenes)
    meta: dict = field(default_factory=dict)
