"""The ``image`` mode end to end (train -> eval -> render at other resolutions) on a tiny image, the
EXR reader against the shared albert.{exr,png} pair, mode detection and resolution parsing."""
from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from nerf_app.cli import main
from nerf_app.errors import NerfAppError
from nerf_app.inr.image import linear_to_srgb, load_image, parse_resolution, srgb_to_linear
from nerf_app.train.modes import detect_mode

SMALL = ["--set", "model.log2_hashmap_size=12", "--set", "model.n_levels=8", "--set", "optim.batch_size=1024",
         "--no-progress", "--threads", "1"]  # tiny tensors: one thread avoids OpenMP waits on a busy machine


def _write_image(path, w=40, h=24):
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([xx, yy, 0.5 + 0.5 * np.sin(6 * xx + 4 * yy)], -1)
    u8 = (img * 255 + 0.5).astype(np.uint8)
    iio.imwrite(path, u8)
    return u8


def test_image_train_eval_render(tmp_path):
    src = tmp_path / "tiny.png"
    u8 = _write_image(src)
    run = tmp_path / "run"
    assert main(["train", str(src), "--max-steps", "150", "--out", str(run)] + SMALL) == 0
    assert main(["eval", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["mode"] == "image" and m["channels"] == 3 and m["resolution"] == [40, 24]
    assert m["color_space"] == "srgb" and m["steps"] == 150
    assert m["psnr"] > 28 and m["ssim"] > 0.8, m
    # full-resolution prediction equals what eval scored
    pred = iio.imread(run / "eval_prediction.png")
    assert pred.shape == u8.shape
    assert main(["render", str(run), "--resolution", "80x48"]) == 0
    assert iio.imread(run / "render_80x48.png").shape == (48, 80, 3)
    assert main(["render", str(run), "--resolution", "20"]) == 0      # int: longest side, aspect kept
    assert iio.imread(run / "render_20x12.png").shape == (12, 20, 3)
    # super-resolution of a zoomed crop stays close to the (upsampled) source there
    assert main(["render", str(run), "--resolution", "40x24", "--set", "render.crop=[0.0,0.0,0.5,0.5]"]) == 0
    zoom = iio.imread(run / "render_40x24.png").astype(float)
    ref = np.repeat(np.repeat(u8[:12, :20].astype(float), 2, 0), 2, 1)
    assert np.abs(zoom - ref).mean() < 12


def test_grey_and_modes(tmp_path):
    grey = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    iio.imwrite(tmp_path / "g.png", np.stack([grey] * 3, -1))        # grey stored as RGB -> 1 channel
    img, space = load_image(tmp_path / "g.png")
    assert img.shape == (8, 8, 1) and space == "srgb" and np.allclose(img[..., 0], grey / 255)
    assert detect_mode("x/a.PNG") == "image" and detect_mode("a.exr") == "image" and detect_mode("a.jpeg") == "image"
    assert detect_mode("a.wav") == "audio"
    assert parse_resolution(None, (24, 40)) == (40, 24)
    assert parse_resolution("7x5", (24, 40)) == (7, 5)
    assert parse_resolution(10, (40, 20)) == (5, 10)
    with pytest.raises(NerfAppError):
        parse_resolution("ax3", (2, 2))
    c = np.linspace(0, 1, 101)
    assert np.allclose(linear_to_srgb(srgb_to_linear(c)), c, atol=1e-6)


def test_exr_matches_png(shared_data):
    exr, space = load_image(shared_data / "image" / "albert.exr")
    png, _ = load_image(shared_data / "image" / "albert.png")
    assert space == "linear" and exr.shape == png.shape == (1024, 1024, 1)
    # the EXR holds the PNG's values decoded from sRGB to linear (stored as half floats)
    assert np.abs(linear_to_srgb(exr) - png).max() < 2e-3


@pytest.mark.parametrize("kind", ["piz", "dwaa", "tiled"])
def test_exr_compressions_and_tiles(tmp_path, kind):
    """Files the old hand-written reader refused (PIZ, DWAA, tiled) are read, with their values."""
    import OpenEXR
    rgb = np.random.default_rng(0).random((37, 53, 3), dtype=np.float32)   # odd sizes: partial tiles/blocks
    header = {"compression": OpenEXR.PIZ_COMPRESSION, "type": OpenEXR.scanlineimage}
    if kind == "dwaa":
        header["compression"] = OpenEXR.DWAA_COMPRESSION       # lossy
    if kind == "tiled":
        tiles = OpenEXR.TileDescription()
        tiles.xSize = tiles.ySize = 16
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.tiledimage, "tiles": tiles}
    with OpenEXR.File(header, {"RGB": rgb}) as f:
        f.write(str(tmp_path / "x.exr"))
    img, space = load_image(tmp_path / "x.exr")
    assert space == "linear" and img.shape == rgb.shape
    assert np.abs(img - rgb).max() <= (0.03 if kind == "dwaa" else 0.0)


def test_exr_broken_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.exr"
    bad.write_bytes(b"\x76\x2f\x31\x01" + b"\0" * 40)      # the magic number, then nothing valid
    with pytest.raises(NerfAppError, match="bad.exr.*cannot read EXR"):
        load_image(bad)
