"""How far a textured mesh of a capture can get, next to where it is (issue 25), on eval --mesh's pixels.

For a nerf run and a textured mesh exported from it (``nerf-app export RUN --mesh X.glb --texture``), on the run's
held-out views and the mesh's *region pixels* (those whose NeRF depth lands in the region the mesh records, as
``eval --mesh``), one JSON line per variant with its mean per-view region PSNR and whole-frame PSNR:

- ``mesh``: the file as exported (the texture fitted to the training photos);
- ``mesh_fit_to_heldout``: the same surface with its texture refitted to the *held-out photos themselves*
  (the export's own least squares, :func:`nerf_app.geometry.texture.project_photos`): a texture cannot do much
  better than this on these views, so the difference to ``nerf`` is what this surface with any view-independent
  texture leaves on the table; the difference to ``mesh`` is what a better photo fit could still win;
- ``nerf``: the run itself;
- ``nerf_diffuse`` (with ``--diffuse-run``): a second run of the same capture trained with
  ``--set model.sh_degree=1`` (the colour does not depend on the view direction), scored on the same pixels:
  roughly the best a view-independent colour on a free volumetric surface reaches, so ``nerf - nerf_diffuse`` is
  the share of the NeRF's score that comes from view-dependent colour, which a glTF base-colour texture cannot hold.

    python benchmarks/mesh_ceiling.py RUN X.glb [--diffuse-run RUN_SH1] [--set data.downscale=2] [--limit N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import emit, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("mesh")
    parser.add_argument("--diffuse-run", default=None, help="the same capture trained with model.sh_degree=1")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for opening the runs (eval --mesh's protocol: data.downscale=2)")
    parser.add_argument("--limit", type=int, default=None, help="held-out views to score (default all)")
    args = parser.parse_args()

    from nerf_app.export.mesh_eval import _region_of, load_mesh_for_eval
    from nerf_app.export.region import region_pixels
    from nerf_app.geometry.mesh_render import MeshRenderer, render_scene_view
    from nerf_app.geometry.texture import project_photos
    from nerf_app.metrics import psnr
    from nerf_app.nerf.evaluate import eval_background, eval_views
    from nerf_app.train.modes import open_run

    from nerf_app.errors import NerfAppError

    overrides = args.set or ["data.downscale=2"]
    try:   # a bad run folder or mesh file: the library's one line, not a traceback
        task, _, _ = open_run(args.run, None, overrides, lock=False)
        v, f, uv, tex, vcol, meta = load_mesh_for_eval(args.mesh)
        diffuse = open_run(args.diffuse_run, None, overrides, lock=False)[0] if args.diffuse_run else None
    except NerfAppError as exc:
        raise SystemExit(f"mesh_ceiling.py: {exc}")
    scene = task.scene
    if uv is None:
        raise SystemExit(f"{args.mesh}: not a textured mesh (export it with --texture)")
    region = _region_of(meta, task)
    if region is None:
        raise SystemExit(f"{args.mesh}: records no region (export it with this version of nerf-app)")
    indices = [int(i) for i in eval_views(scene, "test", args.limit)]
    bg = eval_background(task.config)
    vn = scene.normalization.to_normalized(v)

    t = time.perf_counter()
    # the held-out photos through the scene's own rays, as eval --mesh renders the mesh (no pose correction,
    # no colour map: the held-out views have neither)
    ev = project_photos(MeshRenderer(vn, f), scene, indices, uv, tex.shape[0], bg)
    refit = ev.solve(tex[..., :3], 0.5, 25)   # the export's prior weight and iterations (photos.photo_texture)
    seen = (ev.weights.reshape(tex.shape[:2]) > 0)[..., None]
    refit = np.where(seen, refit, tex[..., :3]).astype(np.float32)
    fit_seconds = time.perf_counter() - t

    renderers = {"mesh": MeshRenderer(vn, f, uv, tex, vcol), "mesh_fit_to_heldout": MeshRenderer(vn, f, uv, refit)}
    scores = {k: [] for k in ("mesh", "mesh_fit_to_heldout", "nerf", "nerf_diffuse")}
    fractions = []
    for i in indices:
        gt = scene.images.rgb(i, background=np.array(bg, np.float32), keep=False)[..., :3].astype(np.float32)
        with torch.no_grad():
            nerf, depth, opacity = task.render_view(i, bg)
            o, d = (x.cpu().numpy() for x in task.view_rays(i))
            images = {"nerf": nerf}
            if diffuse is not None:
                images["nerf_diffuse"] = diffuse.render_view(i, bg)[0]
        keep = region_pixels(region, o, d, depth, opacity)
        fractions.append(float(keep.mean()))
        for name, r in renderers.items():
            images[name] = render_scene_view(r, scene, i, bg, 2)[0]   # eval --mesh's 2x2 rays per pixel
        for name, img in images.items():
            scores[name].append((psnr(img, gt, mask=keep), psnr(img, gt)))
    base = {"benchmark": "mesh_ceiling", "run": args.run, "mesh": args.mesh, "views": len(indices),
            "region_fraction": round(float(np.mean(fractions)), 4), "overrides": overrides, **machine()}
    for name, rows in scores.items():
        if rows:
            emit({**base, "variant": name, "region_psnr": round(float(np.mean([r[0] for r in rows])), 3),
                  "whole_psnr": round(float(np.mean([r[1] for r in rows])), 3),
                  "per_view_region_psnr": [round(r[0], 2) for r in rows],
                  **({"fit_seconds": round(fit_seconds, 1)} if name == "mesh_fit_to_heldout" else {})})


if __name__ == "__main__":
    main()
