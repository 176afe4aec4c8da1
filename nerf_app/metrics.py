"""Image and signal quality metrics, computed the way published papers compute them.

- :func:`psnr` — ``-10 log10(MSE)`` for signals in [0, 1], or ``10 log10(R² / MSE)`` for a peak-to-peak
  range ``R``; MSE is floored at 1e-12 so a perfect match is finite (120 dB) rather than inf. An optional
  boolean ``mask`` restricts it to the pixels that count.
- :func:`psnr_from_mse` — the same from an MSE already computed (training logs; a tensor stays a tensor).
- :func:`ssim` — structural similarity of two ``[H, W, C]`` images in [0, 1] as the NeRF papers compute it
  (mip-NeRF / NeRF / Instant-NGP evaluation code): an 11x11 Gaussian window with sigma 1.5, population
  covariances, K1 = 0.01, K2 = 0.03, channels averaged. scikit-image's *default* (a 7x7 uniform window with
  sample covariances), which this project used before, gives numbers that are not comparable with published
  ones; ``window="uniform7"`` still computes it.
- :func:`lpips` — LPIPS (AlexNet, v0.1) when the backbone and linear-layer weights are already on the machine;
  they are never downloaded. Without them it returns None and :func:`lpips_unavailable_reason` says why in one line.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Optional

import numpy as np

MSE_FLOOR = 1e-12


def psnr_from_mse(mse, data_range: float = 1.0):
    """``10 log10(R² / mse)`` with ``mse`` floored at 1e-12. A float gives a float; a tensor gives a float64
    tensor on its device, computed there without reading it back (a training step's PSNR is read only
    when the step is logged, so it costs a GPU no synchronisation)."""
    if hasattr(mse, "detach") and hasattr(mse, "clamp"):  # a torch tensor (torch is not imported here)
        import torch
        return 10.0 * torch.log10(data_range ** 2 / mse.detach().double().clamp(min=MSE_FLOOR))
    return 10.0 * math.log10(data_range ** 2 / max(float(mse), MSE_FLOOR))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, mask: Optional[np.ndarray] = None) -> float:
    """PSNR between two arrays of one shape, in float64; ``mask [H, W]`` (True = counts) restricts it."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    err = (a - b) ** 2
    if mask is not None:
        m = np.asarray(mask, bool)
        if not m.any():
            raise ValueError("psnr: the mask keeps no pixel")
        err = err[m]
    return psnr_from_mse(float(np.mean(err)), data_range)


def ssim(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None, window: str = "gaussian") -> float:
    """SSIM of two ``[H, W, C]`` images in [0, 1], channels averaged.

    ``window="gaussian"`` (default): 11x11 Gaussian, sigma 1.5, population covariances — the papers' SSIM.
    ``window="uniform7"``: scikit-image's default (7x7 uniform, sample covariances), what this project
    reported before; not comparable with published numbers. ``mask [H, W]``: mean of the SSIM map over the
    pixels that count.
    """
    from skimage.metrics import structural_similarity
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if window == "gaussian":
        # truncate=3.5 with sigma=1.5 gives radius 5: the 11x11 window of the reference implementations
        opts = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, truncate=3.5)
    elif window == "uniform7":
        opts = {}
    else:
        raise ValueError(f"ssim window must be 'gaussian' or 'uniform7', got {window!r}")
    if mask is None:
        return float(structural_similarity(a, b, channel_axis=2, data_range=1.0, **opts))
    _, smap = structural_similarity(a, b, channel_axis=2, data_range=1.0, full=True, **opts)
    # scikit-image averages the map without a border of half a window; the masked mean does the same
    pad = 5 if window == "gaussian" else 3
    m = np.asarray(mask, bool)[pad:-pad, pad:-pad]
    if not m.any():
        raise ValueError("ssim: the mask keeps no pixel")
    return float(smap[pad:-pad, pad:-pad][m].mean())


# -- LPIPS ---------------------------------------------------------------------------------------

#: torchvision AlexNet ``features`` conv layers (index in the Sequential) and LPIPS taps after their ReLUs
_ALEX_CONVS = [(0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
               (10, 256, 256, 3, 1, 1)]
_ALEX_FILE = "alexnet-owt-7be5be79.pth"   # torchvision's AlexNet weights
_LIN_FILE = "alex.pth"                    # the lpips package's v0.1 linear layers (weights/v0.1/alex.pth)


def lpips_weight_files() -> List[Path]:
    """Where LPIPS weights are looked for, in order: ``$NERF_APP_LPIPS_WEIGHTS`` (one file holding both the
    AlexNet ``features.*`` and the ``lin*.model.1.weight`` tensors), then torch hub's checkpoint folder for
    AlexNet plus an installed ``lpips`` package's ``weights/v0.1/alex.pth``."""
    env = os.environ.get("NERF_APP_LPIPS_WEIGHTS")
    if env:
        return [Path(env)]
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints" / _ALEX_FILE
    lin = Path("<lpips package>") / "weights" / "v0.1" / _LIN_FILE
    try:
        import importlib.util
        spec = importlib.util.find_spec("lpips")
        if spec is not None and spec.origin:
            lin = Path(spec.origin).parent / "weights" / "v0.1" / _LIN_FILE
    except (ImportError, ValueError):
        pass
    return [hub, lin]


def lpips_unavailable_reason() -> Optional[str]:
    """None when LPIPS can be computed, else one line saying why (nothing is ever downloaded)."""
    missing = [str(f) for f in lpips_weight_files() if not f.is_file()]
    if not missing:
        return None
    return (f"LPIPS skipped: its weights are not on this machine ({', '.join(missing)} missing; nothing is "
            f"downloaded — set NERF_APP_LPIPS_WEIGHTS to one file holding AlexNet's features.* and lpips' lin* tensors)")


_LPIPS_NET = None


def _lpips_net():
    global _LPIPS_NET
    if _LPIPS_NET is not None:
        return _LPIPS_NET
    import torch
    state = {}
    for f in lpips_weight_files():
        state.update(torch.load(f, map_location="cpu", weights_only=True))

    def get(key):
        if key not in state:
            raise ValueError(f"LPIPS weights lack {key!r} (files: {', '.join(map(str, lpips_weight_files()))})")
        return state[key].float()

    convs = [(get(f"features.{i}.weight"), get(f"features.{i}.bias"), stride, pad)
             for i, _cin, _cout, _k, stride, pad in _ALEX_CONVS]
    lins = [get(f"lin{k}.model.1.weight") for k in range(5)]
    _LPIPS_NET = (convs, lins)
    return _LPIPS_NET


def lpips(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """LPIPS (AlexNet, v0.1, the lpips package's defaults) of two ``[H, W, 3]`` images in [0, 1], or None when
    the weights are not on the machine (see :func:`lpips_unavailable_reason`)."""
    if lpips_unavailable_reason() is not None:
        return None
    import torch
    import torch.nn.functional as F
    convs, lins = _lpips_net()
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def features(img):
        x = torch.from_numpy(np.ascontiguousarray(img, np.float32)).permute(2, 0, 1)[None] * 2 - 1
        x = (x - shift) / scale
        taps = []
        for k, (w, bias, stride, pad) in enumerate(convs):
            if k in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(F.conv2d(x, w, bias, stride=stride, padding=pad))
            taps.append(x)
        return taps

    with torch.no_grad():
        total = 0.0
        for fa, fb, lin in zip(features(a), features(b), lins):
            na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total += float(F.conv2d((na - nb) ** 2, lin).mean())
    return total
