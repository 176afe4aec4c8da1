"""Space no training camera saw: found once from the training cameras, then left out of every render.

A trained field leaves density wherever the photometric loss never looked: outside every camera's frustum,
closer to a camera than the near plane its rays started at, and behind the surfaces it saw. None of that
space was ever checked against a photo, and it is what a novel view shows as a grey sheet of fog (a
held-out camera between the training ones, a frame looking outward from the capture).

:func:`seen_cells` marks, over the occupancy grid's cells (every cascade, the layout
:func:`nerf_app.ops.march.march_rays` reads), those that at least one training camera saw: the cell
projects into its image (grown by ``margin`` and the cell's own size), lies beyond the near plane that
camera's rays started at, and (``rays.unseen_occlusion``, off by default: it cost held-out PSNR on cup) is
not behind what the camera saw there. "What it saw" is a low-resolution
depth map rendered from that camera through the trained field (the termination distance of each pixel
whose opacity passed one half; a pixel that stays transparent sees through to the end), taken at its
farthest over each pixel's 3x3 neighbours so silhouettes do not cut cells, plus ``depth_margin`` of the
distance and one cell. Every test is conservative by the cell's half-diagonal, so a cell partly seen
counts as seen.

:func:`hide_unseen` clears the unseen cells from the grid's marching bitfield (the trained density
estimates are left alone): marching never samples there, so those rays go on to whatever was seen behind,
or to the background. Training never calls this; ``render``, ``eval`` and the viewer of a finished run do
(``rays.unseen``, see :class:`nerf_app.nerf.config.NerfRaySettings`).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .occupancy import OccupancyGrid

UNSEEN_MODES = ("auto", "background", "tint", "keep")
DEPTH_SIDE = 32          # the training cameras' depth maps are rendered this many pixels on their longer side
DEPTH_STEPS = 4          # ... with marching steps this many times longer than a render's (a cell's accuracy is enough)
OPAQUE = 0.5             # a depth-map pixel whose opacity passes this ends what its camera saw


def unseen_mode(setting: str, bounded: bool) -> str:
    """``rays.unseen`` -> what renders do with unseen space: background | tint | keep. ``auto``: background
    for real captures (their fog hangs where a novel view looks), keep for objects on a known background
    (alpha-matted photos all round: the space around the object is seen as empty anyway)."""
    if setting not in UNSEEN_MODES:
        from ..errors import ConfigError
        raise ConfigError(f"rays.unseen must be one of {', '.join(UNSEEN_MODES)}, got {setting!r}")
    if setting == "auto":
        return "keep" if bounded else "background"
    return setting


def cell_centres(grid: OccupancyGrid, cascade: int, index: torch.Tensor) -> torch.Tensor:
    return grid.cell_points(cascade, index, jitter=False)


def occupied_cells(grid: OccupancyGrid) -> torch.Tensor:
    """``[n_cascades, R^3]`` bool: the cells the marching bitfield marks occupied."""
    bits = (grid.bitfield[:, None] >> torch.arange(8, device=grid.bitfield.device, dtype=torch.uint8)) & 1
    return bits.reshape(grid.n_cascades, -1).bool()


def _dilate_max(depth: torch.Tensor) -> torch.Tensor:
    """Each pixel's farthest depth over its 3x3 neighbours (``inf`` stays ``inf``)."""
    finite = torch.where(torch.isinf(depth), torch.full_like(depth, 1e30), depth)
    out = torch.nn.functional.max_pool2d(finite[None, None], 3, stride=1, padding=1)[0, 0]
    return torch.where(out >= 1e30, torch.full_like(out, math.inf), out)


@torch.no_grad()
def seen_cells(grid: OccupancyGrid, c2w: np.ndarray, intrinsics: Sequence[Sequence[float]],
               sizes: Sequence[Sequence[int]], near: Optional[Sequence[float]] = None,
               depth_maps: Optional[Sequence[Optional[torch.Tensor]]] = None, cells: Optional[torch.Tensor] = None,
               margin: float = 0.05, depth_margin: float = 0.1) -> torch.Tensor:
    """``[n_cascades, R^3]`` bool: cells at least one camera saw (see the module docstring).

    ``c2w [N, 4, 4]`` OpenCV, ``intrinsics[i] = (fx, fy, cx, cy)``, ``sizes[i] = (width, height)`` (pinhole);
    ``near[i]``: the distance camera i's rays started at (None: 0); ``depth_maps[i]`` ``[h, w]``: distance
    along each pixel's ray to what camera i saw (``inf`` where it saw through), the image cut into ``h x w``
    equal blocks (None: nothing hides anything); ``cells``: ``[n_cascades, R^3]`` bool, the only cells
    tested (the others come back False; default all)."""
    device = grid.bitfield.device
    R = grid.resolution
    out = torch.zeros(grid.n_cascades, R ** 3, dtype=torch.bool, device=device)
    w2c = torch.from_numpy(np.linalg.inv(np.asarray(c2w, np.float64))).float().to(device)
    centres = torch.from_numpy(np.asarray(c2w, np.float64)[:, :3, 3]).float().to(device)
    far_maps = [None if depth_maps is None or depth_maps[i] is None else _dilate_max(depth_maps[i].to(device).float())
                for i in range(len(w2c))]
    for k in range(grid.n_cascades):
        idx = (torch.nonzero(cells[k])[:, 0] if cells is not None
               else torch.arange(R ** 3, device=device))
        if idx.numel() == 0:
            continue
        half = 0.5 * math.sqrt(3.0) * (2.0 ** k) / R      # the cell's half-diagonal
        todo = idx            # cells no camera has seen yet: each camera tests only those
        for i in range(len(w2c)):
            if todo.numel() == 0:
                break
            p = cell_centres(grid, k, todo)
            q = p @ w2c[i, :3, :3].t() + w2c[i, :3, 3]
            z = q[:, 2]
            zc = z.clamp(min=1e-6)
            fx, fy, cx, cy = (float(v) for v in intrinsics[i])
            width, height = (float(v) for v in sizes[i])
            u = fx * q[:, 0] / zc + cx
            v = fy * q[:, 1] / zc + cy
            # the image grown by the margin and by the cell's projected half-diagonal
            gu, gv = margin * width + fx * half / zc, margin * height + fy * half / zc
            ok = (z > -half) & (u > -gu) & (u < width + gu) & (v > -gv) & (v < height + gv)
            dist = (p - centres[i]).norm(dim=1)
            if near is not None and near[i] is not None and float(near[i]) > 0:
                ok &= dist + half >= float(near[i])
            far = far_maps[i]
            if far is not None:
                h, w = far.shape
                col = (u * w / width).floor().clamp(0, w - 1).long()
                row = (v * h / height).floor().clamp(0, h - 1).long()
                ok &= dist - half <= far[row, col] * (1.0 + depth_margin) + 2.0 * half
            out[k, todo[ok]] = True
            todo = todo[~ok]
    return out


def pack_bits(cells: torch.Tensor) -> torch.Tensor:
    """``[n_cascades, R^3]`` bool -> the marching bitfield (8 cells a byte, least significant bit first)."""
    bits = cells.reshape(-1, 8).to(torch.uint8) << torch.arange(8, device=cells.device, dtype=torch.uint8)
    return bits.sum(dim=1, dtype=torch.uint8)


class DensityOnly:
    """A field whose colour is never wanted (depth maps): its density, and zeros for colour."""

    def __init__(self, field):
        self.field = field

    def density(self, x):
        return self.field.density(x)

    def color(self, d, h):
        return torch.zeros(len(d), 3, device=d.device)

    def __call__(self, x, d):
        sigma, h = self.field.density(x)
        return sigma, self.color(d, h)


@torch.no_grad()
def depth_map(render: Callable[[torch.Tensor, torch.Tensor, Optional[float]], tuple], origins: torch.Tensor,
              dirs: torch.Tensor, near: Optional[float]) -> torch.Tensor:
    """``[h, w]`` distance to what the rays ``[h, w, 3]`` saw: where the composited weight sits (depth over
    opacity) on pixels more than ``OPAQUE`` opaque, ``inf`` elsewhere. ``render(o, d, near) -> (rgb, depth,
    opacity)``: it may stop a ray once its opacity passes ``OPAQUE`` (the weight up to there says where the
    surface begins)."""
    _, depth, opacity = render(origins, dirs, near)
    depth, opacity = torch.as_tensor(depth).float(), torch.as_tensor(opacity).float()
    return torch.where(opacity > OPAQUE, depth / opacity.clamp(min=1e-6), torch.full_like(depth, math.inf))


def block_pixels(width: int, height: int, side: int = DEPTH_SIDE):
    """The centres ``[h*w, 2]`` (x, y) of an image cut into ``h x w`` blocks, ``max(h, w) <= side``."""
    s = max(width, height) / side
    w, h = max(1, round(width / s)), max(1, round(height / s))
    xs = (np.arange(w) + 0.5) * width / w
    ys = (np.arange(h) + 0.5) * height / h
    u, v = np.meshgrid(xs, ys)
    return np.stack([u, v], -1).reshape(-1, 2), h, w


@torch.no_grad()
def hide_unseen(grid: OccupancyGrid, seen: torch.Tensor) -> float:
    """Clear the cells not in ``seen`` from the marching bitfield; returns the share of occupied cells
    cleared."""
    occ = occupied_cells(grid)
    keep = occ & seen.to(occ.device)
    grid.bitfield.copy_(pack_bits(keep))
    n = int(occ.sum())
    return (n - int(keep.sum())) / max(1, n)
