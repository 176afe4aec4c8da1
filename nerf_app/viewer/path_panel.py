"""The viewer's camera-path panel: keyframes (add from the current view, remove, clear), the path from the
capture, preview, save as a nerfstudio ``camera_path.json`` that ``nerf-app render --path FILE`` reads, and
render the mp4.

:class:`CameraPathPanel` is a mixin of :class:`~nerf_app.viewer.server.Viewer`: it uses the viewer's
``server``, ``gui``, ``context``, ``renderer``, ``task``, ``run_dir``, ``clients`` and ``log``.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .worker import ViewRequest


def _so3():
    import viser.transforms as tf
    return tf.SO3


def c2w_from_camera(camera) -> np.ndarray:
    """A viser camera handle (OpenCV convention) -> c2w [4,4]."""
    c2w = np.eye(4)
    c2w[:3, :3] = _so3()(np.asarray(camera.wxyz)).as_matrix()
    c2w[:3, 3] = np.asarray(camera.position)
    return c2w


def wxyz_from_c2w(c2w: np.ndarray) -> np.ndarray:
    return _so3().from_matrix(np.asarray(c2w)[:3, :3]).wxyz


class CameraPathPanel:
    keyframes: List[tuple]        # (c2w, fov_deg)
    capture_path: bool            # the path is the capture's (render --path capture), not keyframes

    def _build_path_gui(self, gui, g) -> None:
        with gui.add_folder("Camera path"):
            g["kf_add"] = gui.add_button("Add keyframe (current view)")
            g["kf_remove"] = gui.add_button("Remove last keyframe")
            g["kf_clear"] = gui.add_button("Clear keyframes")
            g["kf_capture"] = gui.add_button("Path from the capture")
            g["kf_frames"] = gui.add_number("Frames", initial_value=120, min=2, max=10000, step=1)
            g["kf_fps"] = gui.add_number("FPS", initial_value=24, min=1, max=120, step=1)
            g["kf_preview"] = gui.add_button("Preview path")
            g["kf_file"] = gui.add_text("File", initial_value=str((self.run_dir or Path(".")) / "camera_path.json"))
            g["kf_save"] = gui.add_button("Save camera_path.json")
            g["kf_render"] = gui.add_button("Render mp4")
            g["kf_status"] = gui.add_markdown("no keyframes")
        g["kf_add"].on_click(lambda e: self.add_keyframe(e.client))
        g["kf_remove"].on_click(lambda e: self.remove_keyframe())
        g["kf_clear"].on_click(lambda e: self.clear_keyframes())
        g["kf_capture"].on_click(lambda e: self._guard(self.use_capture_path))
        g["kf_preview"].on_click(lambda e: threading.Thread(target=self.preview_path, args=(e.client,), daemon=True).start())
        g["kf_save"].on_click(lambda e: self._guard(self.save_path))
        g["kf_render"].on_click(lambda e: threading.Thread(target=self._guard, args=(self.render_path,), daemon=True).start())

    # -- camera paths ------------------------------------------------------------------------------

    def _draw_keyframes(self) -> None:
        scene = self.server.scene
        scene.remove_by_name("/keyframes") if hasattr(scene, "remove_by_name") else None
        scale = self.context.camera_scale * 1.2
        for k, (c2w, fov) in enumerate(self.keyframes):
            scene.add_camera_frustum(f"/keyframes/{k:03d}", fov=math.radians(fov), aspect=1.0, scale=scale,
                                     color=(40, 200, 90), thickness=2.0, thickness_units="screen", wxyz=tuple(wxyz_from_c2w(c2w)), position=tuple(c2w[:3, 3]),
                                     cast_shadow=False, receive_shadow=False)
        self.gui["kf_status"].content = f"{len(self.keyframes)} keyframe(s)"

    def use_capture_path(self) -> str:
        """The path becomes the capture's own (``render --path capture``: through the training cameras in
        capture order, constant speed, eased ends), drawn as green frusta every few frames; adding a
        keyframe or clearing goes back to keyframes."""
        if self.task is None or self.task.config.mode != "nerf":
            raise ValueError("a path from the capture needs a nerf run (training cameras)")
        from ..camera_paths.capture import path_coverage
        from ..nerf.outputs import camera_path_info
        task = self.renderer.task
        n = int(self.gui["kf_frames"].value)
        poses, fovs, info = camera_path_info(task, "capture", n)
        train = task.scene.split_indices("train")
        cov = path_coverage(poses, task.scene.c2w[train], info["capture"]["target"])
        self.keyframes = []
        self.capture_path = True
        shown = [(poses[k], fovs[k]) for k in np.unique(np.linspace(0, n - 1, min(n, 24)).round().astype(int))]
        self.keyframes, saved = shown, self.keyframes
        self._draw_keyframes()
        self.keyframes = saved
        msg = (f"path from the capture: {n} frames {info['kind'][len('through '):]}; "
               f"{100 * cov['within']:.0f}% within 20 degrees of a training camera")
        self.gui["kf_status"].content = msg
        return msg

    def add_keyframe(self, client) -> None:
        if self.capture_path:
            self.clear_keyframes()
        self.keyframes.append((c2w_from_camera(client.camera), math.degrees(client.camera.fov)))
        self._draw_keyframes()

    def remove_keyframe(self) -> None:
        if self.keyframes:
            self.keyframes.pop()
            self.server.scene.remove_by_name(f"/keyframes/{len(self.keyframes):03d}")
        self.gui["kf_status"].content = f"{len(self.keyframes)} keyframe(s)"

    def clear_keyframes(self) -> None:
        if self.capture_path:
            self.capture_path = False
            scene = self.server.scene
            scene.remove_by_name("/keyframes") if hasattr(scene, "remove_by_name") else None
        while self.keyframes:
            self.remove_keyframe()
        self.gui["kf_status"].content = "no keyframes"

    def path_poses(self, n_frames: Optional[int] = None):
        from ..camera_paths.keyframes import interpolate_poses
        if self.capture_path:
            from ..nerf.outputs import camera_path_info
            poses, fovs, _ = camera_path_info(self.renderer.task, "capture", int(n_frames or self.gui["kf_frames"].value))
            return poses, list(map(float, fovs))
        if len(self.keyframes) < 2:
            raise ValueError("add at least two keyframes")
        n = int(n_frames or self.gui["kf_frames"].value)
        poses = interpolate_poses(np.stack([k[0] for k in self.keyframes]), n)
        fovs = np.interp(np.linspace(0, len(self.keyframes) - 1, n), np.arange(len(self.keyframes)),
                         [k[1] for k in self.keyframes])
        return poses, list(map(float, fovs))

    def preview_path(self, client) -> None:
        try:
            poses, fovs = self.path_poses()
        except ValueError as exc:
            self.gui["kf_status"].content = f"**{exc}**"
            return
        dt = 1.0 / float(self.gui["kf_fps"].value)
        for c2w, fov in zip(poses, fovs):
            self.set_camera(client, c2w, fov)
            time.sleep(dt)

    def save_path(self, path: Optional[str] = None) -> Path:
        """Write the keyframe path (interpolated to the panel's frame count) as a nerfstudio camera path in
        the capture's coordinates (NeRF) or the mesh's (SDF/occupancy)."""
        from ..camera_paths.keyframes import write_camera_path
        poses, fovs = self.path_poses()
        width = int(round(self.gui["resolution"].value * self._aspect())) // 2 * 2
        height = int(self.gui["resolution"].value) // 2 * 2
        out = Path(path or self.gui["kf_file"].value)
        write_camera_path(out, self._to_capture(poses), fovs, width, height, int(self.gui["kf_fps"].value))
        self.gui["kf_status"].content = f"saved {len(poses)} frames to `{out}`"
        return out

    def _aspect(self) -> float:
        for state in self.clients.values():
            try:
                return float(state.client.camera.aspect)
            except AssertionError:
                pass
        return 1.0

    def _to_capture(self, poses: np.ndarray) -> np.ndarray:
        task = self.renderer.task
        if self.task.config.mode == "nerf":
            return task.scene.normalization.c2w_to_capture(poses)
        out = poses.copy()   # meshes: the unit-cube map back to the mesh's own coordinates (rotation-free)
        M = np.asarray(task.to_original, float)
        out[:, :3, 3] = poses[:, :3, 3] @ M[:3, :3].T + M[:3, 3]
        return out

    def render_path(self) -> Dict[str, Any]:
        """Save the path, then render it to an mp4 (NeRF: ``task.render`` - the same as ``nerf-app render
        --path FILE``; SDF/occupancy: the viewer's surface renderer)."""
        path = self.save_path()
        status = self.gui["kf_status"]
        status.content = f"rendering `{path}` ..."
        n, fps = int(self.gui["kf_frames"].value), int(self.gui["kf_fps"].value)
        height = int(self.gui["resolution"].value) // 2 * 2
        task = self.renderer.task
        if self.task.config.mode == "nerf":
            with self.renderer.lock:
                result = task.render(self.run_dir or path.parent, path=str(path), frames=n, fps=fps,
                                     out=str(path.with_suffix(".mp4")))
        else:
            from ..results import write_video
            poses, fovs = self.path_poses(n)
            width = int(round(height * self._aspect())) // 2 * 2
            frames = []
            for c2w, fov in zip(poses, fovs):
                req = ViewRequest(c2w, fov, width / height, "shaded", height, height, int(self.gui["samples"].value))
                frames.append(self.renderer.render(req, width, height, lambda: False)[0])
            out = path.with_suffix(".mp4")
            write_video(out, frames, fps)
            result = {"video": str(out), "frames": len(frames)}
        status.content = f"wrote `{result['video']}` ({result['frames']} frames)"
        self.log(f"[viewer] wrote {result['video']}")
        return result
