"""Pictures from splats: a scene camera's view (lens distortion applied by resampling a pinhole render),
``eval RUN --splats`` (PSNR/SSIM at the held-out cameras beside the NeRF's) and ``render RUN --splats``
(a camera path's video drawn from the splats)."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..export.depth import corrected_c2w
from ..ops.splat import SplatCamera, render_splats
from .bake import check_nerf
from .model import Splats
from .ply import read_splat_ply


def load_for_run(task, path) -> Splats:
    """A splat PLY (capture coordinates) -> :class:`Splats` in the run's normalised frame."""
    s = read_splat_ply(path)
    norm = task.scene.normalization
    return s.transformed(float(norm.scale), np.asarray(norm.translation, np.float64))


def scene_camera(task, index: int, step: int = 1) -> SplatCamera:
    cam = task.scene.cameras[int(index)]
    w, h = int(math.ceil(cam.width / step)), int(math.ceil(cam.height / step))
    # every step-th pixel centre of the full image (as task.view_rays(index, step)): x' = (x - 0.5) / step + 0.5
    return SplatCamera(corrected_c2w(task, index), cam.fx / step, cam.fy / step,
                       (cam.cx - 0.5) / step + 0.5, (cam.cy - 0.5) / step + 0.5, w, h)


def _undistort_grid(task, index: int, cam: SplatCamera) -> Optional[torch.Tensor]:
    """Where each pixel of a distorted camera looks in the pinhole image of the same intrinsics (a
    ``grid_sample`` grid), or None for a pinhole camera."""
    full = task.scene.cameras[int(index)]
    if not full.is_distorted:
        return None
    step = full.width / cam.width
    u, v = np.meshgrid(np.arange(cam.width) + 0.5, np.arange(cam.height) + 0.5)
    px = np.stack([(u - 0.5) * step + 0.5, (v - 0.5) * step + 0.5], -1)
    d = full.unproject(px)
    x = cam.fx * d[..., 0] / d[..., 2] + cam.cx
    y = cam.fy * d[..., 1] / d[..., 2] + cam.cy
    grid = np.stack([2 * x / cam.width - 1, 2 * y / cam.height - 1], -1)
    return torch.from_numpy(np.nan_to_num(grid, nan=-2.0)).float()[None]


def render_view(task, splats: Splats, index: int, background, step: int = 1, backend: str = "auto"):
    """Scene image ``index`` drawn from ``splats`` (normalised frame) -> ``(rgb [H,W,3], alpha [H,W])`` numpy,
    with the camera's lens distortion (a pinhole render resampled bilinearly)."""
    cam = scene_camera(task, index, step)
    with torch.no_grad():
        img, alpha, _ = render_splats(*splats.tensors(), cam, torch.tensor(background, dtype=torch.float32),
                                      backend=backend)
        grid = _undistort_grid(task, index, cam)
        if grid is not None:
            both = torch.cat([img, alpha[..., None]], -1).permute(2, 0, 1)[None]
            bgd = torch.tensor(list(background) + [0.0]).view(1, 4, 1, 1)
            warped = torch.nn.functional.grid_sample(both - bgd, grid, align_corners=False) + bgd
            img, alpha = warped[0, :3].permute(1, 2, 0), warped[0, 3]
    return img.clamp(0, 1).numpy(), alpha.numpy()


def evaluate_splats(task, run_dir: Path, splat_path, split: str = "test", limit: Optional[int] = None,
                    sheet_rows: int = 4, **_) -> Dict[str, Any]:
    """The splats at the held-out cameras against the photos, next to the NeRF's PSNR/SSIM on the same views
    (from RUN/metrics.json when it scored them, else rendered now); a contact sheet that leads with the
    worst views, then the median and the best (the NeRF eval's rule, :func:`nerf.evaluate.sheet_order`)."""
    from ..metrics import psnr, ssim
    from ..nerf.evaluate import SHEET_GAP, SheetTiles, eval_background, eval_views, label_tile, sheet_order
    from ..results import contact_sheet
    from tqdm import tqdm
    check_nerf(task)
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    splats = load_for_run(task, splat_path)
    scene = task.scene
    indices = eval_views(scene, split, limit)
    bg = eval_background(task.config)
    cached = {}
    mpath = run_dir / "metrics.json"
    cam0 = scene.cameras[int(indices[0])]
    if mpath.is_file():
        try:
            prev = json.loads(mpath.read_text())
            # the NeRF's scores count only for the same views at the same resolution (--set data.downscale=2)
            if prev.get("split", split) == split and prev.get("resolution") == f"{cam0.width}x{cam0.height}":
                cached = {int(r["index"]): r for r in prev.get("per_image", [])}
        except (OSError, ValueError, KeyError, TypeError):
            cached = {}
    per_image, seconds, nerf_source = [], [], set()
    tiles = SheetTiles()
    for i in tqdm(indices, desc=f"splat eval {split}", unit="img", file=sys.stderr):
        i = int(i)
        gt = scene.images.rgb(i, background=np.array(bg, np.float32), keep=False)[..., :3].astype(np.float32)
        mask = scene.images.mask(i)
        s = time.perf_counter()
        img, _ = render_view(task, splats, i, bg)
        seconds.append(time.perf_counter() - s)
        rec = {"index": i, "name": scene.names[i], "psnr": psnr(img, gt, mask=mask), "ssim": ssim(img, gt, mask=mask),
               "seconds": seconds[-1]}
        if i in cached and "psnr" in cached[i]:
            rec["nerf_psnr"], rec["nerf_ssim"] = float(cached[i]["psnr"]), float(cached[i].get("ssim", float("nan")))
            nerf_source.add("metrics.json")
            nerf_img = None
        else:
            nerf_img = task.render_view(i, bg)[0]
            rec["nerf_psnr"], rec["nerf_ssim"] = psnr(nerf_img, gt, mask=mask), ssim(nerf_img, gt, mask=mask)
            nerf_source.add("rendered")
        per_image.append(rec)
        err = np.repeat(np.clip(np.abs(img - gt).mean(-1, keepdims=True) * 4, 0, 1), 3, -1)
        tiles.add([gt, img] + ([nerf_img] if nerf_img is not None else []) + [err])
    mean = lambda k: float(np.mean([r[k] for r in per_image]))  # noqa: E731
    sheet = f"contact_sheet_splats_{split}.png"
    picks = sheet_order([r["psnr"] for r in per_image], "worst", sheet_rows)
    rows = []
    for k, label in picks:
        r = per_image[k]
        t = tiles.get(k)
        t[0] = label_tile(t[0], [label, str(r["name"])])
        t[1] = label_tile(t[1], [f"PSNR {r['psnr']:.2f} dB", f"SSIM {r['ssim']:.3f}"])
        if len(t) == 4:
            t[2] = label_tile(t[2], [f"PSNR {r['nerf_psnr']:.2f} dB", f"SSIM {r['nerf_ssim']:.3f}"])
        rows.append(t)
    tiles.close()
    width = min(len(r) for r in rows)   # the NeRF column only when every shown view was rendered now
    rows = [r[:width - 1] + [r[-1]] for r in rows]
    titles = ["ground truth", "splats"] + (["nerf"] if width == 4 else []) + ["|splat error| x4"]
    contact_sheet(run_dir / sheet, rows, titles, gap=SHEET_GAP)
    cam = task.scene.cameras[int(indices[0])]
    return {"splats": str(splat_path), "n_splats": len(splats), "sh_degree": splats.degree - 1,
            "split": split, "n_images": len(per_image), "resolution": f"{cam.width}x{cam.height}",
            "psnr": mean("psnr"), "ssim": mean("ssim"), "nerf_psnr": mean("nerf_psnr"), "nerf_ssim": mean("nerf_ssim"),
            "psnr_gap_db": mean("nerf_psnr") - mean("psnr"), "nerf_scores_from": sorted(nerf_source),
            "splat_seconds_per_image": float(np.mean(seconds)), "contact_sheet": sheet,
            "contact_sheet_views": [{"row": n, "name": per_image[k]["name"], "label": label,
                                     "psnr": per_image[k]["psnr"]} for n, (k, label) in enumerate(picks)],
            "seconds": round(time.perf_counter() - t0, 2), "per_image": per_image}


def render_splat_path(task, run_dir: Path, splat_path, path: str = "orbit", frames: int = 60, fps: int = 24,
                      resolution: Optional[int] = None, out: Optional[str] = None, **_) -> Dict[str, Any]:
    """A camera path (the same choices as ``render --path``) drawn from the splats -> one mp4 (RGB)."""
    from ..nerf.evaluate import eval_background
    from ..nerf.outputs import camera_path_info, frame_size
    from ..results import write_video
    from tqdm import tqdm
    check_nerf(task)
    splats = load_for_run(task, splat_path)
    scene = task.scene
    poses, fovs, info = camera_path_info(task, path, frames)
    cam0 = scene.cameras[int(scene.split_indices("train")[0])]
    width, height = frame_size(resolution, cam0.width, cam0.height)
    bg = torch.tensor(eval_background(task.config), dtype=torch.float32)
    start = time.perf_counter()
    frames_out = []
    for c2w, fov in tqdm(list(zip(poses, fovs)), desc=f"render splats {Path(path).stem}", unit="frame",
                         file=sys.stderr):
        f = 0.5 * height / math.tan(math.radians(fov) / 2)
        cam = SplatCamera(np.asarray(c2w, np.float64), f, f, width / 2, height / 2, width, height)
        with torch.no_grad():
            img, _, _ = render_splats(*splats.tensors(), cam, bg)
        frames_out.append((img.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
    seconds = time.perf_counter() - start
    video = Path(out) if out else Path(run_dir) / f"render_splats_{Path(path).stem}.mp4"
    written = write_video(video, frames_out, fps)
    return {"video": str(written), "frames": len(frames_out), "width": width, "height": height,
            "path": info.get("kind", path), "n_splats": len(splats), "seconds": round(seconds, 2),
            "frames_per_second": round(len(frames_out) / max(seconds, 1e-9), 2)}
