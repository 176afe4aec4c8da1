"""The embedded default scene (``nerf_app.demo``): three textured analytic shapes with known geometry.

A sphere, a tilted torus and a rounded box float above nothing (transparent background). A small
numpy sphere tracer renders them from a spiral of posed cameras over the upper hemisphere, and
:func:`generate` writes the same views twice — as a COLMAP text model (``sparse/0`` + ``images/``)
and as ``transforms_{train,test}.json`` (Blender/instant-ngp) — plus ``scene.json`` describing the
shapes, their bounding box and the camera setup. Everything is deterministic: no random state but
a fixed seed, no time stamps, numbers rounded before they are written, so a regeneration
reproduces the committed ``data/demo`` files.

World coordinates ("the scene's own coordinates", also the capture coordinates of both files):
+z up, the object centred near the origin, cameras about 4 units away looking at the origin.

Ground truth for evaluation: :func:`scene_sdf` (exact signed distance of the union, numpy or torch)
and :func:`ground_truth_mesh` (marching cubes of it). Appearance is Lambert + ambient under a light
fixed in the world, so a surface point has the same colour from every view; views still differ
because the procedural textures (checkers, stripes) are fixed on the shapes.

The package: :mod:`.shapes` (parameters, shapes, signed distances, colours), :mod:`.cameras` (the spiral of
posed views, rays), :mod:`.tracer` (the sphere tracer, surface points), :mod:`.writers` (the files).
"""
from .shapes import (AMBIENT, CAMERA_ANGLE_X, CAMERA_RADIUS, DECIMALS, ELEVATION_DEG, HEIGHT, LIGHT_DIR, N_POINTS, N_VIEWS, SEED,
                     SHAPES, SUPERSAMPLE, Shape, TEST_EVERY, WIDTH, albedo, bbox, ground_truth_mesh,
                     scene_sdf, shade, shape_sdfs)
from .cameras import (View, focal, intrinsics, pixel_rays, views)
from .tracer import (observations, render_view, surface_points, trace)
from .writers import (generate, scene_description, sparse_points, text_files)

__all__ = ['AMBIENT', 'CAMERA_ANGLE_X', 'CAMERA_RADIUS', 'DECIMALS', 'ELEVATION_DEG', 'HEIGHT', 'LIGHT_DIR', 'N_POINTS',
           'N_VIEWS', 'SEED', 'SHAPES', 'SUPERSAMPLE', 'Shape', 'TEST_EVERY', 'WIDTH', 'albedo', 'bbox',
           'ground_truth_mesh', 'scene_sdf', 'shade', 'shape_sdfs', 'View', 'focal', 'intrinsics',
           'pixel_rays', 'views', 'observations', 'render_view', 'surface_points', 'trace', 'generate',
           'scene_description', 'sparse_points', 'text_files']
