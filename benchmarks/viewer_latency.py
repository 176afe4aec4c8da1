"""Viewer latency on a trained run, measured through a real (headless Chromium) page.

    python benchmarks/viewer_latency.py RUN [--screenshot docs/images/viewer_lego.png] [--mode rgb]

Prints one JSON line: time from start (open_run, as `nerf-app view` does) to the server being up and to the
first frame in the page; frames per second while the camera moves (the page is dragged continuously for
--drag-seconds, counting preview frames delivered); time from the end of the drag to the full-resolution
frame; and the render time of one frame at each height of the ladder (the home view; median of 3 up to
128 rows, one render above).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--screenshot", default=None)
    ap.add_argument("--mode", default=None)
    ap.add_argument("--drag-seconds", type=float, default=6.0)
    ap.add_argument("--heights", default="32,64,128,256,400")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-height", type=int, default=400)
    ap.add_argument("--hide-cameras", action="store_true", help="frusta off (the home view of a real capture sits among them)")
    ap.add_argument("--preview-height", type=int, default=64)
    args = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.headless import Chromium
    from nerf_app.viewer.server import Viewer
    from nerf_app.viewer.worker import ViewRequest
    task, rd, _ = open_run(args.run)
    t_open = time.perf_counter() - t0
    viewer = Viewer(task, rd.path, host="127.0.0.1", port=0, max_height=args.max_height,
                    preview_height=args.preview_height).start()
    if args.mode:
        viewer.gui["mode"].value = args.mode
    if args.hide_cameras:
        viewer.gui["show_cameras"].value = False
        for _, handle in getattr(viewer, "frusta", []):
            handle.visible = False
    t_server = time.perf_counter() - t0
    out = {"run": args.run, "mode": task.config.mode, "open_s": round(t_open, 2), "server_up_s": round(t_server, 2),
           "threads": args.threads, "load_before": os.getloadavg()[0]}
    try:
        with Chromium(width=1200, height=760) as page:
            page.open(f"http://127.0.0.1:{viewer.port}")
            while not any(s.frames for s in viewer.clients.values()):
                time.sleep(0.01)
            out["first_frame_s"] = round(time.perf_counter() - t0, 2)
            state = next(iter(viewer.clients.values()))
            out["first_frame_size"] = f"{state.last_frame.width}x{state.last_frame.height}"
            while not (state.last_frame and state.last_frame.final):
                time.sleep(0.02)
            out["first_full_frame_s"] = round(time.perf_counter() - t0, 2)
            print("partial", json.dumps(out), flush=True)
            time.sleep(1.5)
            if args.screenshot:       # the home view, refined
                page.screenshot(args.screenshot)
            # moving: drag back and forth continuously; count preview frames delivered
            previews = []
            orig = viewer._on_frame

            def spy(client, frame):
                if frame.rung == 0:
                    previews.append(time.perf_counter())
                orig(client, frame)
            for s in viewer.clients.values():
                s.worker.on_frame = lambda f, c=s.client: spy(c, f)
            x, y = 450, 380
            page.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
            page.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", buttons=1, clickCount=1)
            t_drag = time.perf_counter()
            k = 0
            while time.perf_counter() - t_drag < args.drag_seconds:
                k += 1
                dx = 120 * np.sin(k * 0.08)
                page.send("Input.dispatchMouseEvent", type="mouseMoved", x=x + dx, y=y + 10 * np.sin(k * 0.05),
                          button="left", buttons=1)
                time.sleep(0.02)
            drag_s = time.perf_counter() - t_drag
            page.send("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", buttons=0, clickCount=1)
            t_stop = time.perf_counter()
            inside = [t for t in previews if t_drag <= t <= t_stop]
            out["moving_fps"] = round(len(inside) / drag_s, 2)
            out["moving_frame"] = f"{state.last_frame.width}x{state.last_frame.height}" if state.last_frame else None
            gen = state.worker.generation
            while not (state.last_frame and state.last_frame.final and state.last_frame.generation >= gen):
                time.sleep(0.02)
                if time.perf_counter() - t_stop > 120:
                    break
            out["refine_after_stop_s"] = round(time.perf_counter() - t_stop, 2)
            out["full_frame"] = f"{state.last_frame.width}x{state.last_frame.height}"
            aspect = state.last_frame.width / state.last_frame.height
            for s in viewer.clients.values():
                s.worker.cancel()
    finally:
        viewer.stop()
    # per-resolution render time (no page, same renderer, home view)
    r, ctx = viewer.renderer, viewer.context
    per = {}
    for h in map(int, args.heights.split(",")):
        w = int(round(h * aspect))
        times = []
        for _ in range(3 if h <= 128 else 1):
            t = time.perf_counter()
            r.render(ViewRequest(ctx.home_c2w, ctx.home_fov_deg, aspect, args.mode or r.default_mode,
                                 max_samples=r.default_samples), w, h, lambda: False)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        per[f"{w}x{h}"] = {"seconds": round(med, 3), "fps": round(1 / med, 2)}
    out["per_resolution"] = per
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
