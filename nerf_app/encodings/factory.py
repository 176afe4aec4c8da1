"""The encoding factory: any field takes any encoding by name (tiny-cuda-nn's ``create_encoding`` idea).

``build(settings, input_dim, backend, ...)`` reads ``settings.encoding`` (``hashgrid`` when the settings do not
name one) and the keys of that encoding from the same flat settings object (``model.n_levels``,
``model.fourier_sigma``, ``model.n_frequencies``...), so a config switches encodings with one key:
``--set model.encoding=fourier``. Every field feeds its encoding through :func:`prepare`, which puts the
coordinates in the encoding's natural domain: the hash grid and Fourier features take ``[0,1]^D`` (clamped:
the grid is undefined outside), positional encoding and identity take ``2x - 1 in [-1,1]^D`` (NeRF's and
SIREN's convention).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from .frequency import FourierFeatures, IdentityEncoding, PositionalEncoding
from .hashgrid import HashGrid, HashGridSettings

ENCODINGS = ("hashgrid", "fourier", "positional", "identity")
_UNIT_DOMAIN = ("hashgrid", "fourier")


@dataclass
class EncodingSettings(HashGridSettings):
    """The flat model keys every encoding reads (a field's model settings inherit these)."""
    encoding: str = "hashgrid"          # hashgrid | fourier | positional | identity
    fourier_features: int = 256
    fourier_sigma: float = 10.0
    n_frequencies: int = 10


def build(settings, input_dim: int, backend: str = "auto", finest_resolution: Optional[int] = None,
          seed: int = 0) -> nn.Module:
    """An encoding module of ``input_dim`` coordinates, chosen by ``settings.encoding``.

    ``finest_resolution`` overrides the hash grid's (fields scale it to their box); ``seed`` draws the Fourier
    matrix. The module gets ``encoding_name`` so :func:`prepare` knows its domain.
    """
    name = getattr(settings, "encoding", "hashgrid")
    if name not in ENCODINGS:
        raise ConfigError(f"model.encoding must be one of {', '.join(ENCODINGS)}, got {name!r}")
    if name == "hashgrid":
        enc = HashGrid.from_settings(settings, input_dim, backend, finest_resolution=finest_resolution)
    elif name == "fourier":
        enc = FourierFeatures(input_dim, settings.fourier_features, settings.fourier_sigma, seed)
    elif name == "positional":
        enc = PositionalEncoding(input_dim, settings.n_frequencies)
    else:
        enc = IdentityEncoding(input_dim)
    enc.encoding_name = name
    return enc


def prepare(x: torch.Tensor, encoding: nn.Module, clamp: bool = True) -> torch.Tensor:
    """``x`` in ``[0,1]^D`` (points outside it from rays or finite differences included) -> the encoding's domain.

    ``clamp=False`` leaves unit-domain inputs as they are, for callers whose points are inside by construction
    (the NeRF's marcher): one op fewer per step, and the same bits as before the factory existed.
    """
    if getattr(encoding, "encoding_name", "hashgrid") in _UNIT_DOMAIN:
        return x.clamp(0.0, 1.0) if clamp else x
    return 2.0 * x - 1.0
