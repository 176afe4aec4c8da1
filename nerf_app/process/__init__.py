"""`nerf-app process INPUT --out DIR`: photos or a video -> a posed capture (``images/`` + COLMAP
``sparse/0``) that every other verb reads as it is.

The package: :mod:`.pipeline` (the steps in order, the hidden build folder and the rename into place),
:mod:`.frames` (photo copies, video frame choice), :mod:`.sfm` (pycolmap features, matching, mapping),
:mod:`.sequence` and :mod:`.continuity` (a video's time order), :mod:`.pair_cycles` (pairs matched by
symmetry, for photos), :mod:`.orient`, :mod:`.report`.
"""
from .pipeline import (CAMERA_MODES, CONTINUITY_MODES, FRUSTA_NAME, MAPPERS, MATCHERS, MIN_IMAGES, REPORT_NAME,
                       ProcessOptions, process)

__all__ = ["ProcessOptions", "process", "MATCHERS", "MAPPERS",
           "CAMERA_MODES", "CONTINUITY_MODES", "FRUSTA_NAME", "MIN_IMAGES",
           "REPORT_NAME"]
