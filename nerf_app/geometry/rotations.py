"""Unit quaternions (w, x, y, z) <-> rotation matrices, in one place (numpy, float64).

Written here rather than taken from scipy's ``Rotation``: COLMAP files, the demo scene's writer and its
tracer must agree on the matrix of a quaternion bit for bit (the demo's pixels are rendered from the
rotation a COLMAP reader makes of ``images.txt``), and scipy builds the diagonal as ``w2 + x2 - y2 - z2``
where COLMAP's reader and ours use ``1 - 2 (y2 + z2)``; the two differ in the last bits. Interpolation,
where no file pins the bits, uses scipy's ``Slerp`` (``camera_paths/keyframes.py``).
"""
from __future__ import annotations

import numpy as np


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """``q [..., 4]`` (w, x, y, z), any non-zero norm -> rotation matrices ``[..., 3, 3]``."""
    q = np.asarray(q, dtype=np.float64)
    n = np.sqrt((q * q).sum(-1, keepdims=True))
    w, x, y, z = np.moveaxis(q / n, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` (w, x, y, z) with ``w >= 0``.

    Each matrix uses the branch of its largest of ``4w², 4x², 4y², 4z²`` (Shepperd's method), so no
    division by a small number happens anywhere on the sphere of rotations."""
    R = np.asarray(R, dtype=np.float64)
    shape = R.shape[:-2]
    R = R.reshape(-1, 3, 3)
    m00, m11, m22 = R[:, 0, 0], R[:, 1, 1], R[:, 2, 2]
    sq = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], 1)
    k = np.argmax(sq, 1)
    s = np.sqrt(np.maximum(sq[np.arange(len(R)), k], 1e-300)) * 2   # 4 times the largest component
    r = lambda i, j: R[:, i, j]  # noqa: E731
    branches = [
        np.stack([s / 4, (r(2, 1) - r(1, 2)) / s, (r(0, 2) - r(2, 0)) / s, (r(1, 0) - r(0, 1)) / s], 1),
        np.stack([(r(2, 1) - r(1, 2)) / s, s / 4, (r(0, 1) + r(1, 0)) / s, (r(0, 2) + r(2, 0)) / s], 1),
        np.stack([(r(0, 2) - r(2, 0)) / s, (r(0, 1) + r(1, 0)) / s, s / 4, (r(1, 2) + r(2, 1)) / s], 1),
        np.stack([(r(1, 0) - r(0, 1)) / s, (r(0, 2) + r(2, 0)) / s, (r(1, 2) + r(2, 1)) / s, s / 4], 1),
    ]
    out = np.choose(k[:, None], branches)
    out *= np.where(out[:, :1] < 0, -1.0, 1.0)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.reshape(*shape, 4)
