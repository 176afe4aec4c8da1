"""Cascaded occupancy grid (Instant-NGP): where ray marching takes samples.

Cascade ``k`` covers the cube of side ``2^k`` centred on (0.5, 0.5, 0.5) with ``R^3`` cells (cell
``x + R*(y + R*z)``). Each cell keeps a density estimate; the grid update (every few steps) decays
all estimates by ``decay`` and raises the chosen cells to the field's density at a random point in
them — every cell during warm-up, afterwards a random subset plus a sample of occupied cells. A cell
is occupied when its estimate exceeds ``min(mean density, min_optical_thickness / dt_min)``; cells
that no training camera sees are never occupied. The occupancy is packed into the bitfield that
:func:`nerf_app.ops.march.march_rays` reads.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn


class OccupancyGrid(nn.Module):
    def __init__(self, n_cascades: int = 1, resolution: int = 128):
        super().__init__()
        if resolution % 8:
            raise ValueError("occupancy grid resolution must be a multiple of 8")
        self.n_cascades, self.resolution = int(n_cascades), int(resolution)
        cells = self.resolution ** 3
        self.register_buffer("density", torch.zeros(self.n_cascades, cells))
        self.register_buffer("visible", torch.ones(self.n_cascades, cells, dtype=torch.bool))
        # everything is occupied until the first update, so early training samples the whole volume
        self.register_buffer("bitfield", torch.full((self.n_cascades * cells // 8,), 255, dtype=torch.uint8))

    @property
    def bound(self):
        half = 0.5 * 2 ** (self.n_cascades - 1)
        return 0.5 - half, 0.5 + half

    def cell_points(self, cascade: int, index: torch.Tensor, jitter: bool) -> torch.Tensor:
        """World positions of cells ``index [M]`` of a cascade: centres, or uniform points inside them."""
        R = self.resolution
        xyz = torch.stack([index % R, (index // R) % R, index // (R * R)], -1).float()
        xyz = xyz + (torch.rand(xyz.shape, device=xyz.device) if jitter else 0.5)
        return (xyz / R - 0.5) * (2.0 ** cascade) + 0.5

    @torch.no_grad()
    def mark_visible(self, c2w: np.ndarray, intrinsics: Sequence[Sequence[float]], sizes: Sequence[Sequence[int]],
                     margin: float = 0.05, chunk: int = 1 << 20) -> None:
        """Keep only cells whose centre projects inside at least one training image (pinhole, image
        grown by ``margin`` of its size so cells at the border stay). ``c2w [N,4,4]`` OpenCV,
        ``intrinsics[i] = (fx, fy, cx, cy)``, ``sizes[i] = (width, height)``."""
        w2c = torch.from_numpy(np.linalg.inv(c2w)).float()
        K = torch.tensor(intrinsics, dtype=torch.float32)
        wh = torch.tensor(sizes, dtype=torch.float32)
        cells = self.resolution ** 3
        for k in range(self.n_cascades):
            for start in range(0, cells, chunk):
                idx = torch.arange(start, min(cells, start + chunk))
                p = self.cell_points(k, idx, jitter=False)
                seen = torch.zeros(len(idx), dtype=torch.bool)
                for i in range(len(w2c)):
                    q = p @ w2c[i, :3, :3].t() + w2c[i, :3, 3]
                    z = q[:, 2]
                    u = K[i, 0] * q[:, 0] / z + K[i, 2]
                    v = K[i, 1] * q[:, 1] / z + K[i, 3]
                    mw, mh = margin * wh[i, 0], margin * wh[i, 1]
                    seen |= (z > 0) & (u > -mw) & (u < wh[i, 0] + mw) & (v > -mh) & (v < wh[i, 1] + mh)
                self.visible[k, idx] = seen.to(self.visible.device)

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], warmup: bool, dt_min: float,
               decay: float = 0.95, min_optical_thickness: float = 0.01, chunk: int = 1 << 18,
               subset_fraction: float = 0.25, min_threshold: float = 0.0) -> float:
        """One Instant-NGP grid update; returns the fraction of visible cells now occupied.

        After warm-up each cascade evaluates ``subset_fraction * R^3`` uniformly drawn cells plus as
        many drawn from the occupied ones (Instant-NGP: 1/4). On a CPU that is several training steps'
        worth of field evaluations per update, so the CPU presets draw fewer.

        ``min_threshold``: a floor under the occupancy threshold (the NeRF task raises it over the first part of
        training on real captures, so the semi-transparent haze of the mean-density rule is not marched).
        """
        R3 = self.resolution ** 3
        device = self.density.device
        self.density.mul_(decay)
        threshold = self.threshold(dt_min, min_optical_thickness)  # of the decayed estimates, for sampling
        for k in range(self.n_cascades):
            if warmup:
                index = torch.arange(R3, device=device)
            else:
                n = max(1, int(R3 * subset_fraction))
                index = torch.randint(0, R3, (n,), device=device)
                occupied = torch.nonzero(self.density[k] > threshold)[:, 0]
                if occupied.numel():
                    index = torch.cat([index, occupied[torch.randint(0, occupied.numel(), (n,), device=device)]])
            index = index[self.visible[k, index]]
            for start in range(0, index.numel(), chunk):
                sub = index[start:start + chunk]
                sigma = density_fn(self.cell_points(k, sub, jitter=True)).float()
                # a cell can be drawn twice; a max-reduction keeps the result independent of write
                # order (an indexed assignment with duplicates is not), so runs stay reproducible
                self.density[k].scatter_reduce_(0, sub, sigma, reduce="amax")
        occ = (self.density > max(min_threshold, self.threshold(dt_min, min_optical_thickness))) & self.visible
        bits = occ.reshape(-1, 8).to(torch.uint8) << torch.arange(8, device=device, dtype=torch.uint8)
        self.bitfield.copy_(bits.sum(dim=1, dtype=torch.uint8))
        return float(occ.sum()) / max(1, int(self.visible.sum()))

    def threshold(self, dt_min: float, min_optical_thickness: float = 0.01) -> float:
        vis = self.density[self.visible]
        mean = float(vis.mean()) if vis.numel() else 0.0
        return min(mean, min_optical_thickness / dt_min)

    def occupancy_fraction(self) -> float:
        bits = ((self.bitfield[:, None] >> torch.arange(8, device=self.bitfield.device, dtype=torch.uint8)) & 1)
        return float(bits.float().mean())
