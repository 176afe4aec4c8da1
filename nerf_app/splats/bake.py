"""Bake a trained NeRF into Gaussian splats with forward passes only (as "From NeRFs to Gaussian Splats,
and Back", arXiv 2405.09717, does in spirit): every ``step``-th pixel of evenly spread training views is
rendered; where the ray is opaque, a flat splat sits at the surface's front (where the ray's transmittance
falls to one half; none on depth edges, whose samples lie between an object and its background), spanning the pixel's
footprint on the surface (anisotropic: the depth map's neighbours give the two tangent directions and
lengths), thin along the surface normal; its colour is spherical harmonics fitted to the field's colour
in directions around the view ray, shifted so the view ray's colour equals the rendered pixel; its opacity
is the pixel's. Overlapping views' duplicates are merged (one splat per voxel of the splat's own size, the
finest kept); over the ``max_splats`` budget the set is thinned evenly."""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..errors import ConfigError
from ..export.depth import corrected_c2w, pinhole_rays
from .model import SH_C0, Splats, rotmat_to_quat

TANGENT_SIGMA = 0.6   # splat std-dev along the surface per unit of sample spacing (neighbours overlap)
NORMAL_SIGMA = 0.15   # ... along the normal, per unit of the smaller tangent std-dev (flat discs)
MIN_OPACITY = 0.5     # pixels less opaque than this make no splat (background of object captures)
MAX_STRETCH = 2.0     # a tangent axis spans at most this many fronto-parallel sample spacings
FRONT_T = 0.5         # a splat sits where the ray's transmittance falls to this (the surface's front), not at
                      # the expected depth: a soft surface or a silhouette ray put that behind, in mid-air
FILL_REACH = 2.0      # a hole-filling candidate counts where no picked view's splat is within this many of its spacings
RING = 0.25           # each picked view is also rendered this far (a share of its width / height) beyond its frame:
                      # a held-out view that looks past every photo's edge sees the field's guess there, not
                      # the background (cup10's views 61 and 69: white corners where the table goes on)
RING_STEP = 2         # ... at this multiple of the view's pixel step
EDGE = 0.02           # a sample whose depth's second difference exceeds this share of its depth is on a depth
                      # edge (a silhouette): no splat there (other views see that surface face on)


def check_nerf(task, flag: str = "--splats") -> None:
    """One line when the run is not a radiance field (sdf, occupancy, image, audio runs have no splats)."""
    from ..nerf.task import NerfTask
    if not isinstance(task, NerfTask):
        mode = getattr(getattr(task, "config", None), "mode", type(task).__name__)
        article = "an" if str(mode)[:1] in "aeiou" else "a"
        raise ConfigError(f"{flag}: splats are baked from a radiance field (a nerf run); this is {article} {mode} run")


def _sh_fit_directions(d: torch.Tensor, angle_deg: float = 30.0, ring: int = 6) -> torch.Tensor:
    """``[P, 3]`` view directions -> ``[P, 1 + ring, 3]``: each, and ``ring`` directions tilted by ``angle_deg``."""
    up = torch.where(d[:, 2:3].abs() < 0.9, torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
    a = torch.nn.functional.normalize(torch.cross(d, up, dim=-1), dim=-1)
    b = torch.cross(d, a, dim=-1)
    t = math.radians(angle_deg)
    out = [d]
    for k in range(ring):
        phi = 2 * math.pi * k / ring
        out.append(math.cos(t) * d + math.sin(t) * (math.cos(phi) * a + math.sin(phi) * b))
    return torch.stack(out, 1)


@torch.no_grad()
def fit_sh(task, points: torch.Tensor, view_dirs: torch.Tensor, pixel_rgb: torch.Tensor, degree: int,
           chunk: int = 1 << 15) -> torch.Tensor:
    """SH ``[P, degree**2, 3]`` per point: least squares (a small ridge on the higher bands) to the field's
    colour in directions around the view ray, then the constant term shifted so the view ray shows
    ``pixel_rgb`` (what the NeRF rendered there, composited along the whole ray)."""
    from ..ops._reference import sh_encode
    field = task.model.field
    device = task.device
    K = degree * degree
    out = torch.zeros(points.shape[0], K, 3)
    for s in range(0, points.shape[0], chunk):
        p, d, c = points[s:s + chunk], view_dirs[s:s + chunk], pixel_rgb[s:s + chunk]
        dirs = _sh_fit_directions(d)                                    # [B, M, 3]
        B, M = dirs.shape[:2]
        if degree > 1:
            x = p[:, None, :].expand(B, M, 3).reshape(-1, 3)
            _, rgb = field(x.to(device).contiguous(), dirs.reshape(-1, 3).to(device).contiguous())
            rgb = rgb.float().cpu().reshape(B, M, 3)
            Y = sh_encode(dirs.reshape(-1, 3), degree).reshape(B, M, K)   # [B, M, K]
            ridge = torch.full((K,), 0.3)   # the field's colour off the surface is noisy: keep view effects mild
            ridge[0] = 1e-4
            A = Y.transpose(1, 2) @ Y + torch.diag(ridge)
            coef = torch.linalg.solve(A, Y.transpose(1, 2) @ (rgb - 0.5))  # [B, K, 3]
        else:
            coef = torch.zeros(B, 1, 3)
        Yd = sh_encode(d, degree)                                        # [B, K]
        now = (Yd[:, :, None] * coef).sum(1) + 0.5
        coef[:, 1:, :] = coef[:, 1:, :].clamp(-0.5, 0.5)
        now = (Yd[:, :, None] * coef).sum(1) + 0.5
        coef[:, 0, :] += (c - now) / SH_C0
        out[s:s + chunk] = coef
    return out


def depth_edges(t: torch.Tensor, rel: float = EDGE) -> torch.Tensor:
    """``[H, W]`` bool: samples of the depth map ``t`` on a depth edge - the second difference along a row or a
    column exceeds ``rel`` x the depth (a plane, however oblique, has none; a step from a cup to the wall
    behind it has two). The border rows and columns are judged along the other axis only."""
    e = torch.zeros_like(t)
    if t.shape[1] > 2:
        e[:, 1:-1] = (t[:, 2:] + t[:, :-2] - 2 * t[:, 1:-1]).abs()
    if t.shape[0] > 2:
        e[1:-1] = torch.maximum(e[1:-1], (t[2:] + t[:-2] - 2 * t[1:-1]).abs())
    return ~(e <= rel * t) | ~torch.isfinite(t)   # NaN / inf depths count as edges


def ring_strips(task, index: int, ring: float) -> list:
    """The ring of ``ring`` x the width / height around training view ``index``'s frame as four pixel rectangles
    ``(x0, x1, y0, y1)`` (top and bottom full width, then left and right): only the ring is rendered."""
    cam = task.scene.cameras[int(index)]
    mx, my = ring * cam.width, ring * cam.height
    return [(-mx, cam.width + mx, -my, 0.0), (-mx, cam.width + mx, float(cam.height), cam.height + my),
            (-mx, 0.0, 0.0, float(cam.height)), (float(cam.width), cam.width + mx, 0.0, float(cam.height))]


def strip_rays(task, index: int, step: int, rect):
    """``(origins, dirs)`` ``[H', W', 3]`` through every ``step``-th pixel of the rectangle ``rect`` of training
    view ``index``'s image plane (beyond the frame: a pinhole with the view's pose correction; there is no lens
    to model outside the photo). A point on these rays projects back to its pixel, outside the frame; where a
    lens's photo reaches past the pinhole frame, the overlap is merged like any two views' (the finer kept)."""
    cam = task.scene.cameras[int(index)]
    x0, x1, y0, y1 = rect
    W, H = len(np.arange(x0, x1, step)), len(np.arange(y0, y1, step))
    # every step-th pixel of the rectangle = the pixel centres of a pinhole camera scaled by 1/step whose
    # principal point is moved to the rectangle's corner
    K = (cam.fx / step, cam.fy / step, (cam.cx - x0) / step, (cam.cy - y0) / step)
    o, d, _ = pinhole_rays(corrected_c2w(task, index), K, W, H)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.reshape(H, W, 3))).float().to(task.device)  # noqa: E731
    return as_t(o), as_t(d)


def _view_splats(task, index: int, step: int, background, transform,
                 rect=None) -> Optional[Dict[str, torch.Tensor]]:
    """Splat candidates from one training view rendered at every ``step``-th pixel; with ``rect``, from that
    rectangle of its image plane outside the frame instead (:func:`strip_rays`)."""
    import dataclasses

    from ..nerf.renderer import render_image
    o, d = strip_rays(task, index, step, rect) if rect is not None else task.view_rays(index, step)
    if o.shape[0] < 1 or o.shape[1] < 1:
        return None
    near = task.image_near(index)
    bg = torch.tensor(background, device=task.device)
    rgb, depth, opacity = render_image(task.model.field, task.model.grid, o, d, bg, task.march,
                                       backend=task.config.backend, near=near, color_transform=transform)
    # the depth of the surface's front: the same rays stopped once their transmittance falls below FRONT_T
    # (cheap: they stop early); measured on cup10's held-out views: 17.1 -> 18.4 dB, with EDGE 21.1 dB
    front = dataclasses.replace(task.march, render_t_threshold=FRONT_T)
    _, fdepth, fopacity = render_image(task.model.field, task.model.grid, o, d, bg, front,
                                       backend=task.config.backend, near=near)
    o, d, rgb, opacity, fdepth, fopacity = (t.float().cpu() for t in (o, d, rgb, opacity, fdepth, fopacity))
    H, W = opacity.shape
    t = fdepth / fopacity.clamp_min(1e-6)
    P = o + t[..., None] * d                                            # [H, W, 3] expected surface points
    cam = task.scene.cameras[int(index)]
    c2w = corrected_c2w(task, index)
    forward = torch.from_numpy(c2w[:3, 2]).float()
    z = (P - o) @ forward                                               # camera depth
    spacing = z * step / float(0.5 * (cam.fx + cam.fy))                 # sample spacing on a fronto-parallel plane
    # tangents from the neighbouring samples (central differences; one-sided at the border)
    du = torch.zeros_like(P)
    dv = torch.zeros_like(P)
    if W > 2:
        du[:, 1:-1] = 0.5 * (P[:, 2:] - P[:, :-2])
    if H > 2:
        dv[1:-1] = 0.5 * (P[2:] - P[:-2])
    # a neighbour across a depth edge is not the same surface, and the expected depth of a real capture is
    # noisy: the stretch along each tangent is limited to MAX_STRETCH x the fronto-parallel footprint, and a
    # normal more than 60 degrees from the view ray is not trusted (the splat faces the camera instead) --
    # otherwise splats stretch along the training rays and a novel view sees streaks
    lim = MAX_STRETCH * spacing[..., None]
    du = du * torch.clamp(lim / du.norm(dim=-1, keepdim=True).clamp_min(1e-12), max=1.0)
    dv = dv * torch.clamp(lim / dv.norm(dim=-1, keepdim=True).clamp_min(1e-12), max=1.0)
    n = torch.nn.functional.normalize(torch.cross(du, dv, dim=-1), dim=-1)
    n = torch.where(((n * d).sum(-1) > 0)[..., None], -n, n)           # facing the camera
    bad = ~((n * -d).sum(-1) > 0.5)                                     # also NaN / zero normals
    n = torch.where(bad[..., None], -d, n)
    keep = (opacity > MIN_OPACITY) & torch.isfinite(P).all(-1) & (z > 0) & ~depth_edges(t)
    if not bool(keep.any()):
        return None
    P, n, du, dv, d, rgb, op, spacing = (x[keep] for x in (P, n, du, dv, d, rgb, opacity, spacing))
    # tangent frame: e1 along du projected on the tangent plane, e2 = n x e1
    e1 = du - (du * n).sum(-1, keepdim=True) * n
    e1 = torch.where((e1.norm(dim=-1) < 1e-9 * spacing)[:, None], torch.cross(n, d + 1e-3, dim=-1), e1)
    e1 = torch.nn.functional.normalize(e1, dim=-1)
    e2 = torch.cross(n, e1, dim=-1)
    s1 = TANGENT_SIGMA * torch.maximum((du * e1).sum(-1).abs(), spacing)
    s2 = TANGENT_SIGMA * torch.maximum((dv * e2).sum(-1).abs(), spacing)
    s3 = NORMAL_SIGMA * torch.minimum(s1, s2)
    rgb = (rgb / op.clamp_min(1e-6)[:, None]).clamp(0, 1) if background == (0.0, 0.0, 0.0) else rgb
    return {"means": P, "rot": torch.stack([e1, e2, n], -1), "scales": torch.stack([s1, s2, s3], -1),
            "opacity": op, "rgb": rgb, "dirs": d, "spacing": spacing}


def _fill_holes(base: Dict[str, torch.Tensor], extra: Dict[str, torch.Tensor], reach: float) -> torch.Tensor:
    """Which ``extra`` candidates lie where no ``base`` candidate does: farther than ``reach`` x their own
    sample spacing from every base candidate (a k-d tree over the base's centres)."""
    from scipy.spatial import cKDTree
    if extra["means"].shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    dist, _ = cKDTree(base["means"].double().numpy()).query(extra["means"].double().numpy(), k=1)
    return torch.from_numpy(dist > reach * extra["spacing"].double().numpy())


def bake_splats(task, max_splats: int = 1_000_000, views: int = 32, step: int = 4, sh_degree: int = 2,
                progress: bool = True, on_view=None, fill_step: Optional[int] = None,
                ring: float = RING) -> tuple:
    """``(Splats in normalised coordinates, report)`` from the training views of a NeRF run (see the module).
    ``on_view(done, total)`` is called before each view and after the last (the viewer's progress line; it
    may raise to abandon the bake). ``fill_step``: every training view the ``views`` picks left out is also
    rendered, at this coarser pixel step, and adds splats only where the picked views left a hole
    (:func:`_fill_holes`): surfaces that only those views saw up close. ``ring``: each picked view is also
    rendered that share of its size beyond its frame, at ``RING_STEP`` x the step (0: none)."""
    check_nerf(task)
    from tqdm import tqdm
    scene = task.scene
    t0 = time.perf_counter()
    train = scene.split_indices("train")
    picks = train[np.unique(np.round(np.linspace(0, len(train) - 1, min(views, len(train)))).astype(int))]
    rest = np.setdiff1d(train, picks) if fill_step else np.zeros(0, dtype=int)
    # (view, pixel step, rectangle outside the frame or None, which list its splats join)
    jobs = [(int(i), step, None, "base") for i in picks]
    if ring > 0:
        jobs += [(int(i), step * RING_STEP, r, "base") for i in picks for r in ring_strips(task, i, ring)]
    jobs += [(int(i), int(fill_step), None, "fill") for i in rest]
    transform = task.eval_color_transform(None)
    parts, fills = [], []
    n_ring = 0
    for k, (i, s, rect, kind) in enumerate(tqdm(jobs, desc="bake splats", unit="view", disable=not progress,
                                                 file=sys.stderr)):
        if on_view is not None:
            on_view(k, len(jobs))
        part = _view_splats(task, i, s, (0.0, 0.0, 0.0), transform, rect)
        if part is not None:
            (parts if kind == "base" else fills).append(part)
            n_ring += int(part["means"].shape[0]) if rect is not None else 0
    if on_view is not None:
        on_view(len(jobs), len(jobs))
    if not parts:
        raise ConfigError("--splats: no training view has an opaque pixel to place a splat at (an untrained run?)")
    cand = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    filled = 0
    if fills:
        extra = {k: torch.cat([p[k] for p in fills]) for k in fills[0]}
        hole = _fill_holes(cand, extra, FILL_REACH)
        filled = int(hole.sum())
        cand = {k: torch.cat([cand[k], extra[k][hole]]) for k in cand}
    n_candidates = int(cand["means"].shape[0])
    # one splat per voxel of its own size (levels of powers of two): the finest candidate first
    order = torch.argsort(cand["spacing"], stable=True)
    level = torch.round(torch.log2(cand["spacing"][order].clamp_min(1e-9)))
    cell = torch.exp2(level)
    key = torch.cat([level[:, None], torch.floor(cand["means"][order] / cell[:, None])], 1).numpy()
    _, first = np.unique(key, axis=0, return_index=True)
    keep = order[torch.from_numpy(np.sort(first))]
    if len(keep) > max_splats:   # over budget: an even thinning (a fixed seed: the same bake every time)
        g = torch.Generator().manual_seed(0)
        keep = keep[torch.randperm(len(keep), generator=g)[:max_splats]]
        keep = keep.sort()[0]
    c = {k: v[keep] for k, v in cand.items()}
    sh = fit_sh(task, c["means"], c["dirs"], c["rgb"], sh_degree)
    quats = torch.from_numpy(rotmat_to_quat(c["rot"].double().numpy())).float()
    opacity = c["opacity"].clamp(0.02, 0.98)
    splats = Splats(c["means"].contiguous(), torch.log(c["scales"]).contiguous(), quats.contiguous(),
                    torch.log(opacity / (1 - opacity)).contiguous(), sh.contiguous())
    report = {"views": int(len(picks)), "pixel_step": int(step), "ring": float(ring), "ring_candidates": n_ring,
              "fill_views": int(len(rest)),
              "fill_candidates": filled, "candidates": n_candidates,
              "splats": len(splats), "max_splats": int(max_splats), "sh_degree": sh_degree - 1,
              "bake_seconds": round(time.perf_counter() - t0, 2)}
    return splats, report
