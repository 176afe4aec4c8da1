"""Depth maps of a trained NeRF at its training cameras, for the surfaces made by fusion (tsdf, poisson).

Each view is rendered at a *pinhole twin* of its training camera: the same pose (with the run's pose
correction) and focal lengths, scaled to at most ``max_side`` pixels, without lens distortion. Pinhole views
make fusion a plain projection (:mod:`nerf_app.export.tsdf`), and the NeRF renders any ray.

Depth is the **median** depth, where the ray's transmittance first falls below one half, not the expected
depth (the weighted mean): a ray through thin fog in front of a surface, or past an object's edge onto the
background, has an expected depth between the two, where there is nothing; the median sits on one of them.
A ray that never gets half opaque has no surface (``inf``) and says the space it crossed is empty. Marching
stops at the crossing, so a depth map costs only the samples in front of the first surface (densities, no
colours).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch


@dataclass
class DepthView:
    """One pinhole depth map: ``c2w [4,4]`` (OpenCV axes, normalised coordinates), ``K = (fx, fy, cx, cy)``
    at this map's size, ``depth [H,W]`` z-depth along the optical axis (``inf``: no surface), ``index`` the
    training image it twins."""
    c2w: np.ndarray
    K: tuple
    depth: np.ndarray
    index: int

    @property
    def shape(self):
        return self.depth.shape


def pinhole_rays(c2w: np.ndarray, K, width: int, height: int):
    """``(origins [H*W,3], unit dirs [H*W,3], z per unit length [H*W])`` of a pinhole camera (pixel centres)."""
    fx, fy, cx, cy = K
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(xs - cx) / fx, (ys - cy) / fy, np.ones_like(xs)], -1).reshape(-1, 3)
    norm = np.linalg.norm(d_cam, axis=1)
    d = (d_cam / norm[:, None]) @ np.asarray(c2w, np.float64)[:3, :3].T
    o = np.broadcast_to(np.asarray(c2w, np.float64)[:3, 3], d.shape).copy()
    return o, d, 1.0 / norm


def corrected_c2w(task, index: int) -> np.ndarray:
    """Training camera ``index``'s camera-to-world (normalised) with the run's pose correction, if any (as
    ``view_rays`` uses; the export's depth maps and photos and the splats' bake and refinement all take it)."""
    c2w = np.array(task.scene.c2w[int(index)], np.float64)
    delta = task.pose_correction(int(index))
    if delta is not None:
        # Rodrigues, as nerf.task.axis_angle_matrix (not imported: nerf.task imports the export, a cycle)
        from scipy.spatial.transform import Rotation
        d = delta.detach().double().cpu().numpy().reshape(-1)
        R = Rotation.from_rotvec(d[:3]).as_matrix()
        c2w[:3, :3] = R @ c2w[:3, :3]
        c2w[:3, 3] = c2w[:3, 3] + d[3:]
    return c2w


@torch.no_grad()
def median_depth(field, grid, origins: torch.Tensor, dirs: torch.Tensor, march, backend="auto",
                 near: Optional[torch.Tensor] = None, chunk: int = 1 << 14) -> torch.Tensor:
    """Distance along each unit ray ``[R]`` to where its transmittance first falls below 0.5 (``inf`` if it
    never does), marching the occupancy grid in rounds as the renderer does and evaluating densities only."""
    from ..nerf.renderer import _interval, march_in_rounds
    from ..ops.packed import exclusive_sum, segment_sum

    out = torch.full((origins.shape[0],), math.inf)
    for s0 in range(0, origins.shape[0], chunk):
        o = origins[s0:s0 + chunk].contiguous()
        d = dirs[s0:s0 + chunk].contiguous()
        n = o.shape[0]
        t, t_far = _interval(o, d, grid, march, backend, None if near is None else near[s0:s0 + chunk])
        log_t = torch.zeros(n, dtype=torch.float64)      # log transmittance so far
        depth = torch.full((n,), math.inf)
        half = math.log(0.5)
        for step in march_in_rounds(o, d, t, t_far, grid, march, march.round_samples_max, backend):
            alive, smp = step.alive, step.samples
            if smp.n_samples:
                sigma = field.density(step.positions)[0].float().clamp_min(0)
                dt = (smp.t_ends - smp.t_starts).float()
                tau = (sigma * dt).double()                   # optical thickness of each sample
                ray = smp.ray_indices.long()
                excl = log_t[alive][ray] - exclusive_sum(tau, ray)   # log T before each sample
                incl = excl - tau
                cross = (excl >= half) & (incl < half)
                if cross.any():
                    ci = torch.nonzero(cross)[:, 0]
                    frac = ((excl[ci] - half) / tau[ci].clamp_min(1e-12)).clamp(0, 1).float()
                    td = smp.t_starts[ci] + frac * dt[ci]
                    rows = alive[ray[ci]]
                    depth[rows] = torch.minimum(depth[rows], td)
                log_t[alive] -= segment_sum(tau, ray, len(alive))
            step.go_on &= log_t[alive] >= half
        out[s0:s0 + chunk] = depth
    return out


def render_depth_views(task, indices, max_side: int = 160, progress: bool = False) -> List[DepthView]:
    """Median-depth maps (z-depth) at the pinhole twins of training cameras ``indices`` (see module docstring)."""
    scene = task.scene
    field, grid = task.model.field, task.model.grid
    device = grid.bitfield.device
    views = []
    it = [int(i) for i in indices]
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="depth maps", unit="view")
    for i in it:
        cam = scene.cameras[i]
        s = min(1.0, max_side / max(cam.width, cam.height))
        W, H = max(2, int(round(cam.width * s))), max(2, int(round(cam.height * s)))
        sx, sy = W / cam.width, H / cam.height
        K = (float(cam.fx) * sx, float(cam.fy) * sy, float(cam.cx) * sx, float(cam.cy) * sy)
        c2w = corrected_c2w(task, i)
        o, d, zscale = pinhole_rays(c2w, K, W, H)
        near = task.image_near(i)
        near_t = None if near is None else torch.full((len(o),), float(near), device=device)
        t = median_depth(field, grid, torch.from_numpy(o).float().to(device), torch.from_numpy(d).float().to(device),
                         task.march, task.config.backend, near_t).cpu().numpy().astype(np.float64)
        views.append(DepthView(c2w, K, (t * zscale).reshape(H, W), i))
    return views
