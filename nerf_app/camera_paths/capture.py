"""Camera paths that stay where the capture's cameras were, and how well any path is covered by them.

All poses are 4x4 camera-to-world matrices, OpenCV axes (x right, y down, z forward), in one coordinate
frame (render uses the scene's normalised one).

- :func:`capture_frame`: centre, up, radius, elevation and the arc of azimuths the training cameras cover.
- :func:`capture_orbit`: the default ``render --path orbit``: a full turn when the cameras cover at least
  ``FULL_TURN_DEG`` of azimuth, else a swing back and forth over the covered arc (eased at both ends), the
  elevation following the cameras along the arc (:func:`covered_elevations`). Fewer than ``MIN_CAMERAS``
  cameras: the documented fallback, a full turn at the cameras' distance and mean elevation.
- :func:`capture_order` / :func:`capture_path`: ``render --path capture``, a smooth path through the
  cameras in capture order (natural file-name order, which is frame order for a video; nearest-neighbour
  order when the names are not in walking order), resampled to constant speed with eased ends.
- :func:`path_coverage`: per frame, the angle to the nearest training camera's view direction and the
  distance ratio; the share of frames within ``NEAR_DEG``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .orbit import look_at

MIN_CAMERAS = 3          # fewer training cameras: no arc can be told; the orbit falls back to a full turn
FULL_TURN_DEG = 300.0    # cameras covering at least this much azimuth get a full turn
NEAR_DEG = 20.0          # a frame "looks like the capture" when a training camera looks within this angle


@dataclass
class CaptureFrame:
    """Where a capture's cameras are, seen from the point they look at (see :func:`capture_frame`)."""
    target: np.ndarray               # [3] the point the optical axes pass closest to (or the fallback)
    up: np.ndarray                   # [3] unit: the capture's up (:func:`capture_up`)
    a: np.ndarray                    # [3] unit, perpendicular to up: azimuth 0
    b: np.ndarray                    # [3] unit: azimuth 90 (up x a)
    radius: float                    # median camera distance to the target
    elevation_deg: float             # mean camera elevation above the plane perpendicular to up
    azimuth_deg: np.ndarray          # [n] each camera's azimuth in [0, 360)
    camera_elevation_deg: np.ndarray  # [n] each camera's elevation
    arc_start_deg: float             # the covered arc starts here and runs counter-clockwise ...
    arc_deg: float                   # ... over this many degrees (360 - the largest gap between cameras)
    n_cameras: int
    forward: Optional[np.ndarray] = None   # [n,3] the cameras' view directions
    notes: List[str] = field(default_factory=list)

    @property
    def full_turn(self) -> bool:
        return self.n_cameras < MIN_CAMERAS or self.arc_deg >= FULL_TURN_DEG

    def describe(self) -> Dict[str, object]:
        return {"target": self.target.tolist(), "up": self.up.tolist(), "radius": self.radius,
                "elevation_deg": self.elevation_deg, "covered_arc_deg": self.arc_deg,
                "arc_start_deg": self.arc_start_deg, "n_cameras": self.n_cameras,
                "kind": "full turn" if self.full_turn else "swing over the covered arc"}


def axes_point(centres: np.ndarray, forward: np.ndarray) -> Optional[np.ndarray]:
    """The point nearest (least squares) to every optical axis, or None when the axes are (nearly)
    parallel: ``sum_i (I - f f^T)(p - c_i) = 0``."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, f in zip(centres, forward):
        P = np.eye(3) - np.outer(f, f)
        A += P
        b += P @ c
    w = np.linalg.eigvalsh(A)
    if w[0] < 1e-3 * max(w[-1], 1e-12):
        return None
    return np.linalg.solve(A, b)


def capture_up(c2w: np.ndarray) -> np.ndarray:
    """The capture's up direction: the cameras' mean up (-y) with the directions their x axes (image
    right) spread over taken out. Cameras held level have horizontal x axes, so around an object those
    span the horizontal plane and what is left is vertical even when every camera tilts down at it (the
    mean up alone leans towards the middle of a half ring); facing forward they span one direction only."""
    c2w = np.asarray(c2w, float)
    up = -c2w[:, :3, 1].mean(axis=0)
    if np.linalg.norm(up) < 1e-9:
        up = np.array([0.0, 0.0, 1.0])
    up = up / np.linalg.norm(up)
    x = c2w[:, :3, 0]
    w, v = np.linalg.eigh(x.T @ x / len(x))
    fixed = up.copy()
    for k in range(3):
        if w[k] > 0.15 * w[-1]:     # a direction the x axes spread over: not up
            fixed -= (fixed @ v[:, k]) * v[:, k]
    if np.linalg.norm(fixed) > 0.3:  # else the cameras roll too much to tell: keep the mean
        up = fixed / np.linalg.norm(fixed)
    return up


def _basis(up: np.ndarray):
    a = np.cross(up, [1.0, 0.0, 0.0])
    if np.linalg.norm(a) < 1e-6:
        a = np.cross(up, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    return a, np.cross(up, a)


def covered_arc(azimuth_deg: Sequence[float]):
    """``(start, extent)`` in degrees: the circle minus its largest gap between neighbouring azimuths,
    starting just after that gap (counter-clockwise). One azimuth: ``(it, 0)``; none: ``(0, 0)``."""
    az = np.sort(np.mod(np.asarray(azimuth_deg, float), 360.0))
    if len(az) == 0:
        return 0.0, 0.0
    if len(az) == 1:
        return float(az[0]), 0.0
    gaps = np.diff(np.concatenate([az, az[:1] + 360.0]))
    k = int(np.argmax(gaps))
    return float(az[(k + 1) % len(az)]), float(360.0 - gaps[k])


def capture_frame(c2w: np.ndarray, fallback_target: Sequence[float] = (0.5, 0.5, 0.5),
                  use_axes: bool = True, max_offset: float = 1.0) -> CaptureFrame:
    """Centre, up, radius, elevation and covered azimuth arc of cameras ``c2w [n,4,4]``. The centre is the
    point the optical axes pass closest to (``use_axes``) when that is within ``max_offset`` (per axis) of
    ``fallback_target``, else ``fallback_target`` (the region of interest's centre)."""
    c2w = np.asarray(c2w, float)
    n = len(c2w)
    notes: List[str] = []
    fallback_target = np.asarray(fallback_target, float)
    if n == 0:
        raise ValueError("no cameras")
    centres, forward = c2w[:, :3, 3], c2w[:, :3, 2]
    target = axes_point(centres, forward) if (use_axes and n >= 2) else None
    if target is None or not np.all(np.abs(target - fallback_target) < max_offset):
        target = fallback_target
    up = capture_up(c2w)
    a, b = _basis(up)
    offsets = centres - target
    dist = np.linalg.norm(offsets, axis=1)
    radius = float(np.median(dist))
    if radius < 1e-6:  # every camera at the target (degenerate): orbit at a unit distance
        radius = 1.0
    cam_el = np.degrees(np.arcsin(np.clip(offsets @ up / np.maximum(dist, 1e-12), -1, 1)))
    azimuth = np.mod(np.degrees(np.arctan2(offsets @ b, offsets @ a)), 360.0)
    if n < MIN_CAMERAS:
        notes.append(f"only {n} training camera{'s' if n != 1 else ''}: the orbit falls back to a full turn "
                     f"around the scene centre at the cameras' distance and mean elevation (fewer than "
                     f"{MIN_CAMERAS} cameras show no arc)")
    elevation = float(np.mean(cam_el))
    start, arc = covered_arc(azimuth)
    return CaptureFrame(target=target, up=up, a=a, b=b, radius=radius, elevation_deg=elevation,
                        azimuth_deg=azimuth, camera_elevation_deg=cam_el, arc_start_deg=start, arc_deg=arc,
                        n_cameras=n, forward=forward.copy(), notes=notes)


def _elevation_along(frame: CaptureFrame, azimuth_deg: np.ndarray, sigma_deg: float = 25.0) -> np.ndarray:
    """The cameras' elevation as a smooth function of azimuth (Gaussian-weighted over the circle)."""
    d = np.mod(azimuth_deg[:, None] - frame.azimuth_deg[None, :] + 180.0, 360.0) - 180.0
    w = np.exp(-0.5 * (d / sigma_deg) ** 2) + 1e-12
    return (w * frame.camera_elevation_deg[None, :]).sum(1) / w.sum(1)


def view_angles(frame: CaptureFrame, forward: np.ndarray, azimuth_deg: np.ndarray,
                elevation_deg: np.ndarray) -> np.ndarray:
    """``[len(az), len(el)]``: for a camera on the orbit sphere at each (azimuth, elevation), looking at the
    target, the angle (degrees) between its view direction and the nearest of ``forward [n,3]``."""
    t = np.radians(azimuth_deg)[:, None, None]
    e = np.radians(elevation_deg)[None, :, None]
    offset = np.cos(e) * (np.cos(t) * frame.a + np.sin(t) * frame.b) + np.sin(e) * frame.up   # [A, E, 3]
    cos = (-offset) @ (forward / np.linalg.norm(forward, axis=1, keepdims=True)).T              # [A, E, n]
    return np.degrees(np.arccos(np.clip(cos.max(-1), -1.0, 1.0)))


def covered_elevations(frame: CaptureFrame, forward: np.ndarray, azimuth_deg: np.ndarray,
                       step_deg: float = 2.0, smooth_deg: float = 8.0) -> np.ndarray:
    """An elevation for each of ``azimuth_deg`` (in order along a path) that keeps the view near the
    capture's: a shortest path (dynamic programming) over an elevation grid where a node costs its angle to
    the nearest training view (four times over past 15 degrees) and a step costs its change of elevation,
    then smoothed. Cameras at many heights (a hand-held capture) get an orbit that climbs to where they
    were rather than their mean, which may lie between all of them."""
    lo = max(-80.0, float(frame.camera_elevation_deg.min()) - 10.0)
    hi = min(80.0, float(frame.camera_elevation_deg.max()) + 10.0)
    grid = np.arange(lo, hi + 1e-9, step_deg)
    ang = view_angles(frame, forward, azimuth_deg, grid)
    node = ang + 4.0 * np.maximum(ang - 15.0, 0.0)
    jump = np.abs(grid[:, None] - grid[None, :])               # [from, to], degrees of elevation
    cost = node[0].copy()
    back = np.zeros((len(azimuth_deg), len(grid)), int)
    for k in range(1, len(azimuth_deg)):
        total = cost[:, None] + jump
        back[k] = np.argmin(total, axis=0)
        cost = total[back[k], np.arange(len(grid))] + node[k]
    idx = np.empty(len(azimuth_deg), int)
    idx[-1] = int(np.argmin(cost))
    for k in range(len(azimuth_deg) - 1, 0, -1):
        idx[k - 1] = back[k, idx[k]]
    el = grid[idx]
    steps = np.abs(np.diff(azimuth_deg))
    per = float(np.median(steps)) if len(steps) and np.median(steps) > 0 else 1.0
    return _smooth(el, smooth_deg / per)


def poses_at(frame: CaptureFrame, azimuth_deg: np.ndarray, elevation_deg: np.ndarray,
             radius: Optional[float] = None) -> np.ndarray:
    """Look-at poses ``[n,4,4]`` on the sphere of ``radius`` around the frame's target."""
    r = frame.radius if radius is None else radius
    poses = []
    for t, e in zip(np.radians(azimuth_deg), np.radians(elevation_deg)):
        eye = frame.target + r * (math.cos(e) * (math.cos(t) * frame.a + math.sin(t) * frame.b) + math.sin(e) * frame.up)
        poses.append(look_at(eye, frame.target, frame.up))
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def orbit_azimuths(frame: CaptureFrame, n_frames: int, turns: float = 1.0, force_full: bool = False) -> np.ndarray:
    """Azimuth per frame: a full turn (``turns`` of them, the last frame just before the first) starting
    at the covered arc's start, or (partial coverage) ``turns`` swings there and back over the covered
    arc, cosine-eased so the camera slows to a stop at each end."""
    i = np.arange(n_frames, dtype=float)
    if force_full or frame.full_turn:
        return np.mod(frame.arc_start_deg + 360.0 * turns * i / n_frames, 360.0)
    phase = 2.0 * math.pi * turns * i / n_frames
    return np.mod(frame.arc_start_deg + frame.arc_deg * 0.5 * (1.0 - np.cos(phase)), 360.0)


def capture_orbit(frame: CaptureFrame, n_frames: int, force_full: bool = False,
                  forward: Optional[np.ndarray] = None) -> np.ndarray:
    """The default orbit (see the module docstring): ``[n_frames,4,4]``. A full turn keeps the cameras'
    elevation smoothed over azimuth; a swing follows :func:`covered_elevations` along the arc (given the
    cameras' view directions ``forward [n,3]``, by default the frame's own)."""
    az = orbit_azimuths(frame, n_frames, force_full=force_full)
    forward = frame.forward if forward is None else forward
    if frame.n_cameras < MIN_CAMERAS:
        el = np.full(n_frames, frame.elevation_deg)
    elif force_full or frame.full_turn or forward is None:
        el = _elevation_along(frame, az)
    else:
        along = frame.arc_start_deg + np.linspace(0.0, frame.arc_deg, max(2, int(math.ceil(frame.arc_deg / 2.0)) + 1))
        profile = covered_elevations(frame, forward, along)
        el = np.interp(np.mod(az - frame.arc_start_deg, 360.0), along - frame.arc_start_deg, profile)
    return poses_at(frame, az, el)


# -- the capture path ------------------------------------------------------------------------------

def natural_key(name: str):
    """``frame_2.png`` before ``frame_10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(name))]


def _path_length(points: np.ndarray, order: Sequence[int]) -> float:
    p = points[np.asarray(order)]
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def nearest_neighbour_order(points: np.ndarray) -> List[int]:
    """A greedy nearest-neighbour walk, starting at the point farthest from the centroid (an end of an
    arc or line of cameras)."""
    n = len(points)
    if n == 0:
        return []
    start = int(np.argmax(np.linalg.norm(points - points.mean(0), axis=1)))
    left = set(range(n)) - {start}
    order = [start]
    while left:
        rest = np.fromiter(left, int)
        k = int(rest[np.argmin(np.linalg.norm(points[rest] - points[order[-1]], axis=1))])
        order.append(k)
        left.remove(k)
    return order


def capture_order(names: Sequence[str], centres: np.ndarray, tolerance: float = 1.5):
    """``(order, how)``: the cameras in natural file-name order (a video's frame order) when that walk is
    at most ``tolerance`` times as long as a nearest-neighbour walk, else the nearest-neighbour walk
    (photos whose names do not follow where they were taken)."""
    by_name = sorted(range(len(names)), key=lambda i: natural_key(names[i]))
    if len(names) < 3:
        return by_name, "file-name order"
    centres = np.asarray(centres, float)
    nn = nearest_neighbour_order(centres)
    if _path_length(centres, by_name) <= tolerance * max(_path_length(centres, nn), 1e-12):
        return by_name, "file-name order"
    return nn, "nearest-neighbour order"


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with the ends held, ``sigma`` in samples."""
    if sigma < 0.5 or len(values) < 3:
        return np.array(values, copy=True)
    from scipy.ndimage import gaussian_filter1d
    return gaussian_filter1d(values, sigma, axis=0, mode="nearest")


def eased_progress(n_frames: int, ease: float = 0.15) -> np.ndarray:
    """``[n_frames]`` from 0 to 1: constant speed in the middle, speed ramping up (down) with a half cosine
    over the first (last) ``ease`` of the frames."""
    if n_frames == 1:
        return np.zeros(1)
    t = np.linspace(0.0, 1.0, 4001)
    v = np.ones_like(t)
    if ease > 0:
        up, down = t < ease, t > 1 - ease
        v[up] = 0.5 * (1 - np.cos(math.pi * t[up] / ease))
        v[down] = 0.5 * (1 - np.cos(math.pi * (1 - t[down]) / ease))
    s = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t))])
    s /= s[-1]
    return np.interp(np.linspace(0.0, 1.0, n_frames), t, s)


def capture_path(c2w: np.ndarray, order: Sequence[int], n_frames: int, max_keys: int = 32,
                 ease: float = 0.15) -> np.ndarray:
    """A smooth path ``[n_frames,4,4]`` through the cameras ``c2w[order]``: positions and rotations are
    lightly smoothed along the sequence (hand shake), thinned to at most ``max_keys`` keyframes, joined by
    a cubic spline (positions, parameterised by path length) and a rotation spline (scipy
    ``RotationSpline``), then sampled at constant speed with eased ends. Speed counts both moving and
    turning (a turn of one radian counts as the cameras' spread)."""
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, RotationSpline

    seq = np.asarray(c2w, float)[np.asarray(order, int)]
    n = len(seq)
    if n == 0:
        raise ValueError("no cameras")
    if n == 1 or n_frames == 1:
        return np.repeat(seq[:1], n_frames, axis=0)
    P = seq[:, :3, 3]
    quats = Rotation.from_matrix(seq[:, :3, :3]).as_quat()
    for i in range(1, n):   # one hemisphere along the sequence, so averaging neighbours is meaningful
        if np.dot(quats[i], quats[i - 1]) < 0:
            quats[i] = -quats[i]
    sigma = 0.5 * n / max_keys if n > max_keys else 0.0
    P = _smooth(P, sigma)
    quats = _smooth(quats, sigma)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    spread = float(np.median(np.linalg.norm(P - P.mean(0), axis=1))) or 1.0
    rots = Rotation.from_quat(quats)

    def steps(p, r):
        return np.linalg.norm(np.diff(p, axis=0), axis=1) + spread * (r[:-1].inv() * r[1:]).magnitude()

    # keyframes evenly spaced along the (smoothed) sequence's length
    u = np.concatenate([[0.0], np.cumsum(steps(P, rots))])
    if u[-1] <= 1e-12:
        return np.repeat(seq[:1], n_frames, axis=0)
    k = min(n, max_keys)
    keys = np.unique(np.searchsorted(u, np.linspace(0, u[-1], k)).clip(0, n - 1))
    keys = np.unique(np.concatenate([[0], keys, [n - 1]]))
    kp, kr = P[keys], rots[keys]
    ku = np.concatenate([[0.0], np.cumsum(steps(kp, kr))])
    good = np.concatenate([[True], np.diff(ku) > 1e-9 * ku[-1]])   # drop coincident keyframes
    kp, kr, ku = kp[good], kr[np.flatnonzero(good)], ku[good]
    if len(ku) < 2:
        return np.repeat(seq[:1], n_frames, axis=0)
    pos_spline = CubicSpline(ku, kp, axis=0, bc_type="natural" if len(ku) > 2 else "not-a-knot")
    rot_spline = RotationSpline(ku, kr)
    # arc length of the spline (moving + turning), then constant speed with eased ends
    dense = np.linspace(0.0, ku[-1], 4000)
    dp, dr = pos_spline(dense), rot_spline(dense)
    s = np.concatenate([[0.0], np.cumsum(steps(dp, dr))])
    params = np.interp(eased_progress(n_frames, ease) * s[-1], s, dense)
    out = np.tile(np.eye(4), (n_frames, 1, 1))
    out[:, :3, 3] = pos_spline(params)
    out[:, :3, :3] = rot_spline(params).as_matrix()
    return out


# -- coverage --------------------------------------------------------------------------------------

def path_coverage(poses: np.ndarray, train_c2w: np.ndarray, target: Sequence[float],
                  names: Optional[Sequence[str]] = None, near_deg: float = NEAR_DEG) -> Dict[str, object]:
    """How far each frame of a path is from what the capture saw: the angle between its view direction and
    the nearest training camera's (degrees), that camera, and the ratio of the frame's distance to
    ``target`` to that camera's (1: as close as the photo; 0.5: twice as close). ``within``: the share of
    frames whose angle is at most ``near_deg``."""
    poses = np.asarray(poses, float)
    train_c2w = np.asarray(train_c2w, float)
    target = np.asarray(target, float)
    f = poses[:, :3, 2] / np.linalg.norm(poses[:, :3, 2], axis=1, keepdims=True)
    F = train_c2w[:, :3, 2] / np.linalg.norm(train_c2w[:, :3, 2], axis=1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip(f @ F.T, -1.0, 1.0)))
    j = np.argmin(ang, axis=1)
    best = ang[np.arange(len(poses)), j]
    d_frame = np.linalg.norm(poses[:, :3, 3] - target, axis=1)
    d_cam = np.linalg.norm(train_c2w[j, :3, 3] - target, axis=1)
    ratio = d_frame / np.maximum(d_cam, 1e-12)
    frames = [{"frame": int(k), "angle_deg": round(float(best[k]), 3), "distance_ratio": round(float(ratio[k]), 4),
               "nearest": (str(names[j[k]]) if names is not None else int(j[k]))} for k in range(len(poses))]
    within = float(np.mean(best <= near_deg)) if len(best) else 0.0
    return {"near_deg": near_deg, "within": within, "n_frames": int(len(poses)),
            "n_within": int(np.sum(best <= near_deg)),
            "angle_deg_max": float(best.max()) if len(best) else 0.0,
            "angle_deg_median": float(np.median(best)) if len(best) else 0.0,
            "distance_ratio_range": [float(ratio.min()), float(ratio.max())] if len(best) else [],
            "frames": frames}
