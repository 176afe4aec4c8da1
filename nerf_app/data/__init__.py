"""Posed captures -> one normalised :class:`Scene`: readers, camera models, images, rays.

``load_scene(path)`` auto-detects COLMAP (text or binary), ``transforms.json`` (instant-ngp,
nerfstudio, Blender) and LLFF ``poses_bounds.npy``. Conventions: OpenCV camera axes, float64
camera-to-world poses, pixel centres at +0.5, distortion undone exactly per ray.
"""
from .cameras import MODELS_BY_ID, MODELS_BY_NAME, Camera, CameraModel
from .capture import SparsePoints
from .normalize import Normalization
from .rays import RayBatch, RaySampler
from .scene import Scene, is_capture, load_scene

__all__ = ["load_scene", "is_capture", "Scene", "Camera", "CameraModel", "MODELS_BY_NAME", "MODELS_BY_ID", "SparsePoints",
           "Normalization", "RaySampler", "RayBatch"]
