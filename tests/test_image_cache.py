"""Out-of-core training pixels (issue 29, nerf_app/data/image_cache.py): the cache file holds exactly the pixels the
RAM path packs, read mapped (small files) or row by row (large ones, nothing mapped), is reused, is rebuilt when an
image changes, and a folder that cannot be written falls back to RAM with one line."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT


def _scene(tmp_path):
    from nerf_app.data import load_scene
    shutil.copytree(REPO_ROOT / "data" / "demo", tmp_path / "demo")
    return load_scene(tmp_path / "demo", downscale=2)


def _all(pixels):
    """Every row of a sampler's pixels (a tensor, or the cache file's rows gathered like a batch's)."""
    return pixels[torch.arange(len(pixels))]


def _mapped_bytes(path):
    """Resident bytes of ``path``'s mappings in this process (/proc/self/smaps), and whether it is mapped at all."""
    rss, mapped, current = 0, False, False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line: range perms offset dev inode [path]
            current = len(head) >= 6 and head[5] == str(path)
            mapped |= current
        elif current and head and head[0] == "Rss:":
            rss += int(head[1]) * 1024
    return rss, mapped


@pytest.mark.parametrize("read", ["mapped", "pread"])
def test_cache_equals_ram_is_reused_and_follows_changed_images(tmp_path, monkeypatch, read):
    from nerf_app.data import image_cache
    if read == "pread":  # every file counts as large: read row by row
        monkeypatch.setattr(image_cache, "MAP_BYTES", 0)
    scene = _scene(tmp_path)
    lines = []
    ram = scene.ray_sampler("train", cache="none", seed=3)
    disk = scene.ray_sampler("train", cache="always", seed=3, log=lines.append)
    folder = tmp_path / "demo" / ".nerf_app_cache"
    files = list(folder.glob("pixels-*.u8"))
    assert len(files) == 1 and len(lines) == 1 and "image cache" in lines[0]
    assert disk.pixels.mapped == (read == "mapped")
    assert ram.channels == disk.channels and torch.equal(ram.pixels, _all(disk.pixels))
    a, b = ram.sample(4000), disk.sample(4000)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.origins, b.origins)
    # reused: nothing rebuilt, nothing logged
    mtime = files[0].stat().st_mtime_ns
    again = scene.ray_sampler("train", cache="always", seed=3, log=lines.append)
    assert len(lines) == 1 and files[0].stat().st_mtime_ns == mtime and torch.equal(_all(again.pixels), ram.pixels)
    # an image replaced (same name and size, other pixels): a new cache with the new pixels
    train = scene.split_indices("train")
    path = scene.image_paths[int(train[0])]
    import imageio.v3 as iio
    img = iio.imread(path)
    iio.imwrite(path, (255 - img).astype(np.uint8))
    os.utime(path, ns=(mtime + 10 ** 9, mtime + 10 ** 9))
    from nerf_app.data import load_scene
    scene2 = load_scene(tmp_path / "demo", downscale=2)
    fresh = scene2.ray_sampler("train", cache="always", seed=3, log=lines.append)
    assert len(lines) == 2 and len(list(folder.glob("pixels-*.u8"))) == 2
    assert torch.equal(_all(fresh.pixels), scene2.ray_sampler("train", cache="none", seed=3).pixels)
    assert not torch.equal(_all(fresh.pixels), ram.pixels)


def test_a_large_cache_is_read_without_mapping_it(tmp_path, monkeypatch):
    """Above MAP_BYTES the file is never mapped: drawing batches over every pixel leaves no resident page of it in
    the process (a mapping kept every touched page-cache folio resident: 4,096 rows of a 2 GiB file mapped it all),
    and the batches are the RAM path's."""
    from nerf_app.data import image_cache
    scene = _scene(tmp_path)
    ram = scene.ray_sampler("train", cache="none", seed=5)
    size = len(ram.pixels) * ram.channels
    monkeypatch.setattr(image_cache, "MAP_BYTES", size - 1)
    disk = scene.ray_sampler("train", cache="always", seed=5)
    for _ in range(8):
        a, b = ram.sample(3000), disk.sample(3000)
        assert torch.equal(a.rgb, b.rgb) and torch.equal(a.directions, b.directions)
    path = next((tmp_path / "demo" / ".nerf_app_cache").glob("pixels-*.u8"))
    assert _mapped_bytes(path) == (0, False)
    monkeypatch.setattr(image_cache, "MAP_BYTES", size)  # at the limit: mapped, resident pages <= the file
    small = scene.ray_sampler("train", cache="always", seed=5)
    small.sample(3000)
    rss, mapped = _mapped_bytes(path)
    assert mapped and 0 < rss <= -(-size // 4096) * 4096


def test_unwritable_cache_folder_falls_back_to_ram_with_one_line(tmp_path):
    scene = _scene(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    lines = []
    sampler = scene.ray_sampler("train", cache=str(blocker / "cache"), seed=3, log=lines.append)
    assert len(lines) == 1 and "cannot write there" in lines[0] and "stay in RAM" in lines[0], lines
    assert isinstance(sampler.pixels, torch.Tensor)
    assert torch.equal(sampler.pixels, scene.ray_sampler("train", cache="none", seed=3).pixels)


def _packed_reference(scene, split="train"):
    """What the RAM path packs, written the plain way: every image, RGB -> alpha 255 when any has alpha."""
    imgs = [scene.images.load(int(i), keep=False) for i in scene.split_indices(split)]
    c = 4 if any(im.shape[2] == 4 for im in imgs) else 3
    out = []
    for im in imgs:
        flat = im.reshape(-1, im.shape[2])
        if flat.shape[1] < c:
            flat = np.concatenate([flat, np.full((len(flat), 1), 255, np.uint8)], 1)
        out.append(flat)
    return np.concatenate(out)


def test_ram_path_holds_the_training_pixels_once(tmp_path):
    """The RAM path packs the pixels without also filling the image store's cache (it held every training
    pixel twice: once packed, once cached), and packs exactly what the plain way packs."""
    scene = _scene(tmp_path)
    sampler = scene.ray_sampler("train", cache="none", seed=3)
    assert scene.images._cached_bytes == 0 and not scene.images._cache
    assert np.array_equal(sampler.pixels.numpy(), _packed_reference(scene))


def test_an_alpha_channel_the_headers_did_not_announce_widens_the_buffer(tmp_path, monkeypatch):
    """Headers said RGB, one image decodes RGBA: the buffer widens once, earlier images get alpha 255."""
    import imageio.v3 as iio
    from nerf_app.data import image_cache, load_scene
    shutil.copytree(REPO_ROOT / "data" / "demo", tmp_path / "demo")
    scene = load_scene(tmp_path / "demo", downscale=2)
    train = scene.split_indices("train")
    path = scene.image_paths[int(train[2])]
    img = iio.imread(path)[..., :3]
    alpha = np.full(img.shape[:2] + (1,), 200, np.uint8)
    iio.imwrite(path, np.concatenate([img, alpha], -1))
    scene = load_scene(tmp_path / "demo", downscale=2)
    monkeypatch.setattr(image_cache, "header_channels", lambda store, indices: 3)
    sampler = scene.ray_sampler("train", cache="none", seed=3)
    assert sampler.channels == 4
    ref = _packed_reference(scene)
    assert ref.shape[1] == 4 and np.array_equal(sampler.pixels.numpy(), ref)


def test_masks_out_of_core_draw_the_ram_paths_pixels_and_are_reused(tmp_path, monkeypatch):
    """With the pixels out of core the masks are too: a bit per pixel in a file beside them and one count per
    block in RAM (the RAM path's index holds 8 bytes per kept pixel); the draws are the RAM path's, batch for
    batch, on the mapped and the pread path; a second sampler reuses the file without decoding a mask."""
    import imageio.v3 as iio
    from nerf_app.data import image_cache, load_scene
    shutil.copytree(REPO_ROOT / "data" / "demo", tmp_path / "demo")
    names = load_scene(tmp_path / "demo", format="colmap").names
    (tmp_path / "demo" / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k, n in enumerate(names):
        h, w = iio.imread(tmp_path / "demo" / "images" / n).shape[:2]
        m = (rng.random((h, w)) < 0.2 + 0.6 * k / len(names)) * 255  # a different share kept per image
        if k == 1:
            m[:] = 255  # one image wholly kept
        iio.imwrite(tmp_path / "demo" / "masks" / (n + ".png"), m.astype(np.uint8))
    scene = load_scene(tmp_path / "demo", format="colmap", downscale=2)
    ram = scene.ray_sampler("train", cache="none", seed=7)
    assert 0 < len(ram) < len(ram.pixels)
    for read in ("mapped", "pread"):
        monkeypatch.setattr(image_cache, "MAP_BYTES", (1 << 30) if read == "mapped" else 0)
        lines = []
        disk = scene.ray_sampler("train", cache="always", seed=7, log=lines.append)
        assert len(disk) == len(ram) and disk._kept.nbytes * 64 < ram._kept.nbytes
        ram = scene.ray_sampler("train", cache="none", seed=7)
        for n in (1, 777, 5000):
            a, b = ram.sample(n), disk.sample(n)
            assert torch.equal(a.pixel, b.pixel) and torch.equal(a.image_index, b.image_index)
            assert torch.equal(a.rgb, b.rgb)
    assert len(list((tmp_path / "demo" / ".nerf_app_cache").glob("kept-*.bits"))) == 1
    every = torch.arange(len(ram))  # every kept pixel, in order
    assert torch.equal(disk._kept[every], ram._kept)
    monkeypatch.setattr(type(scene.images), "mask", lambda self, i: (_ for _ in ()).throw(AssertionError("decoded")))
    again = scene.ray_sampler("train", cache="always", seed=7)
    assert len(again) == len(ram)


def test_eval_streams_its_views(tmp_path, monkeypatch):
    """eval decodes each held-out view once and drops it: the image store caches none of them (it kept every one,
    up to 8 GiB), and the per-view sheet tiles wait on disk, yet the metrics and the contact sheet come out."""
    from types import SimpleNamespace
    from nerf_app.nerf import evaluate
    scene = _scene(tmp_path)
    monkeypatch.setattr(evaluate, "lpips_unavailable_reason", lambda: "no lpips in this test")
    held = {}

    def render_view(i, bg, stats=None):  # a render: the photo darkened by an amount per view
        gt = scene.images.load(i, keep=False)[..., :3].astype(np.float32) / 255
        held[i] = scene.images._cached_bytes
        return gt * (1 - 0.01 * (i % 7)), np.ones(gt.shape[:2], np.float32), np.ones(gt.shape[:2], np.float32)

    task = SimpleNamespace(scene=scene, render_view=render_view,
                           config=SimpleNamespace(data=SimpleNamespace(eval_background="white")))
    views = scene.split_indices("test")
    assert len(views) >= 4
    m = evaluate.evaluate_nerf(task, tmp_path / "run", "test")
    assert scene.images._cached_bytes == 0 and not scene.images._cache and set(held.values()) == {0}
    assert m["n_images"] == len(views) and (tmp_path / "run" / "contact_sheet_test.png").is_file()
    worst = min(m["per_image"], key=lambda r: r["psnr"])
    assert m["contact_sheet_views"][0]["name"] == worst["name"]


def test_a_distorted_cameras_direction_table_is_built_in_chunks(monkeypatch):
    """The sampler's per-pixel direction table of a distorted camera equals the one-call unprojection bit for bit
    at an awkward chunk size, and building it holds a few chunks' temporaries, not ~40 float64 per pixel (one call
    on a 1080p camera peaked at +750 MB for a 25 MB table; here 640x480)."""
    import tracemalloc
    from nerf_app.data import rays
    from nerf_app.data.cameras import Camera
    small = Camera("OPENCV", 37, 23, [30.0, 32.0, 18.0, 11.0, -0.08, 0.02, 0.001, -0.002])
    monkeypatch.setattr(rays, "TABLE_CHUNK", 100)
    whole = small.unproject(rays.pixel_grid(37, 23).reshape(-1, 2)).astype(np.float32)
    assert np.array_equal(rays.direction_table(small), whole)
    monkeypatch.undo()
    cam = Camera("OPENCV", 640, 480, [500.0, 505.0, 320.0, 240.0, 0.06, -0.08, -0.001, 0.0002])
    tracemalloc.start()
    try:
        table = rays.direction_table(cam)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.shape == (640 * 480, 3) and np.isfinite(table).all()
    assert peak < table.nbytes + 3 * (640 * 480 * 16) + 60 * 8 * rays.TABLE_CHUNK, peak  # + grid + chunk temps
