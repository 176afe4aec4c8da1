"""The viewer's web server (viser): one page, served by this process, that works offline and over SSH.

Per connected browser tab there is one :class:`~nerf_app.viewer.worker.RenderWorker`: every camera message
from the page queues a :class:`~nerf_app.viewer.worker.ViewRequest`; finished frames go back to that tab as
its background image (JPEG). No tab connected -> no worker, no rendering.

The panel: view mode, preview/full resolution, max samples, home view, frame stats; splats while moving
(:mod:`~nerf_app.viewer.splat_panel`: the browser draws a splat bake while the camera moves, the NeRF frame
replaces it once the camera is still); live training stats (``train --viewer``); the camera-path panel
(:mod:`~nerf_app.viewer.path_panel`).
"""
from __future__ import annotations

import math
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .path_panel import CameraPathPanel, c2w_from_camera, wxyz_from_c2w
from .renderers import SceneContext, ViewRenderer, make_view_renderer
from .splat_panel import SplatPanel
from .worker import Frame, RenderWorker, ViewRequest, resolution_ladder

DEFAULT_PORT = 7007
DEFAULT_PREVIEW_HEIGHT = 64     # while the camera moves (CPU: see docs/viewer.md)
DEFAULT_MAX_HEIGHT = 400        # refinement target


def reachable_urls(port: int, host: str) -> List[str]:
    urls = [f"http://localhost:{port}"]
    if host in ("0.0.0.0", "::", ""):
        try:
            name = socket.gethostname()
            urls.append(f"http://{name}:{port}")
        except OSError:
            pass
    elif host not in ("localhost", "127.0.0.1"):
        urls[0] = f"http://{host}:{port}"
    return urls


@dataclass
class ClientState:
    client: Any
    worker: RenderWorker
    frames: int = 0
    last_frame: Optional[Frame] = None
    frame_times: List[float] = field(default_factory=list)   # arrival times of preview frames (fps)
    first_frame_time: Optional[float] = None
    connect_time: float = field(default_factory=time.perf_counter)


class Viewer(CameraPathPanel):
    """``Viewer(task, run_dir).start()``; for training, ``Viewer(live=True).start()`` then pass
    :meth:`on_step` to the trainer (it attaches to the task on the first step).

    ``splats``: ``off``, ``auto`` (the cached bake of ``checkpoint`` in the run folder, baked in the
    background when missing or stale; ``live``: a cached bake if any, never a new one), ``rebake``, or a
    splat PLY file (capture coordinates). ``splat_still_s``: how long the camera must be still before the
    NeRF renders over the splats."""

    def __init__(self, task=None, run_dir=None, host: str = "0.0.0.0", port: int = DEFAULT_PORT, live: bool = False,
                 preview_height: int = DEFAULT_PREVIEW_HEIGHT, max_height: int = DEFAULT_MAX_HEIGHT,
                 refresh_s: float = 3.0, log=None, thumbnails: bool = True, splats: str = "off", checkpoint=None,
                 max_splats: Optional[int] = None, splat_refine: Optional[float] = None, splat_still_s: float = 0.3):
        self.task = task
        self.run_dir = Path(run_dir) if run_dir else None
        self.host, self.port = host, int(port)
        self.live = live
        self.preview_height, self.max_height = int(preview_height), int(max_height)
        self.refresh_s = float(refresh_s)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.want_thumbnails = thumbnails
        self.renderer: Optional[ViewRenderer] = None
        self.context: Optional[SceneContext] = None
        self.server = None
        self.clients: Dict[int, ClientState] = {}
        self._clients_lock = threading.Lock()
        self.keyframes: List[tuple] = []      # (c2w, fov_deg)
        self.capture_path = False             # the path is the capture's (render --path capture), not keyframes
        self.stats: Dict[str, Any] = {}
        self._last_stats_t = 0.0
        self._last_refresh_t = 0.0
        self._rate_ref = None                 # (step, time, rays) for rays/s
        self.gui: Dict[str, Any] = {}
        self._started = threading.Event()
        self._stopping = threading.Event()   # background threads (thumbnails) end instead of messaging a stopped server
        self.splats = SplatPanel(self, splats, checkpoint, max_splats, splat_refine)
        self.splat_still_s = float(splat_still_s)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "Viewer":
        import viser
        self.server = viser.ViserServer(host=self.host, port=self.port, verbose=False)
        self.port = int(self.server.get_port())
        self.server.gui.configure_theme(control_width="medium", show_logo=False)
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        self._build_gui()
        if self.task is not None:
            self.attach(self.task)
        urls = reachable_urls(self.port, self.host)
        self.log(f"[viewer] open {urls[0]}  (this machine{', or ' + urls[1] if len(urls) > 1 else ''})")
        self.log(f"[viewer] on a remote/headless machine: ssh -L {self.port}:localhost:{self.port} USER@HOST, "
                 f"then open http://localhost:{self.port} here")
        return self

    def attach(self, task, step: Optional[int] = None) -> None:
        """Show ``task`` (live: render from a copy of its weights, refreshed by :meth:`on_step`)."""
        self.task = task
        self.renderer = make_view_renderer(task, live=self.live)
        self.context = self.renderer.context()
        self._draw_context()
        g = self.gui
        g["mode"].options = list(self.renderer.modes)
        g["mode"].value = self.renderer.default_mode
        g["samples"].value = min(int(g["samples"].max), self.renderer.default_samples)
        self.splats.attach(task)
        for state in list(self.clients.values()):
            self._go_home(state.client)
            self._request(state)
        self._started.set()

    def stop(self) -> None:
        self._stopping.set()
        self.splats.stop()
        for state in list(self.clients.values()):
            state.worker.stop(timeout=1.0)
        if self.server is not None:
            self.server.stop()

    def serve_forever(self) -> None:
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    @property
    def n_clients(self) -> int:
        return len(self.clients)

    # -- training hook -----------------------------------------------------------------------------

    def on_step(self, step: int, metrics: Dict[str, Any], trainer=None) -> None:
        """Trainer callback after each step (``step`` = steps done). Returns at once when no browser is
        connected: one dict-emptiness test."""
        if not self.clients:
            return
        now = time.perf_counter()
        if self.renderer is None and trainer is not None and trainer.task is not None:
            self.attach(trainer.task, step)
        if now - self._last_stats_t >= 0.5:
            self._last_stats_t = now
            self._update_stats(step, metrics, now)
        if self.renderer is not None and now - self._last_refresh_t >= self.refresh_s and \
                self.gui["live_refresh"].value:
            if self.renderer.refresh_from(self.task, step):
                self._last_refresh_t = now
                for state in list(self.clients.values()):
                    if not state.worker.busy:
                        self._request(state, force=True)

    def _update_stats(self, step, metrics, now) -> None:
        def f(v):
            try:
                return float(v.item() if hasattr(v, "item") else v)
            except (TypeError, ValueError):
                return None
        rays = f(metrics.get("rays", 0)) or 0.0
        ref = self._rate_ref
        line = f"**step** {step} &nbsp; **loss** {f(metrics.get('loss')):.4g}"
        psnr = f(metrics.get("psnr")) if "psnr" in metrics else None
        if psnr is not None:
            line += f" &nbsp; **PSNR** {psnr:.2f} dB"
        t = f(metrics.get("time")) or 0.0
        if ref is not None and t > ref[1]:
            sps = (step - ref[0]) / (t - ref[1])
            line += f" &nbsp; **steps/s** {sps:.2f}"
            if rays:
                line += f" &nbsp; **rays/s** {sps * rays / 1e3:.0f}k"
        self._rate_ref = (step, t)
        self.stats = {"step": step, "loss": f(metrics.get("loss")), "psnr": psnr, "time": t}
        self.gui["train_stats"].content = line

    # -- clients -----------------------------------------------------------------------------------

    def _on_connect(self, client) -> None:
        state = ClientState(client, RenderWorker(lambda req, w, h, stop: self.renderer.render(req, w, h, stop),
                                                 lambda frame, c=client: self._on_frame(c, frame),
                                                 still_s=self.splat_still_s))
        with self._clients_lock:
            self.clients[client.client_id] = state
        state.worker.start()
        self.splats.add_to(client)
        client.camera.on_update(lambda camera, s=state: self._on_camera(s))
        if self.renderer is not None:
            self._go_home(client)
            self._request(state)

    def _on_disconnect(self, client) -> None:
        with self._clients_lock:
            state = self.clients.pop(client.client_id, None)
        if state is not None:
            state.worker.stop(timeout=0.0)
        self.splats.forget(client.client_id)

    def _go_home(self, client) -> None:
        ctx = self.context
        c2w = ctx.home_c2w
        # a home view at a capture camera (real captures) hides that camera's frustum
        at = [h for cam, h in getattr(self, "frusta", []) if np.allclose(cam.c2w, c2w)]
        self._hide_frustum(at[0] if at else None)
        with client.atomic():
            client.camera.up_direction = tuple(ctx.up)
            client.camera.fov = math.radians(ctx.home_fov_deg)
            client.camera.position = tuple(c2w[:3, 3])
            client.camera.look_at = tuple(c2w[:3, 3] + c2w[:3, 2] * 0.5)

    def _jump(self, client, cam, handle) -> None:
        """To a capture camera's view; its own frustum is hidden meanwhile (it would cover the render)."""
        self._hide_frustum(handle)
        self.set_camera(client, cam.c2w, cam.fov_y_deg)

    def _hide_frustum(self, handle) -> None:
        previous = getattr(self, "_hidden_frustum", None)
        if previous is not None and previous is not handle:
            previous.visible = bool(self.gui["show_cameras"].value)
        if handle is not None:
            handle.visible = False
        self._hidden_frustum = handle

    def set_camera(self, client, c2w: np.ndarray, fov_deg: Optional[float] = None) -> None:
        # a jump or a path preview moves the camera as a drag does: splats now, the NeRF once still
        self.splats.moving(client)
        with client.atomic():
            if fov_deg is not None:
                client.camera.fov = math.radians(fov_deg)
            client.camera.position = tuple(np.asarray(c2w)[:3, 3])
            client.camera.wxyz = tuple(wxyz_from_c2w(c2w))

    def view_request(self, client) -> ViewRequest:
        cam = client.camera
        g = self.gui
        full = int(g["resolution"].value)
        preview = min(int(g["preview"].value), full)
        after_still = self.splats.active
        if after_still:   # the splats are the moving preview: the ladder starts one rung up
            ladder = resolution_ladder(preview, full)
            preview = ladder[min(1, len(ladder) - 1)]
        return ViewRequest(c2w=c2w_from_camera(cam), fov_y_deg=math.degrees(cam.fov), aspect=float(cam.aspect),
                           mode=str(g["mode"].value), max_height=full, preview_height=preview,
                           max_samples=int(g["samples"].value), after_still=after_still)

    def _on_camera(self, state: ClientState) -> None:
        """A camera message from the page: with splats, the browser draws them now; the NeRF waits."""
        self.splats.moving(state.client)
        self._request(state)

    def _request(self, state: ClientState, force: bool = False) -> None:
        if self.renderer is None:
            return
        try:
            req = self.view_request(state.client)
        except AssertionError:  # camera state not received yet
            return
        state.worker.request(req, force=force)

    def _request_all(self, *_):
        for state in list(self.clients.values()):
            self._request(state)

    def _on_frame(self, client, frame: Frame) -> None:
        state = self.clients.get(client.client_id)
        if state is None:
            return
        if frame.request.after_still and frame.generation != state.worker.generation:
            return   # the camera moved since: the page draws splats, a stale frame would cover them
        self.splats.show_frame(client, frame.image)   # the background; this tab's splats (if any) hidden
        now = time.perf_counter()
        state.frames += 1
        state.last_frame = frame
        if state.first_frame_time is None:
            state.first_frame_time = now
        if frame.rung == 0 and not frame.request.after_still:
            state.frame_times = [t for t in state.frame_times if now - t < 2.0] + [now]
        fps = (len(state.frame_times) - 1) / (state.frame_times[-1] - state.frame_times[0]) \
            if len(state.frame_times) > 1 else 0.0
        # with splats the page draws the moving camera: a server preview rate would mean nothing
        moving = "splats while moving" if frame.request.after_still else f"preview {fps:.1f} fps"
        extra = "".join(f" &nbsp; {k} {v}" for k, v in frame.info.items() if k not in ("mode", "index"))
        self.gui["frame_stats"].content = (f"{frame.width}x{frame.height} ({frame.rung + 1}/{frame.n_rungs}) "
                                           f"{frame.seconds * 1000:.0f} ms &nbsp; {moving}{extra}")

    # -- drawing -----------------------------------------------------------------------------------

    def _draw_context(self) -> None:
        ctx, scene = self.context, self.server.scene
        scene.set_up_direction(tuple(ctx.up))
        lo, hi = ctx.box
        scene.add_box("/context/box", color=(230, 160, 40), dimensions=tuple(hi - lo), wireframe=True,
                      position=tuple(0.5 * (lo + hi)), cast_shadow=False, receive_shadow=False)
        if ctx.points is not None:
            self.points_handle = scene.add_point_cloud("/context/sparse_points", ctx.points, ctx.point_colors,
                                                       point_size=0.0015, point_shape="rounded")
        frusta = []
        for cam in ctx.cameras:
            color = (40, 110, 230) if cam.split == "train" else (230, 70, 40)
            h = scene.add_camera_frustum(f"/context/cameras/{cam.split}/{cam.index:04d}", fov=math.radians(cam.fov_y_deg),
                                         aspect=cam.aspect, scale=ctx.camera_scale, color=color,
                                         thickness=1.5, thickness_units="screen", wxyz=tuple(wxyz_from_c2w(cam.c2w)),
                                         position=tuple(cam.c2w[:3, 3]), cast_shadow=False, receive_shadow=False)
            h.on_click(lambda event, c=cam, h=h: self._jump(event.client, c, h))
            frusta.append((cam, h))
        self.frusta = frusta
        if frusta and self.want_thumbnails:
            threading.Thread(target=self._load_thumbnails, args=(frusta,), daemon=True,
                             name="nerf-app-viewer-thumbnails").start()

    def _load_thumbnails(self, frusta) -> None:
        # after the first frame: decoding a hundred photos must not delay it
        self._started.wait()
        deadline = time.perf_counter() + 20.0
        while time.perf_counter() < deadline and not any(s.frames for s in self.clients.values()):
            if self._stopping.wait(0.1):
                return
        for cam, handle in frusta:
            if self._stopping.is_set():
                return
            try:
                handle.image = self.renderer.thumbnail(cam.index)
            except Exception as exc:  # a missing photo must not break the viewer
                self.log(f"[viewer] no thumbnail for {cam.name}: {exc}")
                return

    def _build_gui(self) -> None:
        gui, g = self.server.gui, self.gui
        with gui.add_folder("View"):
            g["mode"] = gui.add_dropdown("Show", options=["rgb"], initial_value="rgb")
            g["resolution"] = gui.add_slider("Full height", min=32, max=1600, step=8, initial_value=self.max_height)
            g["preview"] = gui.add_slider("Preview height", min=16, max=400, step=8, initial_value=self.preview_height)
            g["samples"] = gui.add_slider("Max samples", min=8, max=2048, step=8, initial_value=1024)
            g["home"] = gui.add_button("Home view")
            g["show_cameras"] = gui.add_checkbox("Cameras", initial_value=True)
            g["show_points"] = gui.add_checkbox("Sparse points", initial_value=True)
            g["frame_stats"] = gui.add_markdown("waiting for the first frame")
        self.splats.build_gui(gui, g)
        for key in ("mode", "resolution", "preview", "samples"):
            g[key].on_update(self._request_all)
        g["home"].on_click(lambda event: self._go_home(event.client))
        g["show_cameras"].on_update(lambda _: [setattr(h, "visible", g["show_cameras"].value)
                                               for _, h in getattr(self, "frusta", [])])
        g["show_points"].on_update(lambda _: getattr(self, "points_handle", None) is not None and
                                   setattr(self.points_handle, "visible", g["show_points"].value))
        with gui.add_folder("Training"):
            g["train_stats"] = gui.add_markdown("live: waiting for the first step" if self.live else
                                                "not training (nerf-app train ... --viewer shows it live)")
            g["live_refresh"] = gui.add_checkbox("Refresh while training", initial_value=True, disabled=not self.live)
        self._build_path_gui(gui, g)

    def _guard(self, fn):
        try:
            return fn()
        except Exception as exc:
            self.gui["kf_status"].content = f"**error:** {exc}"
            self.log(f"[viewer] {exc}")
