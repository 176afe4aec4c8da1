"""Configuration of the ``nerf`` mode (presets: configs/nerf_synthetic.yaml, configs/nerf_real.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

from ..encodings.factory import EncodingSettings
from ..train.config import BaseConfig


@dataclass
class NerfModelSettings(EncodingSettings):
    # the encoding: EncodingSettings' keys (hashgrid by default; fourier/positional/identity by name); the hash
    # grid's finest resolution is per unit of the scene's unit cube (scaled up for outer cascades)
    finest_resolution: int = 2048
    geo_features: int = 16
    density_width: int = 64
    density_layers: int = 1
    color_width: int = 64
    color_layers: int = 2
    sh_degree: int = 4
    # sigma = exp(h_0 + density_bias); < -50: automatic (0 for bounded objects, density_bias_auto for real
    # captures, whose untrained space would otherwise start as a fog of density 1)
    density_bias: float = -100.0
    density_bias_auto: float = 0.0


@dataclass
class NerfDataSettings:
    format: str = "auto"              # auto | colmap | transforms | llff (a folder may hold several)
    downscale: float = 1.0
    holdout_every: int = 8            # for captures without their own test split
    background: str = "random"        # training background of RGBA images: random | white | black
    eval_background: str = "white"
    cache: str = "auto"               # training pixels (and masks) out of core: auto (a file beside the capture above
                                      # 1 GiB decoded) | always | none (RAM) | a folder; nerf_app/data/image_cache.py


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
    # sharper grid (experimental, off): the occupancy threshold min(mean density, 0.01 / dt_min) gets a floor
    # that ramps from 0 to sharp_density over the first sharpen_until of the budget; < 0: 0.01 / dt_min.
    # Measured on cup (downscale 2): ramping to 0.01/dt_min by 30% emptied the whole grid at the first update
    # (densities were still ~1 there) and the run never recovered; needs a floor that keeps some cells.
    sharp_density: float = 0.0
    sharpen_until: float = 0.3


@dataclass
class NerfRaySettings:
    target_samples: int = 1 << 18     # samples per step; the ray count adapts to keep near it
    initial_rays: int = 4096
    min_rays: int = 256
    max_rays: int = 1 << 16
    steps_per_unit_diagonal: int = 1024
    cone_angle: float = -1.0          # < 0: automatic (0 for bounded objects, 1/256 otherwise)
    near: float = 0.0                 # > 0: marching starts this far from every camera (scene units); overrides auto_near
    # 0 near: each camera's near plane from the sparse points in its frustum (near_percentile of their depths
    # x near_margin) when the capture has points (COLMAP) — no density is learned or rendered in front of it
    auto_near: bool = True
    near_percentile: float = 1.0
    near_margin: float = 0.5
    # free space: points closer to a training camera than free_space_margin x the same percentile depth must
    # be empty; their opacity is penalised with optim.free_space_weight (only where auto near planes exist)
    free_space_margin: float = 0.8
    max_samples: int = 1024
    t_threshold: float = 1e-4
    # training: densities first, marched in rounds without gradients, then the field with gradients only on
    # each ray's samples before its transmittance falls below t_threshold (Instant-NGP's compaction; the loss
    # and gradients are unchanged); target_samples then counts these compacted samples.
    # auto | always | never. auto: on, except on CUDA, where each round costs host synchronisations and
    # the step is built for at most two (tests/test_gpu_training_step.py); not yet measured on a GPU
    train_compact: str = "auto"
    # the compaction in one C++ pass per tile of rays (ops/compact_fused.py; the same samples and gradients, its
    # hash-grid features reused by the differentiable pass): auto (where it can run: CPU, cpp backend, a plain
    # NerfField) | always (an error where it cannot) | never (the composed ops)
    train_fused: str = "auto"
    # inference (eval/render/export): rounds of round_samples per live ray (doubling to round_samples_max);
    # a ray stops once its transmittance is below render_t_threshold (early ray termination)
    round_samples: int = 4       # was 8/16: 4/4 marches ~1/5 fewer samples at equal PSNR (nerf/renderer.py)
    round_samples_max: int = 4
    render_t_threshold: float = 1e-2
    render_min_weight: float = 1e-4   # inference: samples weighing less than this get no colour evaluation
    # render / eval / viewer of a trained run (training never reads these): space no training camera saw
    # (outside every frustum or nearer than its near planes; with unseen_occlusion also behind what every camera
    # saw: nerf_app/nerf/unseen.py)
    # is "background" (not drawn: rays go on to what was seen behind it, or the background), "tint" (the same,
    # with unseen_tint, RGB in [0, 1], as the colour behind everything seen; eval keeps its background) or
    # "keep" (the field's own fog there); auto: background for real captures, keep for objects on a known
    # background
    unseen: str = "auto"
    unseen_tint: Tuple[float, ...] = (1.0, 0.35, 0.8)
    # also leave out what lies behind the surface from every training camera (depth maps rendered at them,
    # seconds at load). Off: on cup (10 min) it hid 33% of the occupied cells, held-out PSNR 27.80 -> 27.68 dB
    # (54.jpg -1.1 dB: surfaces only that view sees became background holes); docs/training.md
    unseen_occlusion: bool = False


@dataclass
class NerfOptimSettings:
    lr: float = 1e-2
    eps: float = 1e-15
    warmup_steps: int = 100
    decay_start: float = 0.5          # fraction of the budget after which the lr decays ...
    final_lr_factor: float = 0.1      # ... exponentially to this factor at the end
    # mip-NeRF 360 distortion loss on the packed samples (distances contracted s = t/(1+t)); < 0: automatic
    # (0 for bounded objects, distortion_auto for real captures)
    distortion_weight: float = -1.0
    distortion_auto: float = 0.01
    # free-space loss in front of each training camera (nerf_app.nerf.near.free_space_loss); < 0: automatic
    # (free_space_auto when the capture has sparse points for near planes, else 0)
    free_space_weight: float = -1.0
    free_space_auto: float = 0.01


@dataclass
class NerfAppearanceSettings:
    # per-image affine colour (3x4, identity at start) applied to the composited colour: exposure and
    # white balance of captures with changing light. auto: on for real (unbounded) captures, off for objects
    mode: str = "auto"                # auto | affine | none
    weight: float = 1e-3              # L2 pull of each image's matrix towards the identity
    lr_scale: float = 0.1             # its learning rate relative to optim.lr
    # held-out images have no matrix of their own: "mean" uses the training images' mean matrix
    # (what metrics.json reports); "identity" the raw field
    eval: str = "mean"


@dataclass
class NerfCameraSettings:
    # per-image pose corrections (axis-angle rotation about the camera centre + translation, world frame),
    # off by default. Annealed: frozen for the first `start` of the budget (geometry first), then their lr
    # ramps up over `ramp` and decays with the field's; an L2 pull (`weight`) keeps them small so the world
    # frame does not drift. Held-out cameras get the mean correction of their `eval_neighbours` nearest
    # training cameras (their own images are never used), so metrics stay comparable.
    optimize: bool = False
    lr_scale: float = 0.05
    weight: float = 1e-3
    start: float = 0.1
    ramp: float = 0.1
    eval_neighbours: int = 3


@dataclass
class NerfConfig(BaseConfig):
    mode: str = "nerf"
    model: NerfModelSettings = field(default_factory=NerfModelSettings)
    data: NerfDataSettings = field(default_factory=NerfDataSettings)
    grid: NerfGridSettings = field(default_factory=NerfGridSettings)
    rays: NerfRaySettings = field(default_factory=NerfRaySettings)
    optim: NerfOptimSettings = field(default_factory=NerfOptimSettings)
    appearance: NerfAppearanceSettings = field(default_factory=NerfAppearanceSettings)
    cameras: NerfCameraSettings = field(default_factory=NerfCameraSettings)
