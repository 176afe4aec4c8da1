"""Rendered-mesh evaluation (``nerf-app eval RUN --mesh FILE``): the mesh rendered at the held-out cameras
and scored against the photos, next to the NeRF's own scores on the same views; on the whole frame and on
the *region pixels* (the pixels whose NeRF depth falls inside the region the mesh claims, recorded in its
file; :mod:`nerf_app.export.region`), with the fraction of the frame they cover. Chamfer-L1 to the truth
for SDF/occupancy runs and the demo scene."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from .options import AXES_KEY, BLENDER_AXES, REGION_KEY


def load_mesh_for_eval(path):
    """``(vertices in capture coordinates, faces, uv, texture, vertex_colors, metadata)`` of an exported mesh
    (the ``--blender`` axes undone when the file says it has them)."""
    from ..geometry.texture import load_textured

    v, f, uv, tex, meta = load_textured(path)
    if str(meta.get(AXES_KEY, "capture")) == "blender":
        v = v @ BLENDER_AXES  # inverse of the rotation = its transpose
    vcol = tex if (uv is None and tex is not None and tex.ndim == 2) else None
    return v, f, uv, (tex if uv is not None else None), vcol, meta


def _region_of(meta, task):
    from .region import region_from_json

    info = meta.get(REGION_KEY)
    if isinstance(info, str):
        try:
            info = json.loads(info.replace("'", '"'))
        except ValueError:
            info = None
    return region_from_json(info, task.scene.normalization)


def evaluate_mesh(task, run_dir: Path, mesh_path, split: str = "test", limit: Optional[int] = None,
                  supersample: int = 2, out_dir: Optional[Path] = None, **_) -> Dict[str, Any]:
    """Render the mesh at the held-out cameras and score it against the photos, next to the NeRF's own
    PSNR/SSIM on the same views (read from RUN/metrics.json when it scored the same views and the mesh
    records no region, else rendered now); the same on the region pixels; Chamfer-L1 to the truth for
    SDF/occupancy runs and the demo scene. The contact sheet goes to ``out_dir`` (default: the run folder)."""
    from ..demo.scoring import GROUND_TRUTH, is_demo_scene, score_mesh
    from ..geometry.mesh import TriMesh
    from ..geometry.metrics import mesh_metrics

    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    v, f, uv, tex, vcol, meta = load_mesh_for_eval(mesh_path)
    out: Dict[str, Any] = {"mesh": str(mesh_path), "faces": int(len(f)), "vertices": int(len(v)),
                           "textured": uv is not None}
    if task.scene is None:          # a mode trained on a mesh, not on photos: geometry scores only
        e = task.config.eval
        m = mesh_metrics(TriMesh(v, f), task.mesh, e.n_points, e.n_volume, e.seed)
        out.update({k: m[k] for k in ("chamfer_l1", "normal_consistency", "fscore", "iou")})
        out["seconds"] = round(time.perf_counter() - t0, 2)
        return out

    from ..geometry.mesh_render import MeshRenderer, render_scene_view
    from ..metrics import psnr, ssim
    from ..results import contact_sheet
    from .region import region_pixels

    from ..nerf.evaluate import eval_background, eval_views
    scene = task.scene
    indices = eval_views(scene, split, limit)
    bg = eval_background(task.config)
    renderer = MeshRenderer(scene.normalization.to_normalized(v), f, uv, tex, vcol)
    region = _region_of(meta, task)
    cached = {}
    mpath = run_dir / "metrics.json"
    if mpath.is_file() and region is None:
        try:
            prev = json.loads(mpath.read_text())
            if prev.get("split", split) == split:
                cached = {int(r["index"]): r for r in prev.get("per_image", [])}
        except (OSError, ValueError, KeyError, TypeError):
            cached = {}
    from tqdm import tqdm
    per_image, rows, mesh_seconds, nerf_source = [], [], [], set()
    for i in tqdm(indices, desc=f"mesh eval {split}", unit="img"):
        i = int(i)
        gt = scene.images.rgb(i, background=np.array(bg, np.float32), keep=False)[..., :3].astype(np.float32)
        s = time.perf_counter()
        img, _ = render_scene_view(renderer, scene, i, bg, supersample)
        mesh_seconds.append(time.perf_counter() - s)
        rec = {"index": i, "name": scene.names[i], "psnr": psnr(img, gt), "ssim": ssim(img, gt)}
        if i in cached and "psnr" in cached[i]:
            rec["nerf_psnr"], rec["nerf_ssim"] = float(cached[i]["psnr"]), float(cached[i].get("ssim", float("nan")))
            nerf_source.add("metrics.json")
        else:
            nerf_img, depth, opacity = task.render_view(i, bg)
            rec["nerf_psnr"], rec["nerf_ssim"] = psnr(nerf_img, gt), ssim(nerf_img, gt)
            nerf_source.add("rendered")
            if region is not None:
                o, d = (t.cpu().numpy() for t in task.view_rays(i))
                keep = region_pixels(region, o, d, depth, opacity)
                rec["region_fraction"] = float(keep.mean())
                if keep.sum() >= 121:   # an SSIM window's worth
                    rec["region_psnr"], rec["region_ssim"] = psnr(img, gt, mask=keep), ssim(img, gt, mask=keep)
                    rec["nerf_region_psnr"] = psnr(nerf_img, gt, mask=keep)
                    rec["nerf_region_ssim"] = ssim(nerf_img, gt, mask=keep)
        per_image.append(rec)
        if len(rows) < 4:
            err = np.clip(np.abs(img - gt).mean(-1, keepdims=True) * 4, 0, 1)
            rows.append([gt, img, np.repeat(err, 3, -1)])
    mean = lambda k: float(np.mean([r[k] for r in per_image if k in r]))  # noqa: E731
    sheet = f"contact_sheet_mesh_{split}.png"
    contact_sheet(Path(out_dir or run_dir) / sheet, rows, ["ground truth", "mesh render", "|error| x4"])
    out.update({"split": split, "n_images": len(per_image), "psnr": mean("psnr"), "ssim": mean("ssim"),
                "nerf_psnr": mean("nerf_psnr"), "nerf_ssim": mean("nerf_ssim"),
                "psnr_gap_db": mean("nerf_psnr") - mean("psnr"), "nerf_scores_from": sorted(nerf_source)})
    if region is not None:
        scored = [r for r in per_image if "region_psnr" in r]
        out["region"] = {"box_capture": region.to_capture(scene.normalization), "source": region.source,
                         "fraction": mean("region_fraction"), "n_images_scored": len(scored)}
        if scored:
            out.update({"region_psnr": mean("region_psnr"), "region_ssim": mean("region_ssim"),
                        "nerf_region_psnr": mean("nerf_region_psnr"), "nerf_region_ssim": mean("nerf_region_ssim"),
                        "region_psnr_gap_db": mean("nerf_region_psnr") - mean("region_psnr")})
    out.update({"supersample": int(supersample), "ray_engine": renderer.engine,
                "mesh_seconds_per_image": float(np.mean(mesh_seconds)), "contact_sheet": sheet,
                "per_image": per_image})
    if is_demo_scene(task.scene.root):   # the true surface is known: score the mesh against it
        out.update(score_mesh(TriMesh(v, f), cache=Path(run_dir) / "ground_truth_mesh.ply"))
        out["ground_truth"] = GROUND_TRUTH
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
