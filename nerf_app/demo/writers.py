"""Writing the demo scene: the COLMAP text model, ``transforms_{train,test}.json``, ``scene.json`` and the
PNGs, each atomically, deterministic to the byte (see :mod:`nerf_app.demo`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Union

import numpy as np

from ..results import atomic_write
from .cameras import View, intrinsics, views
from .shapes import (AMBIENT, CAMERA_ANGLE_X, CAMERA_RADIUS, DECIMALS, ELEVATION_DEG, HEIGHT, LIGHT_DIR, N_VIEWS, SHAPES,
                     SUPERSAMPLE, TEST_EVERY, WIDTH, bbox, shade)
from .tracer import observations, render_view, surface_points

# ----------------------------------------------------------------------------- writing

def _fmt(x: float) -> str:
    """Shortest text that reads back as the same float ("1.0" -> "1")."""
    s = repr(float(x) + 0.0)  # + 0.0 turns -0.0 into 0.0
    return s[:-2] if s.endswith(".0") else s


def _write(path: Path, data: Union[bytes, str]) -> None:
    """Write through a temporary name and rename, so a file is either whole or absent."""
    payload = data.encode() if isinstance(data, str) else data
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))


def _png_bytes(rgba: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    # no metadata chunks, fixed compression: the same pixels give the same bytes with one zlib
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _colmap_files(all_views: List[View], points: np.ndarray, colors: np.ndarray, obs) -> Dict[str, str]:
    fx, fy, cx, cy = intrinsics()
    cameras = ("# Camera list with one line of data per camera:\n"
               "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n# Number of cameras: 1\n"
               f"1 PINHOLE {WIDTH} {HEIGHT} {_fmt(fx)} {_fmt(fy)} {_fmt(cx)} {_fmt(cy)}\n")
    tracks: List[List[str]] = [[] for _ in range(len(points))]
    lines = []
    for k, idx, xy in obs:
        v = all_views[k]
        image_id = k + 1
        pose = " ".join(_fmt(x) for x in (*v.qvec, *v.tvec))
        lines.append(f"{image_id} {pose} 1 {v.name}")
        lines.append(" ".join(f"{x:.6f} {y:.6f} {p + 1}" for (x, y), p in zip(xy, idx)))
        for j, p in enumerate(idx):
            tracks[p] += [str(image_id), str(j)]
    n_obs = sum(len(idx) for _, idx, _ in obs)
    images = ("# Image list with two lines of data per image:\n"
              "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
              "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
              f"# Number of images: {len(all_views)}, mean observations per image: {n_obs / len(all_views):.2f}\n"
              + "\n".join(lines) + "\n")
    pts = ["# 3D point list with one line of data per point:\n"
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
           f"# Number of points: {len(points)}, mean track length: {n_obs / max(len(points), 1):.2f}\n"]
    for p, (xyz, rgb) in enumerate(zip(points, colors)):
        pts.append(f"{p + 1} {_fmt(xyz[0])} {_fmt(xyz[1])} {_fmt(xyz[2])} {rgb[0]} {rgb[1]} {rgb[2]} 0 "
                   + " ".join(tracks[p]) + "\n")
    return {"sparse/0/cameras.txt": cameras, "sparse/0/images.txt": images, "sparse/0/points3D.txt": "".join(pts)}


def _transforms_files(all_views: List[View]) -> Dict[str, str]:
    fx, fy, cx, cy = intrinsics()
    gl_from_cv = np.diag([1.0, -1.0, -1.0, 1.0])  # flip the camera's y and z axes
    out = {}
    for split in ("train", "test"):
        frames = [{"file_path": f"images/{v.name}",
                   "transform_matrix": (v.c2w @ gl_from_cv).round(DECIMALS).tolist()}
                  for v in all_views if v.split == split]
        data = {"camera_angle_x": CAMERA_ANGLE_X, "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy,
                "w": WIDTH, "h": HEIGHT, "frames": frames}
        out[f"transforms_{split}.json"] = json.dumps(data, indent=1) + "\n"
    return out


def scene_description() -> dict:
    """What ``scene.json`` holds: shapes, bounding box, cameras, lighting, files."""
    fx, fy, cx, cy = intrinsics()
    return {
        "name": "nerf_app synthetic demo scene",
        # the module's name when data/demo was committed (now the nerf_app.demo package): kept, so a
        # regeneration reproduces the committed files byte for byte
        "generator": "nerf_app.demo_scene (nerf-app make-scene OUT)",
        "coordinates": "world = capture coordinates of both files; +z up; arbitrary units",
        "shapes": [s.to_dict() for s in SHAPES],
        "bbox": bbox().round(9).tolist(),
        "cameras": {"model": "PINHOLE", "width": WIDTH, "height": HEIGHT, "camera_angle_x": CAMERA_ANGLE_X,
                    "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "views": N_VIEWS, "test_every": TEST_EVERY,
                    "radius": CAMERA_RADIUS, "elevation_deg": list(ELEVATION_DEG), "look_at": [0, 0, 0],
                    "up": [0, 0, 1], "layout": "golden-angle spiral, elevation uniform in sin"},
        "rendering": {"supersample": SUPERSAMPLE, "light_dir": list(LIGHT_DIR), "ambient": AMBIENT,
                      "shading": "albedo * (ambient + (1 - ambient) * max(0, n.l)); no shadows",
                      "alpha": "coverage of the supersamples; straight alpha"},
        "files": {"colmap": "sparse/0 (text) + images/", "transforms": "transforms_train.json, transforms_test.json"},
    }


def sparse_points(all_views: List[View]):
    """``(points (P, 3), colours (P, 3) uint8-valued ints, observations)`` for points3D: the
    surface points seen by at least two views (a real track), renumbered in order."""
    points = surface_points()
    obs = observations(points, all_views)
    seen = np.zeros(len(points), int)
    for _, idx, _ in obs:
        np.add.at(seen, idx, 1)
    keep = np.flatnonzero(seen >= 2)
    remap = np.full(len(points), -1)
    remap[keep] = np.arange(len(keep))
    obs = [(k, remap[idx[seen[idx] >= 2]], xy[seen[idx] >= 2]) for k, idx, xy in obs]
    points = points[keep]
    colors = np.round(np.clip(shade(points)[0], 0, 1) * 255).astype(int)
    return points, colors, obs


def text_files() -> Dict[str, str]:
    """Every file of the scene except the images, ``{relative path: text}``: the COLMAP model,
    the two transforms files and ``scene.json``. Cheap (well under a second)."""
    all_views = views()
    files = _colmap_files(all_views, *sparse_points(all_views))
    files.update(_transforms_files(all_views))
    files["scene.json"] = json.dumps(scene_description(), indent=1) + "\n"
    return files


def generate(out_dir: Union[str, Path], progress: bool = False) -> dict:
    """Render and write the scene into ``out_dir``: ``images/r_XXX.png`` (RGBA), ``sparse/0/*.txt``,
    ``transforms_{train,test}.json`` and ``scene.json``. Overwrites those files only. Returns a
    summary (counts, bytes, file list). About 15 s on one core."""
    out = Path(out_dir)
    all_views = views()
    files: Dict[str, Union[str, bytes]] = dict(text_files())
    for i, v in enumerate(all_views):
        if progress and (i + 1) % 16 == 0:
            print(f"rendered {i + 1}/{len(all_views)} views", flush=True)
        files[f"images/{v.name}"] = _png_bytes(render_view(v))
    for rel, data in files.items():
        _write(out / rel, data)
    n_points = files["sparse/0/points3D.txt"].count("\n") - 3  # minus the header lines
    return {"out": str(out), "views": len(all_views), "train": sum(v.split == "train" for v in all_views),
            "test": sum(v.split == "test" for v in all_views), "points3D": n_points,
            "bytes": int(sum(len(d) if isinstance(d, bytes) else len(d.encode()) for d in files.values())),
            "files": sorted(files)}
