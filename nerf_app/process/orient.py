"""An upright, camera-facing frame for a reconstruction `nerf-app process` made.

Structure from motion fixes its frame by the first image pair: the up direction and the axes come out
anywhere. Every loader works in whatever frame a capture comes in (normalisation only scales and
shifts, see :mod:`nerf_app.data.normalize`), so for a processed capture the frame is chosen here, as
colmap2nerf and nerfstudio's ``orientation_method="up"`` do:

- **up** (+z) is the mean of the cameras' up vectors (photos and videos are held roughly level);
- for a capture whose cameras share a viewing direction (a forward-facing video, a wall of photos),
  the horizontal part of the mean viewing direction becomes +y (the cameras look "into" the scene the
  way Blender's front view does), so the scene's depth runs along an axis of the unit cube the hash
  grid and occupancy cascades are laid out on, rather than along a diagonal; for cameras around an
  object (no shared direction) the turn about z is left as it is;
- the origin is the median sparse point (the middle of what was reconstructed); the scale is kept.

It is a similarity transform of the whole model (points and cameras alike), so reprojection and
every camera's intrinsics are unchanged.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

#: horizontal length of the mean unit viewing direction above which the capture counts as facing one way
FACING_MIN = 0.3


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector ``a`` to unit vector ``b``."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1 + 1e-9:  # opposite: a half turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def orientation(cam_from_world_R: np.ndarray, centres: np.ndarray,
                points: Optional[np.ndarray] = None) -> Dict[str, object]:
    """For cameras with world->camera rotations ``R [N,3,3]`` (OpenCV axes: x right, y down, z forward)
    and centres ``[N,3]``: ``{"rotation" [3,3], "translation" [3], "facing": bool}`` such that
    ``x' = rotation @ x + translation`` is the frame in the module docstring."""
    R = np.asarray(cam_from_world_R, np.float64)
    up = -R[:, 1, :].mean(0)        # camera -y in world = the second row of R, negated
    up /= max(np.linalg.norm(up), 1e-12)
    rot = _rotation_between(up, np.array([0.0, 0, 1]))
    fwd = (rot @ R[:, 2, :].mean(0))  # mean viewing direction (third row of R), in the upright frame
    horiz = np.array([fwd[0], fwd[1], 0.0])
    facing = bool(np.linalg.norm(horiz) > FACING_MIN)
    if facing:
        rot = _rotation_between(horiz / np.linalg.norm(horiz), np.array([0.0, 1, 0])) @ rot
    origin = np.median(points, 0) if points is not None and len(points) else np.asarray(centres).mean(0)
    return {"rotation": rot, "translation": -rot @ origin, "facing": facing}


def orient_reconstruction(rec) -> Dict[str, object]:
    """Apply :func:`orientation` to a ``pycolmap.Reconstruction`` in place; returns what was applied
    (for the report)."""
    import pycolmap

    images = [im for im in rec.images.values() if im.has_pose]
    if not images:
        return {"applied": False}
    Rs = np.stack([np.asarray(im.cam_from_world().rotation.matrix(), np.float64) for im in images])
    centres = np.stack([np.asarray(im.projection_center(), np.float64) for im in images])
    pts = np.array([p.xyz for p in rec.points3D.values()], np.float64).reshape(-1, 3)
    o = orientation(Rs, centres, pts)
    rec.transform(pycolmap.Sim3d(1.0, pycolmap.Rotation3d(o["rotation"]), o["translation"]))
    return {"applied": True, "facing": o["facing"], "rotation": np.round(o["rotation"], 6).tolist(),
            "translation": np.round(o["translation"], 6).tolist()}
