"""Config of the ``sdf`` and ``occupancy`` modes (presets: configs/sdf.yaml, configs/occupancy.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ..encodings.factory import EncodingSettings
from ..train.config import BaseConfig


@dataclass
class MeshDataSettings:
    margin: float = 0.05                # bbox margin inside the unit cube (per side, longest axis)
    pool_size: int = 1_000_000          # labelled points kept in memory
    near_fraction: float = 0.85         # share of near-surface points (the rest uniform in the cube)
    near_sigmas: List[float] = field(default_factory=lambda: [0.002, 0.008, 0.03])  # unit-cube units
    refresh_every: int = 20             # every N steps ...
    refresh_size: int = 16384           # ... replace this many pool points by fresh ones (0 = never)
    truncation: float = 0.1             # |sdf| targets clamped to this (unit-cube units); far field needs no accuracy


@dataclass
class FieldModelSettings(EncodingSettings):
    # the encoding: EncodingSettings' keys (hashgrid by default)
    finest_resolution: int = 1024     # 2048 fits noise (normal consistency 0.950 -> 0.966 at 1024 in a 60 s armadillo test)
    width: int = 64
    n_hidden_layers: int = 2


@dataclass
class OptimSettings:
    batch_size: int = 16384
    lr: float = 1e-2
    lr_final: float = 1e-3             # exponential decay to this over the step/time budget
    eps: float = 1e-15
    eikonal_weight: float = 0.0        # SDF: weight of (|grad f| - 1)^2 on near points (finite differences)
    eikonal_eps: float = 1e-3          # finite-difference step (unit-cube units)
    eikonal_points: int = 2048


@dataclass
class GeometryEvalSettings:
    resolution: int = 320              # marching-cubes samples per axis
    n_points: int = 100_000            # surface samples per mesh for chamfer/normals/fscore
    n_volume: int = 100_000            # volume points for iou
    seed: int = 0


@dataclass
class SurfaceRenderSettings:
    resolution: int = 256
    frames: int = 48
    fps: int = 24
    fov_deg: float = 40.0
    elevation_deg: float = 20.0
    shading: str = "lambert"           # lambert | normals
    max_steps: int = 128               # sphere-tracing / marching steps per ray
    bisection_steps: int = 10          # occupancy root refinement


@dataclass
class MeshFieldConfig(BaseConfig):
    data: MeshDataSettings = field(default_factory=MeshDataSettings)
    model: FieldModelSettings = field(default_factory=FieldModelSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    eval: GeometryEvalSettings = field(default_factory=GeometryEvalSettings)
    render: SurfaceRenderSettings = field(default_factory=SurfaceRenderSettings)
