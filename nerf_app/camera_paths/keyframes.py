"""Camera paths from keyframes: smooth interpolation, and nerfstudio's ``camera_path.json``.

Positions follow a centripetal-free uniform Catmull-Rom spline through the keyframes (it passes through
every keyframe); rotations are interpolated by quaternion slerp between neighbouring keyframes (scipy's ``Slerp``), so every
frame's rotation is orthonormal and the keyframes are hit exactly.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ..errors import DatasetError

_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera axes <-> OpenCV camera axes


def interpolate_poses(keyframes: np.ndarray, n_frames: int) -> np.ndarray:
    """``keyframes [K,4,4]`` c2w -> ``[n_frames,4,4]``; frame 0 is keyframe 0 and the last frame the last
    keyframe (exactly), evenly spaced in keyframe parameter in between."""
    K = len(keyframes)
    if K == 0 or n_frames < 1:
        raise ValueError("need at least one keyframe and one frame")
    if K == 1 or n_frames == 1:
        return np.repeat(keyframes[:1], n_frames, axis=0).astype(np.float64)
    P = keyframes[:, :3, 3]
    params = np.linspace(0.0, K - 1.0, n_frames)
    rotations = Slerp(np.arange(K), Rotation.from_matrix(keyframes[:, :3, :3]))(params).as_matrix()
    ext = np.concatenate([2 * P[:1] - P[1:2], P, 2 * P[-1:] - P[-2:-1]])  # reflected end points
    out = []
    for s, R in zip(params, rotations):
        i = min(int(math.floor(s)), K - 2)
        t = s - i
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        pos = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t * t
                     + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)
        pose = np.eye(4)
        pose[:3, :3] = R
        pose[:3, 3] = pos
        out.append(pose)
    return np.stack(out)


def read_camera_path(path) -> Tuple[np.ndarray, List[float], dict]:
    """nerfstudio ``camera_path.json`` -> (c2w [N,4,4] OpenCV axes, vertical fov in degrees per frame,
    the file's other settings). Its ``camera_to_world`` are row-major 4x4 OpenGL c2w."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frames = data["camera_path"]
        c2w = np.array([np.asarray(f["camera_to_world"], dtype=np.float64).reshape(4, 4) for f in frames])
        fov = [float(f.get("fov", data.get("default_fov", 50.0))) for f in frames]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(path, f"not a nerfstudio camera path ({exc})", field="camera_path") from None
    if len(c2w) == 0 or not np.isfinite(c2w).all():
        raise DatasetError(path, "empty or non-finite camera path", field="camera_path")
    settings = {k: data[k] for k in ("render_height", "render_width", "fps", "seconds") if k in data}
    return c2w @ _GL_TO_CV, fov, settings


def write_camera_path(path, c2w: np.ndarray, fov_deg: Sequence[float], width: int, height: int, fps: int) -> Path:
    """Write poses (OpenCV c2w) as a nerfstudio ``camera_path.json`` (OpenGL c2w, row-major)."""
    from ..results import write_json
    frames = [{"camera_to_world": (pose @ _GL_TO_CV).reshape(-1).tolist(), "fov": float(f), "aspect": width / height}
              for pose, f in zip(c2w, fov_deg)]
    data = {"camera_type": "perspective", "render_height": int(height), "render_width": int(width),
            "fps": int(fps), "seconds": len(frames) / fps, "camera_path": frames}
    write_json(Path(path), data)
    return Path(path)
