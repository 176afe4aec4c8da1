"""A live web viewer for trained (or training) runs, served by the process itself (viser).

* :mod:`.worker` — the render worker: a thread with a resolution ladder (a quick low-resolution frame
  while the camera moves, refined when it stops) and cancellation between ray chunks.
* :mod:`.renderers` — what a frame is for each mode: NeRF (RGB / depth / opacity / error against the
  nearest training image) through the task's own renderer; SDF / occupancy runs as a shaded surface.
* :mod:`.server` — the viser server: scene context (camera frusta with thumbnails, sparse points, the
  scene box), the panel (view, resolution, samples, live training stats) and the camera-path panel.

``nerf-app view RUN`` and ``nerf-app train ... --viewer`` use :class:`~nerf_app.viewer.server.Viewer`.
Importing this package does not import viser (only :mod:`.server` does).
"""
from .worker import Frame, RenderCancelled, RenderWorker, ViewRequest, resolution_ladder

__all__ = ["Frame", "RenderCancelled", "RenderWorker", "ViewRequest", "resolution_ladder"]
