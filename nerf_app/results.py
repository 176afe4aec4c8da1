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

Output paths are input too: :func:`check_output` is run by the CLI on every output flag before a verb
starts (a folder where a file is wanted, a path under a file, ``/dev/null``, a pseudo-filesystem or
read-only folder, a full disk: one :class:`~nerf_app.errors.OutputError` line naming the flag, nothing
touched). What no up-front check can see (a disk that fills while a file is written, a file-size limit)
is caught by :func:`atomic_write`: the temp file and any folder it made are removed, the target is left
as it was, and the error is one line naming the flag the path came from.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from .errors import NerfAppError, OutputError

__all__ = ["atomic_write", "write_json", "write_text", "write_png", "write_figure", "write_video",
           "contact_sheet", "to_uint8", "default_file_mode", "check_output", "register_output",
           "clear_outputs", "OutputError"]

# the kinds of output flags: one file (metrics, a render, a plot), a mesh file (its texture and .mtl are
# written beside it), a folder (a run, a capture, a scene)
OUTPUT_KINDS = ("file", "mesh", "folder")
_NAME_MAX = 255

# absolute path -> the flag it came from (filled by the CLI through check_output), so a write that fails
# later names the flag: ``--out runs/x: cannot write runs/x/checkpoints/last.pt: no space left ...``
_OUTPUTS: Dict[str, tuple] = {}  # absolute path -> (flag, the path as the user wrote it)


def register_output(path, flag: str) -> None:
    _OUTPUTS[os.path.abspath(os.fsdecode(path))] = (flag, os.fsdecode(path))


def clear_outputs() -> None:
    _OUTPUTS.clear()


def _registered(path):
    """``(root, flag, as written)``: the registered output that is ``path`` or the nearest folder above it."""
    p = os.path.abspath(os.fsdecode(path))
    best = None
    for root, (flag, text) in _OUTPUTS.items():
        if (p == root or p.startswith(root.rstrip(os.sep) + os.sep)) and (best is None or len(root) > len(best[0])):
            best = (root, flag, text)
    return best


def output_flag(path) -> Optional[str]:
    """The flag whose registered path is ``path`` or a folder above it (the nearest), else None."""
    found = _registered(path)
    return found[1] if found else None


# an OSError's errno as a few words a user can act on
_REASONS = {
    errno.ENOSPC: "no space left on device (free some space and run the command again)",
    errno.EDQUOT: "no space left on device (free some space and run the command again)",
    errno.EFBIG: "file too large (the process's file-size limit, ulimit -f, or the file system's)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a folder: name a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOENT: "this place does not accept new files",
    errno.EEXIST: "exists and is not a regular file (a device, pipe or socket): name a regular file",
}


def _reason(exc: OSError) -> str:
    return _REASONS.get(exc.errno, exc.strerror or str(exc))


def _probe_new_file(folder: str) -> Optional[OSError]:
    """Whether ``folder`` accepts a new file, leaving nothing behind: an O_TMPFILE (nameless) file where
    the file system has them, else a named temp file removed at once. Returns the error, or None."""
    tmpfile = getattr(os, "O_TMPFILE", None)
    if tmpfile is not None:
        try:
            fd = os.open(folder, tmpfile | os.O_WRONLY, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.EISDIR):
                return exc
        else:
            os.close(fd)
            return None
    try:
        fd, name = tempfile.mkstemp(prefix=".nerf-app-probe.", dir=folder)
    except OSError as exc:
        return exc
    os.close(fd)
    os.unlink(name)
    return None


def check_output(path, flag: str, kind: str = "file") -> Path:
    """Refuse, before any work, an output path that cannot be written; register it for later messages.

    ``kind`` is ``file`` or ``mesh`` (one file is wanted: not an existing folder, not a device or pipe,
    no trailing '/') or ``folder`` (a folder is made or filled: not an existing file). For both: not empty,
    no NUL, no name over 255 bytes, not under a file, and the nearest existing folder must accept a new file
    (a probe that leaves nothing: a kernel pseudo-filesystem such as /proc or /sys refuses) on a file system
    that is neither read-only nor full. Raises :class:`OutputError` naming ``flag``; returns the path."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {OUTPUT_KINDS}, got {kind!r}")
    text = os.fsdecode(path) if path is not None else ""
    if not text.strip():
        raise OutputError(repr(text), "an empty name: name a " + ("folder" if kind == "folder" else "file"), flag)
    if "\x00" in text:
        raise OutputError(repr(text), "the name contains a NUL byte", flag)
    if any(len(os.fsencode(part)) > _NAME_MAX for part in text.split(os.sep)):
        raise OutputError(text[:80] + "...", f"a name in the path is longer than {_NAME_MAX} bytes", flag)
    want = "folder" if kind == "folder" else "file"
    if kind != "folder" and (text.endswith(os.sep) or text.endswith(os.sep + ".") or os.path.basename(text) in (".", "..")):
        raise OutputError(text, "names a folder (it ends in '/' or '.'): name a file", flag)
    p = Path(text)
    # walk the path as the OS will (os.path, not pathlib: Path("f/.") is "f"): every folder it goes
    # through must be a folder, and a ".." may only follow a folder that exists (a command would have to
    # make "missing/" to reach "missing/.."; the folder would be left behind)
    parts = text.split(os.sep)
    prefix = os.sep if text.startswith(os.sep) else ""
    for i, part in enumerate(parts[:-1]):
        if not part:
            continue
        prefix = os.path.join(prefix, part) if prefix else part
        if os.path.lexists(prefix) and not os.path.isdir(prefix):
            raise OutputError(text, f"{prefix} is a file, not a folder: a path cannot go under a file", flag)
        if not os.path.lexists(prefix) and ".." in parts[i + 1:]:
            raise OutputError(text, f"'..' after {prefix}, which does not exist: name the folder directly", flag)
    try:
        st = os.stat(text)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(text, _reason(exc), flag) from None
    if st is None and kind == "folder" and parts[-1] in (".", ".."):
        raise OutputError(text, "names a folder by '.' or '..' that does not exist: name the folder directly", flag)
    if st is not None and kind == "folder" and os.path.realpath(text) == os.path.realpath(os.sep):
        raise OutputError(text, "is the root of the file system: name a folder of its own", flag)
    if st is not None:
        if kind == "folder" and not stat.S_ISDIR(st.st_mode):
            raise OutputError(text, "exists and is not a folder: name a folder", flag)
        if kind != "folder":
            if stat.S_ISDIR(st.st_mode):
                raise OutputError(text, "is a folder: name a file (e.g. a file inside it)", flag)
            if not stat.S_ISREG(st.st_mode):
                raise OutputError(text, "exists and is not a regular file (a device, pipe or socket): "
                                        "name a regular file", flag)
    # the nearest folder that exists: the one that will receive the new file or folder
    if st is not None and kind == "folder":
        base = text
    else:
        base = os.path.dirname(text.rstrip(os.sep)) or "."
        while not os.path.lexists(base) and os.path.dirname(base) not in ("", base):
            base = os.path.dirname(base)
        if not os.path.lexists(base):
            base = "." if not base.startswith(os.sep) else os.sep
    base_text = base
    if not os.path.isdir(base_text):
        raise OutputError(text, f"{base_text} is a file, not a folder: a path cannot go under a file", flag)
    try:
        fs = os.statvfs(base_text)
    except OSError:
        fs = None
    if fs is not None and fs.f_flag & getattr(os, "ST_RDONLY", 1):
        raise OutputError(text, f"{base_text} is on a read-only file system", flag)
    if fs is not None and fs.f_blocks > 0 and fs.f_bavail == 0:
        raise OutputError(text, f"no space left on device ({base_text} is full; free some space and run the "
                                f"command again)", flag)
    problem = _probe_new_file(base_text)
    if problem is not None:
        why = "" if problem.errno == errno.ENOENT else f" ({_reason(problem)})"  # ENOENT's reason says the same
        raise OutputError(text, f"{base_text} does not accept new files{why}", flag)
    register_output(text, flag)
    return p


def is_current_or_above(path) -> bool:
    """Whether ``path`` is the current folder or a folder above it: never deleted or emptied by a command
    (``demo --out ""`` once deleted a whole checkout)."""
    here = Path.cwd().resolve()
    real = Path(path).resolve()
    return real == here or real in here.parents


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0666 minus the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _make_parents(folder: Path) -> List[Path]:
    """``mkdir -p folder``; returns the folders it created, deepest first (to undo)."""
    missing = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: List[Path]) -> None:
    for d in folders:  # deepest first; only folders this call created, only while empty
        try:
            os.rmdir(d)
        except OSError:
            break


def write_error(exc: OSError, path) -> OutputError:
    """A failed write as one line naming the output flag the path came from (when the CLI registered one)."""
    found = _registered(path)
    if found is None:
        return OutputError(path, f"cannot write it: {_reason(exc)}; nothing was replaced")
    root, flag, text = found
    inner = "" if os.path.abspath(os.fsdecode(path)) == root else f"cannot write {path}: "
    return OutputError(text, f"{inner}{_reason(exc)}; nothing was replaced", flag)


def atomic_write(path, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp_path)``, then rename the temp file onto ``path`` (same folder: atomic).

    The temp name keeps ``path``'s suffix, so writers that pick a format by extension work. On any
    failure the temp file and the folders this call made are removed and ``path`` is left exactly as it
    was; a failed write (an OSError: full disk, file-size limit, read-only or refusing folder, a folder in
    the way) is raised as one :class:`OutputError` line naming the output flag.
    """
    path = Path(path)
    made: List[Path] = []
    tmp = None
    try:
        made = _make_parents(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=str(path.parent))
        os.close(fd)
        writer(tmp)
        os.chmod(tmp, default_file_mode())
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if os.path.exists(path) and not os.path.isfile(path):
            # a device, pipe or socket (``/dev/null`` as root): never renamed over
            raise OSError(errno.EEXIST, "exists and is not a regular file", str(path))
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
        _remove_empty(made)
        if isinstance(exc, OSError):
            raise write_error(exc, path) from None
        raise


def write_bytes(path, data: bytes) -> None:
    """Bytes (encoded in memory first, so an encoder never sees a half-written file) -> ``path``, synced."""
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def raise_if_disk_full(exc: OSError, path) -> None:
    """A full disk (or quota, or file-size limit) as one clear project error; anything else is left to the caller."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise write_error(exc, path) from None


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


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
    write_bytes(path, iio.imwrite("<bytes>", data, extension=".png"))  # encoded in memory


def write_figure(path, fig, dpi: int = 100, close: bool = True) -> None:
    """A matplotlib figure -> PNG (the format comes from ``path``'s suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=dpi, format=fmt)  # encoded in memory
    finally:
        if close:
            import matplotlib.pyplot as plt
            plt.close(fig)
    write_bytes(path, buf.getvalue())


def video_unavailable_reason() -> Optional[str]:
    """None when an mp4 can be written (imageio-ffmpeg and its ffmpeg binary), else why, in a few words."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg
        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # ImportError, or imageio-ffmpeg without a usable binary (RuntimeError)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
    return None


#: mp4 path -> the PNG-frame folder written in its place (when there was no imageio-ffmpeg)
WRITTEN_AS_FRAMES: Dict[str, str] = {}


def videos_as_written(result: Dict[str, Any]) -> Dict[str, Any]:
    """A render result whose videos that went to PNG frames (see :func:`write_video`) name their folders."""
    return {k: WRITTEN_AS_FRAMES.get(v, v) if isinstance(v, str) else v for k, v in result.items()}


def write_video(path, frames: Iterable[np.ndarray], fps: int = 24) -> Path:
    """H.264 mp4 (yuv420p, plays everywhere) through imageio-ffmpeg; frames float [0,1] or uint8. Returns what
    was written: ``path``, or, without imageio-ffmpeg, the folder ``<stem>_frames/`` of PNG frames (with
    one line on stderr, once per process, saying so and how to make the mp4)."""
    reason = video_unavailable_reason()
    if reason is not None:
        import sys
        path = Path(path)
        folder = path.with_name(path.stem + "_frames")
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("frame_*.png"):
            old.unlink()
        n = 0
        for n, frame in enumerate(frames, 1):
            write_png(folder / f"frame_{n - 1:04d}.png", frame)
        if not WRITTEN_AS_FRAMES:
            print(f"[render] no imageio-ffmpeg ({reason}): videos are written as PNG frames ({n} in {folder}/); "
                  f"make the mp4 with: ffmpeg -framerate {fps} -i {folder}/frame_%04d.png -c:v libx264 "
                  f"-pix_fmt yuv420p {path}", file=sys.stderr)
        WRITTEN_AS_FRAMES[str(path)] = str(folder)
        return folder
    import imageio.v2 as imageio

    def write(tmp):
        with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                macro_block_size=2, pixelformat="yuv420p") as w:
            for fr in frames:
                w.append_data(to_uint8(fr))
    atomic_write(path, write)
    return Path(path)


def _font(size: int):
    """Pillow's bundled scalable font at ``size`` pixels (Pillow < 10.1 has only its fixed 11-pixel one)."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=max(8, int(size)))
    except TypeError:
        return ImageFont.load_default()


def sheet_layout(shapes: Sequence[Sequence[Sequence[int]]], column_titles: Optional[List[str]] = None,
                 tile: Optional[int] = None, gap: int = 0) -> Dict[str, Any]:
    """Where :func:`contact_sheet` puts each tile: ``shapes[i][j] = (height, width)`` of the tile in row i,
    column j -> ``{"size", "scale"[i][j], "x"[j], "y"[i], "widths"[j], "heights"[i], "head", "font",
    "sheet": (width, height)}``. Each tile is scaled so its longer side is ``size`` (``tile``, default the
    first tile's longer side capped at 400); a column is as wide as its widest tile and a row as tall as its
    tallest, so tiles of one aspect (portrait or landscape) leave no gaps; ``gap`` pixels between cells. The
    column titles get a font about 1/14 of the narrowest column (at least 14 pixels), shrunk until every
    title fits its column."""
    n_cols = max(len(r) for r in shapes)
    size = int(tile or min(400, max(shapes[0][0][:2])))
    scale = [[size / max(h, w) for h, w in row] for row in shapes]
    dims = [[(max(1, round(h * s)), max(1, round(w * s))) for (h, w), s in zip(row, sc)]
            for row, sc in zip(shapes, scale)]
    widths = [max((r[j][1] for r in dims if j < len(r)), default=size) for j in range(n_cols)]
    heights = [max(h for h, _ in r) for r in dims]
    font, head = 0, 0
    if column_titles:
        from PIL import Image, ImageDraw
        font = max(14, min(widths) // 14)
        draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        while font > 10 and any(draw.textlength(str(t), font=_font(font)) > w - 8
                                for t, w in zip(column_titles, widths)):
            font -= 1
        head = int(font * 1.6)
    x = [sum(widths[:j]) + gap * j for j in range(n_cols)]
    y = [head + sum(heights[:i]) + gap * i for i in range(len(shapes))]
    return {"size": size, "scale": scale, "x": x, "y": y, "widths": widths, "heights": heights, "head": head,
            "font": font, "sheet": (x[-1] + widths[-1], y[-1] + heights[-1])}


def contact_sheet(path, rows: Sequence[Sequence[np.ndarray]], column_titles: Optional[List[str]] = None,
                  labels: Optional[Sequence[Optional[str]]] = None, tile: Optional[int] = None,
                  gap: int = 0) -> Dict[str, Any]:
    """A grid of images as one PNG: ``rows[i][j]`` is the tile in row i, column j (float [0,1] or
    uint8, any sizes), laid out by :func:`sheet_layout` (each scaled to ``tile`` pixels on its longer side,
    cells as big as their tiles, centred). ``column_titles`` label the columns above the first row in a
    readable font; ``labels[i]`` (one per tile, row-major, ``None`` for none) is written into a tile's
    top-left corner; ``gap`` white pixels between cells. Returns the layout."""
    from PIL import Image, ImageDraw

    rows = [list(r) for r in rows]
    if not rows or not rows[0]:
        raise ValueError("contact_sheet needs at least one image")
    rows = [[to_uint8(np.asarray(img)) for img in r] for r in rows]
    layout = sheet_layout([[img.shape[:2] for img in r] for r in rows], column_titles, tile, gap)
    sheet = Image.new("RGB", layout["sheet"], (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if column_titles:
        font = _font(layout["font"])
        for j, title in enumerate(column_titles[:len(layout["x"])]):
            draw.text((layout["x"][j] + 4, int(layout["font"] * 0.25)), str(title), fill=(0, 0, 0), font=font)
    k = 0
    for i, row in enumerate(rows):
        for j, data in enumerate(row):
            if data.ndim == 2:
                data = np.repeat(data[..., None], 3, axis=2)
            im = Image.fromarray(np.ascontiguousarray(data[..., :3]))
            s = layout["scale"][i][j]
            im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.BILINEAR)
            x = layout["x"][j] + (layout["widths"][j] - im.size[0]) // 2
            y = layout["y"][i] + (layout["heights"][i] - im.size[1]) // 2
            sheet.paste(im, (x, y))
            label = labels[k] if labels is not None and k < len(labels) else None
            if label:
                font = _font(max(12, layout["heights"][i] // 18))
                box = draw.textbbox((x + 4, y + 4), str(label), font=font)
                draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(255, 255, 255))
                draw.text((x + 4, y + 4), str(label), fill=(20, 20, 20), font=font)
            k += 1
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")  # encoded in memory
    write_bytes(path, buf.getvalue())
    return layout


def grid(tiles: Sequence[np.ndarray], cols: int) -> List[List[np.ndarray]]:
    """Tiles in row-major order -> rows of ``cols`` (for :func:`contact_sheet`)."""
    cols = max(1, min(cols, len(tiles)))
    return [list(tiles[r * cols:(r + 1) * cols]) for r in range(math.ceil(len(tiles) / cols))]
