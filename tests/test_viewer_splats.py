"""The viewer's splats (issue 27 part 4): the node's arrays from a known PLY against a hand computation, the
bake cache (key, staleness, atomic write, Ctrl-C), the worker holding NeRF renders back while the camera
moves, the bake in the background of a real viewer, and the page in headless Chromium: splats drawn, a drag
gives a new image with no server render, the NeRF frame once the camera is still."""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nerf_app.splats.model import SH_C0, Splats
from nerf_app.viewer.splat_layer import (CACHE_JSON, CACHE_PLY, bake_settings, cache_key, cached_bake,
                                         load_node_arrays, node_arrays, write_bake)
from nerf_app.viewer.worker import RenderWorker

from conftest import requires_cpp
from test_viewer import ARTIFACTS, FakeRenderer, _collect, _req, _wait_until


def _two_splats() -> Splats:
    """Splat 0: 90 degrees about z, std-devs (0.1, 0.2, 0.3); splat 1: 45 degrees about z with an unnormalised
    quaternion, std-devs (0.01, 0.03, 0.002)."""
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 8)
    quats = torch.tensor([[c, 0.0, 0.0, c], [2 * math.cos(math.pi / 8), 0.0, 0.0, 2 * s]])
    scales = torch.tensor([[0.1, 0.2, 0.3], [0.01, 0.03, 0.002]])
    sh = torch.zeros(2, 4, 3)
    sh[0, 0] = torch.tensor([1.0, -1.0, 0.0])
    sh[1, 0] = torch.tensor([3.0, -3.0, 0.5])
    sh[:, 1:] = 0.2                             # higher bands: not drawn (the node has RGB only)
    return Splats(torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.5, 0.25]]), torch.log(scales), quats,
                  torch.tensor([0.0, 2.0]), sh)


def test_node_arrays_from_a_known_ply_match_a_hand_computation(tmp_path):
    from nerf_app.data.normalize import Normalization
    from nerf_app.splats.ply import write_splat_ply
    write_splat_ply(tmp_path / "two.ply", _two_splats())
    norm = Normalization(scale=2.0, translation=np.array([1.0, 0.0, -1.0]))
    a = load_node_arrays(tmp_path / "two.ply", norm)
    k = a["scale"]                               # the node's scale: arrays are divided by it (float16)
    assert a["centers"].shape == (2, 3) and a["covariances"].shape == (2, 3, 3)
    assert a["rgbs"].shape == (2, 3) and a["opacities"].shape == (2, 1)
    # centres: capture -> normalised (2 x + t)
    assert np.allclose(a["centers"] * k, [[1.0, 2.0, 3.0], [-1.0, 1.0, -0.5]], atol=1e-6)
    # splat 0: R = 90 deg about z maps x->y, y->-x: cov = diag(sy^2, sx^2, sz^2), std-devs doubled
    cov0 = np.diag([0.4 ** 2, 0.2 ** 2, 0.6 ** 2])
    # splat 1: R = 45 deg about z: [[(a+b)/2, (a-b)/2, 0], [(a-b)/2, (a+b)/2, 0], [0, 0, d]]
    va, vb, vd = 0.02 ** 2, 0.06 ** 2, 0.004 ** 2
    cov1 = np.array([[(va + vb) / 2, (va - vb) / 2, 0], [(va - vb) / 2, (va + vb) / 2, 0], [0, 0, vd]])
    assert np.allclose(a["covariances"] * k * k, np.stack([cov0, cov1]), rtol=1e-5, atol=1e-12)
    # the median splat's largest std-dev becomes ~1, so float16 (what viser sends) keeps the small one's bits
    assert k == pytest.approx(np.median([0.6, 0.06]))
    f16 = a["covariances"].astype(np.float16).astype(np.float64) * k * k
    assert np.allclose(f16, np.stack([cov0, cov1]), rtol=2e-3, atol=1e-9)
    assert np.allclose(a["rgbs"], [[0.5 + SH_C0, 0.5 - SH_C0, 0.5], [1.0, 0.0, 0.5 + 0.5 * SH_C0]], atol=1e-6)
    assert np.allclose(a["opacities"][:, 0], [0.5, 1 / (1 + math.exp(-2.0))], atol=1e-6)
    # a splat 1000x the others' size stays finite in float16 (drawn at 240x the median)
    three = Splats.cat([_two_splats(), _two_splats().select(slice(0, 1))])
    three.log_scales[2] += math.log(1000.0)
    b = node_arrays(three)
    assert np.isfinite(b["covariances"].astype(np.float16)).all()
    assert np.sqrt(np.linalg.eigvalsh(b["covariances"][2].astype(np.float64)).max()) == pytest.approx(240.0, rel=1e-3)
    # viser takes them as they are (its own shape checks)
    import viser
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        h = server.scene.add_gaussian_splats("/s", a["centers"], a["covariances"], a["rgbs"], a["opacities"],
                                             scale=a["scale"])
        assert h.buffer.shape == (2, 8)
    finally:
        server.stop()


def _fake_run(tmp_path) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"step": 7}, run / "checkpoints" / "final.pt")
    return run


def test_cache_key_staleness_and_atomic_write(tmp_path, monkeypatch):
    run = _fake_run(tmp_path)
    ckpt = run / "checkpoints" / "final.pt"
    settings = bake_settings(max_splats=1000)
    key = cache_key(ckpt, settings)
    assert key["source"]["step"] == 7 and key["settings"]["max_splats"] == 1000
    assert cached_bake(run, key) == (None, None)
    ply = write_bake(run, _two_splats(), key, {"splats": 2})
    assert ply == run / CACHE_PLY and (run / CACHE_JSON).is_file()
    found, meta = cached_bake(run, key)
    assert found == ply and meta["ply_bytes"] == ply.stat().st_size and meta["report"] == {"splats": 2}
    # another budget, or a new checkpoint (training resumed: new bytes and mtime) -> stale
    assert cached_bake(run, cache_key(ckpt, bake_settings(max_splats=999)))[0] is None
    torch.save({"step": 9, "more": torch.zeros(10)}, ckpt)
    new_key = cache_key(ckpt, settings)
    assert new_key != key and cached_bake(run, new_key)[0] is None
    assert cached_bake(run, None)[0] == ply      # train --viewer: any complete bake
    # Ctrl-C while the PLY is written: the old pair stays as it was, no temporary file is left
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "fsync", interrupted)
    bigger = Splats.cat([_two_splats()] * 3)
    with pytest.raises(KeyboardInterrupt):
        write_bake(run, bigger, new_key, {"splats": 6})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # Ctrl-C between the PLY and the sidecar: the new PLY does not match the old sidecar -> stale, rebaked
    import nerf_app.results as results
    real = results.write_json

    def no_sidecar(path, obj):
        raise KeyboardInterrupt
    monkeypatch.setattr(results, "write_json", no_sidecar)
    with pytest.raises(KeyboardInterrupt):
        write_bake(run, bigger, new_key, {"splats": 6})
    monkeypatch.setattr(results, "write_json", real)
    assert cached_bake(run, key)[0] is None and cached_bake(run, new_key)[0] is None
    assert cached_bake(run, None)[0] is None
    assert sorted(p.name for p in run.iterdir()) == sorted(["checkpoints", CACHE_PLY, CACHE_JSON])


def test_worker_renders_nothing_while_the_camera_moves_in_splat_mode():
    """after_still requests (splats drawn by the page): no render_fn call while camera messages keep coming;
    once they stop for still_s, the last view's ladder; a newer view cancels even its first rung."""
    frames, done, on_frame = _collect()
    fake = FakeRenderer(chunks=2, chunk_s=0.005)
    w = RenderWorker(fake, on_frame, still_s=1.0).start()   # still_s far above the 30 ms spacing, even loaded
    try:
        for k in range(8):
            r = _req(k, full=64, preview=32)
            r.after_still = True
            w.request(r)
            time.sleep(0.03)
        assert w.renders_started == 0 and fake.calls == [] and not frames
        assert done.wait(30)
        assert [(f.request.tag, f.height) for f in frames] == [(7, 32), (7, 64)]
        # a render in progress is cancelled by the next camera message, its first rung included
        slow = FakeRenderer(chunks=200, chunk_s=0.01)
        frames2, _, on_frame2 = _collect()
        w2 = RenderWorker(slow, on_frame2, still_s=0.0).start()
        try:
            r = _req("a", full=32, preview=32)
            r.after_still = True
            w2.request(r)
            assert _wait_until(lambda: slow.calls)
            r2 = _req("b", full=32, preview=32)
            r2.after_still = True
            w2.request(r2)
            assert _wait_until(lambda: frames2, timeout=30)
            assert [f.request.tag for f in frames2] == ["b"] and slow.cancelled_at
        finally:
            w2.stop()
    finally:
        w.stop()


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


@requires_cpp
def test_view_bakes_in_the_background_then_uses_the_cache(nerf_run, tmp_path):
    """splats=auto: no cache -> a bake in a background thread (the viewer is up meanwhile), written to the run
    folder; the next viewer loads it (no bake); a new checkpoint -> baked again; rebake always bakes."""
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.server import Viewer
    run = _copy_run(nerf_run[0], tmp_path / "run")
    task, rd, _ = open_run(run, lock=False)
    ckpt = rd.latest_checkpoint()

    def viewer(source):
        v = Viewer(task, rd.path, host="127.0.0.1", port=0, log=lambda m: None, thumbnails=False, splats=source,
                   checkpoint=ckpt, max_splats=500).start()
        assert _wait_until(lambda: v.splats.arrays is not None or "failed" in v.gui["splats_status"].content, 60)
        v.stop()
        return v
    # stopped (Ctrl-C) while baking: the bake ends at its next view, waited for, nothing is written
    quit_ = Viewer(task, rd.path, host="127.0.0.1", port=0, log=lambda m: None, thumbnails=False, splats="rebake",
                   checkpoint=ckpt, max_splats=500).start()
    quit_.stop()
    assert not quit_.splats._thread.is_alive() and quit_.splats.bakes == 0
    assert not any(p.name.startswith(("splats_viewer", ".splats_viewer")) for p in run.iterdir())
    v = viewer("auto")
    assert v.splats.bakes == 1 and (run / CACHE_PLY).is_file() and v.gui["splats_on"].value
    assert len(v.splats.arrays["centers"]) == v.splats.last_report["splats"] <= 500
    status = v.gui["splats_status"].content
    assert f"{v.splats.last_report['splats']:,} splats (baked now: step-12 checkpoint" in status, status
    assert viewer("auto").splats.bakes == 0                  # cached
    assert viewer("rebake").splats.bakes == 1
    # --refine-time: the viewer's bake refined against the photos (capture coordinates, within the budget)
    from nerf_app.viewer.splat_layer import bake_for_viewer
    refined, report = bake_for_viewer(task, bake_settings(max_splats=300, refine_time=0.3))
    assert report.get("refine_steps", 0) >= 1 and len(refined) <= 300
    os.utime(ckpt, ns=(time.time_ns(), time.time_ns() + 10 ** 9))   # a new checkpoint
    assert viewer("auto").splats.bakes == 1
    assert viewer("auto").splats.bakes == 0
    off = Viewer(task, rd.path, host="127.0.0.1", port=0, log=lambda m: None, thumbnails=False, splats="off").start()
    off.stop()
    assert off.splats.arrays is None and not off.gui["splats_on"].value and off.gui["splats_on"].disabled
    # train --viewer: the cached bake (of an older checkpoint, as training goes on), never a new one
    live = Viewer(run_dir=rd.path, host="127.0.0.1", port=0, log=lambda m: None, thumbnails=False, live=True,
                  splats="auto").start()
    try:
        live.attach(task, 3)
        assert live.splats.arrays is not None and live.splats.bakes == 0 and live.gui["splats_on"].value
        assert "training has moved on" in live.gui["splats_status"].content
        assert live.gui["splats_rebake"].disabled and not live.splats.start_bake()
    finally:
        live.stop()
    for name in (CACHE_PLY, CACHE_JSON):
        (run / name).unlink()
    live = Viewer(run_dir=rd.path, host="127.0.0.1", port=0, log=lambda m: None, thumbnails=False, live=True,
                  splats="auto").start()
    try:
        live.attach(task, 3)
        assert live.splats.arrays is None and "no cached bake" in live.gui["splats_status"].content
        assert not live.splats.start_bake() and not (run / CACHE_PLY).exists()
    finally:
        live.stop()


def test_view_splats_flag_is_checked_before_the_run_is_opened(tmp_path, capsys):
    """--splats rebake / FILE on an sdf run, a missing or non-splat file: one line, exit 2; auto on an sdf run is
    quietly off (no splats to show)."""
    import argparse
    from nerf_app.cli import main
    from nerf_app.commands.view import _check_splats
    run = tmp_path / "sdf"
    run.mkdir()
    (run / "config.yaml").write_text("mode: sdf\ninput: ball.obj\n")   # only the config is read
    mesh = tmp_path / "mesh.ply"
    mesh.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty float x\nend_header\n")
    for value, said in (("rebake", "splats are baked from a radiance field"), (str(tmp_path / "none.ply"), "no such file"),
                        (str(mesh), "not a Gaussian-splat file")):
        assert main(["view", str(run), "--splats", value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0] and "Traceback" not in err[0], err
    assert _check_splats(argparse.Namespace(splats="auto", run=str(run), overrides=[])) == "off"


def _differs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def _shot_until(page, predicate, path=None, timeout=30.0) -> np.ndarray:
    """Screenshots until ``predicate(image)`` holds (the page draws when it can: software WebGL on a loaded
    box); the last one is kept at ``path``."""
    deadline = time.perf_counter() + timeout
    while True:
        # viser's "software WebGL" notice slides in on its own schedule: removed, so it cannot be the change seen
        page.evaluate("document.querySelectorAll('.mantine-Notification-root').forEach(e => e.remove())")
        image = page.screenshot(path)
        if predicate(image) or time.perf_counter() > deadline:
            return image
        time.sleep(0.2)


@requires_cpp
def test_viewer_flies_through_splats_in_headless_chromium(nerf_run, tmp_path):
    """The page draws the baked splats; a mouse drag gives a new image while the server renders nothing;
    once the camera is still, the NeRF frame replaces the splats."""
    from nerf_app.viewer.headless import Chromium, find_chromium
    exe, why = find_chromium()
    if exe is None:
        pytest.skip(why)
    from nerf_app.train.modes import open_run
    from nerf_app.viewer.server import Viewer
    run = _copy_run(nerf_run[0], tmp_path / "run")
    task, rd, _ = open_run(run, lock=False)
    # no NeRF frame at all until the test says the camera is still (still_s lowered below)
    viewer = Viewer(task, rd.path, host="127.0.0.1", port=0, preview_height=32, max_height=48, thumbnails=False,
                    splats="auto", checkpoint=rd.latest_checkpoint(), splat_still_s=1e6,
                    log=lambda m: None).start()
    viewer.gui["samples"].value = 64
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        assert _wait_until(lambda: viewer.splats.arrays is not None, 60), viewer.gui["splats_status"].content
        with Chromium(width=640, height=400, exe=exe) as page:
            page.open(f"http://127.0.0.1:{viewer.port}")
            assert _wait_until(lambda: viewer.clients and viewer.splats.handles, 60)
            state = next(iter(viewer.clients.values()))
            handle = viewer.splats.handles[state.client.client_id]
            # splats: hide them -> the page changes (an empty scene), show them -> back
            last = [page.screenshot()]

            def settled(image):   # two (nearly) equal screenshots in a row: the splats' fade-in is over
                same = _differs(image, last[0]) < 0.3
                last[0] = image
                return same
            splats = _shot_until(page, settled, ARTIFACTS / "viewer_splats.png")
            handle.visible = False
            empty = _shot_until(page, lambda im: _differs(im, splats) > 2.0, ARTIFACTS / "viewer_splats_empty.png")
            assert _differs(splats, empty) > 2.0, "no splats drawn"
            handle.visible = True
            assert _differs(_shot_until(page, lambda im: _differs(im, splats) < 0.5), splats) < 0.5
            # drag: a new image, drawn by the page alone
            wxyz0 = np.array(state.client.camera.wxyz)
            assert state.worker.renders_started == 0 and state.frames == 0
            page.drag(page.width * 0.3, page.height * 0.5, page.width * 0.3 + 160, page.height * 0.5 + 20)
            moved = _shot_until(page, lambda im: _differs(im, splats) > 1.0, ARTIFACTS / "viewer_splats_dragged.png")
            assert _wait_until(lambda: not np.allclose(np.array(state.client.camera.wxyz), wxyz0), 10), \
                "the page's camera did not move"
            assert _differs(moved, splats) > 1.0, "the drag drew no new image"
            assert state.worker.renders_started == 0 and state.frames == 0, "the server rendered during the drag"
            # the camera is still: the NeRF frame comes in as the background, the splats go
            state.worker.still_s = 0.1
            assert _wait_until(lambda: state.last_frame is not None and state.last_frame.final, 60)
            assert state.worker.renders_started > 0 and not handle.visible
            nerf = _shot_until(page, lambda im: _differs(im, moved) > 1.0, ARTIFACTS / "viewer_splats_nerf.png")
            assert _differs(nerf, moved) > 1.0
            # the camera-path preview flies over the splats too: no server render until it ends
            from nerf_app.viewer.path_panel import c2w_from_camera
            state.worker.still_s = 1e6
            renders = state.worker.renders_started
            here = c2w_from_camera(state.client.camera)
            there = here.copy()
            there[:3, 3] += 0.3 * here[:3, 0]
            viewer.keyframes = [(here, 50.0), (there, 50.0)]
            viewer.gui["kf_frames"].value = 12
            viewer.preview_path(state.client)
            assert handle.visible and state.worker.renders_started == renders
            flown = _shot_until(page, lambda im: _differs(im, nerf) > 1.0, ARTIFACTS / "viewer_splats_path.png")
            assert _differs(flown, nerf) > 1.0
            # ... and the path's last camera, still, gets its NeRF frame (the page echoes the camera it was given)
            state.worker.still_s = 0.1
            assert _wait_until(lambda: state.last_frame.final and
                               np.allclose(state.last_frame.request.c2w[:3, 3], there[:3, 3], atol=1e-3), 60)
            assert not handle.visible
    finally:
        viewer.stop()
