"""The ``nerf`` training mode: posed photos -> Instant-NGP radiance field (Task, see nerf_app.train.task).

Each step: (every ``grid.update_every`` steps) update the occupancy grid; sample rays uniformly over
all training pixels; march in rounds, taking densities without gradients, and keep each ray's samples before
its transmittance falls below ``rays.t_threshold`` (compaction, ``rays.train_compact``; not on CUDA by
default); evaluate the field at those, composite over the batch's background; MSE to the pixel colours;
backward. The ray count adapts so the (compacted) samples per step stay near ``rays.target_samples``. Adam
(eps 1e-15) with linear warm-up and exponential decay in the budget's second half.

Host synchronisations (what a GPU step waits for): a step that neither updates the grid nor compacts reads
the device once, for the march's sample count (csrc/march.cpp sizes its outputs with it), and the trainer
reads it once more (loss and gradient finiteness). Batches are drawn on the device, the PSNR and the
auxiliary losses stay tensors (read only when a step is logged), and the distortion and free-space losses
select nothing by boolean masks. tests/test_sync_guard.py fails on the CPU when the step gains a host read.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn

from ..data import load_scene
from ..errors import ConfigError
from ..metrics import psnr_from_mse
from ..ops.distortion import contract_distance, distortion, packed_weights
from ..ops.gather import take_rows
from ..train.task import Task
from .config import NerfConfig
from .evaluate import eval_background
from .field import NerfField
from .occupancy import OccupancyGrid
from .near import free_space_loss, near_from_points
from .renderer import MarchSettings, render_image, render_rays

# rays of each batch (4 points each) that also score the free space in front of their camera: ~3% of a
# CPU step's field evaluations
FREE_SPACE_RAYS = 512


class NerfModel(nn.Module):
    """The field plus its occupancy grid (the grid's buffers ride along in the state_dict), and optionally a
    per-image affine colour ``appearance [n_images, 3, 4]`` (the offset from ``[I | 0]``)."""

    def __init__(self, field: NerfField, grid: OccupancyGrid, n_appearance: int = 0, n_poses: int = 0):
        super().__init__()
        self.field = field
        self.grid = grid
        self.appearance = nn.Parameter(torch.zeros(n_appearance, 3, 4)) if n_appearance else None
        self.pose_delta = nn.Parameter(torch.zeros(n_poses, 6)) if n_poses else None


def axis_angle_matrix(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[N, 3, 3]`` of axis-angle vectors ``w [N, 3]`` (Rodrigues; exact at 0)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]
    K = torch.zeros(w.shape[0], 3, 3, dtype=w.dtype, device=w.device)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    K = K - K.transpose(1, 2)
    theta = theta2.clamp(min=1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp(min=1e-12))
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(K)
    return eye + a * K + b * (K @ K)


def correct_rays(origins: torch.Tensor, dirs: torch.Tensor, delta: torch.Tensor):
    """Apply pose corrections ``delta [R, 6]`` (rotation about the camera centre, then translation; world
    frame) to rays ``[R, 3]``."""
    R = axis_angle_matrix(delta[:, :3])
    return origins + delta[:, 3:], torch.einsum("rij,rj->ri", R, dirs)


def apply_affine(color: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``color [R, 3]`` through per-ray (``delta [R, 3, 4]``) or shared (``[3, 4]``) affine maps ``[I + D | b]``."""
    if delta.dim() == 2:
        return color + color @ delta[:, :3].t() + delta[:, 3]
    return color + torch.einsum("rij,rj->ri", delta[:, :, :3], color) + delta[:, :, 3]


def train_compact_on(setting: str, device: torch.device) -> bool:
    """Whether the training step compacts its samples (``rays.train_compact``: auto | always | never). ``auto``
    is on except on CUDA, where each marching round costs host synchronisations (docs/training.md)."""
    if setting not in ("auto", "always", "never"):
        raise ConfigError(f"rays.train_compact must be auto, always or never, got {setting!r}")
    return setting == "always" or (setting == "auto" and device.type != "cuda")


class NerfTask(Task):
    config_class = NerfConfig
    description = "radiance field from posed photos"
    distributed = True

    # -- setup ----------------------------------------------------------------------------------

    def build(self) -> None:
        cfg = self.config
        o = cfg.optim
        if not (math.isfinite(o.lr) and o.lr > 0 and math.isfinite(o.eps) and o.eps >= 0):
            raise ConfigError(f"optim.lr must be a positive number and optim.eps >= 0 (got lr={o.lr}, eps={o.eps})")
        if cfg.rays.target_samples < 1 or cfg.rays.min_rays < 1 or cfg.rays.max_rays < cfg.rays.min_rays:
            raise ConfigError("rays.target_samples, rays.min_rays >= 1 and rays.max_rays >= rays.min_rays needed")
        self.train_compact = train_compact_on(cfg.rays.train_compact, self.device)
        fused = {"auto": None, "always": True, "never": False}
        if cfg.rays.train_fused not in fused:
            raise ConfigError(f"rays.train_fused must be auto, always or never, got {cfg.rays.train_fused!r}")
        self.train_fused = fused[cfg.rays.train_fused]
        self.scene = load_scene(cfg.input, format=cfg.data.format, downscale=cfg.data.downscale,
                                holdout_every=cfg.data.holdout_every)
        # the training images are decoded by the sampler below; the held-out ones only at eval: check now
        train_set = set(self.scene.split_indices("train").tolist())
        self.scene.images.check_decodable(i for i in range(len(self.scene)) if i not in train_set)
        n_cascades = cfg.grid.n_cascades or self.scene.n_cascades
        grid = OccupancyGrid(n_cascades, cfg.grid.resolution)
        lo, hi = grid.bound
        m = cfg.model
        bias = m.density_bias if m.density_bias >= -50 else (0.0 if self.scene.bounded else m.density_bias_auto)
        field = NerfField(lo, hi, m, m.geo_features, m.density_width, m.density_layers,
                          m.color_width, m.color_layers, m.sh_degree, backend=cfg.backend, density_bias=bias)
        train = self.scene.split_indices("train")
        cams = [self.scene.cameras[int(i)] for i in train]
        inference = getattr(self, "_loading_checkpoint", False)
        if not inference:
            # a loaded run's cells come from its checkpoint (the ``grid.visible`` buffer, marked from the same
            # training cameras): marking them again cost every export/eval/render of the cup run ~12 s
            grid.mark_visible(self.scene.c2w[train], [(c.fx, c.fy, c.cx, c.cy) for c in cams],
                              [(c.width, c.height) for c in cams])
        a = cfg.appearance
        if a.mode not in ("auto", "affine", "none") or a.eval not in ("mean", "identity"):
            raise ConfigError(f"appearance.mode must be auto, affine or none and appearance.eval mean or identity "
                              f"(got {a.mode!r}, {a.eval!r})")
        self.use_appearance = a.mode == "affine" or (a.mode == "auto" and not self.scene.bounded)
        self.model = NerfModel(field, grid, len(self.scene) if self.use_appearance else 0,
                               len(self.scene) if cfg.cameras.optimize else 0).to(self.device)
        groups = [{"params": list(field.parameters())}]
        if self.use_appearance:
            groups.append({"params": [self.model.appearance], "lr_scale": a.lr_scale})
        if cfg.cameras.optimize:
            groups.append({"params": [self.model.pose_delta], "lr_scale": cfg.cameras.lr_scale, "poses": True})
        # a loaded run is not trained (the first Adam of a process imports torch._dynamo: ~2 s)
        self.optimizer = None if inference else torch.optim.Adam(
            groups, lr=cfg.optim.lr, betas=(0.9, 0.99), eps=cfg.optim.eps,
            fused=self.device.type in ("cpu", "cuda") or None)
        self.distortion_weight = cfg.optim.distortion_weight
        if self.distortion_weight < 0:
            self.distortion_weight = 0.0 if self.scene.bounded else cfg.optim.distortion_auto
        depths = self._scene_depths()
        # per image: where marching starts, and up to where its frustum must be empty
        self.near_images = None if depths is None else depths * cfg.rays.near_margin
        self.free_images = None if depths is None else depths * cfg.rays.free_space_margin
        self.free_space_weight = cfg.optim.free_space_weight
        if self.free_space_weight < 0:
            self.free_space_weight = cfg.optim.free_space_auto if depths is not None else 0.0
        if self.free_space_weight > 0 and depths is None:
            raise ConfigError("optim.free_space_weight > 0 needs per-camera near planes from sparse points "
                              "(a COLMAP capture with rays.auto_near=true and rays.near=0)")
        self.sharp_density = cfg.grid.sharp_density
        if self.sharp_density < 0:
            self.sharp_density = 0.01 / self.march_dt_min()
        cone = cfg.rays.cone_angle
        if cone < 0:
            cone = 0.0 if self.scene.bounded else 1.0 / 256
        if not (math.isfinite(cfg.rays.near) and cfg.rays.near >= 0):
            raise ConfigError(f"rays.near must be a distance >= 0, got {cfg.rays.near}")
        self.march = MarchSettings(cfg.rays.steps_per_unit_diagonal, cone, cfg.rays.max_samples, cfg.rays.near,
                                   cfg.rays.t_threshold, cfg.rays.round_samples, cfg.rays.round_samples_max,
                                   cfg.rays.render_t_threshold, cfg.rays.render_min_weight)
        if not 0 <= cfg.grid.subset_fraction <= 1 or cfg.grid.update_every < 1:
            raise ConfigError(f"grid.subset_fraction must be in [0, 1] (0 = automatic) and grid.update_every >= 1 "
                              f"(got {cfg.grid.subset_fraction}, {cfg.grid.update_every})")
        self.grid_subset = cfg.grid.subset_fraction or (0.25 if self.device.type == "cuda" else 1 / 16)
        bg = cfg.data.background
        if bg not in ("random", "white", "black"):
            raise ConfigError(f"data.background must be random, white or black, got {bg!r}")
        self._sampler = None
        self.n_rays = cfg.rays.initial_rays
        # the background of RGB batches, made once: a tensor built from host data each step is a blocking copy
        self._train_bg = torch.tensor(eval_background(cfg), device=self.device)

    def march_dt_min(self) -> float:
        return math.sqrt(3.0) / self.config.rays.steps_per_unit_diagonal

    def _scene_depths(self) -> Optional[torch.Tensor]:
        """Per image ``[n_images]``: the ``rays.near_percentile`` depth of the sparse points in its frustum (see
        :mod:`nerf_app.nerf.near`; 0 where too few), or None (no points, ``rays.near`` set or auto near off)."""
        r = self.config.rays
        pts = self.scene.points3D
        if r.near > 0 or not r.auto_near or pts is None or len(pts.xyz) == 0:
            return None
        cams = self.scene.cameras
        depth = near_from_points(pts.xyz, self.scene.c2w, [(c.fx, c.fy, c.cx, c.cy) for c in cams],
                                 [(c.width, c.height) for c in cams], r.near_percentile, 1.0)
        return torch.from_numpy(depth).to(self.device)

    def eval_color_transform(self, index: Optional[int] = None):
        """The colour map for rendering image ``index`` (None: a novel view): a training image's own
        appearance, else the training images' mean (``appearance.eval: mean``) or none."""
        if not self.use_appearance:
            return None
        A = self.model.appearance.detach()
        if index is not None and int(index) in set(self.scene.split_indices("train").tolist()):
            delta = A[int(index)]
        elif self.config.appearance.eval == "identity":
            return None
        else:
            delta = A[torch.from_numpy(self.scene.split_indices("train")).to(A.device)].mean(0)
        return lambda c: apply_affine(c, delta)

    @property
    def sampler(self):
        # built on first use: eval/render/export never decode the training images
        if self._sampler is None:
            import sys
            self._sampler = self.scene.ray_sampler("train", background=self.config.data.background,
                                                   device=self.device, seed=self.config.seed,
                                                   cache=self.config.data.cache,
                                                   log=lambda m: print(m, file=sys.stderr, flush=True))
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
        if cfg.cameras.optimize:  # annealed: frozen, then ramped in
            c = cfg.cameras
            ramp = min(1.0, max(0.0, (self.budget_fraction - c.start) / max(c.ramp, 1e-9)))
            for group in self.optimizer.param_groups:
                if group.get("poses"):
                    group["lr"] *= ramp
        if step % cfg.grid.update_every == 0:
            ramp = min(1.0, self.budget_fraction / max(cfg.grid.sharpen_until, 1e-9))
            model.grid.update(lambda x: model.field.density(x)[0], step < cfg.grid.warmup_steps,
                              self.march.dt_min(), cfg.grid.decay, subset_fraction=self.grid_subset,
                              min_threshold=self.sharp_density * ramp)
            if self.dist is not None:  # computed alike on every rank; rank 0's copy makes them bit-equal on any threads
                self.dist.broadcast_tensors([model.grid.density, model.grid.bitfield], "sharing the occupancy grid")
        if self.dist is None:
            batch = self.sampler.sample(self.n_rays)
        else:  # the same global batch on every rank; this rank's rows of it (train/distributed.py)
            self.n_rays = max(self.n_rays, self.dist.world)
            first, last, share = self.batch_part(self.n_rays)
            batch = self.sampler.sample(self.n_rays, part=(first, last))
        bg = batch.background if batch.background is not None else self._train_bg
        near = None if self.near_images is None else self.near_images[batch.image_index]
        origins, dirs = batch.origins, batch.directions
        loss = 0.0
        logs = {}
        if model.pose_delta is not None:
            origins, dirs = correct_rays(origins, dirs, take_rows(model.pose_delta, batch.image_index))
            loss = loss + cfg.cameras.weight * model.pose_delta.pow(2).sum(-1).mean()
        out = render_rays(model.field, model.grid, origins.contiguous(), dirs.contiguous(), bg, self.march,
                          cfg.backend, near=near, compact=self.train_compact, fused=self.train_fused)
        color = out.color
        if self.use_appearance:
            A = model.appearance
            color = apply_affine(color, take_rows(A, batch.image_index))  # ops/gather.py: a deterministic backward
            loss = loss + cfg.appearance.weight * A.pow(2).sum(dim=(1, 2)).mean()
        mse = torch.mean((color - batch.rgb) ** 2)
        loss = loss + (mse if self.dist is None else mse * share)
        if self.distortion_weight > 0 and out.n_samples > 0:
            s = out.samples
            n = batch.origins.shape[0]
            w = packed_weights(out.sigmas, s.t_starts, s.t_ends, s.ray_indices, n)
            dist = distortion(w, contract_distance(s.t_starts), contract_distance(s.t_ends), s.ray_indices, n).mean()
            loss = loss + self.distortion_weight * (dist if self.dist is None else dist * share)
            logs["distortion"] = dist.detach()
        if self.free_space_weight > 0:
            # the global batch's first FREE_SPACE_RAYS rays: on several ranks, this rank's share of them
            k_all = min(self.n_rays, FREE_SPACE_RAYS)
            k = min(origins.shape[0], FREE_SPACE_RAYS) if self.dist is None else max(0, min(last, k_all) - first)
            if k > 0:
                free = self.free_images[batch.image_index[:k]]
                lo, hi = model.grid.bound
                fs = free_space_loss(lambda x: model.field.density(x)[0], origins[:k], dirs[:k], free, lo, hi)
                loss = loss + self.free_space_weight * (fs if self.dist is None else fs * (self.dist.world * k / k_all))
                logs["free_space"] = fs.detach()
        loss.backward()
        n_rays = self.n_rays
        n_samples, n_marched = out.n_samples, out.n_marched
        if self.dist is not None:  # the global batch's counts (the next ray count is the same on every rank)
            n_samples, n_marched, global_mse = self.dist.sum_values(
                [n_samples, n_marched, float(mse.detach()) * (last - first) / n_rays])
            n_samples, n_marched = int(n_samples), int(n_marched)
            mse = torch.tensor(global_mse)
        # dynamic ray count: aim the next step at the target number of samples
        if n_samples > 0:
            want = n_rays * cfg.rays.target_samples / n_samples
            self.n_rays = int(min(cfg.rays.max_rays, max(cfg.rays.min_rays, math.sqrt(n_rays * want))))
        # the PSNR stays a device tensor: the trainer reads it only on the steps it logs
        return {"loss": loss, "psnr": psnr_from_mse(mse.detach()), "rays": n_rays,
                "samples": n_samples, "samples_per_ray": n_samples / max(1, n_rays),
                "marched_per_ray": n_marched / max(1, n_rays), **logs}

    def extra_state(self) -> Dict[str, Any]:
        state = {"n_rays": int(self.n_rays)}
        if self._sampler is not None:
            state["sampler_rng"] = self._sampler.generator.get_state()
        return state

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        self.n_rays = int(state.get("n_rays", self.n_rays))
        if "sampler_rng" in state:
            try:
                self.sampler.generator.set_state(state["sampler_rng"])
            except RuntimeError:  # the sampler draws on its device: a CPU run resumed on CUDA (or back)
                import warnings
                warnings.warn(f"the checkpoint's ray-sampler state is for another device than "
                              f"{self.device}; the sampler continues from its seed instead")

    # -- evaluation -----------------------------------------------------------------------------

    def view_rays(self, index: int, step: int = 1):
        """``(origins, dirs)`` ``[H', W', 3]`` on the model's device for image ``index`` (every ``step``-th pixel),
        with the image's pose correction: the rays :meth:`render_view` renders."""
        o, d = self.scene.rays(int(index))
        o = torch.from_numpy(np.ascontiguousarray(o[::step, ::step])).float().to(self.device)
        d = torch.from_numpy(np.ascontiguousarray(d[::step, ::step])).float().to(self.device)
        delta = self.pose_correction(int(index))
        if delta is not None:
            H, W = o.shape[:2]
            o, d = correct_rays(o.reshape(-1, 3), d.reshape(-1, 3), delta.expand(H * W, 6))
            o, d = o.reshape(H, W, 3), d.reshape(H, W, 3)
        return o, d

    def image_near(self, index: int) -> Optional[float]:
        """Where marching starts for image ``index`` (None: ``rays.near`` for all)."""
        return None if self.near_images is None else float(self.near_images[int(index)])

    def render_view(self, index: int, background=None, stats: Optional[dict] = None, step: int = 1,
                    fused: Optional[bool] = None):
        """Render training/test image ``index`` of the scene (every ``step``-th pixel) -> (rgb, depth, opacity)
        numpy arrays (early ray termination; the image's near plane, pose correction and appearance; ``fused``
        as :func:`~nerf_app.nerf.renderer.render_image`'s)."""
        bg = torch.tensor(background or eval_background(self.config), device=self.device)
        self.hide_unseen()
        o, d = self.view_rays(index, step)
        rgb, depth, opacity = render_image(self.model.field, self.model.grid, o, d, bg, self.march,
                                           backend=self.config.backend, near=self.image_near(index),
                                           color_transform=self.eval_color_transform(index), stats=stats,
                                           fused=fused)
        return rgb.clamp(0, 1).cpu().numpy(), depth.cpu().numpy(), opacity.cpu().numpy()

    def pose_correction(self, index: int) -> Optional[torch.Tensor]:
        """The pose correction ``[1, 6]`` for rendering image ``index``: its own for a training image, the mean of
        the nearest training cameras' for a held-out one (None when cameras are not optimised)."""
        if self.model.pose_delta is None:
            return None
        D = self.model.pose_delta.detach()
        train = self.scene.split_indices("train")
        if index in set(train.tolist()):
            return D[index][None]
        centres = self.scene.c2w[train, :3, 3]
        dist = np.linalg.norm(centres - self.scene.c2w[index, :3, 3], axis=1)
        near = train[np.argsort(dist)[:max(1, self.config.cameras.eval_neighbours)]]
        return D[torch.from_numpy(near).to(D.device)].mean(0, keepdim=True)

    def near_for_poses(self, c2w, fx: float, fy: float, width: int, height: int) -> Optional[list]:
        """Near planes for novel pinhole cameras (camera paths), or None when the run uses ``rays.near``."""
        if self.near_images is None:
            return None
        r = self.config.rays
        return near_from_points(self.scene.points3D.xyz, c2w, [(fx, fy, width / 2, height / 2)] * len(c2w),
                                [(width, height)] * len(c2w), r.near_percentile, r.near_margin).tolist()

    def load_for_inference(self, checkpoint: Dict[str, Any]) -> None:
        # runs trained before per-image appearance existed have no "model.appearance"
        if "appearance" not in checkpoint["model"] and self.config.appearance.mode == "auto":
            self.config.appearance.mode = "none"
        # build() then skips what inference does not use or the checkpoint replaces (its state dict, loaded
        # strictly, holds grid.visible): the optimiser, the grid's visible cells
        self._loading_checkpoint = True
        try:
            super().load_for_inference(checkpoint)
        finally:
            self._loading_checkpoint = False
        self.unseen = None   # hide_unseen() fills it on the first render
        from .unseen import unseen_mode
        if unseen_mode(self.config.rays.unseen, self.scene.bounded) == "tint":
            self._unseen_tint()   # a bad setting is one line now, before anything is rendered or written

    def hide_unseen(self) -> Dict[str, Any]:
        """Leave the space no training camera saw out of every later render (``rays.unseen``; see
        :mod:`nerf_app.nerf.unseen`): computed once, on the first render of a loaded run (render, eval, the
        viewer; training never calls it). With ``rays.unseen_occlusion`` also what lies behind the surface
        from every training camera (depth maps rendered at them). Returns (and keeps in ``self.unseen``) what
        was done."""
        if not hasattr(self, "unseen"):   # a task being trained (or the live viewer's twin of one): never
            return {"mode": "keep"}         # touch the grid training marches
        if self.unseen is not None:
            return self.unseen
        import sys
        import time
        from .unseen import hide_unseen, occupied_cells, seen_cells, unseen_mode
        mode = unseen_mode(self.config.rays.unseen, self.scene.bounded)
        self.unseen = {"mode": mode}
        if mode == "keep":
            return self.unseen
        start = time.perf_counter()
        grid, train = self.model.grid, self.scene.split_indices("train")
        cams = [self.scene.cameras[int(i)] for i in train]
        maps = self._training_depth_maps() if self.config.rays.unseen_occlusion else None
        seen = seen_cells(grid, self.scene.c2w[train], [(c.fx, c.fy, c.cx, c.cy) for c in cams],
                          [(c.width, c.height) for c in cams], near=[self.image_near(int(i)) for i in train],
                          depth_maps=maps, cells=occupied_cells(grid))
        share = hide_unseen(grid, seen)
        self.unseen.update(hidden_share=round(share, 4), occlusion=maps is not None,
                           seconds=round(time.perf_counter() - start, 2))
        print(f"unseen space: {100 * share:.1f}% of the occupied cells no training camera saw are left out "
              f"(rays.unseen={mode}{', behind surfaces too' if maps is not None else ''}; keep shows the field "
              f"there) [{self.unseen['seconds']:.1f} s]", file=sys.stderr)
        return self.unseen

    def _training_depth_maps(self) -> list:
        """Per training camera, ``[h, w]`` (``DEPTH_SIDE`` on the longer side): the distance to what it saw
        (:func:`nerf_app.nerf.unseen.depth_map`; density only, marching steps ``DEPTH_STEPS`` times longer, a
        ray stopped once ``OPAQUE``), through its own near plane and pose correction."""
        import dataclasses
        from .unseen import DEPTH_STEPS, OPAQUE, DensityOnly, block_pixels, depth_map
        bg = torch.zeros(3, device=self.device)
        field = DensityOnly(self.model.field)
        march = dataclasses.replace(self.march, render_t_threshold=1 - OPAQUE,
                                    steps_per_unit_diagonal=max(1, self.march.steps_per_unit_diagonal // DEPTH_STEPS))
        maps = []
        for i in self.scene.split_indices("train"):
            cam = self.scene.cameras[int(i)]
            pix, h, w = block_pixels(cam.width, cam.height)
            o, d = self.scene.rays_at(np.full(len(pix), int(i)), pix)
            o = torch.from_numpy(o).float().to(self.device)
            d = torch.from_numpy(d).float().to(self.device)
            delta = self.pose_correction(int(i))
            if delta is not None:
                o, d = correct_rays(o, d, delta.expand(len(o), 6))
            maps.append(depth_map(lambda o_, d_, n_: render_image(field, self.model.grid, o_, d_, bg, march,
                                                                    backend=self.config.backend, near=n_),
                                  o.reshape(h, w, 3), d.reshape(h, w, 3), self.image_near(int(i))))
        return maps

    def view_background(self) -> tuple:
        """The colour behind a novel view (render, viewer): ``rays.unseen_tint`` with ``rays.unseen=tint``,
        else ``data.eval_background``."""
        if self.hide_unseen()["mode"] == "tint":
            return self._unseen_tint()
        return eval_background(self.config)

    def _unseen_tint(self) -> tuple:
        tint = tuple(float(v) for v in self.config.rays.unseen_tint)
        if len(tint) != 3 or not all(0.0 <= v <= 1.0 for v in tint):
            raise ConfigError(f"rays.unseen_tint must be three numbers in [0, 1] (R, G, B), got {tint}")
        return tint

    def evaluate(self, run_dir: Path, split: str = "test", limit: Optional[int] = None, sheet: str = "worst",
                 **_) -> Dict[str, Any]:
        from .evaluate import evaluate_nerf
        return evaluate_nerf(self, Path(run_dir), split, limit, sheet=sheet)

    def render(self, run_dir: Path, **opts) -> Dict[str, Any]:
        from .outputs import render_camera_path
        return render_camera_path(self, Path(run_dir), **opts)

    def export(self, run_dir: Path, **opts) -> Dict[str, Any]:
        from .outputs import export_mesh
        return export_mesh(self, Path(run_dir), **opts)

    def export_surface(self, **opts):
        from ..export.nerf_surface import nerf_surface
        return nerf_surface(self, **opts)
