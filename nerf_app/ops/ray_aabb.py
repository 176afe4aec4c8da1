"""Ray / axis-aligned box intersection, with backend dispatch (kernels: csrc/ray_aabb.cpp)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import backend as _backend
from ..errors import ConfigError
from . import _reference

Bound = Union[float, Sequence[float], np.ndarray, torch.Tensor]


def _three(v: Bound, name: str) -> list:
    vals = [float(a) for a in np.broadcast_to(np.asarray(v.cpu() if torch.is_tensor(v) else v, dtype=np.float64),
                                              (3,))] if np.ndim(v) else [float(v)] * 3
    if len(vals) != 3:
        raise ConfigError(f"ray_aabb: {name} must be a number or 3 numbers")
    return vals


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, lo: Bound = 0.0, hi: Bound = 1.0,
             backend: Optional[str] = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances ``(t_near [R], t_far [R])`` of rays ``[R, 3]`` through the box ``[lo, hi]``
    (each a number, the same on every axis, or 3 per-axis bounds), measured along the whole line:
    ``t_near < 0`` when the origin is inside or past the box (clamp it for rays), no hit when
    ``t_near > t_far``. See :func:`nerf_app.ops._reference.ray_aabb`."""
    _backend.same_device("ray_aabb", origins=origins, dirs=dirs)
    lo3, hi3 = _three(lo, "lo"), _three(hi, "hi")
    which = _backend.resolve("ray_aabb", backend, origins.device, origins.dtype, cpp_dtypes=(torch.float32,),
                             cuda_dtypes=(torch.float32,))
    if which == "torch":
        return _reference.ray_aabb(origins, dirs, lo3, hi3)
    t_near, t_far = _backend.extension().ray_aabb(origins.contiguous(), dirs.contiguous(), lo3, hi3)
    return t_near, t_far
