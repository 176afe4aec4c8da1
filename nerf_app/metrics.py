"""Image and signal quality metrics, computed the way published papers compute them.

- :func:`psnr` — ``-10 log10(MSE)`` for signals in [0, 1], or ``10 log10(R² / MSE)`` for a peak-to-peak
  range ``R``; MSE is floored at 1e-12 so a perfect match is finite (120 dB) rather than inf.
- :func:`psnr_from_mse` — the same from an MSE already computed (training logs).
- :func:`ssim` — structural similarity of two ``[H, W, C]`` images in [0, 1] (scikit-image).
"""
from __future__ import annotations

import math

import numpy as np

MSE_FLOOR = 1e-12


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """``10 log10(R² / mse)`` with ``mse`` floored at 1e-12 (float or 0-d tensor)."""
    return 10.0 * math.log10(data_range ** 2 / max(float(mse), MSE_FLOOR))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR between two arrays of one shape, in float64."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    return psnr_from_mse(float(np.mean((a - b) ** 2)), data_range)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two ``[H, W, C]`` images in [0, 1] (scikit-image, channels averaged)."""
    from skimage.metrics import structural_similarity
    return float(structural_similarity(np.asarray(a), np.asarray(b), channel_axis=2, data_range=1.0))
