"""`render` and `export` finish without their optional writers (the GPU machine has neither): no
imageio-ffmpeg -> PNG frames plus one line saying how to make the mp4; no trimesh -> a plain PLY (its
cleanup skipped) plus one line. Absence is simulated the way Python sees an uninstalled package:
``sys.modules[name] = None`` makes ``import name`` raise ImportError."""
from __future__ import annotations

import contextlib
import io
import json
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, requires_cpp

DEMO = REPO_ROOT / "data" / "demo"


def cli(*argv):
    """Run the CLI in this process (so a simulated absence applies): (exit code, stdout, stderr lines)."""
    from nerf_app.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), [line for line in err.getvalue().splitlines() if line.startswith("[")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("optional") / "run"
    code, _, _ = cli("train", DEMO / "transforms_train.json", "--mode", "nerf", "--max-steps", 3, "--no-progress",
                     "--set", "data.downscale=4", "--set", "rays.target_samples=2048", "--set", "grid.resolution=32",
                     "--set", "model.log2_hashmap_size=14", "--set", "rays.steps_per_unit_diagonal=128",
                     "--out", path)
    assert code == 0
    return path


@pytest.fixture
def without(monkeypatch):
    def hide(*names):
        for name in names:
            for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, mod)
            monkeypatch.setitem(sys.modules, name, None)
    return hide


def _level(run):
    """A marching-cubes level a barely trained field crosses: its median density."""
    from nerf_app.train.modes import open_run
    task = open_run(run, lock=False)[0]
    torch.manual_seed(0)
    with torch.no_grad():
        return float(task.model.field.density(torch.rand(32768, 3))[0].median())


@requires_cpp
def test_render_without_imageio_ffmpeg_writes_png_frames(run, tmp_path, without, monkeypatch):
    from PIL import Image
    from nerf_app import results
    monkeypatch.setattr(results, "WRITTEN_AS_FRAMES", {})
    without("imageio_ffmpeg")
    assert results.video_unavailable_reason() is not None
    out = tmp_path / "orbit.mp4"
    code, stdout, lines = cli("render", run, "--frames", 3, "--resolution", 32, "--out", out)
    assert code == 0 and not out.exists()
    frames = sorted((tmp_path / "orbit_frames").glob("frame_*.png"))
    depth = sorted((tmp_path / "orbit_depth_frames").glob("frame_*.png"))
    assert len(frames) == 3 and len(depth) == 3
    assert all(np.asarray(Image.open(f)).shape == (32, 32, 3) for f in frames)
    assert len(lines) == 1 and lines[0].startswith("[render] no imageio-ffmpeg") and "ffmpeg -framerate" in lines[0]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["video"] == str(tmp_path / "orbit_frames") and result["frames"] == 3


@requires_cpp
def test_export_without_trimesh_writes_a_plain_ply(run, tmp_path, without):
    trimesh = pytest.importorskip("trimesh")
    level = _level(run)
    with_tm = tmp_path / "with.ply"
    code, _, lines = cli("export", run, "--resolution", 24, "--threshold", level, "--min-component", 0,
                         "--mesh", with_tm)
    assert code == 0 and lines == []
    without("trimesh")
    plain = tmp_path / "plain.ply"
    code, stdout, lines = cli("export", run, "--resolution", 24, "--threshold", level, "--mesh", plain)
    assert code == 0 and json.loads(stdout.strip().splitlines()[-1])["faces"] > 0
    assert len(lines) == 1 and lines[0].startswith("[export] trimesh is not installed")
    code, _, _ = cli("export", run, "--resolution", 24, "--threshold", level, "--mesh", tmp_path / "m.glb")
    assert code != 0 and not (tmp_path / "m.glb").exists()
    # the plain PLY is the mesh trimesh writes when nothing is cleaned: same vertices, faces and colours
    sys.modules.pop("trimesh")
    a = trimesh.load(with_tm, process=False)
    b = trimesh.load(plain, process=False)
    assert np.allclose(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert np.array_equal(a.visual.vertex_colors, b.visual.vertex_colors)
