"""The viewer's render worker: one thread, a resolution ladder, cancellation between ray chunks.

A :class:`ViewRequest` (camera pose, field of view, aspect, view mode, full height, max samples) is handed
to :meth:`RenderWorker.request`; the newest request always wins (an identical one is ignored). The worker
renders the request's lowest rung (``preview_height``) at once, then - if no newer request arrives within
``settle_s`` (the camera stopped) - climbs the ladder (each rung twice the height of the last, ending at
``max_height``), handing every finished frame to ``on_frame``.

Cancellation: a newer request stops a *refinement* at the next ray chunk (the render function polls
``should_stop()`` and raises :class:`RenderCancelled`). A preview (rung 0) is always finished and shown,
even when the camera has moved on meanwhile: while the camera moves, messages come faster than frames, and
cancelling previews would show nothing at all; finishing them gives one frame per preview render time.
:meth:`cancel` / :meth:`stop` (nobody is watching) stop any render, previews included.

With splats in the page (:mod:`.splat_layer`) the browser draws the moving camera itself: such requests
(``after_still``) render nothing until no newer request has come for :attr:`RenderWorker.still_s` seconds,
and every rung of theirs, the first included, is cancelled by a newer request.

Idle costs nothing: the thread sleeps on a condition variable until a request comes. The thread lowers
its own scheduling priority (nice +``nice``) so that, during ``train --viewer``, training keeps the CPU.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np


class RenderCancelled(Exception):
    """Raised by a render function when ``should_stop()`` turned true (a newer request or a stop)."""


@dataclass
class ViewRequest:
    c2w: np.ndarray                 # [4,4] camera-to-world, OpenCV axes, viewer (normalised scene) coordinates
    fov_y_deg: float                # vertical field of view
    aspect: float = 1.0             # width / height of the client's canvas
    mode: str = "rgb"               # a mode the renderer lists (rgb, depth, opacity, error, shaded, normals)
    max_height: int = 400           # the ladder's last rung (full resolution)
    preview_height: int = 96        # the ladder's first rung (while the camera moves)
    max_samples: int = 1024         # samples per ray (NeRF) / marching steps (surfaces)
    refine: bool = True             # climb the ladder once the camera is still
    after_still: bool = False       # render only once the camera has been still for still_s (splats meanwhile)
    tag: Any = None                 # anything the caller wants back on the frame


@dataclass
class Frame:
    image: np.ndarray               # uint8 [H, W, 3]
    width: int
    height: int
    rung: int                       # index into the ladder
    n_rungs: int
    seconds: float                  # time spent rendering this frame
    generation: int                 # which request (monotonic)
    request: ViewRequest
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.rung == self.n_rungs - 1


def resolution_ladder(preview_height: int, max_height: int) -> List[int]:
    """Heights from ``preview_height`` doubling towards ``max_height`` (always the last rung):
    ``(96, 400) -> [96, 192, 400]``; a preview at or above the full height gives just ``[max_height]``."""
    preview_height, max_height = max(1, int(preview_height)), max(1, int(max_height))
    if preview_height >= max_height:
        return [max_height]
    out = [preview_height]
    while out[-1] * 2 * 4 < max_height * 3:     # no rung within 4/3 of the full height (nearly the same cost)
        out.append(out[-1] * 2)
    out.append(max_height)
    return out


RenderFn = Callable[[ViewRequest, int, int, Callable[[], bool]], Tuple[np.ndarray, Dict[str, Any]]]


class RenderWorker:
    """``RenderWorker(render_fn, on_frame).start()``; ``request(ViewRequest)`` from any thread.

    ``render_fn(request, width, height, should_stop) -> (uint8 [H,W,3], info dict)`` must poll
    ``should_stop()`` between chunks and raise :class:`RenderCancelled` when it is true.
    """

    def __init__(self, render_fn: RenderFn, on_frame: Callable[[Frame], None], settle_s: float = 0.15,
                 nice: int = 5, name: str = "nerf-app-viewer-render",
                 on_error: Optional[Callable[[BaseException], None]] = None, still_s: float = 0.3):
        self.render_fn = render_fn
        self.on_frame = on_frame
        self.on_error = on_error or (lambda exc: print(f"[viewer] render failed: {exc!r}", file=sys.stderr))
        self.settle_s = float(settle_s)
        self.still_s = float(still_s)   # read while waiting: a change applies to the wait under way
        self._request_t = 0.0
        self.nice = int(nice)
        self._cond = threading.Condition()
        self._pending: Optional[ViewRequest] = None
        self._generation = 0
        self._cancels = 0               # bumped by cancel()/stop(): stops previews too
        self._latest: Optional[ViewRequest] = None
        self._stopped = False
        self._busy = False
        self._done_latest = False
        self.frames_rendered = 0
        self.renders_started = 0        # calls of render_fn (finished, cancelled or failed)
        self.cancelled = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    # -- control (any thread) -----------------------------------------------------------------------

    def start(self) -> "RenderWorker":
        self._thread.start()
        return self

    def request(self, req: ViewRequest, force: bool = False) -> int:
        """Queue ``req`` (replacing any queued one, cancelling a refinement in progress); returns its
        generation. A request identical to the latest one (same view, settings) is ignored unless ``force``
        (new weights while training)."""
        with self._cond:
            if not force and same_view(req, self._latest) and (self._busy or self._pending is not None or self._done_latest):
                return self._generation
            self._latest = req
            self._request_t = time.perf_counter()
            self._done_latest = False
            self._generation += 1
            self._pending = req
            self._cond.notify_all()
            return self._generation

    def cancel(self) -> None:
        """Drop the queued request and stop the current render at its next chunk (nobody is watching)."""
        with self._cond:
            self._generation += 1
            self._cancels += 1
            self._pending = None
            self._latest = None
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._generation += 1
            self._cancels += 1
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        """A request is queued or rendering."""
        return self._busy or self._pending is not None

    @property
    def generation(self) -> int:
        return self._generation

    # -- the thread ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        if self.nice > 0 and hasattr(os, "setpriority"):
            try:  # Linux: nice is per thread, and the OpenMP team this thread starts inherits it
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError:
                pass
        while True:
            with self._cond:
                while self._pending is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                req, gen = self._pending, self._generation
                self._pending = None
                self._busy = True
            try:
                self._render_ladder(req, gen)
            finally:
                self._busy = False

    def _render_ladder(self, req: ViewRequest, gen: int) -> None:
        cancels = self._cancels

        def should_stop() -> bool:
            return self._generation != gen or self._stopped

        def preview_should_stop() -> bool:
            return self._cancels != cancels or self._stopped

        if req.after_still:
            with self._cond:   # still = no newer request for still_s (re-read: a test may change it meanwhile)
                while not should_stop():
                    left = self._request_t + self.still_s - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, 0.05))
        ladder = resolution_ladder(req.preview_height, req.max_height)
        for rung, height in enumerate(ladder):
            if rung == 1:
                # the camera is "still" when no newer request comes within settle_s
                with self._cond:
                    self._cond.wait_for(should_stop, timeout=self.settle_s)
            # the splats are the preview of an after_still request: none of its frames may be stale
            stop = preview_should_stop if rung == 0 and not req.after_still else should_stop
            if stop():
                self.cancelled += 1
                return
            width = max(1, int(round(height * req.aspect)))
            t0 = time.perf_counter()
            self.renders_started += 1
            try:
                image, info = self.render_fn(req, width, height, stop)
            except RenderCancelled:
                self.cancelled += 1
                return
            except Exception as exc:  # a broken render must not kill the viewer
                self.on_error(exc)
                return
            if stop():  # finished, but a newer view is wanted: don't show a stale refinement
                self.cancelled += 1
                return
            self.frames_rendered += 1
            self.on_frame(Frame(image, width, height, rung, len(ladder), time.perf_counter() - t0, gen, req,
                                dict(info or {})))
            if not req.refine or should_stop():
                return
        with self._cond:
            if self._generation == gen:
                self._done_latest = True


def same_view(a: Optional[ViewRequest], b: Optional[ViewRequest]) -> bool:
    """Two requests that would render the same frames."""
    if a is None or b is None:
        return False
    settings = lambda r: (r.mode, r.max_height, r.preview_height, r.max_samples, r.refine, r.after_still)  # noqa: E731
    return (np.allclose(a.c2w, b.c2w, atol=1e-7) and abs(a.fov_y_deg - b.fov_y_deg) < 1e-7
            and abs(a.aspect - b.aspect) < 1e-7 and settings(a) == settings(b))
