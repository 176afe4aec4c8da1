"""The live viewer: the render worker (ladder, cancellation, idling) without a browser, the mode renderers on
tiny runs, the trainer's step hook, and the page itself in headless Chromium (skipped only where no
Chromium can run, with the reason)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nerf_app.viewer.worker import RenderCancelled, RenderWorker, ViewRequest, resolution_ladder

from conftest import REPO_ROOT, requires_cpp  # nerf_run: conftest's session fixture

ARTIFACTS = Path(os.environ.get("NERF_APP_TEST_ARTIFACTS", REPO_ROOT / "outputs" / "test-artifacts"))


# -- the worker, with a fake renderer ---------------------------------------------------------------

class FakeRenderer:
    """Renders in ``chunks`` chunks of ``chunk_s`` seconds, polling should_stop between them."""

    def __init__(self, chunks=4, chunk_s=0.01):
        self.chunks, self.chunk_s = chunks, chunk_s
        self.calls = []
        self.cancelled_at = []
        self.lock = threading.Lock()

    def __call__(self, req, width, height, should_stop):
        with self.lock:
            self.calls.append((req.tag, height))
        for _ in range(self.chunks):
            if should_stop():
                self.cancelled_at.append(time.perf_counter())
                raise RenderCancelled()
            time.sleep(self.chunk_s)
        return np.full((height, width, 3), hash(req.tag) % 255, np.uint8), {"tag": req.tag}


def _wait_until(predicate, timeout=30.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False): a loaded 2-core box can
    take far longer than a fixed sleep allows, and a broken worker still never gets there."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.01)
    return True


def _collect():
    frames, done = [], threading.Event()

    def on_frame(f):
        frames.append(f)
        if f.final:
            done.set()
    return frames, done, on_frame


def _req(tag, full=64, preview=16, aspect=1.5):
    c2w = np.eye(4)
    c2w[0, 3] = sum(map(ord, str(tag))) * 1e-2   # one camera per tag
    return ViewRequest(c2w, 50.0, aspect, "rgb", max_height=full, preview_height=preview, tag=tag)


def test_resolution_ladder():
    assert resolution_ladder(96, 400) == [96, 192, 400]
    assert resolution_ladder(64, 256) == [64, 128, 256]
    assert resolution_ladder(64, 100) == [64, 100]
    assert resolution_ladder(400, 300) == [300]
    assert resolution_ladder(0, 10) == [1, 2, 4, 10]
    assert resolution_ladder(64, 512) == [64, 128, 256, 512]


def test_worker_climbs_the_ladder_when_the_camera_is_still():
    frames, done, on_frame = _collect()
    w = RenderWorker(FakeRenderer(), on_frame, settle_s=0.02).start()
    try:
        gen = w.request(_req("a", full=64, preview=16, aspect=1.5))
        assert done.wait(5)
        assert [f.height for f in frames] == [16, 32, 64]
        assert [f.width for f in frames] == [24, 48, 96] and frames[-1].image.shape == (64, 96, 3)
        assert all(f.generation == gen for f in frames) and [f.rung for f in frames] == [0, 1, 2]
        assert frames[-1].final and not frames[0].final
        assert _wait_until(lambda: not w.busy) and w.frames_rendered == 3
    finally:
        w.stop()


def test_worker_while_moving_renders_previews_only_and_the_newest_view_wins():
    frames, done, on_frame = _collect()
    fake = FakeRenderer(chunks=4, chunk_s=0.005)
    w = RenderWorker(fake, on_frame, settle_s=1.0).start()   # settle_s far above the 30 ms spacing, even loaded
    try:
        for k in range(6):                 # a drag: camera messages every 30 ms (< settle_s)
            w.request(_req(k, full=128, preview=16))
            time.sleep(0.03)
        assert done.wait(30)
        # every finished frame before the last request is a preview; only the last view is refined
        assert all(f.rung == 0 for f in frames if f.request.tag != 5)
        assert [f.height for f in frames if f.request.tag == 5] == [16, 32, 64, 128]
        assert frames[-1].request.tag == 5 and frames[-1].final
    finally:
        w.stop()


def test_worker_cancels_a_stale_refinement_within_one_chunk_but_finishes_previews():
    frames, done, on_frame = _collect()
    fake = FakeRenderer(chunks=100, chunk_s=0.02)  # any frame takes 2 s
    w = RenderWorker(fake, on_frame, settle_s=0.01).start()
    try:
        w.request(_req("slow", full=32, preview=16))
        time.sleep(0.1)
        w.request(_req("moved", full=32, preview=16))   # the camera moved during the preview
        deadline = time.perf_counter() + 30             # ... the preview finishes and is shown, not refined
        while not frames and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert [(f.request.tag, f.height) for f in frames] == [("slow", 16)]
        deadline = time.perf_counter() + 30             # now "moved": its preview, then its refinement starts
        while ("moved", 16) not in [(f.request.tag, f.height) for f in frames] and time.perf_counter() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        t0 = time.perf_counter()
        w.request(_req("new", full=32, preview=16))     # cancels a refinement at the next chunk
        assert done.wait(10)
        tags = [(f.request.tag, f.height) for f in frames]
        assert ("moved", 32) not in tags and tags[-2:] == [("new", 16), ("new", 32)], tags
        # cancelled at the next chunk: well under the ~1.8 s the refinement still had to go (1 s: a loaded box)
        assert w.cancelled >= 1 and fake.cancelled_at and fake.cancelled_at[-1] - t0 < 1.0
        # the same view again is not re-rendered; force=True (new weights) re-renders it
        n = len(frames)
        w.request(_req("new", full=32, preview=16))
        time.sleep(0.3)
        assert _wait_until(lambda: not w.busy) and len(frames) == n
        # cancel(): nobody watching -> even a preview stops, nothing is delivered
        done.clear()
        w.request(_req("new", full=32, preview=16), force=True)
        time.sleep(0.05)
        w.cancel()
        assert _wait_until(lambda: not w.busy) and len(frames) == n
    finally:
        w.stop()


def test_worker_idles_without_requests_and_survives_a_failing_render():
    errors = []
    calls = []

    def bad(req, width, height, should_stop):
        calls.append(height)
        raise ValueError("boom")
    w = RenderWorker(bad, lambda f: None, on_error=errors.append).start()
    try:
        time.sleep(0.1)
        assert calls == [] and not w.busy        # no client, no request: nothing renders
        w.request(_req("x"))
        assert _wait_until(lambda: errors)
        assert len(errors) == 1 and isinstance(errors[0], ValueError) and calls == [16]
        assert w._thread.is_alive()
    finally:
        w.stop()
    assert not w._thread.is_alive()


# -- renderers on tiny runs, the trainer hook --------------------------------------------------------

@requires_cpp
def test_trainer_step_hook(nerf_run):
    _, seen = nerf_run
    assert [s[0] for s in seen] == list(range(1, 13))
    assert all(isinstance(s[1], float) and s[2] for s in seen)
    assert all(b[3] >= a[3] for a, b in zip(seen, seen[1:]))


@requires_cpp
def test_nerf_view_renderer_modes_cancellation_and_live_refresh(nerf_run):
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.renderers import make_view_renderer
    run, _ = nerf_run
    task, _, _ = open_run(run)
    r = make_view_renderer(task)
    ctx = r.context()
    assert len(ctx.cameras) == task.scene.num_images("all") and {c.split for c in ctx.cameras} >= {"train"}
    assert ctx.points is not None and ctx.points.shape[1] == 3       # the demo scene has sparse points
    for mode in r.modes:
        req = ViewRequest(ctx.home_c2w, ctx.home_fov_deg, 1.5, mode, max_samples=64)
        img, info = r.render(req, 24, 16, lambda: False)
        assert img.shape == (16, 24, 3) and img.dtype == np.uint8, mode
    assert "psnr" in info and info["image"] in task.scene.names      # error: against the nearest photo
    assert r.thumbnail(0).shape[2] == 3
    # cancellation is honoured at the first chunk
    with pytest.raises(RenderCancelled):
        r.render(ViewRequest(ctx.home_c2w, ctx.home_fov_deg), 24, 16, lambda: True)
    # live: the renderer works on a copy; refresh_from copies the weights, but never while a render holds the lock
    live = make_view_renderer(task, live=True)
    assert live.task.model is not task.model
    p_live = next(live.task.model.parameters())
    with __import__("torch").no_grad():
        next(task.model.parameters()).add_(1.0)
    assert not __import__("torch").equal(p_live, next(task.model.parameters()))
    with live.lock:
        assert live.refresh_from(task, 7) is False
    assert live.refresh_from(task, 7) is True and live.weights_step == 7
    assert __import__("torch").equal(p_live, next(task.model.parameters()))


def test_surface_view_renderer(tmp_path):
    import trimesh
    from nerf_app.cli import main
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.renderers import make_view_renderer
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    mesh.export(tmp_path / "ball.obj")
    for mode in ("sdf", "occupancy"):
        run = tmp_path / mode
        assert main(["train", str(tmp_path / "ball.obj"), "--mode", mode, "--max-steps", "20", "--out", str(run),
                     "--set", "data.pool_size=20000", "--set", "data.refresh_size=4096", "--set",
                     "model.log2_hashmap_size=12", "--set", "model.finest_resolution=64", "--set",
                     "optim.batch_size=2048", "--no-progress", "--threads", "2"]) == 0
        task, _, _ = open_run(run)
        r = make_view_renderer(task)
        ctx = r.context()
        for view in r.modes:
            img, _ = r.render(ViewRequest(ctx.home_c2w, ctx.home_fov_deg, 1.0, view, max_samples=64), 24, 24,
                              lambda: False)
            assert img.shape == (24, 24, 3)
        # the ball fills the middle of the home view, the corners are background
        img, _ = r.render(ViewRequest(ctx.home_c2w, ctx.home_fov_deg, 1.0, "normals", max_samples=64), 24, 24,
                          lambda: False)
        assert (img[0, 0] == 255).all() and not (img[12, 12] == 255).all(), mode


@requires_cpp
def test_camera_path_panel_saves_a_path_render_reads_and_renders_it(nerf_run, tmp_path):
    """Keyframes -> camera_path.json in the capture's coordinates (what `nerf-app render --path` reads) -> mp4."""
    from nerf_app.camera_paths.keyframes import read_camera_path
    from nerf_app.nerf.outputs import camera_path, scene_orbit
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.server import Viewer
    run, _ = nerf_run
    task, rd, _ = open_run(run)
    viewer = Viewer(task, rd.path, host="127.0.0.1", port=0, log=lambda m: None).start()
    try:
        poses, fov = scene_orbit(task.scene, 8)
        viewer.keyframes = [(poses[k], fov) for k in (0, 2, 4)]
        viewer.gui["kf_frames"].value = 5
        viewer.gui["resolution"].value = 32
        out = viewer.save_path(str(tmp_path / "camera_path.json"))
        c2w, fovs, settings = read_camera_path(out)
        assert len(c2w) == 5 and settings["fps"] == 24 and np.allclose(fovs, fov)
        back, _ = camera_path(task, str(out), 0)                  # what `render --path FILE` renders
        assert np.allclose(back[0], poses[0], atol=1e-6) and np.allclose(back[-1], poses[4], atol=1e-6)
        result = viewer.render_path()
        import cv2
        cap = cv2.VideoCapture(result["video"])
        n = 0
        while cap.read()[0]:
            n += 1
        cap.release()
        assert n == 5 and result["frames"] == 5
    finally:
        viewer.stop()


@requires_cpp
def test_camera_path_panel_path_from_the_capture(nerf_run, tmp_path):
    """'Path from the capture' = `render --path capture`: the saved camera_path.json holds the same poses;
    adding a keyframe goes back to keyframes."""
    from nerf_app.camera_paths.keyframes import read_camera_path
    from nerf_app.nerf.outputs import camera_path
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.server import Viewer
    run, _ = nerf_run
    task, rd, _ = open_run(run)
    viewer = Viewer(task, rd.path, host="127.0.0.1", port=0, log=lambda m: None).start()
    try:
        viewer.gui["kf_frames"].value = 9
        msg = viewer.use_capture_path()
        assert "path from the capture: 9 frames" in msg and "% within 20 degrees" in msg
        out = viewer.save_path(str(tmp_path / "camera_path.json"))
        expect, _ = camera_path(task, "capture", 9)
        back, _ = camera_path(task, str(out), 0)
        assert np.allclose(back, expect, atol=1e-6)
        viewer.clear_keyframes()
        assert not viewer.capture_path
        with pytest.raises(ValueError, match="two keyframes"):
            viewer.path_poses()
    finally:
        viewer.stop()


# -- the page, in headless Chromium -----------------------------------------------------------------

@requires_cpp
def test_viewer_in_headless_chromium(nerf_run):
    """Start the viewer, load the page, wait for a rendered frame, orbit the camera with a mouse drag on the
    page, check that a new frame (of the new camera) arrives and differs; keep a screenshot."""
    from nerf_app.viewer.headless import Chromium, find_chromium
    exe, why = find_chromium()
    if exe is None:
        pytest.skip(why)
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.server import Viewer
    run, _ = nerf_run
    task, rd, _ = open_run(run)
    viewer = Viewer(task, rd.path, host="127.0.0.1", port=0, preview_height=32, max_height=96,
                    thumbnails=False).start()
    # "error" view: the photo nearest to the camera against the render - camera-dependent even untrained
    viewer.gui["mode"].value = "error"
    viewer.gui["samples"].value = 128
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with Chromium(width=1000, height=640, exe=exe) as page:
            page.open(f"http://127.0.0.1:{viewer.port}")

            def wait_final(after_gen, timeout=40.0):
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < timeout:
                    for s in list(viewer.clients.values()):
                        f = s.last_frame
                        if f is not None and f.final and f.generation > after_gen:
                            return s, f
                    time.sleep(0.05)
                raise AssertionError(f"no rendered frame within {timeout} s (clients: {len(viewer.clients)})")

            state, first = wait_final(0)
            time.sleep(0.5)                        # let the page draw it
            before = page.screenshot(str(ARTIFACTS / "viewer_browser_before.png"))
            assert before.std() > 5                # not a blank page
            x, y = page.width * 0.35, page.height * 0.5
            page.drag(x, y, x + 260, y + 40)       # orbit, as a user does (the page sends its new camera)
            second = None
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 40:
                _, f = wait_final(first.generation)
                if not np.allclose(f.request.c2w, first.request.c2w):
                    second = f
                    break
            assert second is not None, "the page's camera did not change"
            assert second.info["index"] != first.info["index"] or \
                np.abs(second.image.astype(int) - first.image.astype(int)).mean() > 1.0
            time.sleep(0.5)
            after = page.screenshot(str(ARTIFACTS / "viewer_browser.png"))
            assert np.abs(after.astype(int) - before.astype(int)).mean() > 1.0
    finally:
        viewer.stop()
