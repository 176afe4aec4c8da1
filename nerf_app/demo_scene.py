"""The embedded default scene: three textured analytic shapes with known geometry.

A sphere, a tilted torus and a rounded box float above nothing (transparent background). A small
numpy sphere tracer renders them from a spiral of posed cameras over the upper hemisphere, and
:func:`generate` writes the same views twice — as a COLMAP text model (``sparse/0`` + ``images/``)
and as ``transforms_{train,test}.json`` (Blender/instant-ngp) — plus ``scene.json`` describing the
shapes, their bounding box and the camera setup. Everything is deterministic: no random state but
a fixed seed, no time stamps, numbers rounded before they are written, so a regeneration
reproduces the committed ``data/demo`` files.

World coordinates ("the scene's own coordinates", also the capture coordinates of both files):
+z up, the object centred near the origin, cameras about 4 units away looking at the origin.

Ground truth for evaluation: :func:`scene_sdf` (exact signed distance of the union, numpy or torch)
and :func:`ground_truth_mesh` (marching cubes of it). Appearance is Lambert + ambient under a light
fixed in the world, so a surface point has the same colour from every view; views still differ
because the procedural textures (checkers, stripes) are fixed on the shapes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from .results import atomic_write

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

    from .geometry.marching_cubes import extract_mesh

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


# ----------------------------------------------------------------------------- cameras

@dataclass
class View:
    """One posed camera: ``name`` (image file), ``qvec``/``tvec`` (COLMAP world-to-camera, w first,
    rounded to ``DECIMALS``), and ``c2w`` (4x4 OpenCV camera-to-world derived from those numbers)."""

    name: str
    qvec: np.ndarray
    tvec: np.ndarray
    c2w: np.ndarray
    split: str


def focal() -> float:
    return round(0.5 * WIDTH / math.tan(0.5 * CAMERA_ANGLE_X), DECIMALS)


def intrinsics() -> Tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of the shared pinhole camera (pixel centres at +0.5)."""
    return focal(), focal(), WIDTH / 2.0, HEIGHT / 2.0


def _quat_from_rotation(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of a rotation matrix (largest-component branch)."""
    m = R
    tr = np.trace(m)
    if tr > 0:
        s = 2 * math.sqrt(1 + tr)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * math.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q if q[0] >= 0 else -q


def _rotation_from_quat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = (float(c) for c in q)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def views() -> List[View]:
    """The ``N_VIEWS`` cameras: a spiral over the upper hemisphere (golden-angle azimuths,
    elevation rising evenly in sin), all looking at the origin with world +z up. Every
    ``TEST_EVERY``-th view (0, 8, ...) is a test view, so the test views span all elevations —
    and they are exactly the views the COLMAP loader holds out by default (every 8th by name)."""
    lo, hi = (math.sin(math.radians(e)) for e in ELEVATION_DEG)
    golden = math.pi * (3 - math.sqrt(5))
    out = []
    for k in range(N_VIEWS):
        elevation = math.asin(lo + (hi - lo) * (k + 0.5) / N_VIEWS)
        azimuth = k * golden
        centre = CAMERA_RADIUS * np.array([math.cos(elevation) * math.cos(azimuth),
                                           math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        forward = -centre / np.linalg.norm(centre)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)  # OpenCV: x right, y down, z forward (x cross y = z)
        R_w2c = np.stack([right, down, forward])  # rows: camera axes in world coordinates
        # round first, then derive everything (rendering, observations, both files) from the
        # rounded numbers: the files then agree with the pixels to ~1e-12, and tiny
        # platform differences in sin/cos vanish in the rounding
        qvec = _quat_from_rotation(R_w2c).round(DECIMALS)
        tvec = (-R_w2c @ centre).round(DECIMALS)
        R = _rotation_from_quat(qvec)
        c2w = np.eye(4)
        c2w[:3, :3] = R.T
        c2w[:3, 3] = -_apply(R.T, tvec)
        c2w = c2w.round(DECIMALS)  # what transforms_*.json stores, and what renders the pixels
        out.append(View(f"r_{k:03d}.png", qvec, tvec, c2w, "test" if k % TEST_EVERY == 0 else "train"))
    return out


def _apply(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v @ M.T`` for row vectors ``v (..., 3)`` with plain multiply-adds: BLAS matrix products
    may fuse or reorder them differently on other machines, which would change the last bits."""
    v = np.asarray(v, dtype=np.float64)
    return np.stack([v[..., 0] * M[i, 0] + v[..., 1] * M[i, 1] + v[..., 2] * M[i, 2] for i in range(3)], -1)


def pixel_rays(c2w: np.ndarray, pixels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """World ``(origins, unit directions)`` of continuous pixel coordinates ``(N, 2)`` (x, y)."""
    fx, fy, cx, cy = intrinsics()
    d_cam = np.stack([(pixels[:, 0] - cx) / fx, (pixels[:, 1] - cy) / fy, np.ones(len(pixels))], -1)
    d = _apply(c2w[:3, :3], d_cam)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], d.shape).copy(), d


# ----------------------------------------------------------------------------- ray tracing

def trace(origins: np.ndarray, dirs: np.ndarray, max_steps: int = 400, eps: float = 1e-7) -> np.ndarray:
    """Distance along each ray (unit ``dirs``) to the first surface, ``inf`` for a miss.

    Sphere tracing of the union SDF (a lower bound of the distance, so steps never overshoot),
    starting where the ray enters the scene's bounding sphere and stopping where it leaves; only
    rays still marching are evaluated. Grazing rays that run out of steps count as hits when they
    are within 1e-4 of the surface, else as misses.
    """
    box = bbox()
    centre = box.mean(0)
    radius = 0.5 * np.linalg.norm(box[1] - box[0]) + 1e-3
    oc = origins - centre
    b = (oc * dirs).sum(1)
    disc = b * b - ((oc * oc).sum(1) - radius * radius)
    t_hit = np.full(len(origins), np.inf)
    active = np.flatnonzero(disc > 0)
    root = np.sqrt(disc[active])
    t = np.maximum(-b[active] - root, 0.0)
    t_far = -b[active] + root
    last = np.full(len(active), np.inf)
    o = [np.ascontiguousarray(origins[active, i]) for i in range(3)]
    u = [np.ascontiguousarray(dirs[active, i]) for i in range(3)]
    for _ in range(max_steps):
        if not len(active):
            break
        d = _union_sdf(*(o[i] + t * u[i] for i in range(3)))
        hit = d < eps
        t_hit[active[hit]] = t[hit]
        keep = np.flatnonzero(~hit & (t <= t_far))
        if len(keep) < len(active):  # compact: only rays still marching are evaluated next step
            o, u = [a[keep] for a in o], [a[keep] for a in u]
            active, t, t_far, d = active[keep], t[keep], t_far[keep], d[keep]
        t, last = t + d, d
    near = last < 1e-4  # ran out of steps next to the surface: a grazing hit
    t_hit[active[near]] = t[near]
    return t_hit


def render_view(view: View) -> np.ndarray:
    """RGBA uint8 ``(HEIGHT, WIDTH, 4)`` of one view, straight (not premultiplied) alpha.

    ``SUPERSAMPLE`` x ``SUPERSAMPLE`` rays per pixel: alpha is the fraction that hit the scene,
    RGB the mean colour of those that hit (0 where none did), so compositing over any background
    reproduces the antialiased coverage.
    """
    s = SUPERSAMPLE
    offsets = (np.arange(s) + 0.5) / s
    ys, xs = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
    sub_y = (ys[..., None, None] + offsets[:, None]).repeat(s, -1)
    sub_x = (xs[..., None, None] + offsets[None, :]).repeat(s, -2)
    pixels = np.stack([sub_x.ravel(), sub_y.ravel()], -1)  # (H*W*s*s, 2), pixel-major order
    origins, dirs = pixel_rays(view.c2w, pixels)
    t = trace(origins, dirs)
    hit = np.isfinite(t)
    rgb = np.zeros((len(t), 3))
    rgb[hit] = shade(origins[hit] + t[hit, None] * dirs[hit])[0]
    hit = hit.reshape(HEIGHT, WIDTH, s * s)
    rgb = rgb.reshape(HEIGHT, WIDTH, s * s, 3)
    n = hit.sum(-1)
    mean = rgb.sum(2) / np.maximum(n, 1)[..., None]
    out = np.empty((HEIGHT, WIDTH, 4), np.uint8)
    out[..., :3] = np.round(np.clip(mean, 0, 1) * 255)
    out[..., 3] = np.round(n * (255.0 / (s * s)))
    return out


# ----------------------------------------------------------------------------- sparse points

def surface_points(n: int = N_POINTS, seed: int = SEED) -> np.ndarray:
    """``n`` points on the scene surface (rounded to 1e-9): seeded uniform points in the bounding
    box pulled onto the nearest surface along the SDF gradient (Newton steps on the distance);
    any that do not land within 1e-6 of the surface are dropped."""
    box = bbox()
    p = np.random.default_rng(seed).uniform(box[0], box[1], size=(n, 3))
    for _ in range(8):
        p = p - scene_sdf(p)[:, None] * _normals(p)
    p = p[np.abs(scene_sdf(p)) < 1e-6]
    return p.round(9)


def observations(points: np.ndarray, all_views: List[View]) -> List[Tuple[int, np.ndarray, np.ndarray]]:
    """Per view: ``(view index, point indices, pixel xy)`` of the points it sees — in front,
    inside the image (1 px margin) and not occluded (the ray towards the point first hits the
    surface at the point). Pixel positions are exact projections, rounded to 1e-6 px."""
    fx, fy, cx, cy = intrinsics()
    candidates = []
    for k, v in enumerate(all_views):
        R = _rotation_from_quat(v.qvec)  # exactly what a COLMAP reader makes of images.txt
        cam = _apply(R, points) + v.tvec
        z = cam[:, 2]
        xy = np.stack([fx * cam[:, 0] / z + cx, fy * cam[:, 1] / z + cy], -1)
        inside = (z > 0) & (xy[:, 0] > 1) & (xy[:, 0] < WIDTH - 1) & (xy[:, 1] > 1) & (xy[:, 1] < HEIGHT - 1)
        idx = np.flatnonzero(inside)
        candidates.append((k, idx, xy[idx].round(6)))
    # one trace for all (view, point) pairs: the marching loop then runs once, not once per view
    origins = np.concatenate([np.broadcast_to(all_views[k].c2w[:3, 3], (len(idx), 3)) for k, idx, _ in candidates])
    to_point = np.concatenate([points[idx] for _, idx, _ in candidates]) - origins
    dist = np.linalg.norm(to_point, axis=1)
    visible = np.abs(trace(origins, to_point / dist[:, None]) - dist) < 1e-4
    out, start = [], 0
    for k, idx, xy in candidates:
        vis = visible[start:start + len(idx)]
        start += len(idx)
        out.append((k, idx[vis], xy[vis]))
    return out


# ----------------------------------------------------------------------------- writing

def _fmt(x: float) -> str:
    """Shortest text that reads back as the same float ("1.0" -> "1")."""
    s = repr(float(x) + 0.0)  # + 0.0 turns -0.0 into 0.0
    return s[:-2] if s.endswith(".0") else s


def _write(path: Path, data: Union[bytes, str]) -> None:
    """Write through a temporary name and rename, so a file is either whole or absent."""
    payload = data.encode() if isinstance(data, str) else data
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))


def _png_bytes(rgba: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    # no metadata chunks, fixed compression: the same pixels give the same bytes with one zlib
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _colmap_files(all_views: List[View], points: np.ndarray, colors: np.ndarray, obs) -> Dict[str, str]:
    fx, fy, cx, cy = intrinsics()
    cameras = ("# Camera list with one line of data per camera:\n"
               "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n# Number of cameras: 1\n"
               f"1 PINHOLE {WIDTH} {HEIGHT} {_fmt(fx)} {_fmt(fy)} {_fmt(cx)} {_fmt(cy)}\n")
    tracks: List[List[str]] = [[] for _ in range(len(points))]
    lines = []
    for k, idx, xy in obs:
        v = all_views[k]
        image_id = k + 1
        pose = " ".join(_fmt(x) for x in (*v.qvec, *v.tvec))
        lines.append(f"{image_id} {pose} 1 {v.name}")
        lines.append(" ".join(f"{x:.6f} {y:.6f} {p + 1}" for (x, y), p in zip(xy, idx)))
        for j, p in enumerate(idx):
            tracks[p] += [str(image_id), str(j)]
    n_obs = sum(len(idx) for _, idx, _ in obs)
    images = ("# Image list with two lines of data per image:\n"
              "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
              "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
              f"# Number of images: {len(all_views)}, mean observations per image: {n_obs / len(all_views):.2f}\n"
              + "\n".join(lines) + "\n")
    pts = ["# 3D point list with one line of data per point:\n"
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
           f"# Number of points: {len(points)}, mean track length: {n_obs / max(len(points), 1):.2f}\n"]
    for p, (xyz, rgb) in enumerate(zip(points, colors)):
        pts.append(f"{p + 1} {_fmt(xyz[0])} {_fmt(xyz[1])} {_fmt(xyz[2])} {rgb[0]} {rgb[1]} {rgb[2]} 0 "
                   + " ".join(tracks[p]) + "\n")
    return {"sparse/0/cameras.txt": cameras, "sparse/0/images.txt": images, "sparse/0/points3D.txt": "".join(pts)}


def _transforms_files(all_views: List[View]) -> Dict[str, str]:
    fx, fy, cx, cy = intrinsics()
    gl_from_cv = np.diag([1.0, -1.0, -1.0, 1.0])  # flip the camera's y and z axes
    out = {}
    for split in ("train", "test"):
        frames = [{"file_path": f"images/{v.name}",
                   "transform_matrix": (v.c2w @ gl_from_cv).round(DECIMALS).tolist()}
                  for v in all_views if v.split == split]
        data = {"camera_angle_x": CAMERA_ANGLE_X, "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy,
                "w": WIDTH, "h": HEIGHT, "frames": frames}
        out[f"transforms_{split}.json"] = json.dumps(data, indent=1) + "\n"
    return out


def scene_description() -> dict:
    """What ``scene.json`` holds: shapes, bounding box, cameras, lighting, files."""
    fx, fy, cx, cy = intrinsics()
    return {
        "name": "nerf_app synthetic demo scene",
        "generator": "nerf_app.demo_scene (nerf-app make-scene OUT)",
        "coordinates": "world = capture coordinates of both files; +z up; arbitrary units",
        "shapes": [s.to_dict() for s in SHAPES],
        "bbox": bbox().round(9).tolist(),
        "cameras": {"model": "PINHOLE", "width": WIDTH, "height": HEIGHT, "camera_angle_x": CAMERA_ANGLE_X,
                    "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "views": N_VIEWS, "test_every": TEST_EVERY,
                    "radius": CAMERA_RADIUS, "elevation_deg": list(ELEVATION_DEG), "look_at": [0, 0, 0],
                    "up": [0, 0, 1], "layout": "golden-angle spiral, elevation uniform in sin"},
        "rendering": {"supersample": SUPERSAMPLE, "light_dir": list(LIGHT_DIR), "ambient": AMBIENT,
                      "shading": "albedo * (ambient + (1 - ambient) * max(0, n.l)); no shadows",
                      "alpha": "coverage of the supersamples; straight alpha"},
        "files": {"colmap": "sparse/0 (text) + images/", "transforms": "transforms_train.json, transforms_test.json"},
    }


def sparse_points(all_views: List[View]):
    """``(points (P, 3), colours (P, 3) uint8-valued ints, observations)`` for points3D: the
    surface points seen by at least two views (a real track), renumbered in order."""
    points = surface_points()
    obs = observations(points, all_views)
    seen = np.zeros(len(points), int)
    for _, idx, _ in obs:
        np.add.at(seen, idx, 1)
    keep = np.flatnonzero(seen >= 2)
    remap = np.full(len(points), -1)
    remap[keep] = np.arange(len(keep))
    obs = [(k, remap[idx[seen[idx] >= 2]], xy[seen[idx] >= 2]) for k, idx, xy in obs]
    points = points[keep]
    colors = np.round(np.clip(shade(points)[0], 0, 1) * 255).astype(int)
    return points, colors, obs


def text_files() -> Dict[str, str]:
    """Every file of the scene except the images, ``{relative path: text}``: the COLMAP model,
    the two transforms files and ``scene.json``. Cheap (well under a second)."""
    all_views = views()
    files = _colmap_files(all_views, *sparse_points(all_views))
    files.update(_transforms_files(all_views))
    files["scene.json"] = json.dumps(scene_description(), indent=1) + "\n"
    return files


def generate(out_dir: Union[str, Path], progress: bool = False) -> dict:
    """Render and write the scene into ``out_dir``: ``images/r_XXX.png`` (RGBA), ``sparse/0/*.txt``,
    ``transforms_{train,test}.json`` and ``scene.json``. Overwrites those files only. Returns a
    summary (counts, bytes, file list). About 15 s on one core."""
    out = Path(out_dir)
    all_views = views()
    files: Dict[str, Union[str, bytes]] = dict(text_files())
    for i, v in enumerate(all_views):
        if progress and (i + 1) % 16 == 0:
            print(f"rendered {i + 1}/{len(all_views)} views", flush=True)
        files[f"images/{v.name}"] = _png_bytes(render_view(v))
    for rel, data in files.items():
        _write(out / rel, data)
    n_points = files["sparse/0/points3D.txt"].count("\n") - 3  # minus the header lines
    return {"out": str(out), "views": len(all_views), "train": sum(v.split == "train" for v in all_views),
            "test": sum(v.split == "test" for v in all_views), "points3D": n_points,
            "bytes": int(sum(len(d) if isinstance(d, bytes) else len(d.encode()) for d in files.values())),
            "files": sorted(files)}
