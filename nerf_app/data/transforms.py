"""instant-ngp / nerfstudio / Blender ``transforms.json`` (one file, or ``transforms_{train,val,test}.json``).

- Poses: ``transform_matrix`` is camera-to-world with OpenGL camera axes (x right, y up, looking
  down -z); we flip the y and z camera axes to get OpenCV.
- Intrinsics: global keys, overridden per frame (``fl_x fl_y cx cy w h``, or ``camera_angle_x/y``
  from which ``f = 0.5 * w / tan(0.5 * angle)``). Missing ``w``/``h`` are read from the image header;
  a missing ``fl_y`` equals ``fl_x``; a missing principal point is the image centre.
- Distortion: ``k1 k2 p1 p2`` -> OPENCV; ``k3`` -> FULL_OPENCV (the r^6 term, as everyone reads
  it). A perspective ``k4`` is ambiguous: nerfstudio/multinerf read it as an r^8 term, OpenCV as the
  first rational denominator term; we take OpenCV's meaning only when ``k5``/``k6`` are present too
  (clearly OpenCV's 8-coefficient model) and refuse it otherwise rather than guess. Fisheye
  (``camera_model`` "OPENCV_FISHEYE" or ``is_fisheye``) -> OPENCV_FISHEYE with ``k1..k4``.
- ``file_path`` is relative to the JSON file, with or without an extension (Blender omits ".png").
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import DatasetError
from .cameras import Camera
from .capture import Capture
from .images import header_info
from .validate import (check_rotation, contained, finite_array, finite_number, image_size, read_text, report_missing,
                       safe_relative)

SPLITS = ("train", "val", "test")
_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".exr", ".webp")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y",
                   "k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2", "camera_model", "is_fisheye")
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips the camera's y and z axes (right-multiplied)


def find_transforms(path: Path) -> Optional[Dict[str, Path]]:
    """``{"all": file}`` or ``{"train": ..., "val": ..., "test": ...}`` for a scene folder or JSON file."""
    if path.is_file() and path.suffix == ".json":
        return {"all": path}
    single = path / "transforms.json"
    if single.is_file():
        return {"all": single}
    split_files = {s: path / f"transforms_{s}.json" for s in SPLITS}
    if any(p.is_file() for p in split_files.values()):
        return {s: p for s, p in split_files.items() if p.is_file()}
    return None


def _load_json(path: Path, root: Path) -> dict:
    try:
        data = json.loads(read_text(path, root))
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"invalid JSON: {exc.msg}", f"line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise DatasetError(path, "invalid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise DatasetError(path, f"expected a JSON object at the top, got {type(data).__name__}")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(path, "expected a non-empty list of frames", "frames")
    return data


def build_capture(files: Dict[str, Path], root: Path, check_images: bool = True) -> Capture:
    names, paths, masks, cameras, c2w, split_of = [], [], [], [], [], []
    meta: dict = {}
    missing: List[Path] = []
    cam_cache: Dict[tuple, Camera] = {}  # shared across split files: identical intrinsics, one Camera
    for split, path in files.items():
        data = _load_json(path, root)
        for key in ("aabb_scale", "scale", "offset", "aabb", "applied_transform", "ply_file_path"):
            if key in data:
                meta.setdefault(key, data[key])
        shared = {k: data[k] for k in _INTRINSIC_KEYS if k in data}
        # pixel-unit intrinsics shared by every frame but no w/h: each image's size comes from its file, so
        # images of different sizes would silently get the same principal point and focal length in pixels
        sizes_from_files: Dict[tuple, str] = {}
        for i, frame in enumerate(data["frames"]):
            field = f"frames[{i}]"
            if not isinstance(frame, dict):
                raise DatasetError(path, f"expected an object, got {type(frame).__name__}", field)
            name = frame.get("file_path")
            if not isinstance(name, str):
                raise DatasetError(path, "file_path must be a string", field + ".file_path")
            image = _resolve_image(name, path.parent, root, path, field + ".file_path")
            if image is None:
                missing.append(safe_relative(name, path.parent, path, field + ".file_path", root))
                continue
            pose = finite_array(frame.get("transform_matrix"), path, field + ".transform_matrix")
            if pose.shape == (3, 4):
                pose = np.vstack([pose, [0, 0, 0, 1]])
            if pose.shape != (4, 4):
                raise DatasetError(path, f"transform_matrix must be 4x4 or 3x4, got shape {pose.shape}",
                                   field + ".transform_matrix")
            if not np.allclose(pose[3], [0, 0, 0, 1], atol=1e-6):
                raise DatasetError(path, "transform_matrix bottom row must be [0, 0, 0, 1]", field + ".transform_matrix")
            check_rotation(pose[:3, :3], path, field + ".transform_matrix")
            intr = dict(shared)
            intr.update({k: frame[k] for k in _INTRINSIC_KEYS if k in frame})
            cameras.append(_camera(intr, image, path, field, cam_cache, check_images))
            if ("w" not in intr or "h" not in intr) and any(k in shared and k not in frame for k in ("fl_x", "cx", "cy")):
                size = (cameras[-1].width, cameras[-1].height)
                sizes_from_files.setdefault(size, image.name)
                if len(sizes_from_files) > 1:
                    (a, na), (b, nb) = list(sizes_from_files.items())[:2]
                    raise DatasetError(path, f"images differ in size ({na} {a[0]}x{a[1]}, {nb} {b[0]}x{b[1]}) but share "
                                       "one set of pixel intrinsics without w/h: give w and h (or per-frame intrinsics)",
                                       field)
            if "mask_path" in frame:
                masks.append(safe_relative(frame["mask_path"], path.parent, path, field + ".mask_path", root))
            names.append(name)
            paths.append(image)
            c2w.append(pose @ GL_TO_CV)
            split_of.append(split)
    if missing:
        report_missing(missing, next(iter(files.values())))
    if masks and len(masks) != len(paths):
        raise DatasetError(next(iter(files.values())), "mask_path is given for some frames but not all", "mask_path")
    if masks:
        report_missing(masks, next(iter(files.values())), "masks")
    split_of = np.array(split_of)
    splits = None if list(files) == ["all"] else {s: np.flatnonzero(split_of == s) for s in files}
    bounded = False
    if check_images:
        bounded = header_info(paths[0])[2]  # Blender scenes: RGBA around a bounded object
    first = next(iter(files.values()))
    return Capture(format="transforms", root=root, source=first, names=names, image_paths=paths, cameras=cameras,
                   c2w=np.stack(c2w).astype(np.float64), splits=splits, mask_paths=masks or None, bounded=bounded,
                   meta=meta)


def _resolve_image(name: str, base: Path, root: Path, source: Path, field: str) -> Optional[Path]:
    """The image a ``file_path`` means, trying the usual extensions when it has none or the plain
    name does not exist. Every candidate is checked to stay inside the scene folder first."""
    candidate = safe_relative(name, base, source, field, root)
    if candidate.is_file():
        return candidate
    for ext in _EXTENSIONS:
        # each guessed name is checked too: `images/0001.png` may be a symlink out of the scene
        with_ext = contained(candidate.with_name(candidate.name + ext), root, source, field, "image path")
        if with_ext.is_file():
            return with_ext
    return None


def _number(intr, key, path, field) -> Optional[float]:
    if key not in intr:
        return None
    return finite_number(intr[key], path, f"{field}.{key}")


def _camera(intr: dict, image: Path, path: Path, field: str, cache: Dict[tuple, Camera], check_images: bool) -> Camera:
    w, h = _number(intr, "w", path, field), _number(intr, "h", path, field)
    if w is None or h is None or check_images:
        iw, ih, _ = header_info(image)
        if w is not None and h is not None and (round(w), round(h)) != (iw, ih):
            raise DatasetError(path, f"w x h = {w:g}x{h:g} but {image.name} is {iw}x{ih}", field)
        w, h = (iw if w is None else w), (ih if h is None else h)
    w, h = image_size(w, h, path, field + ".w/h")
    fx, fy = _number(intr, "fl_x", path, field), _number(intr, "fl_y", path, field)
    if fx is None:
        fx = _focal_from_angle(intr, "camera_angle_x", w, path, field)
    if fy is None:
        fy = _focal_from_angle(intr, "camera_angle_y", h, path, field) if "camera_angle_y" in intr and "fl_x" not in intr else fx
    if fx is None:
        raise DatasetError(path, "no focal length: give fl_x or camera_angle_x", field)
    if not (fx > 0 and fy > 0):
        raise DatasetError(path, f"focal lengths must be positive, got {fx:g}, {fy:g}", field)
    cx = _number(intr, "cx", path, field)
    cy = _number(intr, "cy", path, field)
    cx = w / 2.0 if cx is None else cx
    cy = h / 2.0 if cy is None else cy
    dist = {k: (_number(intr, k, path, field) or 0.0) for k in ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")}
    model = _model_name(intr, dist, path, field)
    if model == "OPENCV_FISHEYE":
        params = [fx, fy, cx, cy, dist["k1"], dist["k2"], dist["k3"], dist["k4"]]
    elif model == "FULL_OPENCV":
        params = [fx, fy, cx, cy] + [dist[k] for k in ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")]
    elif model == "OPENCV":
        params = [fx, fy, cx, cy, dist["k1"], dist["k2"], dist["p1"], dist["p2"]]
    else:
        params = [fx, fy, cx, cy]
    key = (model, w, h, tuple(params))
    if key not in cache:  # frames sharing intrinsics share one Camera object
        cache[key] = Camera(model, w, h, params)
    return cache[key]


def _focal_from_angle(intr, key, size, path, field) -> Optional[float]:
    angle = _number(intr, key, path, field)
    if angle is None:
        return None
    if not 0 < angle < math.pi:
        raise DatasetError(path, f"{key} must be in (0, pi) radians, got {angle:g}", f"{field}.{key}")
    return 0.5 * size / math.tan(0.5 * angle)


def _model_name(intr, dist, path, field) -> str:
    model = intr.get("camera_model")
    fisheye = intr.get("is_fisheye", False)
    if model is not None and not isinstance(model, str):
        raise DatasetError(path, "camera_model must be a string", f"{field}.camera_model")
    if fisheye is True or model in ("OPENCV_FISHEYE", "FISHEYE"):
        if dist["p1"] or dist["p2"] or dist["k5"] or dist["k6"]:
            raise DatasetError(path, "fisheye cameras take only k1..k4", field)
        return "OPENCV_FISHEYE"
    if model not in (None, "OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "FULL_OPENCV"):
        raise DatasetError(path, f"unsupported camera_model {model[:40]!r} (supported: OPENCV, OPENCV_FISHEYE, "
                           "FULL_OPENCV, PINHOLE, SIMPLE_PINHOLE)", f"{field}.camera_model")
    if dist["k4"] and not (dist["k5"] or dist["k6"]):
        raise DatasetError(path, "k4 on a perspective camera is ambiguous (an r^8 term for nerfstudio, a rational "
                           "denominator term for OpenCV); give k5/k6 for OpenCV's model or use a fisheye model",
                           f"{field}.k4")
    if model == "FULL_OPENCV" or any(dist[k] for k in ("k3", "k4", "k5", "k6")):
        return "FULL_OPENCV"
    if any(dist[k] for k in ("k1", "k2", "p1", "p2")):
        return "OPENCV"
    return "PINHOLE"
