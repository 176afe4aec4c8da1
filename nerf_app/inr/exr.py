"""EXR images through the OpenEXR project's own Python binding (the ``OpenEXR`` wheel).

imageio needs the FreeImage/pyav plugins for EXR and OpenCV's wheels ship without it. Until 2026-12 this
module was a hand-written reader of scanline files with NONE/ZIPS/ZIP compression only; the reference
library reads every compression (PIZ, PXR24, B44, DWA...), tiled and multi-part files, so it replaced
it (tests/test_inr_image.py writes PIZ, DWAA and tiled files with it and reads them back here).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from ..errors import DatasetError


def read_exr(path) -> Dict[str, np.ndarray]:
    """``{channel name: float32 array [H, W]}`` of the first part of an EXR file."""
    path = Path(path)
    try:
        import OpenEXR
    except ImportError:  # a declared dependency: only a broken install lands here
        raise DatasetError(path, "reading EXR needs the OpenEXR package (pip install OpenEXR)") from None
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            channels = f.channels()
            out = {name: np.asarray(ch.pixels, dtype=np.float32) for name, ch in channels.items()}
    except (RuntimeError, OSError, ValueError, TypeError) as e:
        # the binding raises RuntimeError/OSError for files it cannot parse, with the library's reason
        raise DatasetError(path, f"cannot read EXR: {e}") from None
    shapes = {a.shape for a in out.values()}
    if not out or len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise DatasetError(path, "cannot read EXR: no channels, or channels of different sizes (subsampled)")
    return out
