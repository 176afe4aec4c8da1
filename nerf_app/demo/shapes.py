"""The demo scene's contents: its parameters, the three shapes, their exact signed distances and their
colours (Lambert + ambient under a light fixed in the world).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np


# ----------------------------------------------------------------------------- scene parameters

WIDTH = HEIGHT = 160              # pixels
CAMERA_ANGLE_X = 0.7              # horizontal field of view, radians (about 40 degrees)
N_VIEWS = 64                      # cameras on a spiral over the upper hemisphere
TEST_EVERY = 8                    # views 0, 8, 16, ... are held out: 56 train + 8 test
CAMERA_RADIUS = 4.0               # distance of every camera from the origin (its look-at point)
ELEVATION_DEG = (12.0, 65.0)      # elevation range of the spiral, degrees above the xy plane
SUPERSAMPLE = 2                   # 2x2 sub-pixel samples per pixel: antialiasing and alpha = coverage
LIGHT_DIR = (0.45, -0.35, 0.82)   # direction towards the light (normalised below)
AMBIENT = 0.35                    # shade = AMBIENT + (1 - AMBIENT) * max(0, n . l)
N_POINTS = 400                    # candidate surface points for points3D (those seen twice are kept)
SEED = 0                          # the only random state: surface points for points3D
DECIMALS = 12                     # poses and intrinsics are rounded to this before anything uses them


def _rotation(axis, angle_deg: float) -> np.ndarray:
    """Rotation matrix (local -> world) about a unit ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = math.radians(angle_deg)
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * (K @ K)


@dataclass(frozen=True)
class Shape:
    """One primitive: ``kind`` with ``size`` parameters in its local frame, placed at ``centre``
    with the local->world rotation ``axis``/``angle_deg``, coloured by a two-colour ``texture``."""

    name: str
    kind: str                       # "sphere" | "torus" | "rounded_box"
    centre: Tuple[float, float, float]
    size: Dict[str, object]         # sphere: radius; torus: major, minor (axis = local z); box: half, radius
    axis: Tuple[float, float, float] = (0.0, 0.0, 1.0)
    angle_deg: float = 0.0
    texture: str = "checker"
    colors: Tuple[Tuple[float, float, float], Tuple[float, float, float]] = ((1, 1, 1), (0, 0, 0))

    @property
    def rotation(self) -> np.ndarray:
        # rounded so that last-bit differences of sin/cos between platforms cannot reach the pixels
        return _rotation(self.axis, self.angle_deg).round(DECIMALS)

    def bbox(self) -> np.ndarray:
        """Exact axis-aligned bounding box ``(2, 3)`` of the shape in world coordinates."""
        R, c = self.rotation, np.asarray(self.centre, dtype=np.float64)
        if self.kind == "sphere":
            half = np.full(3, float(self.size["radius"]))
        elif self.kind == "torus":
            # the tube centre circle spans major * sqrt(1 - a_i^2) along world axis i (a = torus axis)
            a = R[:, 2]
            half = float(self.size["major"]) * np.sqrt(np.clip(1 - a * a, 0, 1)) + float(self.size["minor"])
        else:
            # rounded box = (box of half extents b - r) (+) ball(r): support along e_i is |R| (b - r) + r
            b, r = np.asarray(self.size["half"], dtype=np.float64), float(self.size["radius"])
            half = np.abs(R) @ (b - r) + r
        return np.stack([c - half, c + half])

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "centre": list(self.centre), "size": self.size,
                "rotation_axis": list(self.axis), "rotation_deg": self.angle_deg, "texture": self.texture,
                "colors": [list(c) for c in self.colors], "bbox": self.bbox().round(9).tolist()}


SHAPES: Tuple[Shape, ...] = (
    Shape("sphere", "sphere", (0.55, -0.40, 0.05), {"radius": 0.42}, texture="checker_uv",
          colors=((0.85, 0.22, 0.15), (0.96, 0.90, 0.78))),
    Shape("torus", "torus", (-0.55, -0.30, 0.0), {"major": 0.40, "minor": 0.14}, axis=(1.0, 0.3, 0.0),
          angle_deg=55.0, texture="stripes", colors=((0.15, 0.35, 0.85), (0.95, 0.80, 0.20))),
    Shape("box", "rounded_box", (0.05, 0.58, -0.02), {"half": [0.32, 0.26, 0.30], "radius": 0.07},
          angle_deg=30.0, texture="checker_3d", colors=((0.18, 0.62, 0.30), (0.90, 0.95, 0.86))),
)


def bbox() -> np.ndarray:
    """Axis-aligned bounding box ``(2, 3)`` (min, max corner) of all shapes, world coordinates."""
    boxes = np.stack([s.bbox() for s in SHAPES])
    return np.stack([boxes[:, 0].min(0), boxes[:, 1].max(0)])


# ----------------------------------------------------------------------------- signed distances

def _xp(points):
    """numpy or torch, whichever ``points`` belongs to (torch is imported only if it is torch)."""
    if type(points).__module__.startswith("torch"):
        import torch

        return torch
    return np


def _local(shape: Shape, x, y, z):
    """World point components -> the shape's local frame, R^T (p - c), one component at a time
    (numpy is several times faster on separate contiguous arrays than on (N, 3) @ (3, 3))."""
    (cx, cy, cz), R = shape.centre, shape.rotation.tolist()
    x, y, z = x - cx, y - cy, z - cz
    return tuple(x * R[0][i] + y * R[1][i] + z * R[2][i] for i in range(3))


def _shape_sdf(shape: Shape, x, y, z):
    """Exact signed distance (negative inside) of one shape at world point components."""
    xp = _xp(x)
    lx, ly, lz = _local(shape, x, y, z)
    if shape.kind == "sphere":
        return xp.sqrt(lx * lx + ly * ly + lz * lz) - shape.size["radius"]
    if shape.kind == "torus":  # axis = local z
        ring = xp.sqrt(lx * lx + ly * ly) - shape.size["major"]
        return xp.sqrt(ring * ring + lz * lz) - shape.size["minor"]
    if shape.kind == "rounded_box":
        r = shape.size["radius"]
        qx, qy, qz = (xp.abs(c) - (b - r) for c, b in zip((lx, ly, lz), shape.size["half"]))
        ox, oy, oz = (xp.clip(q, 0, None) for q in (qx, qy, qz))
        inside = xp.clip(xp.maximum(qx, xp.maximum(qy, qz)), None, 0)
        return xp.sqrt(ox * ox + oy * oy + oz * oz) + inside - r
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def shape_sdfs(points):
    """Signed distances of every shape, stacked on a last axis ``(..., len(SHAPES))``."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return _xp(points).stack([_shape_sdf(s, x, y, z) for s in SHAPES], -1)


def _union_sdf(x, y, z):
    xp = _xp(x)
    d = _shape_sdf(SHAPES[0], x, y, z)
    for s in SHAPES[1:]:
        d = xp.minimum(d, _shape_sdf(s, x, y, z))
    return d


def scene_sdf(points):
    """Signed distance of the scene (union of the shapes) at ``points (..., 3)`` in world
    coordinates; numpy in -> numpy out, torch in -> torch out (differentiable). Exact outside the
    shapes and exact inside each shape; the union's minimum is the true distance because the shapes
    do not overlap."""
    return _union_sdf(points[..., 0], points[..., 1], points[..., 2])


def ground_truth_mesh(resolution: int = 256, margin: float = 0.05):
    """``trimesh.Trimesh`` of the scene surface: marching cubes of :func:`scene_sdf` over the
    bounding box grown by ``margin``, in world (capture) coordinates; for mesh Chamfer evaluation.
    Vertices lie on the exact surface to the tolerance of linear interpolation (~1e-3 at 256)."""
    import trimesh

    from ..geometry.marching_cubes import extract_mesh

    box = bbox()
    lo, hi = box[0] - margin, box[1] + margin
    field = lambda x: scene_sdf(x.double()).float()  # noqa: E731 (float64 SDF, float32 grid)
    vertices, faces = extract_mesh(field, lo, hi, resolution=resolution, level=0.0, inside="below")
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def _normals(points: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Unit SDF gradients by central differences."""
    g = np.stack([scene_sdf(points + e) - scene_sdf(points - e) for e in np.eye(3) * h], -1)
    return g / np.linalg.norm(g, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- appearance

def albedo(points: np.ndarray, shape_index: np.ndarray) -> np.ndarray:
    """Surface colour ``(N, 3)`` in [0, 1] of world ``points`` on shape ``shape_index``: procedural
    two-colour patterns in each shape's local frame, so they move with the shape, not the view."""
    out = np.zeros(points.shape[:-1] + (3,))
    for k, s in enumerate(SHAPES):
        sel = shape_index == k
        if not sel.any():
            continue
        p = np.stack(_local(s, *points[sel].T), -1)
        if s.texture == "checker_uv":      # 8 x 5 checkers in longitude/latitude
            u = np.arctan2(p[:, 1], p[:, 0]) / (2 * np.pi) + 0.5
            v = np.arccos(np.clip(p[:, 2] / np.linalg.norm(p, axis=1), -1, 1)) / np.pi
            parity = (np.floor(8 * u) + np.floor(5 * v)) % 2
        elif s.texture == "stripes":       # 10 bands around the ring, split along the tube once
            phi = np.arctan2(p[:, 1], p[:, 0]) / (2 * np.pi) + 0.5
            parity = (np.floor(10 * phi) + (p[:, 2] > 0)) % 2
        else:                              # 3D checkers of 0.16 units: every face gets squares
            parity = np.floor(p / 0.16).sum(1) % 2
        c0, c1 = (np.asarray(c, dtype=np.float64) for c in s.colors)
        out[sel] = np.where(parity[:, None] > 0.5, c1, c0)
    return out


def shade(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(rgb (N, 3) in [0, 1], shape_index (N,))`` of surface points: albedo x (ambient + Lambert)
    with the fixed light; no shadows, no specular, so colour does not depend on the viewer."""
    shape_index = np.argmin(shape_sdfs(points), -1)
    light = np.asarray(LIGHT_DIR) / np.linalg.norm(LIGHT_DIR)
    n = _normals(points)
    lambert = np.clip(n[:, 0] * light[0] + n[:, 1] * light[1] + n[:, 2] * light[2], 0, None)
    return albedo(points, shape_index) * (AMBIENT + (1 - AMBIENT) * lambert)[:, None], shape_index
