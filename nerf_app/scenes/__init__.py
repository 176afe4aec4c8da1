"""Scenes the project generates itself: the embedded default (demo) scene with known geometry.

``nerf_app.scenes.synthetic`` renders it (:func:`~nerf_app.scenes.synthetic.generate`) and gives
its ground truth (:func:`~nerf_app.scenes.synthetic.scene_sdf`,
:func:`~nerf_app.scenes.synthetic.ground_truth_mesh`). The generated copy is committed under the
repository's ``data/demo``; ``nerf-app make-scene OUT`` regenerates it.
"""
from .synthetic import bbox, generate, ground_truth_mesh, scene_sdf

__all__ = ["generate", "scene_sdf", "ground_truth_mesh", "bbox"]
