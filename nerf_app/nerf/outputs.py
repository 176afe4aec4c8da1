"""What users take away from a trained NeRF: an orbit video (RGB and depth) and a mesh."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ConfigError
from ..camera_paths.orbit import orbit_path, pinhole_rays
from ..geometry.marching_cubes import export_field_mesh
from ..results import write_video
from .evaluate import colorize_depth
from .renderer import render_image


def train_fov(scene) -> float:
    """Vertical fov (degrees) of the first training camera."""
    cam = scene.cameras[int(scene.split_indices("train")[0])]
    return math.degrees(2 * math.atan(0.5 * cam.height / cam.fy))


def scene_capture_frame(scene):
    """Where the training cameras are (:func:`nerf_app.camera_paths.capture.capture_frame`), normalised
    coordinates: centred on the point their optical axes pass closest to (the unit cube's centre for
    objects on a known background, or when that point is outside the region of interest)."""
    from ..camera_paths.capture import capture_frame
    train = scene.split_indices("train")
    if len(train) == 0:
        raise ConfigError("the scene has no training cameras to place a camera path by")
    return capture_frame(scene.c2w[train], (0.5, 0.5, 0.5), use_axes=not scene.bounded)


def orbit_frame(scene):
    """Where the training cameras look and from where: the point their optical axes pass closest to (the
    object), the capture's up direction, median distance, mean elevation, and the first training camera's
    vertical fov. Normalised coordinates."""
    f = scene_capture_frame(scene)
    return f.target, f.up, f.radius, f.elevation_deg, train_fov(scene)


def scene_orbit(scene, n_frames: int):
    """The default orbit framing the capture (see :func:`nerf_app.camera_paths.capture.capture_orbit`: a
    full turn, or a swing over the covered arc): ``(c2w [n,4,4], fov_y_deg)``."""
    from ..camera_paths.capture import capture_orbit
    return capture_orbit(scene_capture_frame(scene), n_frames), train_fov(scene)


PATHS = "orbit, orbit-full, spiral, capture, test or a camera_path.json file"


def camera_path_info(task, path: str, frames: int):
    """``(poses, fovs, info)`` for ``path`` (normalised, OpenCV c2w; vertical fov per frame; what was
    chosen and any note for the user):

    - ``orbit``: a full turn when the training cameras cover >= 300 degrees of azimuth, else a swing over
      the arc they cover (:func:`nerf_app.camera_paths.capture.capture_orbit`); fewer than 3 training
      cameras: a full turn at their distance and mean elevation (and a note saying so); ``orbit-full``:
      always a full turn;
    - ``spiral``: the orbit's azimuths twice over, the elevation swinging +-15 degrees about the cameras';
    - ``capture``: a smooth path through the training cameras in capture order
      (:func:`nerf_app.camera_paths.capture.capture_path`);
    - ``test``: the held-out cameras in order;
    - a nerfstudio ``camera_path.json`` in the capture's coordinates (keyframes interpolated to ``frames``).
    """
    from ..camera_paths import capture as cp
    scene = task.scene
    info: dict = {"path": str(path), "notes": []}
    if path in ("orbit", "orbit-full", "spiral", "capture"):
        frame = scene_capture_frame(scene)
        fov = train_fov(scene)
        info["capture"] = frame.describe()
        info["notes"] = list(frame.notes)
        if path in ("orbit", "orbit-full"):
            poses = cp.capture_orbit(frame, frames, force_full=path == "orbit-full")
            info["kind"] = "full turn" if (path == "orbit-full" or frame.full_turn) else "swing over the covered arc"
            if path == "orbit" and not frame.full_turn:
                info["notes"].append(f"the training cameras cover {frame.arc_deg:.0f} degrees of azimuth: the orbit "
                                     f"swings over that arc (--path orbit-full for a full turn)")
            return poses, [fov] * len(poses), info
        if path == "spiral":
            az = cp.orbit_azimuths(frame, frames, turns=2.0)
            el = (frame.elevation_deg if frame.n_cameras < cp.MIN_CAMERAS else cp._elevation_along(frame, az)) \
                + 15.0 * np.sin(2 * math.pi * np.arange(frames) / frames)
            info["kind"] = "spiral, " + ("two full turns" if frame.full_turn else "two swings over the covered arc")
            poses = cp.poses_at(frame, az, el)
            return poses, [fov] * len(poses), info
        train = scene.split_indices("train")
        names = [scene.names[int(i)] for i in train]
        order, how = cp.capture_order(names, scene.c2w[train, :3, 3])
        info["kind"] = f"through the {len(train)} training cameras in {how}"
        info["notes"] = []
        poses = cp.capture_path(scene.c2w[train], order, frames)
        return poses, [fov] * len(poses), info
    if path == "test":
        idx = scene.split_indices("test")
        if len(idx) == 0:
            raise ConfigError("the scene has no test views (--path test)")
        cams = [scene.cameras[int(i)] for i in idx]
        info["kind"] = "the held-out cameras"
        return scene.c2w[idx], [math.degrees(2 * math.atan(0.5 * c.height / c.fy)) for c in cams], info
    if path.endswith(".json"):
        from ..camera_paths.keyframes import interpolate_poses, read_camera_path
        c2w, fov, _ = read_camera_path(path)
        c2w = scene.normalization.c2w_to_normalized(c2w)
        if frames and frames > len(c2w):
            fov = list(np.interp(np.linspace(0, len(fov) - 1, frames), np.arange(len(fov)), fov))
            c2w = interpolate_poses(c2w, frames)
        info["kind"] = "camera path file"
        return c2w, fov, info
    raise ConfigError(f"--path must be {PATHS}, got {path!r}")


def camera_path(task, path: str, frames: int):
    """Poses (normalised, OpenCV c2w) and vertical fov per frame for ``path`` (see :func:`camera_path_info`)."""
    poses, fovs, _ = camera_path_info(task, path, frames)
    return poses, fovs


def frame_size(resolution, cam_width: int, cam_height: int) -> Tuple[int, int]:
    """``(width, height)`` of a rendered video frame, both even (H.264 yuv420p needs even sizes): ``None`` -> the
    training camera's aspect at its height or 400, whichever is smaller; ``N`` -> N x N; ``"WxH"`` -> W x H."""
    if isinstance(resolution, str) and "x" in resolution:
        w, h = (int(v) for v in resolution.split("x"))
        return max(2, w // 2 * 2), max(2, h // 2 * 2)
    height = max(2, int(resolution or min(cam_height, 400)) // 2 * 2)
    width = int(round(height * cam_width / cam_height)) // 2 * 2 if not resolution else height
    return max(2, width), height


def render_camera_path(task, run_dir: Path, path: str = "orbit", frames: int = 60, fps: int = 24,
                 resolution: Optional[int] = None, out: Optional[str] = None, max_time: float = 0.0,
                 **_) -> Dict[str, Any]:
    """Render a camera path to an mp4 of RGB and one of colour-mapped depth; the path itself is written
    back as a nerfstudio ``camera_path.json`` (capture coordinates) beside the video for editing."""
    from ..camera_paths.keyframes import write_camera_path
    from ..camera_paths.capture import path_coverage
    scene = task.scene
    poses, fovs, info = camera_path_info(task, path, frames)
    for note in info.get("notes", []):
        print(f"render: {note}", file=sys.stderr)
    cam = scene.cameras[int(scene.split_indices("train")[0])]
    width, height = frame_size(resolution, cam.width, cam.height)
    bg = torch.tensor(task.view_background())   # leaves unseen space out first (rays.unseen)
    rgb_frames, depth_frames = [], []
    start = time.perf_counter()
    focal = [0.5 * height / math.tan(math.radians(f) / 2) for f in fovs]
    nears = [(task.near_for_poses(p[None], f, f, width, height) or [None])[0] for p, f in zip(poses, focal)]
    transform = task.eval_color_transform(None)
    for k, (c2w, fov_y) in enumerate(tqdm(list(zip(poses, fovs)), desc=f"render {Path(path).stem}", unit="frame")):
        o, d = pinhole_rays(c2w, width, height, fov_y)
        o = torch.from_numpy(o).float().reshape(height, width, 3)
        d = torch.from_numpy(d).float().reshape(height, width, 3)
        rgb, depth, opacity = render_image(task.model.field, task.model.grid, o, d, bg, task.march,
                                           backend=task.config.backend, near=None if nears is None else nears[k],
                                           color_transform=transform)
        rgb_frames.append((rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
        depth_frames.append((colorize_depth(depth.numpy(), opacity.numpy()) * 255 + 0.5).astype(np.uint8))
        if max_time and time.perf_counter() - start > max_time:
            break
    name = Path(path).stem
    rgb_path = Path(out) if out else run_dir / f"render_{name}.mp4"
    depth_path = rgb_path.with_name(rgb_path.stem + "_depth.mp4")
    write_video(rgb_path, rgb_frames, fps)
    write_video(depth_path, depth_frames, fps)
    path_file = write_camera_path(rgb_path.with_name(rgb_path.stem + "_camera_path.json"),
                                  scene.normalization.c2w_to_capture(poses[:len(rgb_frames)]),
                                  fovs[:len(rgb_frames)], width, height, fps)
    # how much of the path looks from where the capture looked (normalised coordinates; ratios are unit-free)
    train = scene.split_indices("train")
    target = info.get("capture", {}).get("target")
    if target is None:
        target = scene_capture_frame(scene).target
    cov = path_coverage(poses[:len(rgb_frames)], scene.c2w[train], target,
                        names=[scene.names[int(i)] for i in train])
    cov.update({k: v for k, v in info.items() if k != "notes"})
    seconds = round(time.perf_counter() - start, 2)
    # the time this stage took stays with what it wrote (the video's own file has no place for it)
    cov.update(seconds=seconds, seconds_per_frame=round(seconds / max(1, len(rgb_frames)), 3),
               frame_size=[width, height])
    cov_path = rgb_path.with_name(rgb_path.stem + "_coverage.json")
    from ..results import write_json
    write_json(cov_path, cov)
    print(f"render: {cov['n_within']}/{cov['n_frames']} frames ({100 * cov['within']:.0f}%) within "
          f"{cov['near_deg']:.0f} degrees of a training camera's view direction "
          f"({info.get('kind', path)}; worst {cov['angle_deg_max']:.1f} degrees) -> {cov_path}",
          file=sys.stderr)
    return {"video": str(rgb_path), "depth_video": str(depth_path), "camera_path": str(path_file),
            "frames": len(rgb_frames), "width": width, "height": height, "seconds": seconds,
            "coverage": {"within_20deg": round(cov["within"], 4), "file": str(cov_path)}}


def export_points(task, path: Path, n_views: int = 8, max_side: int = 200) -> Dict[str, Any]:
    """A coloured point cloud from rendered depth: ``n_views`` training views (evenly spaced, rendered at
    most ``max_side`` pixels high), pixels with opacity > 0.9, lifted to ``o + depth * d``, in the
    capture's coordinates, written as PLY through trimesh."""
    import trimesh
    from ..results import atomic_write
    scene = task.scene
    train = scene.split_indices("train")
    picks = train[np.round(np.linspace(0, len(train) - 1, min(n_views, len(train)))).astype(int)]
    pts, cols = [], []
    for i in tqdm(picks, desc="points", unit="view"):
        step = max(1, int(math.ceil(scene.cameras[int(i)].height / max_side)))
        # the image's own rays, near plane, pose correction and appearance, over black
        o, d = (t.cpu().numpy() for t in task.view_rays(int(i), step))
        rgb, depth, opacity = task.render_view(int(i), (0.0, 0.0, 0.0), step=step)
        keep = opacity > 0.9
        p = o[keep] + (depth[keep] / opacity[keep])[:, None] * d[keep]
        pts.append(p)
        cols.append(np.clip(rgb[keep] / opacity[keep][:, None], 0, 1))
    xyz = scene.normalization.to_capture(np.concatenate(pts).astype(np.float64))
    rgb8 = (np.concatenate(cols) * 255 + 0.5).astype(np.uint8)
    cloud = trimesh.PointCloud(xyz, colors=np.concatenate([rgb8, np.full((len(rgb8), 1), 255, np.uint8)], 1))
    atomic_write(path, lambda tmp: cloud.export(tmp, file_type="ply"))
    return {"points": str(path), "n_points": int(len(xyz)), "views": int(len(picks)), "coordinates": "capture"}


def export_mesh(task, run_dir: Path, mesh: Optional[str] = None, resolution: int = 256, threshold="auto",
                chunks: Optional[int] = None, min_component: float = 0.05, points: Optional[str] = None,
                **_) -> Dict[str, Any]:
    """Marching cubes of the density over the unit cube (the region of interest), restricted to cells a
    training camera saw, coloured by the radiance field (mean over six view directions), written in the
    capture's own coordinates."""
    field, grid = task.model.field, task.model.grid
    level = 2.5 if threshold in (None, "auto") else float(threshold)
    R = grid.resolution
    visible = grid.visible[0]
    device = grid.bitfield.device  # the model's: query points travel there (a CUDA-trained run exports too)

    def density(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            sigma, _ = field.density(x.float())
            cell = ((x - 0.0).clamp(0, 1 - 1e-6) * R).long()   # cascade 0 spans the unit cube
            seen = visible[cell[:, 0] + R * (cell[:, 1] + R * cell[:, 2])]
            return torch.where(seen, sigma, torch.zeros_like(sigma))

    dirs = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], device=device)

    @torch.no_grad()
    def colour(x: torch.Tensor) -> torch.Tensor:
        chunk = 1 << 16
        x = x.to(device)
        out = torch.zeros(x.shape[0], 3, device=device)
        for s in range(0, x.shape[0], chunk):
            p = x[s:s + chunk]
            acc = torch.zeros(p.shape[0], 3, device=device)
            for d in dirs:
                _, rgb = field(p, d.expand(p.shape[0], 3).contiguous())
                acc += rgb
            out[s:s + chunk] = acc / len(dirs)
        return out

    if points and not mesh:
        return export_points(task, Path(points))
    path = Path(mesh) if mesh else run_dir / "mesh.ply"
    v, f = export_field_mesh(path, density, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), int(resolution), level, inside="above",
                             chunks=chunks, to_original=task.scene.normalization.inverse_matrix,
                             min_component=float(min_component), color_fn=colour, device=device)
    result = {"mesh": str(path), "vertices": int(len(v)), "faces": int(len(f)), "level": level,
              "resolution": int(resolution), "coordinates": "capture"}
    if points:
        result.update(export_points(task, Path(points)))
    return result
