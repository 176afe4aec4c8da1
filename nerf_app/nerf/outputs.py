"""What users take away from a trained NeRF: an orbit video (RGB and depth) and a mesh."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ConfigError
from ..export.camera_path import orbit_path, pinhole_rays
from ..export.mesh import export_field_mesh
from ..render.surface import write_video
from .evaluate import colorize_depth
from .renderer import render_image


def scene_orbit(scene, n_frames: int):
    """An orbit framing the capture, derived from the training cameras: the point their optical axes
    pass closest to (the object), their mean up direction (-y in OpenCV), median distance and mean
    elevation. Returns ``(c2w [n,4,4], fov_y_deg)`` in normalised coordinates."""
    train = scene.split_indices("train")
    c2w = scene.c2w[train]
    centres, forward = c2w[:, :3, 3], c2w[:, :3, 2]
    # least-squares point nearest to every optical axis: sum_i (I - f f^T)(p - c_i) = 0
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, f in zip(centres, forward):
        P = np.eye(3) - np.outer(f, f)
        A += P
        b += P @ c
    target = np.linalg.lstsq(A, b, rcond=None)[0]
    if scene.bounded or not np.all(np.abs(target - 0.5) < 1.0):
        target = np.array([0.5, 0.5, 0.5])
    up = -c2w[:, :3, 1].mean(axis=0)
    up /= np.linalg.norm(up)
    offsets = centres - target
    radius = float(np.median(np.linalg.norm(offsets, axis=1)))
    elevation = float(np.degrees(np.mean(np.arcsin(np.clip(offsets @ up / np.linalg.norm(offsets, axis=1), -1, 1)))))
    cam = scene.cameras[int(train[0])]
    fov_y = math.degrees(2 * math.atan(0.5 * cam.height / cam.fy))
    return orbit_path(target, radius, n_frames, elevation, up), fov_y


def render_orbit(task, run_dir: Path, path: str = "orbit", frames: int = 60, fps: int = 24,
                 resolution: Optional[int] = None, out: Optional[str] = None, max_time: float = 0.0,
                 **_) -> Dict[str, Any]:
    if path != "orbit":
        raise ConfigError(f"nerf render supports --path orbit (got {path!r})")
    scene = task.scene
    poses, fov_y = scene_orbit(scene, frames)
    cam = scene.cameras[int(scene.split_indices("train")[0])]
    height = int(resolution or min(cam.height, 400))
    width = int(round(height * cam.width / cam.height)) if not resolution else height
    bg = torch.tensor({"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}.get(task.config.data.eval_background,
                                                                                  (1.0, 1.0, 1.0)))
    rgb_frames, depth_frames = [], []
    start = time.perf_counter()
    for c2w in tqdm(poses, desc="render orbit", unit="frame"):
        o, d = pinhole_rays(c2w, width, height, fov_y)
        o = torch.from_numpy(o).float().reshape(height, width, 3)
        d = torch.from_numpy(d).float().reshape(height, width, 3)
        rgb, depth, opacity = render_image(task.model.field, task.model.grid, o, d, bg, task.march,
                                           backend=task.config.backend)
        rgb_frames.append((rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
        depth_frames.append((colorize_depth(depth.numpy(), opacity.numpy()) * 255 + 0.5).astype(np.uint8))
        if max_time and time.perf_counter() - start > max_time:
            break
    rgb_path = Path(out) if out else run_dir / f"render_{path}.mp4"
    depth_path = rgb_path.with_name(rgb_path.stem + "_depth.mp4")
    write_video(rgb_path, rgb_frames, fps)
    write_video(depth_path, depth_frames, fps)
    return {"video": str(rgb_path), "depth_video": str(depth_path), "frames": len(rgb_frames),
            "width": width, "height": height, "seconds": round(time.perf_counter() - start, 2)}


def export_mesh(task, run_dir: Path, mesh: Optional[str] = None, resolution: int = 256, threshold="auto",
                chunks: Optional[int] = None, min_component: float = 0.05, **_) -> Dict[str, Any]:
    """Marching cubes of the density over the unit cube (the region of interest), restricted to cells a
    training camera saw, coloured by the radiance field (mean over six view directions), written in the
    capture's own coordinates."""
    field, grid = task.model.field, task.model.grid
    level = 2.5 if threshold in (None, "auto") else float(threshold)
    R = grid.resolution
    visible = grid.visible[0]

    def density(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            sigma, _ = field.density(x.float())
            cell = ((x - 0.0).clamp(0, 1 - 1e-6) * R).long()   # cascade 0 spans the unit cube
            seen = visible[cell[:, 0] + R * (cell[:, 1] + R * cell[:, 2])]
            return torch.where(seen, sigma, torch.zeros_like(sigma))

    dirs = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])

    def colour(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 3)
        for s in range(0, x.shape[0], 1 << 16):
            p = x[s:s + 1 << 16]
            acc = torch.zeros(p.shape[0], 3)
            for d in dirs:
                _, rgb = field(p, d.expand(p.shape[0], 3).contiguous())
                acc += rgb
            out[s:s + 1 << 16] = acc / len(dirs)
        return out

    path = Path(mesh) if mesh else run_dir / "mesh.ply"
    v, f = export_field_mesh(path, density, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), int(resolution), level, inside="above",
                             chunks=chunks, to_original=task.scene.normalization.inverse_matrix,
                             min_component=float(min_component), color_fn=colour)
    return {"mesh": str(path), "vertices": int(len(v)), "faces": int(len(f)), "level": level,
            "resolution": int(resolution), "coordinates": "capture"}
