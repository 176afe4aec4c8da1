"""Image files: header sizes, lazy decoding to uint8 with an optional downscale, alpha compositing.

Images are decoded with OpenCV from bytes we read ourselves (so every open goes through one place
and non-ASCII paths work). ``IMREAD_UNCHANGED`` keeps alpha and ignores EXIF orientation, which is
what the poses were computed against (see the data README).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DatasetError, reraise_if_bug

Background = Union[str, Sequence[float]]


def header_info(path: Path) -> Tuple[int, int, bool]:
    """``(width, height, has_alpha)`` from the file header only (no pixel decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            return int(im.size[0]), int(im.size[1]), has_alpha
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DatasetError(path, f"not a readable image ({exc.__class__.__name__}: {exc})"[:200]) from None
    except Exception as exc:  # PIL raises assorted errors on corrupt headers (struct.error, IndexError ...)
        reraise_if_bug(exc)  # but not MemoryError, nor a mistake in the call above
        raise DatasetError(path, f"not a readable image ({exc.__class__.__name__})") from None


def decode(path: Path) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (16-bit files are reduced to 8 bits)."""
    import cv2

    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(path, f"cannot read image: {exc.strerror or exc}") from None
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise DatasetError(path, "cannot decode image")
    if img.dtype == np.uint16:
        img = (img.astype(np.uint32) * 255 + 32767) // 65535
    elif img.dtype != np.uint8:
        img = np.clip(np.nan_to_num(img.astype(np.float32)) * 255.0 + 0.5, 0, 255)
    img = img.astype(np.uint8, copy=False)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 3:
        img = img[:, :, ::-1]
    elif img.shape[2] == 4:
        img = img[:, :, [2, 1, 0, 3]]
    elif img.shape[2] == 2:  # grey + alpha
        img = img[:, :, [0, 0, 0, 1]]
    return np.ascontiguousarray(img)


def resize_area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Box-filter downscale (``cv2.INTER_AREA``), the filter the datasets' own half-res copies use."""
    import cv2

    if img.shape[1] == width and img.shape[0] == height:
        return img
    out = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return out if out.ndim == 3 else out[:, :, None]


def downscaled_size(width: int, height: int, factor: float) -> Tuple[int, int]:
    return max(1, int(round(width / factor))), max(1, int(round(height / factor)))


def background_colour(background: Background) -> Optional[np.ndarray]:
    """RGB in [0, 1] for "white"/"black"/a triple; None for "random" and "keep" (chosen per ray)."""
    if isinstance(background, str):
        named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
        if background in named:
            return np.array(named[background], np.float32)
        if background in ("random", "keep"):
            return None
        raise ValueError(f"background must be white, black, random, keep or an RGB triple, not {background!r}")
    colour = np.asarray(background, np.float32).reshape(-1)
    if colour.size != 3:
        raise ValueError(f"background colour needs 3 values, got {colour.size}")
    return colour


def composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Float RGB of straight-alpha RGBA (uint8 or float in [0,1]) over ``background`` (broadcastable)."""
    x = rgba.astype(np.float32) / 255.0 if rgba.dtype == np.uint8 else rgba
    if x.shape[-1] == 3:
        return x
    a = x[..., 3:4]
    return x[..., :3] * a + background * (1.0 - a)


class ImageStore:
    """Lazily decoded images of a scene at one resolution, kept as uint8 after first use.

    ``sizes`` are the target ``(width, height)`` per image (already divided by the downscale factor);
    ``source_sizes`` what the cameras in the file say, checked against each decoded image.
    """

    def __init__(self, paths: List[Path], source_sizes: List[Tuple[int, int]], sizes: List[Tuple[int, int]],
                 mask_paths: Optional[List[Path]] = None, cache_bytes: int = 8 << 30):
        self.paths = list(paths)
        self.source_sizes = list(source_sizes)
        self.sizes = list(sizes)
        self.mask_paths = mask_paths
        self.cache_bytes = cache_bytes
        self._cache: Dict[int, np.ndarray] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, keep: bool = True) -> np.ndarray:
        """uint8 ``(H, W, C)``, C = 3 (RGB) or 4 (RGBA), at the store's resolution; ``keep=False`` does not add
        a newly decoded image to the RAM cache (the ray sampler copies every training image into its own
        packed buffer, and caching them too held the training pixels twice)."""
        if index in self._cache:
            return self._cache[index]
        img = decode(self.paths[index])
        expected = self.source_sizes[index]
        if (img.shape[1], img.shape[0]) != tuple(expected):
            raise DatasetError(self.paths[index], f"image is {img.shape[1]}x{img.shape[0]} but its camera says "
                               f"{expected[0]}x{expected[1]}", "size")
        img = resize_area(img, *self.sizes[index])
        if keep and self._cached_bytes + img.nbytes <= self.cache_bytes:
            self._cache[index] = img
            self._cached_bytes += img.nbytes
        return img

    def check_decodable(self, indices) -> None:
        """Decode each image once (not cached) and check its size, so a corrupt held-out image is found
        when training starts rather than at ``eval`` ten minutes later. About 30 ms per 1080p JPEG."""
        for i in indices:
            i = int(i)
            if i in self._cache:
                continue
            img = decode(self.paths[i])
            if (img.shape[1], img.shape[0]) != tuple(self.source_sizes[i]):
                raise DatasetError(self.paths[i], f"image is {img.shape[1]}x{img.shape[0]} but its camera says "
                                   f"{self.source_sizes[i][0]}x{self.source_sizes[i][1]}", "size")

    def rgb(self, index: int, background: Background = "white", keep: bool = True) -> np.ndarray:
        """float32 ``(H, W, 3)`` in [0, 1], alpha composited over a fixed background; ``keep=False``: a newly
        decoded image is not added to the RAM cache (a pass over the views that reads each once: eval, export)."""
        colour = background_colour(background)
        if colour is None:
            raise ValueError("a whole image needs a fixed background (white, black or RGB)")
        return composite(self.load(index, keep=keep), colour)

    def mask(self, index: int) -> Optional[np.ndarray]:
        """bool ``(H, W)`` (True = keep) or None when the scene has no masks."""
        if not self.mask_paths:
            return None
        m = decode(self.mask_paths[index])[:, :, 0]
        expected = self.source_sizes[index]
        if (m.shape[1], m.shape[0]) != tuple(expected):  # a stretched mask would cut the wrong pixels
            raise DatasetError(self.mask_paths[index], f"mask is {m.shape[1]}x{m.shape[0]} but its image is "
                               f"{expected[0]}x{expected[1]}", "size")
        m = resize_area(m[:, :, None], *self.sizes[index])[:, :, 0]
        return m >= 128

    def drop_cache(self) -> None:
        self._cache.clear()
        self._cached_bytes = 0
