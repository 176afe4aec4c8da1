"""What `export --mesh ... --texture` takes from the command line, checked before the (slow) run is opened:
texture size, face budget, the surface method and the crop box, and the axes convention the files record."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import ConfigError

# capture (z-up) -> glTF y-up such that Blender's y-up -> z-up import, (x, y, z) -> (x, -z, y), undoes it
BLENDER_AXES = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
AXES_KEY = "nerf_app_axes"
#: the region the mesh claims to be (capture coordinates, ``[x0, y0, z0, x1, y1, z1]``) in the file's extras
REGION_KEY = "nerf_app_region"

#: how a NeRF's surface is made (docs/export.md): the density level set, TSDF fusion of rendered depth,
#: or screened Poisson of the rendered depth's oriented points
METHODS = ("density", "tsdf", "poisson")


def check_options(texture_size, faces, mesh=None) -> None:
    """One-line ConfigErrors for bad ``--texture-size``, ``--faces`` or a mesh suffix that cannot hold a texture."""
    from ..geometry.texture import TEXTURE_FORMATS
    if mesh is not None and Path(mesh).suffix.lower() not in TEXTURE_FORMATS:
        raise ConfigError(f"--texture writes {' or '.join(TEXTURE_FORMATS)}, not {Path(mesh).suffix or 'no suffix'} ({mesh})")
    if not isinstance(texture_size, int) or not 16 <= texture_size <= 16384:
        raise ConfigError(f"--texture-size must be an integer from 16 to 16384, got {texture_size!r}")
    if not isinstance(faces, int) or faces < 4:
        raise ConfigError(f"--faces must be an integer >= 4, got {faces!r}")


def parse_crop(text: Optional[str]) -> Optional[Tuple[float, ...]]:
    """``"x0,y0,z0,x1,y1,z1"`` (capture coordinates) -> six floats, or None. Malformed, non-finite or
    inverted/empty boxes are one ConfigError naming ``--crop``; whether the box meets the scene is checked
    once the run is open (:func:`nerf_app.export.region.crop_region`)."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--crop takes six numbers x0,y0,z0,x1,y1,z1 (capture coordinates), got {text!r}") from None
    if len(vals) != 6:
        raise ConfigError(f"--crop takes six numbers x0,y0,z0,x1,y1,z1 (capture coordinates), got {len(vals)} in {text!r}")
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"--crop values must be finite numbers, got {text!r}")
    lo, hi = np.array(vals[:3]), np.array(vals[3:])
    if not (hi > lo).all():
        axes = ", ".join("xyz"[k] for k in range(3) if not hi[k] > lo[k])
        raise ConfigError(f"--crop box is empty or inverted along {axes} (need x0<x1, y0<y1, z0<z1), got {text!r}")
    return vals
