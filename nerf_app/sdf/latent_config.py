"""Config of the latent-conditioned SDF (``deepsdf``: ``nerf-app train FOLDER --mode sdf``).

Preset: ``configs/deepsdf.yaml``. Adds a ``latent`` section and two model fields to the sdf config;
``data.*`` settings apply per shape (``data.pool_size`` points *per shape*).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .config import FieldModelSettings, MeshFieldConfig


@dataclass
class LatentSettings:
    dim: int = 32                  # code size per shape
    init_std: float = 0.01         # codes start as N(0, init_std^2) (DeepSDF)
    reg_weight: float = 1e-4       # lambda of the code prior lambda * ||z||^2, averaged over the batch
    lr: float = 0.0                # learning rate of the codes (0 = optim.lr); decays like the rest
    # fitting a new shape's code with the decoder frozen (`nerf-app fit-latent`)
    fit_steps: int = 300
    fit_lr: float = 1e-2
    fit_batch: int = 8192
    fit_pool: int = 100_000        # labelled points of the new shape (one pool, no refresh)


@dataclass
class LatentModelSettings(FieldModelSettings):
    mlp: str = "fused"             # fused (bias-free FusedMLP) | torch (nn.Linear with biases)
    width: int = 64
    n_hidden_layers: int = 3


@dataclass
class DeepSDFConfig(MeshFieldConfig):
    model: LatentModelSettings = field(default_factory=LatentModelSettings)
    latent: LatentSettings = field(default_factory=LatentSettings)
