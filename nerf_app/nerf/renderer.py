"""Render rays through a NeRF: box intersection -> occupancy-grid marching -> field -> compositing."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..ops.march import march_rays
from ..ops.ray_aabb import ray_aabb
from ..ops.volume_render import volume_render
from .field import NerfField
from .occupancy import OccupancyGrid


@dataclass
class MarchSettings:
    """Step rule (Instant-NGP): ``dt = clamp(t * cone_angle, dt_min, dt_max)``."""
    steps_per_unit_diagonal: int = 1024   # dt_min = sqrt(3) / this
    cone_angle: float = 0.0               # 0 for synthetic objects, ~1/256 for unbounded captures
    max_samples: int = 1024               # per ray
    near: float = 0.0                     # distance from the camera where marching may start
    t_threshold: float = 1e-4             # early termination: transmittance below this ends a ray

    def dt_min(self) -> float:
        return math.sqrt(3.0) / self.steps_per_unit_diagonal

    def dt_max(self, grid: OccupancyGrid) -> float:
        # one cell of the outermost cascade
        return (2.0 ** (grid.n_cascades - 1)) * math.sqrt(3.0) / grid.resolution


@dataclass
class RenderOutput:
    color: torch.Tensor       # [R, 3], composited over the background
    opacity: torch.Tensor     # [R]
    depth: torch.Tensor       # [R] expected distance along the ray (unit directions)
    n_samples: int


def render_rays(field: NerfField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor,
                background: torch.Tensor, march: MarchSettings, backend: Optional[str] = "auto") -> RenderOutput:
    """``origins, dirs [R, 3]`` (unit dirs, normalised world), ``background [R, 3]`` or ``[3]``."""
    lo, hi = grid.bound
    t_near, t_far = ray_aabb(origins, dirs, lo, hi, backend=backend)
    t_near = t_near.clamp(min=march.near)
    t_far = torch.where(t_near < t_far, t_far, t_near)  # rays that miss the box get an empty interval
    samples = march_rays(origins, dirs, t_near, t_far, grid.bitfield, grid.n_cascades, grid.resolution,
                         march.dt_min(), march.dt_max(grid), march.cone_angle, march.max_samples, backend=backend)
    n_rays = origins.shape[0]
    background = background.expand(n_rays, 3)
    if samples.n_samples == 0:
        zeros = torch.zeros(n_rays, device=origins.device)
        return RenderOutput(background.clone(), zeros, zeros.clone(), 0)
    mid = 0.5 * (samples.t_starts + samples.t_ends)
    x = origins[samples.ray_indices] + mid[:, None] * dirs[samples.ray_indices]
    sigma, rgb = field(x, dirs[samples.ray_indices])
    _, color, opacity, depth = volume_render(sigma, rgb, samples, march.t_threshold, backend=backend)
    color = color + (1.0 - opacity)[:, None] * background
    return RenderOutput(color, opacity, depth, samples.n_samples)


@torch.no_grad()
def render_image(field: NerfField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor,
                 background: torch.Tensor, march: MarchSettings, chunk: int = 1 << 14,
                 backend: Optional[str] = "auto"):
    """Render ``[H, W, 3]`` rays in chunks -> ``color [H, W, 3]``, ``depth [H, W]``, ``opacity [H, W]``."""
    H, W = origins.shape[:2]
    # Camera paths and exports build rays on the CPU while a trained model may live on the GPU: render
    # on the model's device (the ops refuse mixed devices) and hand the images back on the rays' device.
    out_device, device = origins.device, grid.bitfield.device
    o, d = origins.reshape(-1, 3).to(device), dirs.reshape(-1, 3).to(device)
    background = background.to(device)
    colors, depths, opac = [], [], []
    for s in range(0, o.shape[0], chunk):
        out = render_rays(field, grid, o[s:s + chunk], d[s:s + chunk], background, march, backend)
        colors.append(out.color)
        depths.append(out.depth)
        opac.append(out.opacity)
    return (torch.cat(colors).reshape(H, W, 3).to(out_device), torch.cat(depths).reshape(H, W).to(out_device),
            torch.cat(opac).reshape(H, W).to(out_device))
