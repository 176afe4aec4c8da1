"""What `nerf-app process` reports, and how recovered poses are compared with known ones.

:func:`umeyama` is the least-squares similarity (scale, rotation, translation) between two point
sets; :func:`compare_centres` aligns recovered camera centres to reference ones with it and gives
the RMS centre error as a fraction of the reference cameras' spread (RMS distance of the reference
centres from their centroid).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray):
    """``(s, R, t)`` minimising ``sum ||dst_i - (s R src_i + t)||^2`` (Umeyama 1991)."""
    src = np.asarray(src, float)
    dst = np.asarray(dst, float)
    if src.shape != dst.shape or src.ndim != 2 or len(src) < 3:
        raise ValueError("umeyama needs two (n, d) arrays with n >= 3")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(src.shape[1])
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[-1, -1] = -1
    R = U @ D @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var_s) if var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def compare_centres(recovered: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
                    reference_axes: Optional[Dict[str, np.ndarray]] = None) -> dict:
    """Align ``recovered`` camera centres (name -> (3,)) to ``reference`` ones by a similarity and
    measure the residual. Names are matched as given; a reference image missing from ``recovered``
    counts as unregistered. With ``reference_axes`` (name -> optical axis), the residual is also
    split into its part along each camera's optical axis and across it (a focal length that differs
    between two models moves a camera along its axis: the focal length / depth ambiguity)."""
    common = sorted(set(recovered) & set(reference))
    out = {"reference_images": len(reference), "registered": len(common),
           "registered_fraction": len(common) / max(1, len(reference)),
           "unregistered": sorted(set(reference) - set(recovered))}
    if len(common) < 3:
        out.update(rms_error=float("nan"), rms_percent_of_spread=float("nan"), max_percent_of_spread=float("nan"))
        return out
    src = np.stack([recovered[n] for n in common])
    dst = np.stack([reference[n] for n in common])
    s, R, t = umeyama(src, dst)
    aligned = s * src @ R.T + t
    err = np.linalg.norm(aligned - dst, axis=1)
    spread = float(np.sqrt(((dst - dst.mean(0)) ** 2).sum(1).mean()))
    rms = float(np.sqrt((err ** 2).mean()))
    out.update(rms_error=rms, spread=spread, rms_percent_of_spread=100.0 * rms / spread,
               max_percent_of_spread=100.0 * float(err.max()) / spread, scale=float(s))
    if reference_axes is not None:
        axes = np.stack([reference_axes[n] for n in common])
        axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
        residual = aligned - dst
        along = (residual * axes).sum(1)
        across = np.linalg.norm(residual - along[:, None] * axes, axis=1)
        out.update(along_axis_percent=100.0 * float(np.sqrt((along ** 2).mean())) / spread,
                   across_axis_percent=100.0 * float(np.sqrt((across ** 2).mean())) / spread)
    return out


def centres_of_scene(scene, strip_prefix: Sequence[str] = ("images/",), column: int = 3) -> Dict[str, np.ndarray]:
    """Camera centres (``column=2``: optical axes) in the capture's coordinates keyed by image name
    (``images/`` prefixes of transforms.json file paths removed, so names compare with a processed
    folder's)."""
    centres = scene.c2w_capture[:, :3, column]
    out = {}
    for name, c in zip(scene.names, centres):
        for p in strip_prefix:
            if name.startswith(p):
                name = name[len(p):]
        out[name] = np.array(c, float)
    return out


def reconstruction_stats(rec) -> dict:
    """Numbers of a pycolmap reconstruction for the report."""
    cameras = []
    per_camera: Dict[int, int] = {}
    for image_id in rec.reg_image_ids():
        cid = int(rec.image(image_id).camera_id)
        per_camera[cid] = per_camera.get(cid, 0) + 1
    for cid, cam in sorted(rec.cameras.items()):
        cameras.append({"id": int(cid), "model": str(cam.model_name), "width": int(cam.width),
                        "height": int(cam.height), "params": [float(p) for p in cam.params],
                        "images": per_camera.get(int(cid), 0)})
    return {
        "points": int(rec.num_points3D()),
        "observations": int(rec.compute_num_observations()),
        "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
        "mean_track_length": float(rec.compute_mean_track_length()),
        "mean_observations_per_image": float(rec.compute_mean_observations_per_reg_image()),
        "cameras": cameras,
    }
