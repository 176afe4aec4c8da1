"""What the viewer draws for each mode, through the task's own renderers.

* NeRF runs (:class:`NerfViewRenderer`): ``rgb``, ``depth`` (turbo colour map), ``opacity`` and ``error``
  (the nearest training image: the field rendered from that camera and ``|render - photo|``, letterboxed
  into the canvas) via :func:`nerf_app.nerf.renderer.render_image`, in ray chunks so a newer camera
  cancels a stale frame within one chunk.
* SDF / occupancy runs (:class:`SurfaceViewRenderer`): ``shaded`` (lambert), ``normals`` and ``depth`` of
  the surface found by the task's own tracer (sphere tracing / marching + bisection).

The viewer's world is the run's normalised scene coordinates (NeRF: the unit cube is the region of
interest; meshes: the unit cube around the mesh). Cameras are OpenCV c2w, as everywhere in the project.

For ``train --viewer`` the renderer works on a *twin* of the task (same data, its own copy of the model):
:meth:`ViewRenderer.refresh_from` copies the training weights into it between two training steps, only
when nobody is rendering (a non-blocking lock), so training never waits and never races a render.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..camera_paths.orbit import orbit_path, pinhole_rays
from .worker import RenderCancelled, ViewRequest

_BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


@dataclass
class CameraInfo:
    index: int
    name: str
    split: str                      # train | test
    c2w: np.ndarray                 # [4,4] OpenCV, viewer coordinates
    fov_y_deg: float
    aspect: float


@dataclass
class SceneContext:
    """What the viewer draws around the render: cameras, sparse points, the box, the home view."""
    up: np.ndarray
    home_c2w: np.ndarray
    home_fov_deg: float
    box: Tuple[np.ndarray, np.ndarray]
    cameras: List[CameraInfo] = field(default_factory=list)
    points: Optional[np.ndarray] = None        # [N,3] float32
    point_colors: Optional[np.ndarray] = None  # [N,3] uint8
    camera_scale: float = 0.05


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``height`` x ``width`` keeping its aspect, centred on black."""
    import cv2
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    out = np.zeros((height, width, 3), np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    return out


class ViewRenderer:
    """Base: a render function for :class:`~nerf_app.viewer.worker.RenderWorker` plus scene context."""
    modes: Tuple[str, ...] = ()
    default_mode = ""
    default_samples = 1024
    chunk = 1 << 13

    def __init__(self, task, live: bool = False):
        self.lock = threading.Lock()
        self.live = live
        self.task = self._twin(task) if live else task
        self.task.config = copy.deepcopy(task.config)
        self.weights_step: Optional[int] = None

    @staticmethod
    def _twin(task):
        twin = copy.copy(task)
        twin.model = copy.deepcopy(task.model)
        twin.optimizer = None
        return twin

    def refresh_from(self, task, step: Optional[int] = None) -> bool:
        """Copy ``task``'s weights into the render copy unless a render holds the lock (then: False)."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            with torch.no_grad():
                src = task.model.state_dict()
                for k, v in self.task.model.state_dict().items():
                    v.copy_(src[k])
            self._weights_changed()
            self.weights_step = step
            return True
        finally:
            self.lock.release()

    def _weights_changed(self) -> None:
        pass

    def render(self, req: ViewRequest, width: int, height: int, should_stop) -> Tuple[np.ndarray, Dict[str, Any]]:
        raise NotImplementedError

    def context(self, thumbnails: bool = True) -> SceneContext:
        raise NotImplementedError

    def thumbnail(self, index: int, max_side: int = 96) -> Optional[np.ndarray]:
        return None

    def path_fov_deg(self) -> float:
        return self.context(thumbnails=False).home_fov_deg


class NerfViewRenderer(ViewRenderer):
    modes = ("rgb", "depth", "opacity", "error")
    default_mode = "rgb"

    def __init__(self, task, live: bool = False):
        super().__init__(task, live)
        self.default_samples = int(task.march.max_samples)
        bg = task.config.data.eval_background
        self.background = _BACKGROUNDS.get(bg, (1.0, 1.0, 1.0))
        self._context: Optional[SceneContext] = None

    def _render_rays(self, o: np.ndarray, d: np.ndarray, max_samples: int, should_stop, near=None, transform=None,
                     background=None):
        """Rays through the task's own :func:`~nerf_app.nerf.renderer.render_image`, in chunks (a cancellation
        point each). ``near`` / ``transform``: the run's near plane and appearance, when its renderer has them."""
        import inspect
        from ..nerf.renderer import render_image
        task = self.task
        accepts = inspect.signature(render_image).parameters
        kw = {}
        if near is not None and "near" in accepts:
            kw["near"] = float(near)
        if transform is not None and "color_transform" in accepts:
            kw["color_transform"] = transform
        march = dataclasses.replace(task.march, max_samples=max(1, int(max_samples)))
        bg = torch.tensor(background or self.background, dtype=torch.float32, device=task.device)
        o = torch.from_numpy(np.ascontiguousarray(o, dtype=np.float32)).to(task.device)
        d = torch.from_numpy(np.ascontiguousarray(d, dtype=np.float32)).to(task.device)
        rgbs, depths, opacities, = [], [], []
        for s in range(0, o.shape[0], self.chunk):
            if should_stop():
                raise RenderCancelled()
            with self.lock, torch.no_grad():
                rgb, depth, opacity = render_image(task.model.field, task.model.grid, o[None, s:s + self.chunk],
                                                   d[None, s:s + self.chunk], bg, march, chunk=self.chunk,
                                                   backend=task.config.backend, **kw)
            rgbs.append(rgb[0])
            depths.append(depth[0])
            opacities.append(opacity[0])
        return (torch.cat(rgbs).clamp(0, 1).cpu().numpy(), torch.cat(depths).cpu().numpy(),
                torch.cat(opacities).cpu().numpy())

    def _novel_view_extras(self, c2w, fov_y_deg, width, height):
        """(near, colour transform) for a novel camera, from the task when it provides them."""
        task = self.task
        f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        near = (task.near_for_poses(np.asarray(c2w)[None], f, f, width, height) or [None])[0]
        return near, task.eval_color_transform(None)

    def nearest_camera(self, c2w: np.ndarray, split: str = "train") -> int:
        scene = self.task.scene
        idx = scene.split_indices(split)
        centres, fwd = scene.c2w[idx, :3, 3], scene.c2w[idx, :3, 2]
        scale = float(np.median(np.linalg.norm(centres - centres.mean(0), axis=1))) or 1.0
        score = np.linalg.norm(centres - c2w[:3, 3], axis=1) + scale * (1.0 - fwd @ c2w[:3, 2])
        return int(idx[int(np.argmin(score))])

    def render(self, req, width, height, should_stop):
        from ..nerf.evaluate import colorize_depth
        if req.mode == "error":
            return self._render_error(req, width, height, should_stop)
        o, d = pinhole_rays(req.c2w, width, height, req.fov_y_deg)
        near, transform = self._novel_view_extras(req.c2w, req.fov_y_deg, width, height)
        # a finished run's unseen space is left out (rays.unseen; the first call finds it), maybe tinted
        bg = self.task.view_background()
        rgb, depth, opacity = self._render_rays(o, d, req.max_samples, should_stop, near, transform, bg)
        rgb, depth, opacity = rgb.reshape(height, width, 3), depth.reshape(height, width), opacity.reshape(height, width)
        if req.mode == "depth":
            image = colorize_depth(depth, opacity)
        elif req.mode == "opacity":
            image = np.repeat(opacity[..., None], 3, axis=-1)
        else:
            image = rgb
        return _to_uint8(image), {"mode": req.mode}

    def _render_error(self, req, width, height, should_stop):
        import cv2
        import matplotlib
        scene = self.task.scene
        i = self.nearest_camera(req.c2w)
        cam = scene.cameras[i]
        s = height / cam.height
        h, w = height, max(1, int(round(cam.width * s)))
        # the training camera's pinhole (distortion ignored at preview sizes), scaled to the rung
        u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        d_cam = np.stack([(u / s - cam.cx) / cam.fx, (v / s - cam.cy) / cam.fy, np.ones_like(u)], -1).reshape(-1, 3)
        c2w = scene.c2w[i]
        d = d_cam @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        o = np.broadcast_to(c2w[:3, 3], d.shape)
        near = self.task.image_near(i)
        transform = self.task.eval_color_transform(i)
        self.task.hide_unseen()
        rgb, _, _ = self._render_rays(o, d, req.max_samples, should_stop, near, transform)
        gt = scene.images.rgb(i, self.background)
        gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_AREA)
        err = np.abs(rgb.reshape(h, w, 3) - gt).mean(-1)
        mse = float(np.mean((rgb.reshape(h, w, 3) - gt) ** 2))
        psnr = -10.0 * math.log10(max(mse, 1e-10))
        image = matplotlib.colormaps["inferno"](np.clip(err / 0.25, 0, 1))[..., :3]
        return letterbox(_to_uint8(image), width, height), {"mode": "error", "image": scene.names[i], "index": i,
                                                             "psnr": round(psnr, 2)}

    def context(self, thumbnails: bool = True) -> SceneContext:
        if self._context is not None:
            return self._context
        from ..nerf.outputs import orbit_frame, scene_orbit
        scene = self.task.scene
        target, up, radius, elevation, fov = orbit_frame(scene)
        home = scene_orbit(scene, 8)[0][1]
        if not scene.bounded:
            # a real capture: start at the first training photo's viewpoint (an orbit around a partial or
            # forward-facing capture can look at nothing the cameras saw)
            i0 = int(scene.split_indices("train")[0])
            home, c0 = scene.c2w[i0], scene.cameras[i0]
            fov = math.degrees(2 * math.atan(0.5 * c0.height / c0.fy))
        cams = []
        for split in ("train", "test"):
            try:
                idx = scene.split_indices(split)
            except KeyError:
                continue
            for i in idx:
                c = scene.cameras[int(i)]
                cams.append(CameraInfo(int(i), scene.names[int(i)], split, scene.c2w[int(i)],
                                       math.degrees(2 * math.atan(0.5 * c.height / c.fy)), c.width / c.height))
        pts = cols = None
        if scene.points3D is not None and len(scene.points3D.xyz):
            xyz, rgb = scene.points3D.xyz, scene.points3D.rgb
            keep = np.all(np.abs(xyz - 0.5) < 2.0, axis=1)   # far outliers would swamp the view
            xyz, rgb = xyz[keep], rgb[keep]
            if len(xyz) > 50000:
                sel = np.random.default_rng(0).choice(len(xyz), 50000, replace=False)
                xyz, rgb = xyz[sel], rgb[sel]
            pts, cols = xyz.astype(np.float32), rgb.astype(np.uint8)
        self._context = SceneContext(up=np.asarray(up, float), home_c2w=home, home_fov_deg=float(fov),
                                     box=(np.zeros(3), np.ones(3)), cameras=cams, points=pts, point_colors=cols,
                                     camera_scale=max(0.01, 0.04 * radius))
        return self._context

    def thumbnail(self, index: int, max_side: int = 96) -> Optional[np.ndarray]:
        img = self.task.scene.images.load(int(index))
        if img.shape[-1] == 4:
            from ..data.images import composite
            img = _to_uint8(composite(img, np.asarray(self.background, np.float32)))
        import cv2
        h, w = img.shape[:2]
        s = max_side / max(h, w)
        return cv2.resize(np.ascontiguousarray(img[..., :3]), (max(1, int(w * s)), max(1, int(h * s))),
                          interpolation=cv2.INTER_AREA)


class SurfaceViewRenderer(ViewRenderer):
    """SDF and occupancy runs: the traced surface, lambert-shaded (or normals, or depth)."""
    modes = ("shaded", "normals", "depth")
    default_mode = "shaded"
    chunk = 1 << 14

    def __init__(self, task, live: bool = False):
        super().__init__(task, live)
        self.default_samples = int(task.config.render.max_steps)

    def _weights_changed(self) -> None:
        self.task._cand = None  # the occupancy task's coarse candidate grid is of the old weights

    def render(self, req, width, height, should_stop):
        from ..nerf.evaluate import colorize_depth
        from ..sdf.surface_trace import gradient_normals, shade
        task = self.task
        task.config.render.max_steps = max(1, int(req.max_samples))
        lo, hi = task.unit_mesh.bbox
        pad = 0.02
        o, d = pinhole_rays(req.c2w, width, height, req.fov_y_deg)
        o, d = torch.from_numpy(o).float(), torch.from_numpy(d).float()
        rgb = torch.ones(o.shape[0], 3)
        depth = torch.zeros(o.shape[0])
        hit_all = torch.zeros(o.shape[0], dtype=torch.bool)
        sign = 1.0 if task.kind == "sdf" else -1.0
        for s in range(0, o.shape[0], self.chunk):
            if should_stop():
                raise RenderCancelled()
            oc, dc = o[s:s + self.chunk], d[s:s + self.chunk]
            with self.lock, torch.no_grad():
                t, hit = task._trace(oc, dc, lo - pad, hi + pad)
                if hit.any():
                    x = oc[hit] + t[hit, None] * dc[hit]
                    n = gradient_normals(task.model, x, eps=2e-3, outward_sign=sign)
                    part = rgb[s:s + self.chunk]
                    part[hit] = shade(n, dc[hit], "normals" if req.mode == "normals" else "lambert")
                    depth[s:s + self.chunk][hit] = t[hit]
                    hit_all[s:s + self.chunk] = hit
        if req.mode == "depth":
            image = colorize_depth(depth.reshape(height, width).numpy(), hit_all.reshape(height, width).float().numpy())
        else:
            image = rgb.reshape(height, width, 3).clamp(0, 1).numpy()
        return _to_uint8(image), {"mode": req.mode}

    def context(self, thumbnails: bool = True) -> SceneContext:
        from ..camera_paths.orbit import framing_radius
        task = self.task
        r = task.config.render
        lo, hi = task.unit_mesh.bbox
        centre = 0.5 * (np.asarray(lo) + np.asarray(hi))
        radius = framing_radius(lo, hi, r.fov_deg)
        home = orbit_path(centre, radius, 8, r.elevation_deg, up=(0.0, 1.0, 0.0))[1]
        return SceneContext(up=np.array([0.0, 1.0, 0.0]), home_c2w=home, home_fov_deg=float(r.fov_deg),
                            box=(np.asarray(lo, float), np.asarray(hi, float)))


def make_view_renderer(task, live: bool = False) -> ViewRenderer:
    """The viewer renderer for ``task``'s mode; modes that do not render views are refused."""
    from ..errors import NerfAppError
    mode = getattr(task.config, "mode", "")
    if mode == "nerf":
        return NerfViewRenderer(task, live)
    if mode in ("sdf", "occupancy"):
        return SurfaceViewRenderer(task, live)
    raise NerfAppError(f"the viewer shows runs that render views (nerf, sdf, occupancy); this run is {mode!r}")
