"""Automatic scene normalisation into the unit cube, and the number of occupancy-grid cascades.

Normalised coordinates are ``x_norm = scale * x_capture + translation`` (a uniform scale and a
shift: no rotation, so directions are unchanged and projections are exactly preserved). The region
of interest maps to the unit cube ``[0, 1]^3``; cascade ``k`` covers the cube of side ``2^k`` centred
on ``(0.5, 0.5, 0.5)`` (instant-ngp's layout), so ``n_cascades`` cascades span the aabb
``0.5 -/+ 2^(n_cascades - 1) / 2``.

How the region is chosen (all in capture units):

1. centre: the point closest to all optical axes when the cameras look inward from varied
   directions (object-centric captures); otherwise the median sparse point; otherwise a point at
   the typical scene depth in front of the cameras.
2. radius: half the width each camera sees at the centre's depth (the viewing frusta: whatever a
   photo frames is what the capture is about), shrunk to the robust extent of the sparse points
   around the centre when those are tighter.
3. cascades: 1 for bounded scenes (images with alpha around an object); otherwise enough that the
   outer cascade holds every camera and nearly every sparse point with a factor-2 margin, since
   the background seen behind the object lies at least as far as the cameras on the other side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .cameras import Camera

MAX_CASCADES = 8


@dataclass(frozen=True)
class Normalization:
    """``x_norm = scale * x_capture + translation``; the inverse writes results back to the capture."""

    scale: float
    translation: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """4x4 capture -> normalised."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = self.translation
        return m

    @property
    def inverse_matrix(self) -> np.ndarray:
        """4x4 normalised -> capture (apply to meshes and camera paths made in normalised space)."""
        m = np.eye(4)
        m[:3, :3] /= self.scale
        m[:3, 3] = -self.translation / self.scale
        return m

    def to_normalized(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) * self.scale + self.translation

    def to_capture(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) - self.translation) / self.scale

    def c2w_to_normalized(self, c2w: np.ndarray) -> np.ndarray:
        out = np.array(c2w, np.float64, copy=True)
        out[..., :3, 3] = self.to_normalized(out[..., :3, 3])
        return out

    def c2w_to_capture(self, c2w: np.ndarray) -> np.ndarray:
        out = np.array(c2w, np.float64, copy=True)
        out[..., :3, 3] = self.to_capture(out[..., :3, 3])
        return out

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "translation": [float(t) for t in self.translation]}


def aabb_for_cascades(n_cascades: int) -> np.ndarray:
    half = 2.0 ** (n_cascades - 1) / 2.0
    return np.array([[0.5 - half] * 3, [0.5 + half] * 3])


@dataclass
class NormalizationReport:
    normalization: Normalization
    n_cascades: int
    centre_from: str  # "optical axes", "points", "camera depth"
    radius_from: str  # "frusta", "points"
    details: dict = field(default_factory=dict)


def choose(c2w: np.ndarray, cameras: List[Camera], points: Optional[np.ndarray] = None, bounded: bool = False,
           depth_hint: Optional[float] = None, n_cascades: Optional[int] = None) -> NormalizationReport:
    # absurd (but finite) inputs may overflow on the way; the result is checked and replaced below
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _choose(c2w, cameras, points, bounded, depth_hint, n_cascades)


def _choose(c2w, cameras, points, bounded, depth_hint, n_cascades) -> NormalizationReport:
    centres = c2w[:, :3, 3]
    forward = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    pts = points if points is not None and len(points) >= 8 else None

    centre, centre_from = _axes_focus(centres, forward), "optical axes"
    if centre is None and pts is not None:
        centre, centre_from = np.median(pts, axis=0), "points"
    if centre is None:
        depth = depth_hint if depth_hint else _typical_spacing(centres) * 2.0
        centre, centre_from = np.mean(centres + forward * depth, axis=0), "camera depth"

    # frusta: at the centre's depth each camera frames a square of half-side depth * tan(half fov)
    depth = np.einsum("ij,ij->i", centre - centres, forward)
    tan_half = np.array([min(c.width / (2 * c.fx), c.height / (2 * c.fy)) for c in cameras])
    front = depth > 0
    if front.any():
        radius, radius_from = float(np.median(depth[front] * tan_half[front])), "frusta"
    else:
        radius, radius_from = float(np.max(np.abs(centres - centre))), "cameras"
    if pts is not None:
        lo, hi = np.percentile(pts, [5, 95], axis=0)
        r_pts = float(np.max(np.maximum(np.abs(lo - centre), np.abs(hi - centre))))
        if 1e-12 < r_pts < radius:
            radius, radius_from = r_pts, "points"
    if not (radius > 1e-12 and np.isfinite(radius)):  # degenerate intrinsics or a single camera
        radius = max(_typical_spacing(centres), 1e-6)
    scale = 0.5 / radius
    norm = Normalization(scale, 0.5 - scale * centre)

    if n_cascades is None:
        if bounded:
            n_cascades = 1
        else:
            extent = np.abs(norm.to_normalized(centres) - 0.5).max()
            if pts is not None:
                extent = max(extent, float(np.percentile(np.abs(norm.to_normalized(pts) - 0.5).max(axis=1), 99)))
            need_half = 2.0 * max(extent, 0.5)
            n_cascades = 1 + math.ceil(math.log2(need_half / 0.5) - 1e-9)
        n_cascades = int(min(max(n_cascades, 1), MAX_CASCADES))
    return NormalizationReport(norm, n_cascades, centre_from, radius_from,
                               {"centre_capture": centre.tolist(), "radius_capture": radius})


def _axes_focus(centres: np.ndarray, forward: np.ndarray) -> Optional[np.ndarray]:
    """Least-squares point nearest to every optical axis, or None when the axes are close to
    parallel (forward-facing captures) or the point is not in front of most cameras."""
    if len(centres) < 2:
        return None
    proj = np.eye(3)[None] - forward[:, :, None] * forward[:, None, :]
    A = proj.sum(0)
    b = np.einsum("nij,nj->i", proj, centres)
    eig = np.linalg.eigvalsh(A / len(centres))
    if eig[0] < 0.05:  # axes within ~13 degrees of each other: intersection is ill-posed
        return None
    focus = np.linalg.solve(A, b)
    in_front = np.einsum("ij,ij->i", focus - centres, forward) > 0
    return focus if in_front.mean() > 0.8 else None


def _typical_spacing(centres: np.ndarray) -> float:
    if len(centres) < 2:
        return 1.0
    spread = float(np.median(np.linalg.norm(centres - np.median(centres, 0), axis=1)))
    return spread if spread > 0 else 1.0
