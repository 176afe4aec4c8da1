"""MLP op: backend dispatch for the fully fused MLP (``torch`` reference; compiled kernels to come)."""
from __future__ import annotations

from typing import List, Optional

import torch

from .. import backend as _backend
from . import _reference

ACTIVATIONS = ("relu", "none")
OUTPUT_ACTIVATIONS = ("none", "relu", "sigmoid", "exp")


def mlp_forward(x: torch.Tensor, weights: List[torch.Tensor], activation: str = "relu",
                output_activation: str = "none", backend: Optional[str] = "auto") -> torch.Tensor:
    """Run a bias-free MLP: ``x`` ``[N, n_in]``, ``weights[i]`` ``[out_i, in_i]`` -> ``[N, n_out]``."""
    # No compiled MLP kernel exists yet: every backend request runs the reference (explicit cpp/cuda
    # requests are still validated so a typo or impossible device fails loudly).
    choice = _backend.requested(backend)
    if choice in ("cpp", "cuda"):
        _backend.resolve("mlp", choice, x.device, x.dtype)
    return _reference.mlp_forward(x, weights, activation, output_activation)
