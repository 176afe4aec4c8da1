"""Textured mesh export (``nerf-app export RUN --mesh OUT.glb --texture``) and rendered-mesh evaluation
(``nerf-app eval RUN --mesh FILE``) for NeRF, SDF and occupancy runs.

Export pipeline (every stage timed in the result):

1. **extract**: marching cubes of the NeRF density (level 0.17 / dt_min = 100 by default, see
   ``TEXTURE_LEVEL_ALPHA``; 2.5 when the field nowhere reaches it; cells no training camera saw and cells the
   occupancy grid marks empty are skipped) or of the SDF/occupancy field, over the unit cube;
2. **clean**: small connected pieces dropped, degenerate/duplicate faces removed, optional hole filling;
   **cull** (NeRF): faces no training pixel ray hits first are dropped (``cull_hidden``; ``keep_hidden``);
3. **simplify**: quadric decimation to the ``--faces`` budget (fast-simplification);
4. **unwrap**: xatlas charts packed into a ``--texture-size`` square;
5. **bake**: each texel's surface point and normal -> colour. NeRF: a short ray along the inward normal
   (from ``+delta`` outside to ``-delta`` inside the surface) is volume-rendered for its expected hit
   point, where the radiance is averaged over five view directions (the normal's and four tilted 35
   degrees about it): the diffuse, mean-view colour. SDF/occupancy fields have no colour: a matte clay
   shading of the normal is baked. Empty texels are dilated from the nearest chart texel; then (NeRF,
   ``bake_from="photos"``) the texture is fitted to the training photos by least squares
   (``photo_texture``), the field's colour as its prior;
6. **write**: GLB (one file) or OBJ + MTL + PNG in the capture's own coordinates, or with
   ``--blender`` in glTF's y-up convention arranged so that Blender's importers (glTF and OBJ both turn
   y-up into z-up) put the mesh back in the z-up capture coordinates (Blender/instant-ngp captures are z-up).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from .errors import ConfigError, NerfAppError

# capture (z-up) -> glTF y-up such that Blender's y-up -> z-up import, (x, y, z) -> (x, -z, y), undoes it
BLENDER_AXES = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
AXES_KEY = "nerf_app_axes"


def check_options(texture_size, faces, mesh=None) -> None:
    """One-line ConfigErrors for bad ``--texture-size``, ``--faces`` or a mesh suffix that cannot hold a texture."""
    from .geometry.texture import TEXTURE_FORMATS
    if mesh is not None and Path(mesh).suffix.lower() not in TEXTURE_FORMATS:
        raise ConfigError(f"--texture writes {' or '.join(TEXTURE_FORMATS)}, not {Path(mesh).suffix or 'no suffix'} ({mesh})")
    if not isinstance(texture_size, int) or not 16 <= texture_size <= 16384:
        raise ConfigError(f"--texture-size must be an integer from 16 to 16384, got {texture_size!r}")
    if not isinstance(faces, int) or faces < 4:
        raise ConfigError(f"--faces must be an integer >= 4, got {faces!r}")


def _is_nerf(task) -> bool:
    return hasattr(task, "scene") and hasattr(getattr(task, "model", None), "grid")


# ------------------------------------------------------------------------------------------ export

# The NeRF level set the textured mesh follows, as the alpha one marching step (dt_min) of that density
# has: 0.17 / dt_min = 100 at the default 1024 steps per unit diagonal. Measured (docs/export.md) with the
# session-5 pipeline (hidden faces culled, texture solved), rendered-mesh PSNR at levels 100 / 110 / 118:
# lego 28.84 / 28.94 / 29.00, the demo 29.99 / 29.61 / 29.31; 100 has the best mean of the two. Lower levels
# sit in the semi-transparent haze in front of the surface; higher ones erode thin parts.
TEXTURE_LEVEL_ALPHA = 0.17
FALLBACK_LEVEL = 2.5


def nerf_texture_level(task) -> float:
    return TEXTURE_LEVEL_ALPHA / task.march_dt_min()


def _nerf_density(task, level: float):
    """Density for marching cubes: 0 where no training camera saw the cell, and where the occupancy
    grid's (decayed, max-over-samples) estimate, dilated by one cell, stays below a quarter of the level."""
    import torch.nn.functional as F

    field, grid = task.model.field, task.model.grid
    R = grid.resolution
    visible = grid.visible[0]
    est = grid.density[0].reshape(R, R, R).float()   # index = x + R*(y + R*z): [z, y, x]
    est = F.max_pool3d(est[None, None], 3, stride=1, padding=1)[0, 0].reshape(-1)
    keep_cell = visible & (est >= 0.25 * level)

    def density(x: torch.Tensor) -> torch.Tensor:
        cell = (x.clamp(0, 1 - 1e-6) * R).long()
        idx = cell[:, 0] + R * (cell[:, 1] + R * cell[:, 2])
        keep = keep_cell[idx]
        out = torch.zeros(x.shape[0])
        if keep.any():
            out[keep] = field.density(x[keep].float())[0].float()
        return out
    return density


def _tilted_directions(n: torch.Tensor, angle_deg: float = 35.0):
    """``-n`` and four directions tilted ``angle_deg`` from it (towards +/- two tangents)."""
    a = torch.where(n[:, :1].abs() < 0.9, torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.0, 1, 0]]))
    t1 = torch.nn.functional.normalize(torch.cross(n, a, dim=1), dim=1)
    t2 = torch.cross(n, t1, dim=1)
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    dirs = [-n] + [-c * n + s * sgn * t for t in (t1, t2) for sgn in (1.0, -1.0)]
    return [torch.nn.functional.normalize(d, dim=1) for d in dirs]


def nerf_colour_fn(task, delta: float, n_samples: int = 12, angle_deg: float = 35.0):
    """``(points [N,3], normals [N,3]) -> rgb [N,3]`` in normalised coordinates (see module docstring)."""
    field = task.model.field

    @torch.no_grad()
    def colour(p: np.ndarray, n: np.ndarray) -> np.ndarray:
        p = torch.from_numpy(p).float()
        n = torch.from_numpy(n).float()
        S = n_samples
        dt = 2.0 * delta / S
        t = (torch.arange(S).float() + 0.5) * dt                 # distance marched from p + delta n
        x = p[:, None] + (delta - t)[None, :, None] * n[:, None]
        sigma = field.density(x.reshape(-1, 3).clamp(0, 1))[0].float().reshape(-1, S)
        alpha = 1.0 - torch.exp(-sigma * dt)
        trans = torch.cumprod(torch.cat([torch.ones(len(p), 1), 1.0 - alpha[:, :-1] + 1e-10], 1), 1)
        w = trans * alpha
        wsum = w.sum(1, keepdim=True)
        hit = (w[..., None] * x).sum(1) / wsum.clamp_min(1e-6)
        q = torch.where(wsum > 1e-3, hit, p).clamp(0, 1)
        rgb = torch.zeros(len(p), 3)
        dirs = _tilted_directions(n, angle_deg)
        for d in dirs:
            rgb += field(q, d.contiguous())[1].float()
        return (rgb / len(dirs)).numpy()
    return colour


def photo_texture(task, vertices, faces, uv, field_texture, mask, progress: bool = False,
                  prior: float = 0.5, iterations: int = 25):
    """The texture that best reproduces the training photos: least squares over every training pixel that
    hits the mesh (its colour against the bilinear lookup at its hit, weighted by the cosine of the view;
    see :class:`~nerf_app.geometry.texture.PhotoEvidence`), pulled towards the field-baked
    ``field_texture`` with weight ``prior`` per texel, so a texel no photo sees keeps the field's colour.
    Solving rather than averaging undoes the blur of splatting each pixel over four texels. Held-out
    images are never used. Returns ``(texture dilated past the charts, fraction of chart texels some
    photo saw)``."""
    from .geometry.mesh_render import MeshRenderer
    from .geometry.texture import dilate, project_photos
    from .nerf.evaluate import eval_background

    scene = task.scene
    renderer = MeshRenderer(vertices, faces)
    S = field_texture.shape[0]
    ev = project_photos(renderer, scene, scene.split_indices("train"), uv, S, eval_background(task.config),
                        progress=progress)
    out = ev.solve(field_texture, prior, iterations)
    tex = np.where(mask[..., None], out, field_texture).astype(np.float32)
    w = ev.weights.reshape(S, S)
    seen = float((w[mask] > 0).mean()) if mask.any() else 0.0
    return dilate(tex, mask), seen


def cull_hidden(task, vertices, faces, progress: bool = False, stride: int = 1, rings: int = 1,
                spacing: Optional[float] = None):
    """Drop the faces (normalised coordinates) no training camera sees: those that are not the first hit of
    any of their pixel rays (every ``stride``-th pixel; more rays per pixel where a pixel covers more than
    ``spacing`` on the surface, see :func:`~nerf_app.geometry.mesh_render.seen_faces`), grown by ``rings``
    rings of neighbours so the ray spacing leaves no pinholes. Returns ``(vertices, faces, number dropped)``."""
    from .geometry.mesh_render import MeshRenderer, grow_faces, seen_faces
    from .geometry.simplify import compact

    seen = seen_faces(MeshRenderer(vertices, faces), task.scene, task.scene.split_indices("train"), stride,
                      spacing, progress=progress)
    keep = grow_faces(faces, seen, rings)
    if keep.all() or not keep.any():
        return vertices, faces, 0
    return (*compact(vertices, faces[keep]), int((~keep).sum()))


def clay_colour(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    light = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])
    shade = 0.35 + 0.65 * np.abs(n @ light)
    return np.clip(shade[:, None] * np.array([0.85, 0.82, 0.78]), 0, 1)


def export_textured(task, run_dir: Path, mesh: Optional[str] = None, texture_size: int = 2048,
                    faces: int = 200_000, resolution: Optional[int] = None, threshold=None, chunks=None,
                    min_component: Optional[float] = None, fill_holes: bool = False, blender: bool = False,
                    bake_from: str = "photos", keep_hidden: bool = False, progress: bool = True, **_) -> Dict[str, Any]:
    """The pipeline in the module docstring; returns a JSON-able summary with per-stage seconds."""
    from .geometry.marching_cubes import apply_transform, extract_mesh
    from .geometry.simplify import clean_mesh, decimate
    from .geometry.texture import bake, unwrap, vertex_normals, write_textured

    check_options(texture_size, faces, mesh)
    path = Path(mesh) if mesh else Path(run_dir) / "mesh_textured.glb"
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    tick = [t0]

    def stage(name):
        now = time.perf_counter()
        timings[name] = round(now - tick[0], 2)
        tick[0] = now

    auto_level = threshold in (None, "auto")
    if _is_nerf(task):
        level = nerf_texture_level(task) if auto_level else float(threshold)
        res = int(resolution or 384)
        fn, inside = _nerf_density(task, level), "above"
        to_capture = task.scene.normalization.inverse_matrix
        min_component = 0.05 if min_component is None else float(min_component)
    elif hasattr(task, "field_for_export"):
        fn, level, inside = task.field_for_export()
        if threshold not in (None, "auto"):
            level = float(threshold)
        res = int(resolution or task.config.eval.resolution)
        to_capture = task.to_original
        min_component = 0.0 if min_component is None else float(min_component)
    else:
        raise ConfigError(f"--texture works for nerf, sdf and occupancy runs, not {task.config.mode!r}")
    if res < 8:
        raise ConfigError(f"--resolution must be >= 8, got {res}")
    with torch.no_grad():
        v, f = extract_mesh(fn, (0.0,) * 3, (1.0,) * 3, res, level, inside, chunks, progress=progress)
        level_note = None
        if len(f) == 0 and _is_nerf(task) and auto_level and level > FALLBACK_LEVEL:
            # an under-trained field that nowhere gets that dense: the haze's level rather than nothing
            level_note = f"no surface at the automatic level {level:.4g}; extracted at {FALLBACK_LEVEL} instead"
            level = FALLBACK_LEVEL
            fn = _nerf_density(task, level)
            v, f = extract_mesh(fn, (0.0,) * 3, (1.0,) * 3, res, level, inside, chunks, progress=progress)
    if len(f) == 0:
        raise NerfAppError(f"no surface at level {level} inside the box: nothing to write to {path}")
    n_extracted = len(f)
    stage("extract")
    v, f = clean_mesh(v, f, min_component, fill_holes)
    stage("clean")
    n_hidden = 0
    if _is_nerf(task) and not keep_hidden:
        v, f, n_hidden = cull_hidden(task, v, f, progress, spacing=1.0 / res)  # faces ~ one cell
        stage("cull")
    v, f = decimate(v, f, faces)
    stage("simplify")
    normals = vertex_normals(v, f)
    v2, f2, uv, vmap = unwrap(v, f, texture_size)
    normals = normals[vmap]
    stage("unwrap")
    if _is_nerf(task):
        delta = max(3.0 / res, 0.004)
        colour = nerf_colour_fn(task, delta)
        kind = "nerf: mean of 5 view directions at the normal ray's expected hit"
    else:
        colour, kind = clay_colour, "clay shading (the field has no colour)"
    texture, mask = bake(v2, f2, uv, texture_size, colour, normals=normals, progress=progress)
    stage("bake")
    if _is_nerf(task) and bake_from == "photos":
        texture, seen = photo_texture(task, v2, f2, uv, texture, mask, progress)
        kind = (f"fitted to the training photos (cosine-weighted least squares), {seen:.0%} of the chart texels; "
                "elsewhere " + kind)
        stage("photos")
    elif bake_from not in ("photos", "field"):
        raise ConfigError(f"--bake must be photos or field, got {bake_from!r}")
    vc, fc = apply_transform(v2, f2, to_capture)
    axes = "capture"
    if blender:
        vc = vc @ BLENDER_AXES.T
        axes = "blender"
    write_textured(path, vc, fc, uv, texture, metadata={AXES_KEY: axes})
    stage("write")
    return {"mesh": str(path), "faces": int(len(fc)), "vertices": int(len(vc)), "extracted_faces": int(n_extracted),
            "hidden_faces_dropped": int(n_hidden),
            "resolution": res, "level": level, **({"level_note": level_note} if level_note else {}),
            "texture_size": int(texture_size),
            "texture_coverage": round(float(mask.mean()), 4), "colour": kind, "axes": axes,
            "coordinates": "capture" if not blender else "capture, z-up turned y-up for Blender's importers",
            "seconds": round(time.perf_counter() - t0, 2), "stage_seconds": timings}


# ------------------------------------------------------------------------------------ evaluation

def load_mesh_for_eval(path):
    """``(vertices in capture coordinates, faces, uv, texture, vertex_colors)`` of an exported mesh
    (the ``--blender`` axes undone when the file says it has them)."""
    from .geometry.texture import load_textured

    v, f, uv, tex, meta = load_textured(path)
    if str(meta.get(AXES_KEY, "capture")) == "blender":
        v = v @ BLENDER_AXES  # inverse of the rotation = its transpose
    vcol = tex if (uv is None and tex is not None and tex.ndim == 2) else None
    return v, f, uv, (tex if uv is not None else None), vcol


def _demo_ground_truth(task, run_dir: Path):
    """Ground-truth mesh of the embedded demo scene (cached in the run folder), or None for other scenes."""
    root = Path(task.scene.root)
    desc = root / "scene.json"
    try:
        generator = json.loads(desc.read_text()).get("generator", "")
        if "nerf_app.demo_scene" not in generator and "nerf_app.scenes.synthetic" not in generator:
            return None
    except (OSError, ValueError):
        return None
    import trimesh

    from . import demo_scene
    from .results import atomic_write

    cache = Path(run_dir) / "ground_truth_mesh.ply"
    if cache.is_file():
        return trimesh.load(str(cache), force="mesh", process=False)
    gt = demo_scene.ground_truth_mesh(192)
    atomic_write(cache, lambda tmp: gt.export(tmp, file_type="ply"))
    return gt


def evaluate_mesh(task, run_dir: Path, mesh_path, split: str = "test", limit: Optional[int] = None,
                  supersample: int = 2, **_) -> Dict[str, Any]:
    """Render the mesh at the held-out cameras and score it against the photos, next to the NeRF's own
    PSNR/SSIM on the same views (read from RUN/metrics.json when it scored the same views, else
    rendered now); Chamfer-L1 to the truth for SDF/occupancy runs and the demo scene."""
    from .geometry.mesh import TriMesh
    from .geometry.metrics import mesh_metrics

    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    v, f, uv, tex, vcol = load_mesh_for_eval(mesh_path)
    out: Dict[str, Any] = {"mesh": str(mesh_path), "faces": int(len(f)), "vertices": int(len(v)),
                           "textured": uv is not None}
    if not _is_nerf(task):
        e = task.config.eval
        m = mesh_metrics(TriMesh(v, f), task.mesh, e.n_points, e.n_volume, e.seed)
        out.update({k: m[k] for k in ("chamfer_l1", "normal_consistency", "fscore", "iou")})
        out["seconds"] = round(time.perf_counter() - t0, 2)
        return out

    from .geometry.mesh_render import MeshRenderer, render_scene_view
    from .metrics import psnr, ssim
    from .results import contact_sheet

    from .nerf.evaluate import eval_background, eval_views
    scene = task.scene
    indices = eval_views(scene, split, limit)
    bg = eval_background(task.config)
    renderer = MeshRenderer(scene.normalization.to_normalized(v), f, uv, tex, vcol)
    cached = {}
    mpath = run_dir / "metrics.json"
    if mpath.is_file():
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
        gt = scene.images.rgb(i, background=np.array(bg, np.float32))[..., :3].astype(np.float32)
        s = time.perf_counter()
        img, _ = render_scene_view(renderer, scene, i, bg, supersample)
        mesh_seconds.append(time.perf_counter() - s)
        rec = {"index": i, "name": scene.names[i], "psnr": psnr(img, gt), "ssim": ssim(img, gt)}
        nerf_img = None
        if i in cached and "psnr" in cached[i]:
            rec["nerf_psnr"], rec["nerf_ssim"] = float(cached[i]["psnr"]), float(cached[i].get("ssim", float("nan")))
            nerf_source.add("metrics.json")
        else:
            nerf_img = task.render_view(i, bg)[0]
            rec["nerf_psnr"], rec["nerf_ssim"] = psnr(nerf_img, gt), ssim(nerf_img, gt)
            nerf_source.add("rendered")
        per_image.append(rec)
        if len(rows) < 4:
            err = np.clip(np.abs(img - gt).mean(-1, keepdims=True) * 4, 0, 1)
            rows.append([gt, img, np.repeat(err, 3, -1)])
    mean = lambda k: float(np.mean([r[k] for r in per_image]))  # noqa: E731
    sheet = f"contact_sheet_mesh_{split}.png"
    contact_sheet(run_dir / sheet, rows, ["ground truth", "mesh render", "|error| x4"])
    out.update({"split": split, "n_images": len(per_image), "psnr": mean("psnr"), "ssim": mean("ssim"),
                "nerf_psnr": mean("nerf_psnr"), "nerf_ssim": mean("nerf_ssim"),
                "psnr_gap_db": mean("nerf_psnr") - mean("psnr"), "nerf_scores_from": sorted(nerf_source),
                "supersample": int(supersample), "ray_engine": renderer.engine,
                "mesh_seconds_per_image": float(np.mean(mesh_seconds)), "contact_sheet": sheet,
                "per_image": per_image})
    gt_mesh = _demo_ground_truth(task, run_dir)
    if gt_mesh is not None:
        m = mesh_metrics(TriMesh(v, f), TriMesh(np.asarray(gt_mesh.vertices, np.float64),
                                                np.asarray(gt_mesh.faces, np.int64)))
        out.update({"chamfer_l1": m["chamfer_l1"], "normal_consistency": m["normal_consistency"],
                    "fscore": m["fscore"], "ground_truth": "demo scene (marching cubes of the analytic SDF, 192^3)"})
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
