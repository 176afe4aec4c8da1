"""Training images out of core: decoded once into a memory-mapped uint8 file at the training resolution.

The ray sampler (:class:`~nerf_app.data.rays.RaySampler`) packs a split's pixels into one ``sum(H*W) x C`` uint8
array and gathers each batch's rows from it. In RAM that array (plus the decoded images on the way) grows with
the photo count; here it is a file, mapped read-only-with-copy-on-write (``np.memmap(mode="c")``), so the
kernel pages in what batches touch and drops it again under pressure: anonymous memory no longer grows with the
capture.

The file is named by a key over what its bytes depend on - per image the file's path, size and modification
time, its source and training sizes - so a run at another ``data.downscale``, or after an image is replaced,
builds a new one, and every later run with the same images maps the finished file at once. It is written to a
temporary name and renamed (two runs building it at once both finish; one file stays). Built one image at a
time: the build's own memory is one decoded photo.

Where: ``data.cache`` (nerf): ``auto`` (the default) caches only when the decoded training pixels exceed
:data:`AUTO_BYTES`, in ``CAPTURE/.nerf_app_cache/``; ``always`` there whatever the size; ``none`` keeps them in
RAM; any other value is a folder. A folder that cannot be written falls back to RAM with one line.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .images import ImageStore, decode, header_info, resize_area

#: ``data.cache: auto`` maps the pixels from disk above this many decoded bytes (below, RAM is cheaper than a file)
AUTO_BYTES = 1 << 30
FOLDER_NAME = ".nerf_app_cache"
VERSION = 1


def cache_folder(setting: str, capture_root: Path, total_bytes: int) -> Optional[Path]:
    """The folder ``data.cache`` asks for with this many decoded bytes, or None (keep the pixels in RAM)."""
    setting = str(setting).strip()
    if setting == "none" or (setting == "auto" and total_bytes <= AUTO_BYTES):
        return None
    if setting in ("auto", "always"):
        return Path(capture_root) / FOLDER_NAME
    return Path(setting).expanduser()


def _key(store: ImageStore, indices: Sequence[int], channels: int) -> str:
    h = hashlib.sha256(f"nerf_app pixel cache v{VERSION} channels {channels}\n".encode())
    for i in indices:
        p = Path(store.paths[int(i)])
        st = p.stat()
        h.update(json.dumps([str(p.resolve()), st.st_size, st.st_mtime_ns, list(store.source_sizes[int(i)]),
                             list(store.sizes[int(i)])]).encode() + b"\n")
    return h.hexdigest()[:24]


def _decode_resized(store: ImageStore, i: int) -> np.ndarray:
    """Image ``i`` at the store's resolution, checked like :meth:`ImageStore.load`, without the store's RAM cache."""
    from ..errors import DatasetError
    img = decode(store.paths[i])
    expected = store.source_sizes[i]
    if (img.shape[1], img.shape[0]) != tuple(expected):
        raise DatasetError(store.paths[i], f"image is {img.shape[1]}x{img.shape[0]} but its camera says "
                           f"{expected[0]}x{expected[1]}", "size")
    return resize_area(img, *store.sizes[i])


def header_channels(store: ImageStore, indices: Sequence[int]) -> int:
    """4 when any of the images has an alpha channel (from the file headers), else 3."""
    return 4 if any(header_info(Path(store.paths[int(i)]))[2] for i in indices) else 3


def mapped_pixels(store: ImageStore, indices: Sequence[int], offsets: np.ndarray, folder: Path,
                  log: Callable[[str], None]) -> Optional[Tuple[np.ndarray, int]]:
    """``(pixels [sum(H*W), C] uint8 memory-mapped, C)`` for images ``indices`` packed at ``offsets``, built in
    ``folder`` on first use; None (with one line through ``log``) when the folder cannot be written."""
    channels = header_channels(store, indices)
    for _ in range(2):  # a header that hid an alpha channel: rebuilt once with 4 channels
        key = _key(store, indices, channels)
        path = Path(folder) / f"pixels-{key}.u8"
        n = int(offsets[-1])
        if path.is_file() and path.stat().st_size == n * channels:
            return np.memmap(path, dtype=np.uint8, mode="c", shape=(n, channels)), channels
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            tmp = Path(folder) / f".{path.name}.{os.getpid()}.tmp"
            out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(n, channels))
        except OSError as exc:
            log(f"[data] image cache {folder}: cannot write there ({exc.strerror or exc}); the training images "
                f"stay in RAM")
            return None
        try:
            redo = False
            for k, i in enumerate(indices):
                im = _decode_resized(store, int(i))
                flat = im.reshape(-1, im.shape[2])
                if flat.shape[1] > channels:
                    redo = True
                    break
                out[offsets[k]:offsets[k + 1], :flat.shape[1]] = flat
                if flat.shape[1] < channels:
                    out[offsets[k]:offsets[k + 1], 3] = 255
            if redo:
                del out
                tmp.unlink(missing_ok=True)
                channels = 4
                continue
            out.flush()
            del out
            os.replace(tmp, path)
        except OSError as exc:  # a full disk while building: RAM instead
            tmp.unlink(missing_ok=True)
            log(f"[data] image cache {folder}: cannot write {path.name} ({exc.strerror or exc}); the training "
                f"images stay in RAM")
            return None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        log(f"[data] image cache: {len(indices)} images, {n * channels / 2 ** 20:.0f} MiB -> {path}")
        return np.memmap(path, dtype=np.uint8, mode="c", shape=(n, channels)), channels
    raise AssertionError("unreachable")
