"""The demo scene's numpy sphere tracer (rendered views with coverage alpha) and the surface points it
sees (COLMAP's points3D).
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ..geometry.rotations import quat_to_matrix
from .cameras import View, _apply, intrinsics, pixel_rays
from .shapes import HEIGHT, N_POINTS, SEED, SUPERSAMPLE, WIDTH, _normals, _union_sdf, bbox, scene_sdf, shade

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
        R = quat_to_matrix(v.qvec)  # exactly what a COLMAP reader makes of images.txt
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
