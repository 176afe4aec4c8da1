"""Frequency encodings of coordinates: NeRF's positional encoding and Gaussian Fourier features.

Both are pure torch on purpose: each is one (tiny) matmul or broadcast multiply followed by
``sin``/``cos``, i.e. already memory-bound elementwise work that torch runs vectorised and
multithreaded; a fused C++/CUDA kernel would save one intermediate tensor and nothing else
(the MLP behind them costs 10-100x more). Autograd gives the exact derivatives.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError


class PositionalEncoding(nn.Module):
    """NeRF's frequency encoding (Mildenhall et al. 2020), frequencies ``2^k pi``, ``k = 0..L-1``.

    ``y = enc(x)``: ``x`` ``[..., D]`` -> ``[..., D*(include_input + 2L)]`` laid out as::

        [ x (D) | sin(2^0 pi x) (D) ... sin(2^(L-1) pi x) (D) | cos(2^0 pi x) (D) ... cos(2^(L-1) pi x) (D) ]

    i.e. ``y[..., off + k*D + d] = sin(2^k * pi * x[..., d])`` with ``off = D`` if ``include_input``.
    No parameters; the frequencies are a non-persistent buffer.
    """

    def __init__(self, input_dim: int, n_frequencies: int, include_input: bool = True):
        super().__init__()
        if input_dim < 1 or n_frequencies < 0:
            raise ConfigError("PositionalEncoding needs input_dim >= 1 and n_frequencies >= 0")
        self.input_dim, self.n_frequencies, self.include_input = input_dim, n_frequencies, include_input
        # powers of two are exact in any float dtype; pi is applied in the input's precision
        self.register_buffer("freqs", 2.0 ** torch.arange(n_frequencies, dtype=torch.float32), persistent=False)

    @property
    def n_output_dims(self) -> int:
        return self.input_dim * (int(self.include_input) + 2 * self.n_frequencies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [..., L, D] -> [..., L*D] (frequency-major)
        phase = (x[..., None, :] * (math.pi * self.freqs.to(x.dtype))[:, None]).flatten(-2)
        parts = ([x] if self.include_input else []) + [torch.sin(phase), torch.cos(phase)]
        return torch.cat(parts, dim=-1)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, n_frequencies={self.n_frequencies}, include_input={self.include_input}"


class FourierFeatures(nn.Module):
    """Gaussian random Fourier features (Tancik et al. 2020, "Fourier Features Let Networks Learn...").

    ``y = [cos(2 pi B x), sin(2 pi B x)]`` with ``B`` ``[n_features, D]``, ``B_ij ~ N(0, sigma^2)``
    drawn once from a generator seeded with ``seed`` (independent of the global RNG) and stored as a
    persistent buffer (saved in the state_dict, never trained).
    ``x`` ``[..., D]`` -> ``[..., 2 * n_features]`` (cosines first).
    ``sigma`` sets the bandwidth: too small blurs, too large gives noisy high-frequency artefacts.
    """

    def __init__(self, input_dim: int, n_features: int = 256, sigma: float = 10.0, seed: int = 0):
        super().__init__()
        if input_dim < 1 or n_features < 1 or sigma <= 0:
            raise ConfigError("FourierFeatures needs input_dim >= 1, n_features >= 1 and sigma > 0")
        self.input_dim, self.n_features, self.sigma, self.seed = input_dim, n_features, float(sigma), seed
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("B", torch.randn(n_features, input_dim, generator=g) * self.sigma)

    @property
    def n_output_dims(self) -> int:
        return 2 * self.n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phase = (2.0 * math.pi) * (x @ self.B.to(x.dtype).t())
        return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, n_features={self.n_features}, sigma={self.sigma}, seed={self.seed}"


class IdentityEncoding(nn.Module):
    """``y = x``: the raw coordinates (the plain-MLP baseline). ``[..., D] -> [..., D]``."""

    def __init__(self, input_dim: int):
        super().__init__()
        self.input_dim = input_dim

    @property
    def n_output_dims(self) -> int:
        return self.input_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
