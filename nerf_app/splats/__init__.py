"""Gaussian splats baked from a trained radiance field (issue 27): the splat set and its PLY file
(model.py, ply.py), the bake (bake.py), refinement against the photos (refine.py), and rendering,
evaluation and videos from a splat file (views.py). The rasteriser is the op nerf_app.ops.splat."""
