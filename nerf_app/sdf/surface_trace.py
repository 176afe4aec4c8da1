"""Rendering implicit surfaces: sphere tracing (SDF), marching + bisection (occupancy), shading.

All functions take batched rays ``origins [R,3]``, unit ``dirs [R,3]`` and a field callable
``f(points [N,3]) -> values [N]`` (no gradients needed; called under ``no_grad``).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..ops.ray_aabb import ray_aabb

Field = Callable[[torch.Tensor], torch.Tensor]


def ray_interval(origins: torch.Tensor, dirs: torch.Tensor, lo, hi):
    """Where rays run inside the box ``[lo, hi]`` (per-axis bounds): ``(t_near [R], t_far [R])`` with
    ``t_near >= 0`` (a camera inside the box starts at its origin); a miss has ``t_near > t_far``.
    The intersection itself is the one op :func:`nerf_app.ops.ray_aabb.ray_aabb`."""
    t_near, t_far = ray_aabb(origins, dirs, lo, hi)
    return t_near.clamp_min(0.0), t_far


@torch.no_grad()
def sphere_trace(sdf: Field, origins, dirs, t_near, t_far, max_steps: int = 128, eps: float = 1e-5,
                 step_scale: float = 1.0):
    """March ``t <- t + step_scale * f(o + t d)`` until ``|f| < eps`` (hit) or ``t > t_far`` (miss).

    Exact for a true SDF (``|f| <=`` distance to the surface, so a step never crosses it);
    ``step_scale < 1`` guards fitted fields whose gradient norm exceeds 1. Only rays still marching
    are evaluated. Returns ``(t [R], hit [R] bool)``.
    """
    t = t_near.clone()
    active = t_near <= t_far
    hit = torch.zeros_like(active)
    for _ in range(max_steps):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        d = sdf(origins[idx] + t[idx, None] * dirs[idx]).reshape(-1)
        converged = d.abs() < eps
        hit[idx[converged]] = True
        t[idx] = t[idx] + torch.where(converged, torch.zeros_like(d), step_scale * d)
        gone = converged | (t[idx] > t_far[idx])
        active[idx[gone]] = False
    # rays out of steps but close enough still count (thin grazing features)
    return t, hit


@torch.no_grad()
def march_bisect(logit: Field, origins, dirs, t_near, t_far, n_samples: int = 128, bisection_steps: int = 10,
                 candidate: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
    """First crossing of ``logit > 0`` along each ray: uniform samples, then bisection.

    ``candidate(points) -> bool`` (optional) marks samples that may be inside (e.g. a coarse
    occupancy grid); the field is evaluated only there, the rest count as outside.
    Returns ``(t [R], hit [R])``.
    """
    R = origins.shape[0]
    valid = t_near < t_far
    s = torch.linspace(0.0, 1.0, n_samples, dtype=origins.dtype)
    ts = t_near[:, None] + (t_far - t_near).clamp_min(0)[:, None] * s[None, :]  # [R,S]
    pts = origins[:, None, :] + ts[..., None] * dirs[:, None, :]
    vals = torch.full((R, n_samples), -1.0, dtype=origins.dtype)
    mask = valid[:, None].expand(R, n_samples).clone()
    if candidate is not None:
        mask &= candidate(pts.reshape(-1, 3)).reshape(R, n_samples)
    if mask.any():
        vals[mask] = logit(pts[mask]).reshape(-1).to(vals.dtype)
    pos = vals > 0
    hit = pos.any(-1)
    first = torch.where(hit, pos.float().argmax(-1), torch.zeros_like(hit, dtype=torch.long))
    t_hi = ts.gather(1, first[:, None]).squeeze(1)
    t_lo = ts.gather(1, (first - 1).clamp_min(0)[:, None]).squeeze(1)
    idx = hit.nonzero().squeeze(-1)
    lo, hi = t_lo[idx], t_hi[idx]
    o, d = origins[idx], dirs[idx]
    for _ in range(bisection_steps):  # invariant: logit(lo) <= 0 < logit(hi)
        mid = 0.5 * (lo + hi)
        inside = logit(o + mid[:, None] * d).reshape(-1) > 0
        hi = torch.where(inside, mid, hi)
        lo = torch.where(inside, lo, mid)
    t = t_far.clone()
    t[idx] = 0.5 * (lo + hi)
    return t, hit


@torch.no_grad()
def gradient_normals(f: Field, points: torch.Tensor, eps: float = 1e-3, outward_sign: float = 1.0):
    """Unit normals ``outward_sign * grad f / |grad f|`` by central differences (6 evaluations/point).

    ``outward_sign = +1`` for an SDF (grows outward), ``-1`` for an occupancy logit (grows inward).
    """
    offs = torch.eye(3, dtype=points.dtype) * eps
    x = torch.cat([points + offs[i] for i in range(3)] + [points - offs[i] for i in range(3)])
    v = f(x).reshape(6, -1)
    g = torch.stack([v[i] - v[i + 3] for i in range(3)], dim=-1) * outward_sign
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def shade(normals: torch.Tensor, dirs: torch.Tensor, mode: str = "lambert"):
    """RGB in [0,1]: ``normals`` -> ``0.5 n + 0.5``; ``lambert`` -> grey albedo lit by a light
    over the viewer's shoulder plus a head light and ambient (so nothing is pitch black)."""
    if mode == "normals":
        return 0.5 * normals + 0.5
    light = -dirs + torch.tensor([0.3, -0.6, 0.0], dtype=dirs.dtype)  # roughly above-right of the camera
    light = light / light.norm(dim=-1, keepdim=True)
    diffuse = (normals * light).sum(-1).clamp_min(0)
    head = (normals * -dirs).sum(-1).clamp_min(0)
    v = (0.15 + 0.6 * diffuse + 0.25 * head).clamp(0, 1)
    return torch.stack([v * 0.85, v * 0.9, v], dim=-1)
