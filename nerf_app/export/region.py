"""The region of interest a mesh is made of, and which pixels of a view fall inside it.

A region is an axis-aligned box in the task's normalised coordinates (``lo``, ``hi``). By default it is the
unit cube training normalises the capture into (the box the training cameras look at: centred where their
optical axes meet, as wide as what each photo frames there, tightened to the sparse points; see
:mod:`nerf_app.data.normalize`), grown by 15 % per side. ``--crop x0,y0,z0,x1,y1,z1`` gives it in the capture's own coordinates.
The box travels with the mesh (capture coordinates, in the file's extras) so that ``eval --mesh`` scores the
*region pixels*: those whose NeRF depth lands inside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Region:
    lo: np.ndarray   # (3,) normalised coordinates
    hi: np.ndarray   # (3,)
    source: str      # "training box" | "--crop"

    def contains(self, points: np.ndarray, pad: float = 0.0) -> np.ndarray:
        """``[N] bool``: points (normalised) inside the box grown by ``pad`` on every side."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        return ((p >= self.lo - pad) & (p <= self.hi + pad)).all(1)

    def to_capture(self, normalization) -> list:
        """``[x0, y0, z0, x1, y1, z1]`` in the capture's coordinates (what ``--crop`` takes)."""
        lo, hi = normalization.to_capture(self.lo), normalization.to_capture(self.hi)
        return [float(x) for x in np.concatenate([np.minimum(lo, hi), np.maximum(lo, hi)])]

    def to_json(self, normalization) -> dict:
        return {"box_capture": [round(x, 6) for x in self.to_capture(normalization)], "source": self.source,
                "box_normalised": [round(float(x), 6) for x in np.concatenate([self.lo, self.hi])]}


# The default region reaches this far (a fraction of the unit cube's side) past the cube on every side. The
# cube is fitted to where the cameras' axes meet and to the sparse points, and what the photos are of can
# stick out of it: fox's snout reaches x = 1.05-1.10 (its cameras stand at x = 0.88-2.06), and a mesh of the
# cube alone had a hole through the face.
TRAINING_BOX_GROWTH = 0.15


def training_region() -> Region:
    """The unit cube training normalises the capture into, grown by :data:`TRAINING_BOX_GROWTH` per side."""
    g = TRAINING_BOX_GROWTH
    return Region(np.full(3, -g), np.full(3, 1.0 + g), "training box")


def crop_region(crop: Optional[Sequence[float]], normalization, scene_aabb: Optional[np.ndarray] = None) -> Region:
    """``--crop`` (six numbers, capture coordinates; None: the training box) as a normalised Region. A box
    that does not meet the scene's volume (the outer cascade, ``scene_aabb [2,3]`` normalised) is one
    ConfigError naming the flag."""
    if crop is None:
        return training_region()
    c = np.asarray(crop, np.float64).reshape(2, 3)
    if not (c[1] > c[0]).all():
        raise ConfigError(f"--crop box is empty or inverted: {list(crop)}")
    a, b = normalization.to_normalized(c[0]), normalization.to_normalized(c[1])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if scene_aabb is not None:
        s_lo, s_hi = np.asarray(scene_aabb, np.float64)
        if (hi <= s_lo).any() or (lo >= s_hi).any():
            box = normalization.to_capture(s_lo), normalization.to_capture(s_hi)
            raise ConfigError(f"--crop box {list(crop)} lies outside the scene (its volume spans "
                              f"{np.round(np.minimum(*box), 4).tolist()} to {np.round(np.maximum(*box), 4).tolist()} "
                              f"in capture coordinates)")
        lo, hi = np.maximum(lo, s_lo), np.minimum(hi, s_hi)
    return Region(lo, hi, "--crop")


def region_from_json(info: Optional[dict], normalization) -> Optional[Region]:
    """The Region a mesh file recorded (see :data:`nerf_app.export.options.REGION_KEY`), or None."""
    if not isinstance(info, dict) or "box_capture" not in info:
        return None
    try:
        c = np.asarray(info["box_capture"], np.float64).reshape(2, 3)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(c).all():
        return None
    a, b = normalization.to_normalized(c[0]), normalization.to_normalized(c[1])
    return Region(np.minimum(a, b), np.maximum(a, b), str(info.get("source", "file")))


def region_pixels(region: Region, origins: np.ndarray, dirs: np.ndarray, depth: np.ndarray,
                  opacity: np.ndarray, min_opacity: float = 0.5) -> np.ndarray:
    """``[...] bool``: pixels whose NeRF surface (``origin + depth/opacity * dir``, the expected depth of the
    opaque part; only where the ray is at least ``min_opacity`` opaque) lies inside ``region``."""
    shape = depth.shape
    o = np.asarray(origins, np.float64).reshape(-1, 3)
    d = np.asarray(dirs, np.float64).reshape(-1, 3)
    dep = np.asarray(depth, np.float64).reshape(-1)
    op = np.asarray(opacity, np.float64).reshape(-1)
    solid = op >= min_opacity
    p = o + (dep / np.maximum(op, 1e-6))[:, None] * d
    return (solid & region.contains(p)).reshape(shape)
