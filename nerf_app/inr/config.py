"""Config of the INR fitting modes (preset: configs/image.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ..encodings.factory import EncodingSettings
from ..train.config import BaseConfig


@dataclass
class InrModelSettings(EncodingSettings):
    # the encoding: EncodingSettings' keys (encoding, the hash grid's, fourier_*, n_frequencies);
    # finest 0 = the signal's resolution (longest side)
    finest_resolution: int = 1024
    network: str = "mlp"                # mlp (FusedMLP, ReLU, bias-free) | siren
    width: int = 64
    n_hidden_layers: int = 2
    # SIREN
    w0: float = 30.0
    w0_initial: float = 30.0


@dataclass
class ImageDataSettings:
    # space the network is trained in: file = as stored (PNG/JPEG: sRGB-encoded, EXR: linear);
    # linear / srgb convert on load (and back when writing 8-bit PNGs)
    color_space: str = "file"


@dataclass
class InrOptimSettings:
    batch_size: int = 65536
    lr: float = 1e-2
    lr_final: float = 1e-3              # exponential decay to this over the budget
    eps: float = 1e-15


@dataclass
class ImageEvalSettings:
    chunk: int = 262144                 # points per forward pass at eval/render


@dataclass
class ImageRenderSettings:
    crop: List[float] = field(default_factory=lambda: [0.0, 0.0, 1.0, 1.0])  # x0 y0 x1 y1 in [0,1] (zoom)


@dataclass
class ImageConfig(BaseConfig):
    data: ImageDataSettings = field(default_factory=ImageDataSettings)
    model: InrModelSettings = field(default_factory=InrModelSettings)
    optim: InrOptimSettings = field(default_factory=InrOptimSettings)
    eval: ImageEvalSettings = field(default_factory=ImageEvalSettings)
    render: ImageRenderSettings = field(default_factory=ImageRenderSettings)


@dataclass
class AudioModelSettings(InrModelSettings):
    """SIREN on raw time ``2t - 1 in [-1,1]``, four sine layers of 256.

    The first layer's weights are ``U(-1, 1)`` times ``w0_initial``, so its sines span frequencies up to
    ``w0_initial / (pi * T)`` Hz over a clip of ``T`` seconds: the paper's 3000 is only 137 Hz on the
    7 s Bach clip (half of its energy is above 330 Hz). With ``w0_initial = 0`` (the default) it is set
    from a bandwidth in Hz, ``w0_initial = pi * T * w0_initial_hz``, the same for any clip length; a
    positive ``w0_initial`` is used as given."""
    encoding: str = "identity"
    network: str = "siren"
    width: int = 256
    n_hidden_layers: int = 4
    w0_initial: float = 0.0             # 0: pi * duration * w0_initial_hz
    w0_initial_hz: float = 450.0


@dataclass
class AudioDataSettings:
    # std: train on a / std(a) and scale the output back (the model's output stays in the file's
    # units); none: train on a as stored
    normalize: str = "std"


@dataclass
class AudioOptimSettings(InrOptimSettings):
    """Adam on random sample batches. ``first_layer_lr_scale`` multiplies the first layer's learning rate:
    that layer's weights are multiplied by ``w0_initial`` (~1e4), so an Adam step of ``lr`` moves each of
    its frequencies by ``w0_initial * lr`` rad per unit time (at 3e-4: ~3 rad of phase at the clip's ends
    per step), which randomises the features every step unless scaled down."""
    batch_size: int = 2048
    lr: float = 3e-4
    lr_final: float = 1e-5
    eps: float = 1e-8
    first_layer_lr_scale: float = 0.01


@dataclass
class AudioRenderSettings:
    sample_rate: int = 0                # rendered WAV rate (0 = the source's); --resolution N also sets it


@dataclass
class AudioConfig(BaseConfig):
    data: AudioDataSettings = field(default_factory=AudioDataSettings)
    model: AudioModelSettings = field(default_factory=AudioModelSettings)
    optim: AudioOptimSettings = field(default_factory=AudioOptimSettings)
    eval: ImageEvalSettings = field(default_factory=ImageEvalSettings)
    render: AudioRenderSettings = field(default_factory=AudioRenderSettings)
