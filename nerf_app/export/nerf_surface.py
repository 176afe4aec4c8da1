"""A NeRF's surface for the textured export (``NerfTask.export_surface``), by one of two methods:

- ``density``: marching cubes of the density at the level where one marching step (``dt_min``) has alpha
  0.17 (100 at the default 1024 steps per unit diagonal; chosen by rendered-mesh PSNR on lego and the demo,
  docs/export.md), skipping cells no training camera saw and cells the occupancy grid holds empty; 2.5 when
  the field nowhere reaches that level. Kept for objects on a known background (lego, the demo).
- ``tsdf``: median-depth maps at the training cameras (:mod:`nerf_app.export.depth`) fused into a truncated
  signed distance (:mod:`nerf_app.export.tsdf`) over the region, then marching cubes. The default for real
  captures (docs/export.md says why: soft, foggy density and uneven coverage).

Both are cleaned the same way: small connected pieces dropped (fewer faces than ``min_component`` x the
largest), degenerate/duplicate faces removed, optional hole filling.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np
import torch

from ..errors import ConfigError, NerfAppError
from .surface import Surface

# The NeRF level set the textured mesh follows, as the alpha one marching step (dt_min) of that density
# has: 0.17 / dt_min = 100 at the default 1024 steps per unit diagonal. Measured (docs/export.md) with the
# session-5 pipeline (hidden faces culled, texture solved), rendered-mesh PSNR at levels 100 / 110 / 118:
# lego 28.84 / 28.94 / 29.00, the demo 29.99 / 29.61 / 29.31; 100 has the best mean of the two. Lower levels
# sit in the semi-transparent haze in front of the surface; higher ones erode thin parts.
TEXTURE_LEVEL_ALPHA = 0.17
FALLBACK_LEVEL = 2.5


def default_method(task) -> str:
    """``density`` for objects on a known background (images with alpha), ``tsdf`` for real captures: on cup
    (10-minute run, 10 held-out views) tsdf's mesh scored 20.0 dB on the region pixels against density's 16.7,
    exported faster with half the memory (docs/export.md)."""
    return "density" if getattr(task.scene, "bounded", False) else "tsdf"


def nerf_texture_level(task) -> float:
    return TEXTURE_LEVEL_ALPHA / task.march_dt_min()


def nerf_density(task, level: float):
    """Density for marching cubes: 0 where no training camera saw the cell, and where the occupancy
    grid's (decayed, max-over-samples) estimate, dilated by one cell, stays below a quarter of the level."""
    import torch.nn.functional as F

    field, grid = task.model.field, task.model.grid
    R = grid.resolution
    visible = grid.visible[0]
    est = grid.density[0].reshape(R, R, R).float()   # index = x + R*(y + R*z): [z, y, x]
    est = F.max_pool3d(est[None, None], 3, stride=1, padding=1)[0, 0].reshape(-1)
    keep_cell = visible & (est >= 0.25 * level)

    def density(x: torch.Tensor) -> torch.Tensor:
        cell = (x.clamp(0, 1 - 1e-6) * R).long()
        idx = cell[:, 0] + R * (cell[:, 1] + R * cell[:, 2])
        keep = keep_cell[idx]
        out = torch.zeros(x.shape[0])
        if keep.any():
            out[keep] = field.density(x[keep].float())[0].float()
        return out
    return density


def _tilted_directions(n: torch.Tensor, angle_deg: float = 35.0):
    """``-n`` and four directions tilted ``angle_deg`` from it (towards +/- two tangents)."""
    a = torch.where(n[:, :1].abs() < 0.9, torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.0, 1, 0]]))
    t1 = torch.nn.functional.normalize(torch.cross(n, a, dim=1), dim=1)
    t2 = torch.cross(n, t1, dim=1)
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    dirs = [-n] + [-c * n + s * sgn * t for t in (t1, t2) for sgn in (1.0, -1.0)]
    return [torch.nn.functional.normalize(d, dim=1) for d in dirs]


def nerf_colour_fn(task, delta: float, n_samples: int = 12, angle_deg: float = 35.0):
    """``(points [N,3], normals [N,3]) -> rgb [N,3]`` in normalised coordinates: a short ray along the inward
    normal (from ``+delta`` outside to ``-delta`` inside) is volume-rendered for its expected hit, where the
    radiance is averaged over five view directions (the normal's and four tilted ``angle_deg``): the diffuse,
    mean-view colour, through the held-out views' appearance (the run's mean per-image colour map) so it
    matches what ``eval`` compares the NeRF with."""
    field = task.model.field
    transform = task.eval_color_transform(None)
    device = task.model.grid.bitfield.device

    @torch.no_grad()
    def colour(p: np.ndarray, n: np.ndarray) -> np.ndarray:
        p = torch.from_numpy(p).float()
        n = torch.from_numpy(n).float()
        S = n_samples
        dt = 2.0 * delta / S
        t = (torch.arange(S).float() + 0.5) * dt                 # distance marched from p + delta n
        x = p[:, None] + (delta - t)[None, :, None] * n[:, None]
        sigma = field.density(x.reshape(-1, 3).clamp(0, 1).to(device))[0].float().cpu().reshape(-1, S)
        alpha = 1.0 - torch.exp(-sigma * dt)
        trans = torch.cumprod(torch.cat([torch.ones(len(p), 1), 1.0 - alpha[:, :-1] + 1e-10], 1), 1)
        w = trans * alpha
        wsum = w.sum(1, keepdim=True)
        hit = (w[..., None] * x).sum(1) / wsum.clamp_min(1e-6)
        q = torch.where(wsum > 1e-3, hit, p).clamp(0, 1).to(device)
        rgb = torch.zeros(len(p), 3, device=device)
        for d in _tilted_directions(n, angle_deg):
            rgb += field(q, d.contiguous().to(device))[1].float()
        rgb = rgb / 5.0
        if transform is not None:
            rgb = transform(rgb)
        return rgb.clamp(0, 1).cpu().numpy()
    return colour


def _density_mesh(task, res: int, threshold, chunks, progress):
    from ..geometry.marching_cubes import extract_mesh

    auto_level = threshold in (None, "auto")
    level = nerf_texture_level(task) if auto_level else float(threshold)
    note = None
    with torch.no_grad():
        v, f = extract_mesh(nerf_density(task, level), (0.0,) * 3, (1.0,) * 3, res, level, "above", chunks,
                            progress=progress)
        if len(f) == 0 and auto_level and level > FALLBACK_LEVEL:
            # an under-trained field that nowhere gets that dense: the haze's level rather than nothing
            note = f"no surface at the automatic level {level:.4g}; extracted at {FALLBACK_LEVEL} instead"
            level = FALLBACK_LEVEL
            v, f = extract_mesh(nerf_density(task, level), (0.0,) * 3, (1.0,) * 3, res, level, "above", chunks,
                                progress=progress)
    if len(f) == 0:
        raise NerfAppError(f"no surface at density level {level:.4g} inside the box")
    return v, f, {"level": level, **({"level_note": note} if note else {})}


# TSDF defaults: voxels per unit (the region's longest side), the depth maps' longest side in pixels, and the
# truncation in voxels. Measured on cup (docs/export.md).
TSDF_RESOLUTION = 256
TSDF_DEPTH_SIDE = 160
TSDF_TRUNC_VOXELS = 4.0
# The fused grid reaches this many voxels past the region on every side. Without it the mesh stopped short
# of the region's faces (by up to a voxel, more where the surface meets them at a slant), and the pixels
# there rendered the background: on cup (10-minute run, 10 held-out views) 3.0 % of the region pixels were
# misses, 1.6 % with 8 voxels, and the region PSNR went 20.0 -> 21.3 dB (docs/export.md).
TSDF_MARGIN_VOXELS = 8
# With the default region (no --crop) the grid reaches this many voxels past it instead: the surfaces just
# outside the region (the wall behind the cup) are kept as its backdrop, so a view's rays past an object's
# silhouette or the region's edge hit what the photos show there instead of nothing (white).
TSDF_BACKDROP_VOXELS = 40
# A view that sees through a voxel (the voxel lies more than the truncation in front of its depth) votes it
# empty with this weight; a view whose surface is there votes with 1. At 1, soft surfaces some views see
# through vanished: a hole through fox's face in its frontal held-out view (97 % of fox's region pixels
# hit by the mesh, 98 % at 0.25; cup 98.4 -> 98.6 %). Fog that four times more views see through than see
# is still outvoted (docs/export.md).
TSDF_FREE_WEIGHT = 0.25
# The observed signed distances are carried this many voxels into the unobserved voxels around them before
# marching cubes (tsdf.extend_observed), so a surface goes on a little past where the views stopped seeing
# it: the strips behind an object's edge and along a fragment's border that a held-out view sees.
TSDF_EXTEND_VOXELS = 3
# A voxel joins the fused band once the depth points of this many views fall in it (tsdf.TSDFVolume.set_band).
TSDF_BAND_MIN_VIEWS = 1


def _tsdf_mesh(task, region, res: int, progress: bool, depth_side: int = TSDF_DEPTH_SIDE,
               margin: int = TSDF_MARGIN_VOXELS):
    from .depth import render_depth_views
    from .tsdf import fuse_views

    t0 = time.perf_counter()
    train = task.scene.split_indices("train")
    views = render_depth_views(task, train, depth_side, progress=progress)
    t1 = time.perf_counter()
    v, f, info = fuse_views(views, region.lo, region.hi, res, TSDF_TRUNC_VOXELS, margin_voxels=margin,
                            free_weight=TSDF_FREE_WEIGHT, min_views=TSDF_BAND_MIN_VIEWS,
                            extend_voxels=TSDF_EXTEND_VOXELS, progress=progress)
    if len(f) == 0:
        raise NerfAppError("no surface: the depth maps of the training cameras fuse to nothing inside the region")
    info.update({"depth_views": len(views), "depth_size": list(views[0].shape) if views else None,
                 "depth_seconds": round(t1 - t0, 2), "fusion_seconds": round(time.perf_counter() - t1, 2)})
    return v, f, info, views


def nerf_surface(task, method: Optional[str] = None, crop=None, resolution: Optional[int] = None, threshold=None,
                 chunks=None, min_component: Optional[float] = None, fill_holes: bool = False,
                 progress: bool = False, **_) -> Surface:
    """The NeRF's surface by ``method`` (None: :func:`default_method`) inside the region (``crop``: six
    capture-coordinate numbers; None: the training box), cleaned (module docstring)."""
    from ..geometry.simplify import clean_mesh
    from .region import crop_region

    method = method or default_method(task)
    if method not in ("density", "tsdf"):
        raise ConfigError(f"--method must be density or tsdf, got {method!r}")
    scene = task.scene
    region = crop_region(crop, scene.normalization, np.asarray(scene.aabb, np.float64))
    views = None
    if method == "density":
        if crop is not None and not (np.allclose(region.lo, 0) and np.allclose(region.hi, 1)):
            lo, hi = region.lo, region.hi
        else:
            lo, hi = np.zeros(3), np.ones(3)
        res = int(resolution or 384)
        if res < 8:
            raise ConfigError(f"--resolution must be >= 8, got {res}")
        if (lo < 0).any() or (hi > 1).any():
            # the density method marches the unit cube the grids' finest cascade covers
            lo, hi = np.maximum(lo, 0), np.minimum(hi, 1)
            if not (hi > lo).all():
                raise ConfigError("--crop box does not meet the unit cube the density method meshes "
                                  "(use --method tsdf for the space around it)")
        from ..geometry.marching_cubes import extract_mesh
        if (lo == 0).all() and (hi == 1).all():
            v, f, info = _density_mesh(task, res, threshold, chunks, progress)
        else:
            level = nerf_texture_level(task) if threshold in (None, "auto") else float(threshold)
            with torch.no_grad():
                v, f = extract_mesh(nerf_density(task, level), lo, hi, res, level, "above", chunks, progress=progress)
            if len(f) == 0:
                raise NerfAppError(f"no surface at density level {level:.4g} inside the --crop box")
            info = {"level": level}
        from .region import Region
        region = Region(lo, hi, region.source)
        min_component = 0.05 if min_component is None else float(min_component)
    else:
        if threshold not in (None, "auto"):
            raise ConfigError("--threshold is a density level: it goes with --method density")
        res = int(resolution or TSDF_RESOLUTION)
        if res < 8:
            raise ConfigError(f"--resolution must be >= 8, got {res}")
        # the default region keeps the surfaces around it (TSDF_BACKDROP_VOXELS); a --crop box is that box only
        margin = TSDF_MARGIN_VOXELS if crop is not None else TSDF_BACKDROP_VOXELS
        v, f, info, views = _tsdf_mesh(task, region, res, progress, margin=margin)
        # floaters: the capture's pieces are the object and its ground; anything under 2 % of the largest goes
        min_component = 0.02 if min_component is None else float(min_component)
    n = len(f)
    v, f = clean_mesh(v, f, min_component, fill_holes)
    delta = max(3.0 / res, 0.004)
    return Surface(v, f, scene.normalization.inverse_matrix, nerf_colour_fn(task, delta),
                   "nerf: mean of 5 view directions at the normal ray's expected hit", photos=True, region=region,
                   views=views, info={"method": method, "resolution": res, "extracted_faces": int(n),
                                      "min_component": min_component, **info})
