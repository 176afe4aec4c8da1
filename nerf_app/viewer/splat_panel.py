"""The viewer's splat panel and per-tab splat nodes (issue 27 part 4; the cache and the node's arrays are
:mod:`.splat_layer`).

One splat node per browser tab (``client.scene``), not one shared node: whether a tab shows its splats or
its NeRF frame depends on that tab's camera. Per tab the state is one bit, ``nerf_shown``: False while the
camera moves (splats visible, background cleared), True once the NeRF frame of the still camera arrived
(background set, splats hidden, in one atomic message batch so the page never shows both or neither). A
message goes out only when the bit flips, not per camera message.

The panel: *Splats while moving* (on when splats exist; NeRF runs only), a status line (bake progress,
splat count, what the bake was made from) and *Re-bake splats* (``view`` only: ``train --viewer`` never
bakes, the CPU is training's).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, Optional

from .splat_layer import (BakeAborted, bake_for_viewer, bake_settings, cache_key, cached_bake, load_node_arrays,
                          node_arrays, write_bake)

SOURCES = ("off", "auto", "rebake")   # or a splat PLY file (capture coordinates, as export --splats writes)


class SplatPanel:
    """Owned by :class:`~nerf_app.viewer.server.Viewer` (``viewer.splats``)."""

    def __init__(self, viewer, source: str = "off", checkpoint=None, max_splats: Optional[int] = None,
                 refine_time: Optional[float] = None, nice: int = 5):
        self.viewer = viewer
        self.source = str(source)
        self.checkpoint = checkpoint
        kw = {k: v for k, v in (("max_splats", max_splats), ("refine_time", refine_time)) if v is not None}
        self.settings = bake_settings(**kw)
        self.nice = nice
        self.arrays: Optional[Dict[str, Any]] = None
        self.meta: Optional[Dict[str, Any]] = None
        self.handles: Dict[int, Any] = {}
        self.nerf_shown: Dict[int, bool] = {}
        self.bakes = 0
        self.last_report: Optional[Dict[str, Any]] = None
        self._lock = threading.RLock()
        self._thread: Optional[threading.Thread] = None
        self._closing = threading.Event()
        self._write_lock = threading.Lock()   # held while the cache is written; stop() waits for it

    # -- panel ---------------------------------------------------------------------------------------

    def build_gui(self, gui, g) -> None:
        with gui.add_folder("Splats"):
            g["splats_on"] = gui.add_checkbox("Splats while moving", initial_value=False, disabled=True)
            g["splats_status"] = gui.add_markdown("no splats")
            g["splats_rebake"] = gui.add_button("Re-bake splats", disabled=True)
        g["splats_on"].on_update(lambda _: self._toggled())
        g["splats_rebake"].on_click(lambda _: self.start_bake())

    def _status(self, text: str) -> None:
        self.viewer.gui["splats_status"].content = text

    @property
    def active(self) -> bool:
        """Splats are drawn while moving (and the NeRF renders wait for a still camera)."""
        return self.arrays is not None and bool(self.viewer.gui["splats_on"].value)

    def attach(self, task) -> None:
        """Decide what to show for ``task`` (the run is loaded; for ``train --viewer``: the first step)."""
        v, g = self.viewer, self.viewer.gui
        mode = getattr(task.config, "mode", "")
        if mode != "nerf":
            article = "an" if mode[:1] in "aeiou" else "a"
            self._status(f"no splats: splats are baked from radiance fields, this is {article} {mode} run")
            return
        if self.source == "off":
            self._status("off (`nerf-app view RUN` shows them)" if v.live else "off (`--splats auto` shows them)")
            return
        if self.source not in SOURCES:
            path = Path(self.source)
            self.set_arrays(load_node_arrays(path, task.scene.normalization))
            self._status(f"{len(self.arrays['centers']):,} splats from `{path.name}`")
            return
        if v.live:   # training owns the CPU: a cached bake (probably of an older checkpoint) or nothing
            ply, meta = cached_bake(v.run_dir) if v.run_dir else (None, None)
            if ply is None:
                self._status("no cached bake (`nerf-app view RUN` bakes one when training is done)")
                return
            self.meta = meta
            self.set_arrays(load_node_arrays(ply, task.scene.normalization))
            self._status(f"{len(self.arrays['centers']):,} splats of the step-{meta['source'].get('step')} "
                         "checkpoint (cached; training has moved on)")
            return
        g["splats_rebake"].disabled = False
        ply, meta = cached_bake(v.run_dir, self._key()) if self.source == "auto" else (None, None)
        if ply is not None:
            self.meta = meta
            self.set_arrays(load_node_arrays(ply, task.scene.normalization))
            self._status(self._summary(meta.get("report", {}), "cached"))
        else:
            self.start_bake()

    def _key(self) -> Dict[str, Any]:
        ckpt = self.checkpoint
        if ckpt is None:
            from ..train.run import RunDir
            ckpt = RunDir(self.viewer.run_dir).latest_checkpoint()
        return cache_key(ckpt, self.settings)

    def _summary(self, report: Dict[str, Any], how: str) -> str:
        n = len(self.arrays["centers"]) if self.arrays is not None else 0
        step = (self.meta or {}).get("source", {}).get("step")
        secs = report.get("seconds")
        return (f"{n:,} splats ({how}: step-{step} checkpoint, {report.get('views', '?')} views"
                + (f", baked in {secs:.0f} s" if secs is not None else "") + ")")

    # -- baking (view only) ----------------------------------------------------------------------------

    def start_bake(self) -> bool:
        """Bake in a background thread (the page keeps working: NeRF frames until the splats are in)."""
        v = self.viewer
        if v.live or v.run_dir is None or v.task is None:
            return False
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self.viewer.gui["splats_rebake"].disabled = True
            self._thread = threading.Thread(target=self._bake, name="nerf-app-viewer-bake", daemon=True)
            self._thread.start()
        return True

    def _bake(self) -> None:
        v = self.viewer
        if self.nice > 0 and hasattr(os, "setpriority"):
            try:   # as the render worker: the server threads and the page stay responsive
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError:
                pass
        try:
            key = self._key()
            step = key["source"].get("step")

            def on_view(done, total):
                if self._closing.is_set():
                    raise BakeAborted()
                self._status(f"baking splats from the step-{step} checkpoint: view {done}/{total} ...")
            capture, report = bake_for_viewer(v.task, self.settings, on_view)
            with self._write_lock:
                if self._closing.is_set():
                    raise BakeAborted()
                write_bake(v.run_dir, capture, key, report)
            self.meta = {**key, "report": report}
            self.bakes += 1
            self.last_report = report
            norm = v.task.scene.normalization
            self.set_arrays(node_arrays(capture, float(norm.scale), norm.translation))
            self._status(self._summary(report, "baked now"))
            v.log(f"[viewer] baked {report['splats']} splats in {report['seconds']} s -> {v.run_dir}")
        except BakeAborted:
            return
        except Exception as exc:   # a failed bake must not take the viewer down: NeRF frames go on
            self._status(f"**bake failed:** {exc}")
            v.log(f"[viewer] splat bake failed: {exc}")
        finally:
            if not self._closing.is_set():
                self.viewer.gui["splats_rebake"].disabled = False

    def stop(self, timeout: float = 60.0) -> None:
        """The bake stops at its next view (a cache write under way is finished: never left half-done), and is
        waited for: a daemon thread still inside torch's C++ when the interpreter exits aborts the process
        ('terminate called without an active exception' after a Ctrl-C, seen on cup10)."""
        self._closing.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._write_lock.acquire(timeout=timeout):
            self._write_lock.release()

    # -- nodes, per tab --------------------------------------------------------------------------------

    def set_arrays(self, arrays: Dict[str, Any]) -> None:
        with self._lock:
            first = self.arrays is None
            self.arrays = arrays
            if first:   # splats exist: on by default
                self.viewer.gui["splats_on"].disabled = False
                self.viewer.gui["splats_on"].value = True
            for state in list(self.viewer.clients.values()):
                self.add_to(state.client)

    def add_to(self, client) -> None:
        """(Re)place this tab's node; visible unless the tab shows a NeRF frame of its still camera."""
        with self._lock:
            if self.arrays is None:
                return
            a = self.arrays
            cid = client.client_id
            visible = self.active and not self.nerf_shown.get(cid, False)
            self.handles[cid] = client.scene.add_gaussian_splats(
                "/splats", a["centers"], a["covariances"], a["rgbs"], a["opacities"], scale=a["scale"],
                visible=visible)

    def forget(self, client_id: int) -> None:
        with self._lock:
            self.handles.pop(client_id, None)
            self.nerf_shown.pop(client_id, None)

    def moving(self, client) -> None:
        """The tab's camera moved: splats on, the (now stale) NeRF background off."""
        if not self.active:
            return
        with self._lock:
            cid = client.client_id
            handle = self.handles.get(cid)
            if handle is None or (handle.visible and not self.nerf_shown.get(cid, False)):
                return
            with client.atomic():
                client.scene.set_background_image(None)
                handle.visible = True
            self.nerf_shown[cid] = False

    def show_frame(self, client, image) -> None:
        """The NeRF frame of the still camera: it becomes the background, the splats go."""
        with self._lock:
            handle = self.handles.get(client.client_id)
            with client.atomic():
                client.scene.set_background_image(image, format="jpeg", jpeg_quality=85)
                if handle is not None:
                    handle.visible = False
            self.nerf_shown[client.client_id] = True

    def _toggled(self) -> None:
        if not self.viewer.gui["splats_on"].value:
            with self._lock:
                for h in self.handles.values():
                    h.visible = False
        self.viewer._request_all()
