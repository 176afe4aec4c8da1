"""Textured mesh export (``nerf-app export RUN --mesh OUT.glb --texture``) for NeRF, SDF and occupancy runs.

The task hands over its surface through one method, ``Task.export_surface`` (a cleaned mesh in its own
coordinates, how to colour it, whether it has training photos; :class:`nerf_app.export.surface.Surface`);
this module runs the stages every surface goes through, each timed in the result:

1. **surface**: the task's (NeRF: :mod:`nerf_app.export.nerf_surface`, by ``--method density | tsdf`` inside
   the region; SDF/occupancy: the field's level set, :func:`nerf_app.export.surface.field_surface`);
2. **cull** (photos): faces no training camera sees as a first hit are dropped (from the fused depth maps
   when the surface came with them, else by casting every training pixel; ``keep_hidden`` skips it);
3. **simplify**: quadric decimation to the ``--faces`` budget (fast-simplification);
4. **unwrap**: xatlas charts packed into a ``--texture-size`` square;
5. **bake**: each texel's surface point and normal -> the surface's colour (NeRF: the field's diffuse colour
   at the normal ray's expected hit; SDF/occupancy: clay shading), dilated past the charts; then (photos,
   ``bake_from="photos"``) the texture is fitted to the training photos by least squares, each photo's
   appearance correction applied (:mod:`nerf_app.export.photos`); the field's colour is then only the
   fit's prior and is baked at half the texture's side (:func:`~nerf_app.geometry.texture.bake_prior`);
6. **write**: GLB (one file) or OBJ + MTL + PNG in the capture's own coordinates (or, ``--blender``, y-up
   so Blender's importers restore the z-up capture), the region the mesh claims recorded in its extras.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..errors import ConfigError
from .options import AXES_KEY, BLENDER_AXES, REGION_KEY, check_options


def export_textured(task, run_dir: Path, mesh: Optional[str] = None, texture_size: int = 2048,
                    faces: int = 200_000, blender: bool = False, bake_from: str = "photos",
                    keep_hidden: bool = False, progress: bool = True, **surface_options) -> Dict[str, Any]:
    """The pipeline in the module docstring; ``surface_options`` go to ``task.export_surface`` (method, crop,
    resolution, threshold, chunks, min_component, fill_holes). Returns a JSON-able summary with per-stage
    seconds."""
    from ..geometry.marching_cubes import apply_transform
    from ..geometry.simplify import decimate
    from ..geometry.texture import bake, bake_prior, unwrap, vertex_normals, write_textured

    check_options(texture_size, faces, mesh)
    if bake_from not in ("photos", "field"):
        raise ConfigError(f"--bake must be photos or field, got {bake_from!r}")
    path = Path(mesh) if mesh else Path(run_dir) / "mesh_textured.glb"
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    tick = [t0]

    def stage(name):
        now = time.perf_counter()
        timings[name] = round(now - tick[0], 2)
        tick[0] = now

    surface = task.export_surface(progress=progress, **surface_options)
    v, f = surface.vertices, surface.faces
    stage("surface")
    n_hidden = 0
    if surface.photos and not keep_hidden:
        if surface.views:
            from .photos import cull_unseen_by_depth
            tol = 2.0 * float(surface.info.get("voxel", 1.0 / surface.info.get("resolution", 256)))
            v, f, n_hidden = cull_unseen_by_depth(surface.views, v, f, max(tol, 1e-6))
        else:
            from .photos import cull_hidden
            res = int(surface.info.get("resolution", 384))
            v, f, n_hidden = cull_hidden(task, v, f, progress, spacing=1.0 / res)  # faces ~ one cell
        stage("cull")
    v, f = decimate(v, f, faces)
    stage("simplify")
    normals = vertex_normals(v, f)
    v2, f2, uv, vmap = unwrap(v, f, texture_size)
    normals = normals[vmap]
    stage("unwrap")
    fit_photos = surface.photos and bake_from == "photos"
    if fit_photos:   # the field's colour is only the fit's prior: at half the texture's side (docs/export.md)
        texture, mask = bake_prior(v2, f2, uv, texture_size, surface.colour, normals=normals, progress=progress)
    else:
        texture, mask = bake(v2, f2, uv, texture_size, surface.colour, normals=normals, progress=progress)
    kind = surface.colour_kind
    stage("bake")
    photo_info = {}
    if fit_photos:
        from .photos import photo_texture
        texture, seen, stride = photo_texture(task, v2, f2, uv, texture, mask, progress)
        kind = (f"fitted to the training photos (appearance-corrected, cosine-weighted least squares), {seen:.0%} "
                "of the chart texels; elsewhere " + kind)
        photo_info = {"photo_stride": stride}
        stage("photos")
    vc, fc = apply_transform(v2, f2, surface.to_capture)
    axes = "capture"
    if blender:
        vc = vc @ BLENDER_AXES.T
        axes = "blender"
    meta = {AXES_KEY: axes}
    region = None
    if surface.region is not None and task.scene is not None:
        region = surface.region.to_json(task.scene.normalization)
        meta[REGION_KEY] = region
    write_textured(path, vc, fc, uv, texture, metadata=meta)
    stage("write")
    info = dict(surface.info)
    return {"mesh": str(path), "faces": int(len(fc)), "vertices": int(len(vc)),
            "extracted_faces": int(info.pop("extracted_faces", len(fc))), "hidden_faces_dropped": int(n_hidden),
            **info, **photo_info, **({"region": region} if region else {}),
            "texture_size": int(texture_size), "texture_coverage": round(float(mask.mean()), 4), "colour": kind,
            "axes": axes, "coordinates": "capture" if not blender else "capture, z-up turned y-up for Blender's importers",
            "seconds": round(time.perf_counter() - t0, 2), "stage_seconds": timings}
