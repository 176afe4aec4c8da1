"""The viewer's splats on a trained NeRF run, through a real (headless Chromium) page (issue 27 part 4).

    python benchmarks/viewer_splats.py RUN [--screenshots DIR] [--max-splats N] [--drag PX] [--drag-steps N]

Opens the viewer as ``nerf-app view RUN`` does (the cached bake, or a bake now: its time is reported), then at
the home view: a screenshot of the splats, the camera declared still (the NeRF frame replaces them: its time
and a screenshot); a drag (the page draws splats; frames the page drew, counted by a hook on WebGL's draw
calls per animation frame, camera messages, and NeRF renders the server started: must be 0); the same two
screenshots at the new camera. Prints one JSON line. The camera counts as still only when the script says
so (the viewer's still time is set huge meanwhile), so screenshots of slow software WebGL see the splats.

Headless Chromium draws WebGL with SwiftShader, i.e. on the CPU: its frame rate measures the CPU, not the
browser's GPU a user has.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# counts animation frames in which the page issued a WebGL draw call (installed before the page loads)
FRAME_COUNTER = """
(() => { let drew = false; window.__frames = 0;
  for (const C of [WebGL2RenderingContext, WebGLRenderingContext])
    for (const f of ['drawArrays', 'drawElements', 'drawArraysInstanced', 'drawElementsInstanced']) {
      const g = C.prototype[f]; if (!g) continue;
      C.prototype[f] = function (...a) { drew = true; return g.apply(this, a); };
    }
  const tick = () => { if (drew) { window.__frames++; drew = false; } requestAnimationFrame(tick); };
  requestAnimationFrame(tick); })();
"""
HIDE_NOTICES = "document.querySelectorAll('.mantine-Notification-root').forEach(e => e.remove())"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--screenshots", default=None, help="folder for {home,moved}_{splats,nerf}.png")
    ap.add_argument("--splats", default="auto", help="auto | rebake | FILE.ply (as nerf-app view)")
    ap.add_argument("--max-splats", type=int, default=None)
    ap.add_argument("--max-height", type=int, default=400)
    ap.add_argument("--drag", type=int, default=90, help="pixels to drag (orbit)")
    ap.add_argument("--drag-steps", type=int, default=20, help="mouse moves in the drag")
    ap.add_argument("--width", type=int, default=800)
    ap.add_argument("--height", type=int, default=500)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds for the page to draw the splats")
    args = ap.parse_args()
    t0 = time.perf_counter()
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.headless import Chromium
    from nerf_app.viewer.server import Viewer
    task, rd, _ = open_run(args.run)
    out = {"run": args.run, "open_s": round(time.perf_counter() - t0, 2), "load_before": os.getloadavg()[0]}
    viewer = Viewer(task, rd.path, host="127.0.0.1", port=0, preview_height=32, max_height=args.max_height,
                    thumbnails=False, splats=args.splats, checkpoint=rd.latest_checkpoint(),
                    max_splats=args.max_splats, splat_still_s=1e6, log=lambda m: None).start()
    while viewer.splats.arrays is None:
        if "failed" in viewer.gui["splats_status"].content:
            raise SystemExit(viewer.gui["splats_status"].content)
        time.sleep(0.5)
    report = viewer.splats.last_report or (viewer.splats.meta or {}).get("report", {})
    out.update(splats=len(viewer.splats.arrays["centers"]), baked_now=viewer.splats.bakes > 0,
               bake_s=report.get("seconds"), bake_candidates=report.get("candidates"))
    viewer.gui["show_cameras"].value = False
    viewer.gui["show_points"].value = False
    folder = args.screenshots
    if folder:
        os.makedirs(folder, exist_ok=True)
    try:
        with Chromium(width=args.width, height=args.height, timeout=120) as page:
            def shot(name):
                page.evaluate(HIDE_NOTICES)
                data = base64.b64decode(page.send("Page.captureScreenshot", timeout=600, format="png")["data"])
                if folder:
                    with open(os.path.join(folder, name + ".png"), "wb") as f:
                        f.write(data)

            def nerf_when_still(state, key):
                gen = state.worker.generation
                t = time.perf_counter()
                state.worker.still_s = 0.0
                while not (state.last_frame is not None and state.last_frame.final and
                           state.last_frame.generation >= gen):
                    time.sleep(0.05)
                out[key] = round(time.perf_counter() - t, 2)
                state.worker.still_s = 1e6

            page.send("Page.addScriptToEvaluateOnNewDocument", source=FRAME_COUNTER)
            page.open(f"http://127.0.0.1:{viewer.port}")
            while not (viewer.clients and viewer.splats.handles):
                time.sleep(0.1)
            state = next(iter(viewer.clients.values()))
            time.sleep(args.settle)
            shot("home_splats")
            nerf_when_still(state, "still_to_nerf_home_s")
            time.sleep(1.0)
            shot("home_nerf")
            renders, messages = state.worker.renders_started, state.worker.generation
            frames = page.evaluate("window.__frames")
            t = time.perf_counter()
            page.drag(args.width * 0.35, args.height * 0.5, args.width * 0.35 + args.drag, args.height * 0.48,
                      steps=args.drag_steps, pause=0.0)
            drag_s = time.perf_counter() - t
            drawn = page.evaluate("window.__frames") - frames
            out.update(drag_s=round(drag_s, 2), drag_moves=args.drag_steps, page_frames=drawn,
                       page_fps=round(drawn / drag_s, 2), camera_messages=state.worker.generation - messages,
                       server_renders_during_drag=state.worker.renders_started - renders)
            time.sleep(args.settle)
            shot("moved_splats")
            out["server_renders_before_still"] = state.worker.renders_started - renders
            nerf_when_still(state, "still_to_nerf_moved_s")
            time.sleep(1.0)
            shot("moved_nerf")
            out["nerf_frame"] = f"{state.last_frame.width}x{state.last_frame.height}"
    finally:
        viewer.stop()
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
