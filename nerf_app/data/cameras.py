"""The eleven COLMAP camera models: projection, exact unprojection, rescaling.

Conventions (see docs/design.md): camera frame is OpenCV (x right, y down, z forward); pixel coordinates
put the centre of the top-left pixel at (0.5, 0.5), as COLMAP does. Everything is float64 numpy.

Each model is "focal/principal point" + a distortion function acting on normalised coordinates. The
perspective models distort ``(X/Z, Y/Z)``; the fisheye models first map a ray to equidistant
coordinates ``(X, Y) * theta / r`` with ``theta`` the angle to the optical axis, then distort those,
exactly as COLMAP does. Unprojection inverts the distortion with a damped Newton iteration (FOV has a
closed form); tests check it against :mod:`pycolmap` and a round trip to 1e-6.

All functions broadcast: ``params`` may be ``(P,)`` for one camera or ``(N, P)`` with one row per
point, which lets the ray sampler handle rays of many images with different intrinsics in one call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    id: int  # COLMAP's model id, as stored in cameras.bin
    name: str
    params: Tuple[str, ...]
    fisheye: bool

    @property
    def num_params(self) -> int:
        return len(self.params)

    @property
    def single_focal(self) -> bool:
        return self.params[0] == "f"


_MODELS = [
    CameraModel(0, "SIMPLE_PINHOLE", ("f", "cx", "cy"), False),
    CameraModel(1, "PINHOLE", ("fx", "fy", "cx", "cy"), False),
    CameraModel(2, "SIMPLE_RADIAL", ("f", "cx", "cy", "k"), False),
    CameraModel(3, "RADIAL", ("f", "cx", "cy", "k1", "k2"), False),
    CameraModel(4, "OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"), False),
    CameraModel(5, "OPENCV_FISHEYE", ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"), True),
    CameraModel(6, "FULL_OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), False),
    CameraModel(7, "FOV", ("fx", "fy", "cx", "cy", "omega"), False),
    CameraModel(8, "SIMPLE_RADIAL_FISHEYE", ("f", "cx", "cy", "k"), True),
    CameraModel(9, "RADIAL_FISHEYE", ("f", "cx", "cy", "k1", "k2"), True),
    CameraModel(10, "THIN_PRISM_FISHEYE", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1"), True),
]
MODELS_BY_NAME: Dict[str, CameraModel] = {m.name: m for m in _MODELS}
MODELS_BY_ID: Dict[int, CameraModel] = {m.id: m for m in _MODELS}

# Newton stops once the residual is this small in normalised units (~1e-9 px for f ~ 1000 px).
_NEWTON_TOL = 1e-12
_NEWTON_MAX_ITERS = 60


def _p(params: np.ndarray, i: int) -> np.ndarray:
    return params[..., i]


def intrinsics(model: CameraModel, params: np.ndarray):
    """``(fx, fy, cx, cy)`` of ``params`` (each broadcast like ``params[..., 0]``)."""
    if model.single_focal:
        return _p(params, 0), _p(params, 0), _p(params, 1), _p(params, 2)
    return _p(params, 0), _p(params, 1), _p(params, 2), _p(params, 3)


def distort(model: CameraModel, params: np.ndarray, u: np.ndarray, v: np.ndarray):
    """Distorted normalised coordinates of undistorted ones (``u, v`` are equidistant for fisheye)."""
    name = model.name
    if name in ("SIMPLE_PINHOLE", "PINHOLE"):
        return u, v
    r2 = u * u + v * v
    if name in ("SIMPLE_RADIAL", "SIMPLE_RADIAL_FISHEYE"):
        radial = 1.0 + _p(params, 3) * r2
        return u * radial, v * radial
    if name in ("RADIAL", "RADIAL_FISHEYE"):
        radial = 1.0 + r2 * (_p(params, 3) + _p(params, 4) * r2)
        return u * radial, v * radial
    if name == "OPENCV_FISHEYE":
        k1, k2, k3, k4 = (_p(params, i) for i in range(4, 8))
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        return u * radial, v * radial
    if name in ("OPENCV", "FULL_OPENCV", "THIN_PRISM_FISHEYE"):
        k1, k2, p1, p2 = (_p(params, i) for i in range(4, 8))
        if name == "OPENCV":
            radial = 1.0 + r2 * (k1 + k2 * r2)
        elif name == "FULL_OPENCV":
            k3, k4, k5, k6 = (_p(params, i) for i in range(8, 12))
            radial = (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        else:
            k3, k4 = _p(params, 8), _p(params, 9)
            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        uv = u * v
        ud = u * radial + 2.0 * p1 * uv + p2 * (r2 + 2.0 * u * u)
        vd = v * radial + 2.0 * p2 * uv + p1 * (r2 + 2.0 * v * v)
        if name == "THIN_PRISM_FISHEYE":
            ud = ud + _p(params, 10) * r2
            vd = vd + _p(params, 11) * r2
        return ud, vd
    if name == "FOV":
        return _fov_scale(_p(params, 4), u, v, inverse=False)
    raise ValueError(f"unknown camera model {name}")  # unreachable: models come from the table


def _fov_scale(omega, u, v, inverse: bool):
    """FOV model (Devernay & Faugeras): r_d = atan(2 r tan(w/2)) / w, and its closed-form inverse."""
    omega = np.asarray(omega, dtype=np.float64)
    r = np.sqrt(u * u + v * v)
    small_w = np.abs(omega) < 1e-8  # the model tends to the identity as omega -> 0
    w = np.where(small_w, 1.0, omega)
    two_tan = 2.0 * np.tan(0.5 * w)
    safe_r = np.where(r > 0, r, 1.0)
    if inverse:
        factor = np.where(r > 0, np.tan(safe_r * w) / (two_tan * safe_r), w / two_tan)
        # beyond r_d * w = pi/2 no undistorted radius maps there
        factor = np.where(r * np.abs(w) < 0.5 * np.pi, factor, np.nan)
    else:
        factor = np.where(r > 0, np.arctan(two_tan * safe_r) / (w * safe_r), two_tan / w)
    factor = np.where(small_w, 1.0, factor)
    return u * factor, v * factor


def undistort(model: CameraModel, params: np.ndarray, ud: np.ndarray, vd: np.ndarray):
    """Invert :func:`distort`. Returns ``(u, v, ok)``; ``ok`` is False (and u, v NaN) where the
    iteration did not converge, i.e. the pixel lies beyond what the distortion model can reach."""
    ud = np.asarray(ud, dtype=np.float64)
    vd = np.asarray(vd, dtype=np.float64)
    if model.name in ("SIMPLE_PINHOLE", "PINHOLE"):
        return ud.copy(), vd.copy(), np.isfinite(ud) & np.isfinite(vd)
    if model.name == "FOV":
        u, v = _fov_scale(_p(params, 4), ud, vd, inverse=True)
        ok = np.isfinite(u) & np.isfinite(v)
        return u, v, ok
    return _newton_undistort(model, params, ud, vd)


def _newton_undistort(model, params, ud, vd):
    shape = np.broadcast(ud, vd, params[..., 0]).shape
    ud = np.broadcast_to(ud, shape).reshape(-1)
    vd = np.broadcast_to(vd, shape).reshape(-1)
    per_point = params.ndim > 1
    P = np.broadcast_to(params, shape + (params.shape[-1],)).reshape(-1, params.shape[-1]) if per_point else params
    u, v = ud.copy(), vd.copy()
    ok = np.zeros(u.shape, dtype=bool)
    active = np.flatnonzero(np.isfinite(u) & np.isfinite(v))
    for _ in range(_NEWTON_MAX_ITERS):
        if active.size == 0:
            break
        pa = P[active] if per_point else P
        ua, va, ta, tb = u[active], v[active], ud[active], vd[active]
        fu, fv = distort(model, pa, ua, va)
        ru, rv = fu - ta, fv - tb
        err = np.maximum(np.abs(ru), np.abs(rv))
        done = err <= _NEWTON_TOL * np.maximum(1.0, np.abs(ta) + np.abs(tb))
        ok[active[done]] = True
        keep = ~done
        active, ua, va, ru, rv, err = active[keep], ua[keep], va[keep], ru[keep], rv[keep], err[keep]
        ta, tb = ta[keep], tb[keep]
        if per_point:
            pa = pa[keep]
        if active.size == 0:
            break
        # Jacobian by central differences: exact enough for Newton (the residual itself is exact,
        # so the fixed point is exact), and one code path serves all models.
        h = 1e-7 * np.maximum(1.0, np.hypot(ua, va))
        a1, b1 = distort(model, pa, ua + h, va)
        a0, b0 = distort(model, pa, ua - h, va)
        c1, d1 = distort(model, pa, ua, va + h)
        c0, d0 = distort(model, pa, ua, va - h)
        j11, j21 = (a1 - a0) / (2 * h), (b1 - b0) / (2 * h)
        j12, j22 = (c1 - c0) / (2 * h), (d1 - d0) / (2 * h)
        det = j11 * j22 - j12 * j21
        with np.errstate(divide="ignore", invalid="ignore"):
            du = (j22 * ru - j12 * rv) / det
            dv = (j11 * rv - j21 * ru) / det
        # Damping: halve the step while it makes the residual worse, so a start far out on a
        # strongly distorted lens does not jump across the fold of the distortion curve.
        step = np.ones_like(ua)
        for _ in range(8):
            nu, nv = ua - step * du, va - step * dv
            gu, gv = distort(model, pa, nu, nv)
            new_err = np.maximum(np.abs(gu - ta), np.abs(gv - tb))
            worse = ~(new_err < err)
            if not worse.any():
                break
            step = np.where(worse, 0.5 * step, step)
        u[active], v[active] = nu, nv
        progress = new_err < err
        active = active[progress]  # stalled points (no solution there) stay not-ok
    u[~ok] = np.nan
    v[~ok] = np.nan
    return u.reshape(shape), v.reshape(shape), ok.reshape(shape)


def project(model: CameraModel, params: np.ndarray, points: np.ndarray):
    """Pixel coordinates ``(..., 2)`` of camera-frame points ``(..., 3)``; NaN where not visible
    (behind a perspective camera, or on the backward axis of a fisheye)."""
    points = np.asarray(points, dtype=np.float64)
    X, Y, Z = points[..., 0], points[..., 1], points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        if model.fisheye:
            r = np.hypot(X, Y)
            theta = np.arctan2(r, Z)
            scale = np.where(r > 1e-15 * np.abs(Z), theta / r, 1.0 / Z)
            visible = (r > 0) | (Z > 0)
        else:
            scale = 1.0 / Z
            visible = Z > 0
        u, v = X * scale, Y * scale
        ud, vd = distort(model, params, u, v)
    fx, fy, cx, cy = intrinsics(model, params)
    out = np.stack([fx * ud + cx, fy * vd + cy], axis=-1)
    out[~visible] = np.nan
    return out


def unproject(model: CameraModel, params: np.ndarray, pixels: np.ndarray):
    """Unit ray directions ``(..., 3)`` in the camera frame through pixel coordinates ``(..., 2)``;
    NaN where the distortion cannot be inverted."""
    pixels = np.asarray(pixels, dtype=np.float64)
    fx, fy, cx, cy = intrinsics(model, params)
    u, v, _ = undistort(model, params, (pixels[..., 0] - cx) / fx, (pixels[..., 1] - cy) / fy)
    if model.fisheye:
        theta = np.hypot(u, v)
        # sin(theta)/theta, stable at theta -> 0
        sinc = np.where(theta > 1e-8, np.sin(theta) / np.where(theta > 0, theta, 1.0), 1.0 - theta * theta / 6.0)
        d = np.stack([u * sinc, v * sinc, np.cos(theta)], axis=-1)
        d[theta > np.pi] = np.nan
        return d
    d = np.stack([u, v, np.ones_like(u)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


# Single-focal models turn into their two-focal twin when x and y scale differently (downscaling
# an odd-sized image), so intrinsics stay exact instead of averaging the two scales.
_TWO_FOCAL_TWIN = {
    "SIMPLE_PINHOLE": ("PINHOLE", lambda p: [p[0], p[0], p[1], p[2]]),
    "SIMPLE_RADIAL": ("OPENCV", lambda p: [p[0], p[0], p[1], p[2], p[3], 0.0, 0.0, 0.0]),
    "RADIAL": ("OPENCV", lambda p: [p[0], p[0], p[1], p[2], p[3], p[4], 0.0, 0.0]),
    "SIMPLE_RADIAL_FISHEYE": ("OPENCV_FISHEYE", lambda p: [p[0], p[0], p[1], p[2], p[3], 0.0, 0.0, 0.0]),
    "RADIAL_FISHEYE": ("OPENCV_FISHEYE", lambda p: [p[0], p[0], p[1], p[2], p[3], p[4], 0.0, 0.0]),
}


@dataclass(frozen=True, eq=False)
class Camera:
    """One camera: COLMAP model name, image size in pixels, parameters in COLMAP's order."""

    model: str
    width: int
    height: int
    params: np.ndarray

    def __post_init__(self):
        spec = MODELS_BY_NAME.get(self.model)
        if spec is None:
            raise ValueError(f"unknown camera model {self.model!r}; known: {', '.join(MODELS_BY_NAME)}")
        params = np.asarray(self.params, dtype=np.float64).reshape(-1).copy()
        if params.size != spec.num_params:
            raise ValueError(f"{self.model} takes {spec.num_params} parameters ({' '.join(spec.params)}), got {params.size}")
        params.setflags(write=False)
        object.__setattr__(self, "params", params)

    @property
    def spec(self) -> CameraModel:
        return MODELS_BY_NAME[self.model]

    @property
    def fx(self) -> float:
        return float(intrinsics(self.spec, self.params)[0])

    @property
    def fy(self) -> float:
        return float(intrinsics(self.spec, self.params)[1])

    @property
    def cx(self) -> float:
        return float(intrinsics(self.spec, self.params)[2])

    @property
    def cy(self) -> float:
        return float(intrinsics(self.spec, self.params)[3])

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def distortion(self) -> Dict[str, float]:
        """The parameters after focal length and principal point, by name."""
        names = self.spec.params
        start = 3 if self.spec.single_focal else 4
        return {n: float(self.params[i]) for i, n in enumerate(names) if i >= start}

    @property
    def is_distorted(self) -> bool:
        return self.spec.fisheye or any(v != 0.0 for v in self.distortion.values())

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        return project(self.spec, self.params, points_cam)

    def unproject(self, pixels: np.ndarray) -> np.ndarray:
        return unproject(self.spec, self.params, pixels)

    def scaled(self, new_width: int, new_height: int) -> "Camera":
        """The same camera for the image resized to ``new_width`` x ``new_height`` pixels.

        With pixel centres at +0.5, resizing scales continuous pixel coordinates by exactly
        new/old, so focal lengths and principal point scale by the same factor per axis.
        """
        sx, sy = new_width / self.width, new_height / self.height
        model, params = self.model, self.params.copy()
        if self.spec.single_focal and sx != sy:
            model, twin = _TWO_FOCAL_TWIN.get(self.model, (self.model, None))
            if twin is None:
                raise ValueError(f"{self.model} cannot scale x and y differently")
            params = np.asarray(twin(params), dtype=np.float64)
        if MODELS_BY_NAME[model].single_focal:
            params[0] *= sx
            params[1] *= sx
            params[2] *= sy
        else:
            params[0] *= sx
            params[1] *= sy
            params[2] *= sx
            params[3] *= sy
        return Camera(model, int(new_width), int(new_height), params)

    def same_as(self, other: "Camera") -> bool:
        return (self.model == other.model and self.width == other.width and self.height == other.height
                and np.array_equal(self.params, other.params))

    def to_dict(self) -> dict:
        return {"model": self.model, "width": self.width, "height": self.height,
                "params": dict(zip(self.spec.params, map(float, self.params)))}

    def __repr__(self) -> str:
        p = " ".join(f"{n}={v:.6g}" for n, v in zip(self.spec.params, self.params))
        return f"Camera({self.model} {self.width}x{self.height} {p})"
