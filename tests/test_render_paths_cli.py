"""Bad input to the camera paths, as the command line reports it: one line naming the flag, no traceback;
a capture too small for an arc falls back to the documented full turn and says so."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest

from nerf_app.camera_paths.orbit import look_at
from conftest import REPO_ROOT

SMALL = ["--set", "model.log2_hashmap_size=12", "--set", "model.n_levels=8", "--set", "optim.batch_size=1024",
         "--no-progress", "--threads", "1"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "nerf_app.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image_run")
    yy, xx = np.mgrid[0:16, 0:24] / np.array([16, 24])[:, None, None]
    iio.imwrite(tmp / "tiny.png", (np.stack([xx, yy, xx * yy], -1) * 255).astype(np.uint8))
    out = cli("train", str(tmp / "tiny.png"), "--max-steps", "3", "--out", str(tmp / "run"), *SMALL)
    assert out.returncode == 0, out.stderr[-2000:]
    return tmp / "run"


@pytest.mark.parametrize("path", ["capture", "spiral", "cams.json"])
def test_capture_paths_on_a_run_without_cameras_are_one_line(image_run, path):
    out = cli("render", str(image_run), "--path", path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"--path {path}" in lines[0] and "image run has no training cameras" in lines[0]
    assert not list(image_run.glob("render_*"))   # nothing written


def test_sheet_on_a_run_without_views_is_one_line(image_run):
    out = cli("eval", str(image_run), "--sheet", "all")
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "--sheet" in lines[0], out.stderr


def stub_task(c2w, names):
    """What camera_path_info reads of a task: the scene's training cameras, names, fov."""
    cams = [SimpleNamespace(width=64, height=48, fy=50.0)] * len(c2w)
    scene = SimpleNamespace(c2w=np.asarray(c2w), names=list(names), cameras=cams, bounded=False,
                            split_indices=lambda split: np.arange(len(c2w)) if split == "train" else np.arange(0))
    return SimpleNamespace(scene=scene)


def test_two_cameras_orbit_falls_back_and_says_so():
    from nerf_app.nerf.outputs import camera_path_info
    centre = np.array([0.5, 0.5, 0.5])
    cams = [look_at(centre + [1.0, 0.0, 0.3], centre), look_at(centre + [0.7, 0.7, 0.3], centre)]
    poses, fovs, info = camera_path_info(stub_task(cams, ["a.jpg", "b.jpg"]), "orbit", 24)
    assert info["kind"] == "full turn" and len(poses) == 24
    assert any("only 2 training cameras" in n and "full turn" in n for n in info["notes"])
    # a full turn indeed: the frames' directions from the centre go all the way round
    off = poses[:, :3, 3] - info["capture"]["target"]
    assert (off @ np.array([1.0, 0, 0])).min() < -0.5 and (off @ np.array([1.0, 0, 0])).max() > 0.5
    # enough cameras: no note, a swing
    ring = [look_at(centre + [np.cos(t), np.sin(t), 0.3], centre) for t in np.radians(np.arange(0, 100, 10))]
    _, _, info = camera_path_info(stub_task(ring, [f"{i}.jpg" for i in range(len(ring))]), "orbit", 24)
    assert info["kind"] == "swing over the covered arc" and "swings over that arc" in info["notes"][0]


def test_unknown_path_is_one_line():
    from nerf_app.errors import ConfigError
    from nerf_app.nerf.outputs import camera_path_info
    centre = np.array([0.5, 0.5, 0.5])
    with pytest.raises(ConfigError, match="--path must be orbit, orbit-full, spiral, capture"):
        camera_path_info(stub_task([look_at(centre + [1.0, 0, 0], centre)] * 3, "abc"), "sideways", 4)


def test_frame_sizes_and_wxh_by_mode():
    """`render --resolution WxH` on a nerf run gave a traceback (int('400x224')); it now sets the frame, and
    modes that render one side only refuse it with one ConfigError."""
    from nerf_app.commands.arguments import check_render_side
    from nerf_app.errors import ConfigError
    from nerf_app.nerf.outputs import frame_size
    assert frame_size(None, 800, 600) == (532, 400)          # the camera's aspect at height min(H, 400)
    assert frame_size(None, 600, 800) == (300, 400)
    assert frame_size(None, 160, 120) == (160, 120)
    assert frame_size(101, 800, 600) == (100, 100)           # N: N x N, even
    assert frame_size("401x225", 800, 600) == (400, 224)     # WxH, even
    assert frame_size("1x1", 800, 600) == (2, 2)
    check_render_side("nerf", "400x224")
    check_render_side("image", "400x224")
    for mode in ("sdf", "occupancy", "audio"):
        with pytest.raises(ConfigError, match="--resolution WxH is for image and nerf runs"):
            check_render_side(mode, "400x224")
