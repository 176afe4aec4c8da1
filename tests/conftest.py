"""Shared test fixtures: where the real data lives, and which backends can run here."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nerf_app import backend

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real scenes live beside the repository (../shared/data), in CI as on developer machines.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

HAS_CPP = backend.has_cpp()
HAS_CUDA = torch.cuda.is_available() and backend.has_cuda_kernels()

requires_cpp = pytest.mark.skipif(not HAS_CPP, reason=f"C++ extension not built: {backend.extension_error()}")
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and the extension's CUDA kernels")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA
