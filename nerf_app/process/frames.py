"""Inputs of `nerf-app process`: a folder of photos or a video.

- :func:`list_images` finds the JPEG/PNG files of a folder (subfolders too; names relative to it).
- :func:`copy_images` puts them into the capture's ``images/`` under their own names: byte for byte,
  except that a photo with an EXIF orientation tag is rotated upright (the loaders never apply EXIF
  orientation, so the stored pixels must already be the way the photo is meant to be seen).
- :func:`select_video_frames` decodes a video once, scores every frame's sharpness (variance of the
  Laplacian of a small grey copy) and keeps the sharpest frame of each of ``n`` equal windows of the
  video. Rotated (portrait) phone videos come out upright: ffmpeg applies the rotation stored in the
  file while decoding, and the frame size is taken from the decoded stream, not the file header.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DatasetError, reraise_if_bug

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: score frames on a grey copy whose longer side is at most this (fast, and insensitive to noise)
SHARPNESS_SIZE = 640


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def list_images(folder: Path, exclude: Sequence[Path] = ()) -> List[str]:
    """Relative POSIX names of the images under ``folder`` (sorted; hidden files and folders and
    anything under ``exclude`` skipped)."""
    folder = Path(folder)
    excluded = [Path(os.path.abspath(p)) for p in exclude]
    names = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(os.path.abspath(dirpath))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not any(_is_within(here / d, e) for e in excluded))
        for f in filenames:
            if f.startswith(".") or not is_image_name(f):
                continue
            names.append((here / f).relative_to(os.path.abspath(folder)).as_posix())
    return sorted(names)


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False


@dataclass
class ImageInfo:
    name: str
    width: int
    height: int
    camera_key: Tuple  # images with equal keys share one camera
    rotated: bool = False  # EXIF orientation applied while copying


def _exif_orientation(im) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block is not a broken image
        reraise_if_bug(exc)   # but a MemoryError or a mistake in the call is not a broken EXIF block
        return 1


def _exif_camera(im) -> Tuple:
    """(make, model, focal length) from EXIF, for grouping photos by camera; empty when absent."""
    try:
        exif = im.getexif()
        make, model = str(exif.get(0x010F, "")).strip(), str(exif.get(0x0110, "")).strip()
        focal = exif.get_ifd(0x8769).get(0x920A)
        return (make, model, float(focal) if focal is not None else None)
    except Exception as exc:  # noqa: BLE001 - as in _exif_orientation
        reraise_if_bug(exc)
        return ()


def copy_images(src: Path, names: Sequence[str], dst: Path,
                progress: Optional[Callable[[int], None]] = None) -> Tuple[List[ImageInfo], Dict[str, str]]:
    """Copy ``names`` from ``src`` into ``dst`` (same relative names). Returns the infos of the
    images that opened and ``{name: reason}`` for those that did not (listed in the report)."""
    from PIL import Image, ImageOps

    infos, unreadable = [], {}
    for name in names:
        source, target = src / name, dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with Image.open(source) as im:
                im.load()  # decode fully: a truncated JPEG fails here, not inside COLMAP
                orientation = _exif_orientation(im)
                camera = _exif_camera(im)
                if orientation != 1:
                    upright = ImageOps.exif_transpose(im)
                    if upright.mode not in ("RGB", "L", "RGBA"):
                        upright = upright.convert("RGB")
                    kwargs = {"quality": 95, "subsampling": 0} if target.suffix.lower() in (".jpg", ".jpeg") else {}
                    upright.save(target, **kwargs)
                    width, height = upright.size
                else:
                    shutil.copyfile(source, target)
                    width, height = im.size
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable"
            if target.exists():
                target.unlink()
            reraise_if_bug(exc)   # but not MemoryError, nor a mistake in the code above
            unreadable[name] = f"{type(exc).__name__}: {exc}"[:200]
            if progress:
                progress(1)
            continue
        folder = str(Path(name).parent)
        infos.append(ImageInfo(name, width, height, (folder, width, height) + camera, rotated=orientation != 1))
        if progress:
            progress(1)
    return infos, unreadable


# --------------------------------------------------------------------------- video

def sharpness(frame: np.ndarray) -> float:
    """Variance of the Laplacian of a grey copy scaled to at most SHARPNESS_SIZE pixels: high for
    crisp frames, low for motion-blurred or defocused ones."""
    import cv2

    grey = cv2.cvtColor(frame[..., :3], cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    scale = SHARPNESS_SIZE / max(grey.shape[:2])
    if scale < 1:
        grey = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass
class VideoSelection:
    fps: float
    width: int
    height: int
    rotation: float
    frames_decoded: int
    frames_estimated: int
    kept: List[int] = field(default_factory=list)  # source frame indices, in order
    names: List[str] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)  # sharpness of the kept frames
    median_score: float = 0.0  # over all decoded frames


def _open_video(path: Path):
    import logging

    import imageio_ffmpeg

    log = logging.getLogger("imageio_ffmpeg")
    level = log.level
    log.setLevel(logging.ERROR)  # "frame size differs from the source": a rotated video, expected
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = gen.__next__()
    except Exception as exc:  # noqa: BLE001 - ffmpeg's message is the useful part
        reraise_if_bug(exc)   # but not MemoryError, nor a mistake in the call above
        reason = str(exc).strip().splitlines()
        reason = next((line for line in reversed(reason) if line.strip()), type(exc).__name__)
        raise DatasetError(path, f"is not a folder of images and does not decode as a video ({reason[:160]})") from None
    finally:
        log.setLevel(level)
    return gen, meta


def select_video_frames(path: Path, n_frames: int, dst: Path,
                        progress_factory: Optional[Callable[[int], object]] = None) -> VideoSelection:
    """Decode ``path`` once and write the sharpest frame of each of ``n_frames`` equal windows to
    ``dst/frame_NNNNNN.jpg`` (NNNNNN = the frame's index in the video, so names sort in time)."""
    from PIL import Image

    gen, meta = _open_video(path)
    width, height = (int(v) for v in meta.get("size", (0, 0)))
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    # ffmpeg applies a stored display rotation while decoding; the decoded size is then the stored
    # size transposed (a portrait phone video comes out portrait)
    source = tuple(int(v) for v in meta.get("source_size", (width, height)))
    rotation = float(meta.get("rotate") or 0.0)
    if not rotation and source == (height, width) and source != (width, height):
        rotation = 90.0
    estimated = int(round(fps * duration)) if fps > 0 and duration > 0 else 0
    sel = VideoSelection(fps, width, height, rotation, 0, estimated)
    if estimated <= 0:
        gen.close()
        raise DatasetError(path, "video has no frame rate or duration in its header; cannot choose frames")
    n_windows = max(1, min(n_frames, estimated))
    bounds = np.linspace(0, estimated, n_windows + 1)
    bar = progress_factory(estimated) if progress_factory else None
    frame_bytes = width * height * 3
    all_scores: List[float] = []
    best: Optional[Tuple[float, int, np.ndarray]] = None
    window = 0
    dst.mkdir(parents=True, exist_ok=True)

    def flush():
        score, index, frame = best
        name = f"frame_{index:06d}.jpg"
        Image.fromarray(frame).save(dst / name, quality=95, subsampling=0)
        sel.kept.append(index)
        sel.names.append(name)
        sel.scores.append(score)

    try:
        for i, raw in enumerate(gen):
            if len(raw) != frame_bytes:
                raise DatasetError(path, f"decoded frame {i} has {len(raw)} bytes, expected {width}x{height}x3")
            frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
            # the window this frame belongs to (the last window takes any frames past the estimate)
            w = min(int(np.searchsorted(bounds, i, side="right")) - 1, n_windows - 1)
            if w != window and best is not None:
                flush()
                best = None
            window = w
            score = sharpness(frame)
            all_scores.append(score)
            if best is None or score > best[0]:
                best = (score, i, frame.copy())
            sel.frames_decoded = i + 1
            if bar is not None:
                bar.update(1)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001
        reraise_if_bug(exc)   # a decoder's complaint, not MemoryError nor a mistake in the loop above
        if sel.frames_decoded == 0:
            raise DatasetError(path, f"video does not decode ({str(exc).strip()[:160]})") from None
        # a truncated video: keep the frames that did decode
    finally:
        gen.close()
        if bar is not None:
            bar.close()
    if best is not None:
        flush()
    if sel.frames_decoded == 0:
        raise DatasetError(path, "video has no frames that decode")
    sel.median_score = float(np.median(all_scores))
    return sel
