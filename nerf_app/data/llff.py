"""LLFF ``poses_bounds.npy``: N rows of 17 numbers next to an ``images/`` folder.

Each row is a 3x5 matrix ``[R | t | (h, w, f)]`` flattened row-major, then ``near, far``. The rotation
columns are the camera's (down, right, backwards) axes in world coordinates; rows belong to the
images sorted by name (LLFF's own ``sorted(os.listdir)``). We turn the columns into OpenCV's
(right, down, forward) and use a pinhole camera with the principal point at the image centre.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import List

import numpy as np

from ..errors import DatasetError, reraise_if_bug
from .cameras import Camera
from .capture import Capture
from .images import header_info
from .validate import check_rotation, contained, finite_array, image_size, read_bytes, safe_relative

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".exr", ".webp", ".bmp", ".tif", ".tiff"}


def find_llff(path: Path):
    candidate = path / "poses_bounds.npy" if path.is_dir() else path
    return candidate if candidate.name == "poses_bounds.npy" and candidate.is_file() else None


def _check_npy_size(npy: Path, data: bytes) -> None:
    """A header that promises more bytes than the file holds is refused before numpy allocates them (a
    .npy of 2 KB claiming 10^12 rows would otherwise be a MemoryError, which is not a file error)."""
    fmt = np.lib.format
    f = io.BytesIO(data)
    try:
        version = fmt.read_magic(f)
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read_header is None:
            return  # a version numpy may add later: np.load below judges it
        shape, _, dtype = read_header(f)
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    except Exception:  # noqa: BLE001 - any broken header (numpy raises tokenize.TokenError too): np.load
        return         # below reads it again and names the problem (or lets a bug through)
    if need > len(data) - f.tell():
        raise DatasetError(npy, f"header promises {need} bytes of data, the file holds {len(data) - f.tell()}")


def build_capture(npy: Path, root: Path, images_dir: Path, check_images: bool = True) -> Capture:
    data = read_bytes(npy, root)
    _check_npy_size(npy, data)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError/TypeError ... for a broken .npy
        reraise_if_bug(exc)  # but not MemoryError (sizes are checked above), nor a mistake in the call
        raise DatasetError(npy, f"not a valid .npy array ({exc.__class__.__name__})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu" or arr.ndim != 2 or arr.shape[1] != 17:
        shape = getattr(arr, "shape", None)
        raise DatasetError(npy, f"expected an N x 17 numeric array, got shape {shape} "
                           f"dtype {getattr(arr, 'dtype', None)}")
    if arr.shape[0] == 0:
        raise DatasetError(npy, "has no poses")
    arr = finite_array(arr, npy, "poses")
    contained(images_dir, root, npy, "images", "images folder")  # a symlinked images/ must not be listed
    try:
        listing = sorted(p.name for p in images_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    except OSError:
        raise DatasetError(images_dir, "images folder not found next to poses_bounds.npy") from None
    if len(listing) != arr.shape[0]:
        raise DatasetError(npy, f"{arr.shape[0]} poses but {len(listing)} images in {images_dir}", "rows")
    paths = [safe_relative(n, images_dir, npy, f"image {n}", root) for n in listing]
    cameras: List[Camera] = []
    c2w = np.zeros((len(arr), 4, 4))
    for i, row in enumerate(arr):
        field = f"row {i} ({listing[i]})"
        m = row[:15].reshape(3, 5)
        R = np.stack([m[:, 1], m[:, 0], -m[:, 2]], axis=1)  # (right, down, forward)
        check_rotation(R, npy, field)
        c2w[i, :3, :3], c2w[i, :3, 3], c2w[i, 3, 3] = R, m[:, 3], 1.0
        h, w, f = m[:, 4]
        if not f > 0:
            raise DatasetError(npy, f"focal length must be positive, got {f:g}", field)
        w_i, h_i = image_size(w, h, npy, field + " hwf")
        # the hwf column describes the full-resolution images; scale when images/ holds smaller ones
        iw, ih = (header_info(paths[i])[:2]) if check_images else (w_i, h_i)
        cameras.append(Camera("PINHOLE", w_i, h_i, [f, f, w_i / 2.0, h_i / 2.0]).scaled(iw, ih)
                       if (iw, ih) != (w_i, h_i) else Camera("PINHOLE", w_i, h_i, [f, f, w_i / 2.0, h_i / 2.0]))
        near, far = row[15], row[16]
        if not 0 <= near < far:
            raise DatasetError(npy, f"bounds must satisfy 0 <= near < far, got {near:g}, {far:g}", field)
    return Capture(format="llff", root=root, source=npy, names=listing, image_paths=paths, cameras=cameras, c2w=c2w,
                   meta={"near": float(arr[:, 15].min()), "far": float(arr[:, 16].max())})
