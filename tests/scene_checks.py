"""What a scene that loaded must satisfy (used by the fuzzers: a load that succeeds is checked, not trusted)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nerf_app.errors import DatasetError


def check_error(exc: DatasetError) -> None:
    """A loader error is one line that names a file (the CLI prints it as ``nerf-app VERB: error: ...``)."""
    msg = str(exc)
    assert isinstance(exc, DatasetError), type(exc)
    assert msg.strip() and "\n" not in msg and "\r" not in msg, f"error is not one line: {msg!r}"
    assert exc.path and msg.startswith(exc.path), f"error does not start with the file it names: {msg!r}"
    assert len(exc.reason.strip()) >= 8, f"error says too little: {msg!r}"
    assert "Traceback" not in msg


def check_scene(scene, decode: bool = False) -> None:
    """Every invariant a consumer relies on. ``decode``: also decode every image and mask."""
    n = len(scene)
    assert n >= 1 and len(scene.cameras) == n == len(scene.image_paths) == len(scene.names)
    c2w = np.asarray(scene.c2w)
    assert c2w.shape == (n, 4, 4) and c2w.dtype == np.float64
    assert np.isfinite(c2w).all(), "non-finite pose accepted"
    assert np.allclose(c2w[:, 3], [0, 0, 0, 1])
    R = c2w[:, :3, :3]
    err = np.abs(R @ np.transpose(R, (0, 2, 1)) - np.eye(3)).max()
    assert err < 1e-2, f"non-orthonormal rotation accepted (max |R R^T - I| = {err:.3g})"
    assert (np.linalg.det(R) > 0).all(), "reflection accepted as a rotation"
    assert np.isfinite(scene.c2w_capture).all()
    for cam in scene.cameras:
        assert 0 < cam.width <= 1 << 17 and 0 < cam.height <= 1 << 17
        p = np.asarray(cam.params, dtype=np.float64)
        assert np.isfinite(p).all(), f"non-finite camera parameter accepted: {cam}"
        assert cam.fx > 0 and cam.fy > 0, f"non-positive focal length accepted: {cam}"
    root = Path(os.path.realpath(scene.root))
    for p in scene.image_paths:
        assert Path(os.path.realpath(p)).is_relative_to(root), f"image outside the scene folder accepted: {p}"
    mask_paths = scene.images.mask_paths or []
    for p in mask_paths:
        assert Path(os.path.realpath(p)).is_relative_to(root), f"mask outside the scene folder accepted: {p}"
    assert scene.splits and all(len(v) == 0 or (0 <= v.min() and v.max() < n) for v in scene.splits.values())
    assert len(scene.split_indices("train")) >= 1
    norm = scene.normalization
    assert np.isfinite(norm.scale) and norm.scale > 0 and np.isfinite(norm.translation).all()
    assert 1 <= scene.n_cascades <= 16 and np.isfinite(scene.aabb).all()
    if scene.points3D is not None:
        assert np.isfinite(scene.points3D.xyz).all(), "non-finite sparse point accepted"
        pts = scene.points3D
        assert len(pts.obs_image) == len(pts.obs_point) == len(pts.obs_xy)
        if len(pts.obs_image):
            assert pts.obs_image.min() >= 0 and pts.obs_image.max() < n
            assert pts.obs_point.min() >= 0 and pts.obs_point.max() < len(pts)
    # rays of the first image: finite origins, unit directions (distortion that cannot be undone is refused)
    o, d = scene.rays(0)
    assert np.isfinite(o).all() and np.isfinite(d).all(), "camera yields non-finite rays"
    assert np.allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-6)
    if decode:
        for i in range(n):
            img = scene.images.load(i)
            w, h = scene.cameras[i].width, scene.cameras[i].height
            assert img.shape[:2] == (h, w) and img.dtype == np.uint8 and img.shape[2] in (3, 4)
            m = scene.images.mask(i)
            if m is not None:
                assert m.shape == (h, w) and m.dtype == bool
