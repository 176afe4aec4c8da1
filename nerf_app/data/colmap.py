"""COLMAP sparse models (``cameras``, ``images``, ``points3D``) in text and binary form.

The readers are strict: a truncated or oversized record, an unknown camera model or a wrong
parameter count, NaN/Inf, a non-unit quaternion, duplicate ids or dangling references all raise
:class:`DatasetError` with the file and the record (or byte offset). Counts read from a binary file
are checked against the bytes left before anything is allocated, so a corrupt count cannot make us
allocate gigabytes or loop for minutes.

Poses: ``images.*`` stores world-to-camera ``(qw, qx, qy, qz, tx, ty, tz)`` with an OpenCV camera
frame, which is already our convention; we invert it into a float64 camera-to-world matrix.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import DatasetError
from .cameras import MODELS_BY_ID, MODELS_BY_NAME, Camera
from .capture import Capture, SparsePoints
from .validate import finite_array, image_size, quaternion_to_rotation, read_bytes, read_text

_OBS_DTYPE = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
_TRACK_DTYPE = np.dtype([("image", "<i4"), ("idx", "<i4")])
_MAX_NAME = 4096


@dataclass
class ImageRecord:
    id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xy: np.ndarray  # (n, 2) float64 observations
    point_ids: np.ndarray  # (n,) int64, -1 where not triangulated
    field: str  # where it came from, for error messages


@dataclass
class PointRecords:
    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray
    track_point: np.ndarray  # row index into ids/xyz for each track element
    track_image: np.ndarray  # image id of each track element
    track_idx: np.ndarray  # point2D index within that image


# --------------------------------------------------------------------------- binary

class _Cursor:
    """Little-endian reads from bytes; running off the end is a DatasetError naming the offset."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.remaining():
            raise DatasetError(self.path, f"file truncated: needs {n} more bytes for {what}, {self.remaining()} left",
                               f"byte {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def count(self, what: str, min_record_bytes: int) -> int:
        (n,) = self.unpack("Q", f"the number of {what}")
        if n * min_record_bytes > self.remaining():
            raise DatasetError(self.path, f"truncated or corrupt: says {n} {what} but only {self.remaining()} bytes follow",
                               f"byte {self.pos - 8}")
        return n

    def array(self, dtype: np.dtype, n: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(n * dtype.itemsize, what), dtype=dtype)

    def cstring(self, what: str) -> str:
        end = self.data.find(b"\x00", self.pos, self.pos + _MAX_NAME + 1)
        if end < 0:
            raise DatasetError(self.path, f"{what} is not NUL-terminated within {_MAX_NAME} bytes", f"byte {self.pos}")
        raw = self.take(end - self.pos, what)
        self.pos += 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError(self.path, f"{what} is not UTF-8", f"byte {self.pos - len(raw) - 1}") from None

    def finish(self) -> None:
        if self.remaining():
            raise DatasetError(self.path, f"{self.remaining()} unexpected bytes after the last record", f"byte {self.pos}")


def read_cameras_binary(path: Path, root: Path) -> Dict[int, Camera]:
    cur = _Cursor(read_bytes(path, root), path)
    cameras: Dict[int, Camera] = {}
    for i in range(cur.count("cameras", 24)):
        start = cur.pos
        cam_id, model_id, width, height = cur.unpack("iiQQ", f"camera {i}")
        field = f"camera {cam_id} (byte {start})"
        model = MODELS_BY_ID.get(model_id)
        if model is None:
            raise DatasetError(path, f"unknown camera model id {model_id} (known: 0..{len(MODELS_BY_ID) - 1})", field)
        params = cur.array(np.dtype("<f8"), model.num_params, f"{model.name} parameters")
        _add_camera(cameras, cam_id, model.name, width, height, params, path, field)
    cur.finish()
    return cameras


def read_images_binary(path: Path, root: Path) -> List[ImageRecord]:
    cur = _Cursor(read_bytes(path, root), path)
    images = []
    for i in range(cur.count("images", 73)):
        start = cur.pos
        (image_id,) = cur.unpack("i", f"image {i} id")
        pose = cur.unpack("7d", f"image {image_id} pose")
        (camera_id,) = cur.unpack("i", f"image {image_id} camera id")
        name = cur.cstring(f"image {image_id} name")
        n = cur.count(f"points2D of image {image_id}", _OBS_DTYPE.itemsize)
        obs = cur.array(_OBS_DTYPE, n, f"points2D of image {image_id}")
        images.append(_image_record(image_id, pose, camera_id, name, obs["xy"], obs["id"], path,
                                    f"image {image_id} (byte {start})"))
    cur.finish()
    return images


def read_points3d_binary(path: Path, root: Path) -> PointRecords:
    cur = _Cursor(read_bytes(path, root), path)
    n = cur.count("points3D", 51)
    ids = np.empty(n, np.int64)
    xyz = np.empty((n, 3))
    rgb = np.empty((n, 3), np.uint8)
    err = np.empty(n)
    tracks = []
    for i in range(n):
        pid, x, y, z, r, g, b, e = cur.unpack("Q3d3Bd", f"point {i}")
        if pid >= 2**63:  # COLMAP's ids are far smaller; this is a corrupt record
            raise DatasetError(path, f"point3D id {pid} out of range", f"point {i} (byte {cur.pos - 43})")
        ids[i], xyz[i], rgb[i], err[i] = pid, (x, y, z), (r, g, b), e
        length = cur.count(f"track elements of point {pid}", _TRACK_DTYPE.itemsize)
        tracks.append(cur.array(_TRACK_DTYPE, length, f"track of point {pid}"))
    cur.finish()
    return _point_records(ids, xyz, rgb, err, tracks, path)


# --------------------------------------------------------------------------- text

def _records(text: str):
    """(line number, tokens) of the non-comment, non-empty lines."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line.split()


def _ints(tokens, path, field):
    try:
        values = [int(t) for t in tokens]
    except ValueError:
        raise DatasetError(path, f"expected integers, got {' '.join(tokens)[:60]!r}", field) from None
    if any(not -2**63 <= v < 2**63 for v in values):
        raise DatasetError(path, "integer out of the 64-bit range", field)
    return values


def _floats(tokens, path, field) -> np.ndarray:
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        raise DatasetError(path, f"expected numbers, got {' '.join(tokens)[:60]!r}", field) from None


def read_cameras_text(path: Path, root: Path) -> Dict[int, Camera]:
    cameras: Dict[int, Camera] = {}
    for number, tok in _records(read_text(path, root)):
        field = f"line {number}"
        if len(tok) < 4:
            raise DatasetError(path, "expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS...", field)
        model = MODELS_BY_NAME.get(tok[1])
        if model is None:
            raise DatasetError(path, f"unknown camera model {tok[1][:40]!r} (known: {', '.join(MODELS_BY_NAME)})", field)
        cam_id, width, height = _ints([tok[0], tok[2], tok[3]], path, field)
        params = _floats(tok[4:], path, field)
        if params.size != model.num_params:
            raise DatasetError(path, f"{model.name} takes {model.num_params} parameters "
                               f"({' '.join(model.params)}), got {params.size}", field)
        _add_camera(cameras, cam_id, model.name, width, height, params, path, field)
    return cameras


def read_images_text(path: Path, root: Path) -> List[ImageRecord]:
    lines = read_text(path, root).splitlines()
    images = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        field = f"line {i}"
        tok = line.split()
        # the name may contain spaces: it is everything after the 9th token
        parts = line.split(maxsplit=9)
        if len(parts) < 10:
            raise DatasetError(path, "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", field)
        image_id, camera_id = _ints([tok[0], tok[8]], path, field)
        pose = _floats(tok[1:8], path, field)
        # the POINTS2D line always follows, even when empty (COLMAP writes a blank line then)
        points_line = lines[i] if i < len(lines) else ""
        i += 1
        obs_tok = points_line.split()
        if len(obs_tok) % 3:
            raise DatasetError(path, f"POINTS2D needs triples (X Y POINT3D_ID), got {len(obs_tok)} values", f"line {i}")
        xy = _floats(obs_tok[0::3], path, f"line {i}"), _floats(obs_tok[1::3], path, f"line {i}")
        point_ids = np.array(_ints(obs_tok[2::3], path, f"line {i}"), dtype=np.int64) if obs_tok else np.zeros(0, np.int64)
        images.append(_image_record(image_id, pose, camera_id, parts[9], np.stack(xy, -1).reshape(-1, 2),
                                    point_ids, path, f"image {image_id} ({field})"))
    return images


def read_points3d_text(path: Path, root: Path) -> PointRecords:
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for number, tok in _records(read_text(path, root)):
        field = f"line {number}"
        if len(tok) < 8 or (len(tok) - 8) % 2:
            raise DatasetError(path, "expected POINT3D_ID X Y Z R G B ERROR (IMAGE_ID POINT2D_IDX)...", field)
        ids.append(_ints(tok[:1], path, field)[0])
        xyz.append(_floats(tok[1:4], path, field))
        colour = _ints(tok[4:7], path, field)
        if not all(0 <= c <= 255 for c in colour):
            raise DatasetError(path, f"colour {colour} is not 0..255", field)
        rgb.append(colour)
        err.append(_floats(tok[7:8], path, field)[0])
        track = _ints(tok[8:], path, field)
        tracks.append(np.array(list(zip(track[0::2], track[1::2])), dtype=np.int64).reshape(-1, 2))
    n = len(ids)
    return _point_records(np.array(ids, np.int64), np.array(xyz).reshape(n, 3), np.array(rgb, np.uint8).reshape(n, 3),
                          np.array(err, np.float64), tracks, path)


# --------------------------------------------------------------------------- shared validation

def _add_camera(cameras, cam_id, model, width, height, params, path, field):
    if cam_id in cameras:
        raise DatasetError(path, f"duplicate camera id {cam_id}", field)
    width, height = image_size(width, height, path, field)
    params = finite_array(params, path, field)
    cam = Camera(model, width, height, params)
    fx, fy = cam.fx, cam.fy
    if not (fx > 0 and fy > 0):
        raise DatasetError(path, f"focal length must be positive, got {fx:g}, {fy:g}", field)
    cameras[cam_id] = cam


def _image_record(image_id, pose, camera_id, name, xy, point_ids, path, field) -> ImageRecord:
    pose = finite_array(pose, path, field + " pose")
    xy = finite_array(xy, path, field + " points2D")
    return ImageRecord(int(image_id), pose[:4], pose[4:], int(camera_id), name, np.asarray(xy).reshape(-1, 2),
                       np.asarray(point_ids, dtype=np.int64), field)


def _point_records(ids, xyz, rgb, err, tracks, path) -> PointRecords:
    xyz = finite_array(xyz, path, "points3D xyz")
    err = finite_array(err, path, "points3D error")
    if len(np.unique(ids)) != len(ids):
        raise DatasetError(path, "duplicate point3D ids", "points3D")
    lengths = np.array([len(t) for t in tracks], dtype=np.int64)
    flat = np.concatenate([np.stack([np.asarray(t["image"] if t.dtype.names else t[:, 0], np.int64),
                                     np.asarray(t["idx"] if t.dtype.names else t[:, 1], np.int64)], -1)
                           for t in tracks]) if tracks else np.zeros((0, 2), np.int64)
    return PointRecords(ids, xyz, rgb, err, np.repeat(np.arange(len(ids)), lengths), flat[:, 0], flat[:, 1])


def c2w_from_colmap(qvec: np.ndarray, tvec: np.ndarray, path, field) -> np.ndarray:
    """Camera-to-world (OpenCV axes) from COLMAP's world-to-camera quaternion and translation."""
    R = quaternion_to_rotation(qvec, path, field)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ tvec
    return c2w


# --------------------------------------------------------------------------- model folder

MODEL_FILES = ("cameras", "images", "points3D")


def find_model_dir(path: Path) -> Optional[Path]:
    """The COLMAP model folder at or under ``path`` (``path``, ``path/sparse/0``, ``path/sparse``)."""
    for candidate in (path, path / "sparse" / "0", path / "sparse"):
        if (candidate / "cameras.bin").is_file() or (candidate / "cameras.txt").is_file():
            return candidate
    return None


def read_model(model_dir: Path, root: Path, kind: str = "auto"):
    """``(kind, cameras, images, points)`` of a model folder; ``kind`` is "binary", "text" or "auto"
    (binary when ``cameras.bin`` exists, as COLMAP itself does)."""
    if kind == "auto":
        kind = "binary" if (model_dir / "cameras.bin").is_file() else "text"
    ext = ".bin" if kind == "binary" else ".txt"
    paths = {name: model_dir / (name + ext) for name in MODEL_FILES}
    missing = [str(p) for n, p in paths.items() if n != "points3D" and not p.is_file()]
    if missing:
        raise DatasetError(model_dir, f"COLMAP {kind} model is incomplete: missing {', '.join(missing)}")
    binary = kind == "binary"
    cameras = (read_cameras_binary if binary else read_cameras_text)(paths["cameras"], root)
    images = (read_images_binary if binary else read_images_text)(paths["images"], root)
    points = None
    if paths["points3D"].is_file():
        points = (read_points3d_binary if binary else read_points3d_text)(paths["points3D"], root)
    return kind, cameras, images, points, paths


def build_capture(model_dir: Path, root: Path, images_dir: Path, kind: str = "auto") -> Capture:
    from .validate import safe_relative  # local: keeps the module's public surface obvious

    kind, cameras, images, points, paths = read_model(model_dir, root, kind)
    img_path = paths["images"]
    if not images:
        raise DatasetError(img_path, "the model has no registered images")
    seen_ids, seen_names = set(), set()
    for rec in images:
        if rec.id in seen_ids:
            raise DatasetError(img_path, f"duplicate image id {rec.id}", rec.field)
        if rec.name in seen_names:
            raise DatasetError(img_path, f"duplicate image name {rec.name!r}", rec.field)
        if rec.camera_id not in cameras:
            raise DatasetError(img_path, f"refers to camera {rec.camera_id}, which {paths['cameras'].name} does not define",
                               rec.field)
        seen_ids.add(rec.id)
        seen_names.add(rec.name)
    images = sorted(images, key=lambda r: r.name)  # a stable order that does not depend on ids
    index_of = {rec.id: i for i, rec in enumerate(images)}

    c2w = np.stack([c2w_from_colmap(r.qvec, r.tvec, img_path, r.field) for r in images])
    image_paths = [safe_relative(r.name, images_dir, img_path, r.field, root) for r in images]
    sparse = _sparse_points(points, images, index_of, paths, img_path) if points is not None else None
    return Capture(
        format=f"colmap-{kind}", root=root, source=model_dir, names=[r.name for r in images],
        image_paths=image_paths, cameras=[cameras[r.camera_id] for r in images], c2w=c2w, points=sparse,
        meta={"camera_ids": [r.camera_id for r in images], "image_ids": [r.id for r in images]},
    )


def _sparse_points(points: PointRecords, images: List[ImageRecord], index_of, paths, img_path) -> SparsePoints:
    pts_path = paths["points3D"]
    # tracks must point at existing images and existing observations
    n_obs = {rec.id: len(rec.point_ids) for rec in images}
    bad = [(int(i), int(j)) for i, j in zip(points.track_image, points.track_idx)
           if i not in n_obs or not 0 <= j < n_obs[i]] if len(points.track_image) else []
    if bad:
        raise DatasetError(pts_path, f"{len(bad)} track elements refer to missing images or points2D, "
                           f"first (image {bad[0][0]}, point2D {bad[0][1]})", "tracks")
    order = np.argsort(points.ids)
    sorted_ids = points.ids[order]
    obs_image, obs_point, obs_xy = [], [], []
    for rec in images:
        mask = rec.point_ids >= 0
        if not mask.any():
            continue
        pid = rec.point_ids[mask]
        pos = np.searchsorted(sorted_ids, pid)
        pos_c = np.minimum(pos, len(sorted_ids) - 1)
        found = (pos < len(sorted_ids)) & (sorted_ids[pos_c] == pid) if len(sorted_ids) else np.zeros(len(pid), bool)
        if not found.all():
            raise DatasetError(img_path, f"points2D refer to point3D id {int(pid[~found][0])}, which "
                               f"{pts_path.name} does not define", rec.field)
        obs_image.append(np.full(len(pid), index_of[rec.id]))
        obs_point.append(pos_c)
        obs_xy.append(rec.xy[mask])
    cat = (lambda xs, shape, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dt))
    # points are kept sorted by id so the text and binary forms of a model load identically
    return SparsePoints(points.xyz[order], points.rgb[order], points.error[order], sorted_ids,
                        cat(obs_image, (0,), np.int64), cat(obs_point, (0,), np.int64), cat(obs_xy, (0, 2), np.float64))
