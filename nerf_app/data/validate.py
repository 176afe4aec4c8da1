"""Checks shared by the readers: safe paths inside the scene folder, finite numbers, rotations.

Every failure raises :class:`~nerf_app.errors.DatasetError` naming the file and the field.
"""
from __future__ import annotations

import math
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable, List, Optional, Sequence

import numpy as np

from ..errors import DatasetError
from ..geometry.rotations import quat_to_matrix

# Loose enough for float32 / 6-digit text poses, tight enough to catch scaled or sheared matrices.
ROTATION_TOL = 1e-3
MAX_IMAGE_SIDE = 1 << 17  # larger "image sizes" are corrupt records, not cameras


def finite_array(values, path, field: str, shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """``values`` as a finite float64 array (optionally of ``shape``), else DatasetError."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(path, f"expected numbers, got {_short(values)}", field) from None
    if shape is not None and arr.shape != tuple(shape):
        raise DatasetError(path, f"expected shape {tuple(shape)}, got {arr.shape}", field)
    if not np.all(np.isfinite(arr)):
        raise DatasetError(path, "contains NaN or Inf", field)
    return arr


def finite_number(value, path, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(path, f"expected a number, got {_short(value)}", field)
    try:
        out = float(value)
    except OverflowError:
        raise DatasetError(path, "number too large", field) from None
    if not math.isfinite(out):
        raise DatasetError(path, "is NaN or Inf", field)
    return out


def image_size(width, height, path, field: str):
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value <= MAX_IMAGE_SIDE:
            raise DatasetError(path, f"{name} must be an integer in 1..{MAX_IMAGE_SIDE}, got {_short(value)}", field)
    return int(width), int(height)


def check_rotation(R: np.ndarray, path, field: str) -> None:
    """Proper rotation: orthonormal within ROTATION_TOL and determinant +1 (no reflection)."""
    with np.errstate(all="ignore"):  # huge entries overflow to inf, which fails the test below
        err = np.abs(R @ R.T - np.eye(3)).max()
    if not err <= ROTATION_TOL:
        raise DatasetError(path, f"rotation is not orthonormal (max |R R^T - I| = {err:.3g})", field)
    if np.linalg.det(R) < 0:
        raise DatasetError(path, "rotation is a reflection (determinant -1)", field)


def quaternion_to_rotation(q: np.ndarray, path, field: str) -> np.ndarray:
    """Rotation of a Hamilton quaternion ``(w, x, y, z)``; its norm must be about 1 (COLMAP writes unit ones)."""
    with np.errstate(all="ignore"):
        n = float(np.linalg.norm(q))
    if not abs(n - 1.0) <= 1e-3:
        raise DatasetError(path, f"quaternion is not unit length (|q| = {n:.6g})", field)
    return quat_to_matrix(q)


def contained(path: Path, root: Path, source, field: str, what: str = "path") -> Path:
    """``path`` itself if it resolves (symlinks followed, the folders on the way included) inside the
    scene folder ``root``; a DatasetError naming ``source`` and ``field`` otherwise. Every file the
    loader opens goes through here first (images, masks, model files, JSON), so a symlinked ``images/``
    or a mask pointing elsewhere is refused before anything outside the scene is read."""
    try:
        inside = Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError, ValueError):
        raise DatasetError(source, f"{what} {str(path)!r} cannot be resolved", field) from None
    if not inside:
        raise DatasetError(source, f"{what} {str(path)!r} resolves outside the scene folder {root}", field)
    return Path(path)


def safe_relative(name, base: Path, source, field: str, root: Optional[Path] = None) -> Path:
    """``base / name`` for a file name read from ``source``, refusing anything that would leave the
    scene folder ``root`` (default ``base``): absolute paths, drive letters, ``..``, symlinks pointing out
    (of the file or of any folder on its way, ``base`` itself included) - before it is opened."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DatasetError(source, f"invalid image path {_short(name)}", field)
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise DatasetError(source, f"image path {name!r} is absolute; it must be relative to {root}", field)
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):  # the OS would raise ENAMETOOLONG
        raise DatasetError(source, f"image path {_short(name)} has a name longer than 255 bytes", field)
    if ".." in parts:
        raise DatasetError(source, f"image path {name!r} leaves the scene folder {root}", field)
    candidate = base.joinpath(*[p for p in parts if p not in ("", ".")])
    return contained(candidate, root if root is not None else base, source, field, "image path")


def report_missing(paths: Iterable[Path], source, what: str = "images") -> None:
    """One error listing every missing file, so a user fixes them all in one go."""
    missing: List[str] = [str(p) for p in paths if not _is_file(p)]
    if missing:
        shown = missing[:50]
        more = f" (and {len(missing) - 50} more)" if len(missing) > 50 else ""
        raise DatasetError(source, f"{len(missing)} {what} missing: " + ", ".join(shown) + more, what)


def read_bytes(path: Path, root: Path, limit: int = 1 << 31) -> bytes:
    """The contents of ``path`` (which must lie inside ``root``), as DatasetError on any OS error."""
    contained(path, root, path, "path", "file")
    try:
        size = path.stat().st_size
        if size > limit:
            raise DatasetError(path, f"file is too large ({size} bytes)")
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, f"cannot read: {exc.strerror or exc}") from None


def read_text(path: Path, root: Path) -> str:
    data = read_bytes(path, root)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"not UTF-8 text (byte {exc.start})") from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name the OS refuses (too long, bad encoding) is not an existing file
        return False


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
