"""Configuration of the ``nerf`` mode (presets: configs/nerf_synthetic.yaml, configs/nerf_real.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..encodings.hashgrid import HashGridSettings
from ..train.config import BaseConfig


@dataclass
class NerfModelSettings(HashGridSettings):
    # hash grid: the HashGridSettings keys; finest resolution per unit of the scene's unit cube
    # (scaled up for outer cascades)
    finest_resolution: int = 2048
    geo_features: int = 16
    density_width: int = 64
    density_layers: int = 1
    color_width: int = 64
    color_layers: int = 2
    sh_degree: int = 4


@dataclass
class NerfDataSettings:
    format: str = "auto"              # auto | colmap | transforms | llff (a folder may hold several)
    downscale: float = 1.0
    holdout_every: int = 8            # for captures without their own test split
    background: str = "random"        # training background of RGBA images: random | white | black
    eval_background: str = "white"


@dataclass
class NerfGridSettings:
    resolution: int = 128
    n_cascades: int = 0               # 0: the scene's automatic choice
    update_every: int = 16
    warmup_steps: int = 256           # update every cell until this step, then a random subset
    # after warm-up each update draws this fraction of R^3 random cells (+ as many occupied ones);
    # 0 = automatic: 1/4 on a GPU (Instant-NGP), 1/16 on a CPU where an update at 1/4 costs ~3 steps
    subset_fraction: float = 0.0
    decay: float = 0.95


@dataclass
class NerfRaySettings:
    target_samples: int = 1 << 18     # samples per step; the ray count adapts to keep near it
    initial_rays: int = 4096
    min_rays: int = 256
    max_rays: int = 1 << 16
    steps_per_unit_diagonal: int = 1024
    cone_angle: float = -1.0          # < 0: automatic (0 for bounded objects, 1/256 otherwise)
    near: float = 0.0                 # marching starts this far from the camera (scene units; cuts floaters in front of it)
    max_samples: int = 1024
    t_threshold: float = 1e-4


@dataclass
class NerfOptimSettings:
    lr: float = 1e-2
    eps: float = 1e-15
    warmup_steps: int = 100
    decay_start: float = 0.5          # fraction of the budget after which the lr decays ...
    final_lr_factor: float = 0.1      # ... exponentially to this factor at the end


@dataclass
class NerfConfig(BaseConfig):
    mode: str = "nerf"
    model: NerfModelSettings = field(default_factory=NerfModelSettings)
    data: NerfDataSettings = field(default_factory=NerfDataSettings)
    grid: NerfGridSettings = field(default_factory=NerfGridSettings)
    rays: NerfRaySettings = field(default_factory=NerfRaySettings)
    optim: NerfOptimSettings = field(default_factory=NerfOptimSettings)
