"""Writing results: every file the project produces goes through here.

One rule for all of them: write to a temporary name in the target's folder, then rename it over the
target (``os.replace`` is atomic within one file system), so a crash or a full disk never leaves a
truncated file where a good one was. The temporary file is created by ``tempfile.mkstemp`` (mode
0600, so nothing half-written is ever readable by others); before the rename it is given the
permissions an ordinary ``open()`` would have given it (0666 minus the process umask), so renders,
meshes and metrics stay readable by the user's group or web server.

Helpers: :func:`atomic_write` (any writer), :func:`write_json`, :func:`write_text`, :func:`write_png`,
:func:`write_figure` (matplotlib), :func:`write_video` (H.264 mp4), :func:`contact_sheet` (a titled
grid of images).
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence

import numpy as np

from .errors import NerfAppError

__all__ = ["atomic_write", "write_json", "write_text", "write_png", "write_figure", "write_video",
           "contact_sheet", "to_uint8", "default_file_mode"]


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0666 minus the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp_path)``, then rename the temp file onto ``path`` (same folder: atomic).

    The temp name keeps ``path``'s suffix, so writers that pick a format by extension work. On any
    failure the temp file is removed and ``path`` is left exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=str(path.parent))
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise_if_disk_full(exc, path)
        raise


def raise_if_disk_full(exc: OSError, path) -> None:
    """A full disk (or quota) as one clear project error; anything else is left to the caller."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise NerfAppError(f"no space left on device while writing {path}; the previous copy of it is kept "
                           f"(free some space and run the command again)") from None


def write_text(path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def write_json(path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8 (rounded); uint8 passes through."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(path, image: np.ndarray) -> None:
    """``[H, W]``, ``[H, W, 1|3|4]`` float in [0, 1] or uint8 -> PNG."""
    import imageio.v3 as iio
    data = to_uint8(image)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    atomic_write(path, lambda tmp: iio.imwrite(tmp, data, extension=".png"))


def write_figure(path, fig, dpi: int = 100, close: bool = True) -> None:
    """A matplotlib figure -> PNG (the format comes from ``path``'s suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt))
    if close:
        import matplotlib.pyplot as plt
        plt.close(fig)


def write_video(path, frames: Iterable[np.ndarray], fps: int = 24) -> None:
    """H.264 mp4 (yuv420p, plays everywhere) through imageio-ffmpeg; frames float [0,1] or uint8."""
    import imageio.v2 as imageio

    def write(tmp):
        with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                macro_block_size=2, pixelformat="yuv420p") as w:
            for fr in frames:
                w.append_data(to_uint8(fr))
    atomic_write(path, write)


def contact_sheet(path, rows: Sequence[Sequence[np.ndarray]], column_titles: Optional[List[str]] = None,
                  labels: Optional[Sequence[Optional[str]]] = None, tile: Optional[int] = None) -> None:
    """A grid of images as one PNG: ``rows[i][j]`` is the tile in row i, column j (float [0,1] or
    uint8, any sizes: each is fitted into a ``tile``-pixel square, default the largest side of the first
    image capped at 400). ``column_titles`` label the columns above the first row; ``labels[i]`` (one per
    tile, row-major, ``None`` for none) is written into a tile's top-left corner."""
    from PIL import Image, ImageDraw

    rows = [list(r) for r in rows]
    if not rows or not rows[0]:
        raise ValueError("contact_sheet needs at least one image")
    n_cols = max(len(r) for r in rows)
    first = np.asarray(rows[0][0])
    size = int(tile or min(400, max(first.shape[:2])))
    head = 18 if column_titles else 0
    sheet = Image.new("RGB", (n_cols * size, head + len(rows) * size), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(column_titles or []):
        draw.text((j * size + 4, 3), str(title), fill=(0, 0, 0))
    k = 0
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            data = to_uint8(img)
            if data.ndim == 2:
                data = np.repeat(data[..., None], 3, axis=2)
            im = Image.fromarray(data[..., :3])
            scale = size / max(im.size)
            im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.BILINEAR)
            x, y = j * size + (size - im.size[0]) // 2, head + i * size + (size - im.size[1]) // 2
            sheet.paste(im, (x, y))
            label = labels[k] if labels is not None and k < len(labels) else None
            if label:
                draw.text((j * size + 4, head + i * size + 4), str(label), fill=(20, 20, 20))
            k += 1
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))


def grid(tiles: Sequence[np.ndarray], cols: int) -> List[List[np.ndarray]]:
    """Tiles in row-major order -> rows of ``cols`` (for :func:`contact_sheet`)."""
    cols = max(1, min(cols, len(tiles)))
    return [list(tiles[r * cols:(r + 1) * cols]) for r in range(math.ceil(len(tiles) / cols))]
