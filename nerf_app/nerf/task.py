"""The ``nerf`` training mode: posed photos -> Instant-NGP radiance field (Task, see nerf_app.train.task).

Each step: (every ``grid.update_every`` steps) update the occupancy grid; sample rays uniformly over
all training pixels; march, evaluate the field at the packed samples, composite over the batch's
background; MSE to the pixel colours; backward. The ray count adapts so samples per step stay near
``rays.target_samples``. Adam (eps 1e-15) with linear warm-up and exponential decay in the budget's
second half.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn

from ..data import load_scene
from ..errors import ConfigError
from ..metrics import psnr_from_mse
from ..train.task import Task
from .config import NerfConfig
from .field import NerfField
from .occupancy import OccupancyGrid
from .renderer import MarchSettings, render_image, render_rays

_BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


class NerfModel(nn.Module):
    """The field plus its occupancy grid (the grid's buffers ride along in the state_dict)."""

    def __init__(self, field: NerfField, grid: OccupancyGrid):
        super().__init__()
        self.field = field
        self.grid = grid


class NerfTask(Task):
    config_class = NerfConfig
    description = "radiance field from posed photos"

    # -- setup ----------------------------------------------------------------------------------

    def build(self) -> None:
        cfg = self.config
        o = cfg.optim
        if not (math.isfinite(o.lr) and o.lr > 0 and math.isfinite(o.eps) and o.eps >= 0):
            raise ConfigError(f"optim.lr must be a positive number and optim.eps >= 0 (got lr={o.lr}, eps={o.eps})")
        if cfg.rays.target_samples < 1 or cfg.rays.min_rays < 1 or cfg.rays.max_rays < cfg.rays.min_rays:
            raise ConfigError("rays.target_samples, rays.min_rays >= 1 and rays.max_rays >= rays.min_rays needed")
        self.scene = load_scene(cfg.input, format=cfg.data.format, downscale=cfg.data.downscale,
                                holdout_every=cfg.data.holdout_every)
        n_cascades = cfg.grid.n_cascades or self.scene.n_cascades
        grid = OccupancyGrid(n_cascades, cfg.grid.resolution)
        lo, hi = grid.bound
        m = cfg.model
        field = NerfField(lo, hi, m, m.geo_features, m.density_width, m.density_layers,
                          m.color_width, m.color_layers, m.sh_degree, backend=cfg.backend)
        train = self.scene.split_indices("train")
        cams = [self.scene.cameras[int(i)] for i in train]
        grid.mark_visible(self.scene.c2w[train], [(c.fx, c.fy, c.cx, c.cy) for c in cams],
                          [(c.width, c.height) for c in cams])
        self.model = NerfModel(field, grid).to(self.device)
        self.optimizer = torch.optim.Adam(field.parameters(), lr=cfg.optim.lr, betas=(0.9, 0.99), eps=cfg.optim.eps,
                                          fused=self.device.type == "cpu" or None)
        cone = cfg.rays.cone_angle
        if cone < 0:
            cone = 0.0 if self.scene.bounded else 1.0 / 256
        if not (math.isfinite(cfg.rays.near) and cfg.rays.near >= 0):
            raise ConfigError(f"rays.near must be a distance >= 0, got {cfg.rays.near}")
        self.march = MarchSettings(cfg.rays.steps_per_unit_diagonal, cone, cfg.rays.max_samples, cfg.rays.near,
                                   cfg.rays.t_threshold)
        if not 0 <= cfg.grid.subset_fraction <= 1 or cfg.grid.update_every < 1:
            raise ConfigError(f"grid.subset_fraction must be in [0, 1] (0 = automatic) and grid.update_every >= 1 "
                              f"(got {cfg.grid.subset_fraction}, {cfg.grid.update_every})")
        self.grid_subset = cfg.grid.subset_fraction or (0.25 if self.device.type == "cuda" else 1 / 16)
        bg = cfg.data.background
        if bg not in ("random", "white", "black"):
            raise ConfigError(f"data.background must be random, white or black, got {bg!r}")
        self._sampler = None
        self.n_rays = cfg.rays.initial_rays

    @property
    def sampler(self):
        # built on first use: eval/render/export never decode the training images
        if self._sampler is None:
            self._sampler = self.scene.ray_sampler("train", background=self.config.data.background,
                                                   device=self.device, seed=self.config.seed)
        return self._sampler

    def prepare(self, step: int) -> None:
        _ = self.sampler  # decode the training images before the clock starts

    # -- training -------------------------------------------------------------------------------

    def _lr_factor(self, step: int) -> float:
        o = self.config.optim
        warm = min(1.0, (step + 1) / max(1, o.warmup_steps))
        f = self.budget_fraction
        decay = 1.0 if f <= o.decay_start else o.final_lr_factor ** ((f - o.decay_start) / (1 - o.decay_start))
        return warm * decay

    def train_step(self, step: int) -> Dict[str, Any]:
        cfg = self.config
        model = self.model
        self.set_lr(cfg.optim.lr * self._lr_factor(step))
        if step % cfg.grid.update_every == 0:
            model.grid.update(lambda x: model.field.density(x)[0], step < cfg.grid.warmup_steps,
                              self.march.dt_min(), cfg.grid.decay, subset_fraction=self.grid_subset)
        batch = self.sampler.sample(self.n_rays)
        bg = batch.background if batch.background is not None else \
            torch.tensor(_BACKGROUNDS.get(cfg.data.eval_background, (1.0, 1.0, 1.0)), device=self.device)
        out = render_rays(model.field, model.grid, batch.origins, batch.directions, bg, self.march, cfg.backend)
        mse = torch.mean((out.color - batch.rgb) ** 2)
        mse.backward()
        n_rays = self.n_rays
        # dynamic ray count: aim the next step at the target number of samples
        if out.n_samples > 0:
            want = n_rays * cfg.rays.target_samples / out.n_samples
            self.n_rays = int(min(cfg.rays.max_rays, max(cfg.rays.min_rays, math.sqrt(n_rays * want))))
        return {"loss": mse, "psnr": psnr_from_mse(mse.detach()), "rays": n_rays,
                "samples": out.n_samples}

    def extra_state(self) -> Dict[str, Any]:
        state = {"n_rays": int(self.n_rays)}
        if self._sampler is not None:
            state["sampler_rng"] = self._sampler.generator.get_state()
        return state

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        self.n_rays = int(state.get("n_rays", self.n_rays))
        if "sampler_rng" in state:
            self.sampler.generator.set_state(state["sampler_rng"])

    # -- evaluation -----------------------------------------------------------------------------

    def render_view(self, index: int, background=None):
        """Render training/test image ``index`` of the scene -> (rgb, depth, opacity) numpy arrays."""
        o, d = self.scene.rays(int(index))
        bg = torch.tensor(background or _BACKGROUNDS.get(self.config.data.eval_background, (1.0, 1.0, 1.0)),
                          device=self.device)
        rgb, depth, opacity = render_image(self.model.field, self.model.grid,
                                           torch.from_numpy(o).float().to(self.device),
                                           torch.from_numpy(d).float().to(self.device), bg, self.march,
                                           backend=self.config.backend)
        return rgb.clamp(0, 1).cpu().numpy(), depth.cpu().numpy(), opacity.cpu().numpy()

    def evaluate(self, run_dir: Path, split: str = "test", limit: Optional[int] = None, **_) -> Dict[str, Any]:
        from .evaluate import evaluate_nerf
        return evaluate_nerf(self, Path(run_dir), split, limit)

    def render(self, run_dir: Path, **opts) -> Dict[str, Any]:
        from .outputs import render_camera_path
        return render_camera_path(self, Path(run_dir), **opts)

    def export(self, run_dir: Path, **opts) -> Dict[str, Any]:
        from .outputs import export_mesh
        return export_mesh(self, Path(run_dir), **opts)
