"""The broad ``except Exception -> DatasetError`` wrappers of the readers turn a library's complaint about a
file into one clean line, and nothing else: a MemoryError, or a programming error raised outside an
installed library, reaches the top as a traceback (errors.reraise_if_bug)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from nerf_app.data import images, load_scene
from nerf_app.errors import DatasetError

from scene_checks import check_error


def _png(path):
    import cv2
    cv2.imwrite(str(path), np.full((3, 4, 3), 100, np.uint8))


@pytest.mark.parametrize("exc", [MemoryError, NameError, AttributeError, TypeError])
def test_header_reader_lets_bugs_through(tmp_path, monkeypatch, exc):
    """Raised by code that is not an installed library (here: this test's stand-in for PIL.Image.open)."""
    import PIL.Image
    _png(tmp_path / "a.png")

    def broken(path):
        raise exc("planted")
    monkeypatch.setattr(PIL.Image, "open", broken)
    with pytest.raises(exc, match="planted"):
        images.header_info(tmp_path / "a.png")


def test_header_reader_keeps_a_librarys_complaint_one_line(tmp_path, monkeypatch):
    """A TypeError raised inside an installed library (json, standing in for a PIL plugin) about what it
    was given is a bad file: one line naming it."""
    import PIL.Image
    _png(tmp_path / "a.png")
    monkeypatch.setattr(PIL.Image, "open", json.loads)  # json.loads(PosixPath) raises TypeError in json/
    with pytest.raises(DatasetError) as info:
        images.header_info(tmp_path / "a.png")
    check_error(info.value)
    assert "TypeError" in str(info.value)


def _llff_scene(root, data: bytes):
    (root / "images").mkdir()
    for n in ("a.png", "b.png", "c.png"):
        _png(root / "images" / n)
    (root / "poses_bounds.npy").write_bytes(data)


def test_npy_header_promising_more_than_the_file_is_one_line(tmp_path):
    """A 1 KB .npy whose header claims 10^13 rows: refused from the header, not a MemoryError."""
    import numpy.lib.format as fmt
    head = io.BytesIO()
    fmt.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 13, 17)})
    data = head.getvalue() + np.zeros((3, 17)).tobytes()
    _llff_scene(tmp_path, data)
    with pytest.raises(DatasetError) as info:
        load_scene(tmp_path, format="llff")
    check_error(info.value)
    assert "promises" in str(info.value)


def test_npy_reader_lets_a_bug_through(tmp_path, monkeypatch):
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 17)))
    _llff_scene(tmp_path, buf.getvalue())

    def broken(*a, **k):
        raise AttributeError("planted")
    monkeypatch.setattr(np, "load", broken)
    with pytest.raises(AttributeError, match="planted"):
        load_scene(tmp_path, format="llff")


# ---- the wrappers outside nerf_app/data: checkpoints, INR images, meshes, photo and video intake ------------

BUGS = [MemoryError, TypeError, AttributeError]


def _planted(exc):
    def broken(*args, **kwargs):
        raise exc("planted")
    return broken


@pytest.mark.parametrize("exc", BUGS)
def test_checkpoint_readers_let_bugs_through(tmp_path, monkeypatch, exc):
    import torch

    from nerf_app.train import run
    ckpt = tmp_path / "step_000010.pt"
    torch.save({"step": 10, "model": {}}, ckpt)
    monkeypatch.setattr(torch, "load", _planted(exc))
    with pytest.raises(exc, match="planted"):
        run.checkpoint_step(ckpt)
    with pytest.raises(exc, match="planted"):
        run.load_checkpoint(ckpt)


def test_checkpoint_readers_keep_a_bad_file_one_line(tmp_path):
    from nerf_app.train import run
    for name, data in [("empty.pt", b""), ("junk.pt", b"PK\x03\x04 not really a zip" * 10)]:
        (tmp_path / name).write_bytes(data)
        for reader in (run.checkpoint_step, run.load_checkpoint):
            with pytest.raises(DatasetError) as info:
                reader(tmp_path / name)
            check_error(info.value)


@pytest.mark.parametrize("exc", BUGS)
def test_inr_image_reader_lets_bugs_through(tmp_path, monkeypatch, exc):
    import imageio.v3 as iio

    from nerf_app.inr.image import load_image
    _png(tmp_path / "a.png")
    monkeypatch.setattr(iio, "imread", _planted(exc))
    with pytest.raises(exc, match="planted"):
        load_image(tmp_path / "a.png")


def test_inr_image_reader_keeps_a_bad_file_one_line(tmp_path):
    from nerf_app.inr.image import load_image
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(DatasetError) as info:
        load_image(tmp_path / "a.png")
    check_error(info.value)


@pytest.mark.parametrize("exc", BUGS)
def test_mesh_readers_let_bugs_through(tmp_path, monkeypatch, exc):
    import trimesh

    from nerf_app.geometry.mesh import load_mesh
    from nerf_app.geometry.texture import load_textured
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    monkeypatch.setattr(trimesh, "load", _planted(exc))
    for reader in (load_mesh, load_textured):
        with pytest.raises(exc, match="planted"):
            reader(tmp_path / "m.obj")


def test_mesh_readers_keep_a_bad_file_one_line(tmp_path):
    from nerf_app.geometry.mesh import load_mesh
    from nerf_app.geometry.texture import load_textured
    (tmp_path / "m.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99999999\n"
                                     b"property float x\nend_header\n\x00\x01")
    for reader in (load_mesh, load_textured):
        with pytest.raises(DatasetError) as info:
            reader(tmp_path / "m.ply")
        check_error(info.value)


@pytest.mark.parametrize("exc", BUGS)
def test_photo_intake_lets_bugs_through(tmp_path, monkeypatch, exc):
    """A photo that does not decode is listed as unreadable; a bug in the intake is not such a photo."""
    import PIL.Image

    from nerf_app.process import frames
    (tmp_path / "src").mkdir()
    _png(tmp_path / "src" / "a.png")
    monkeypatch.setattr(PIL.Image, "open", _planted(exc))
    with pytest.raises(exc, match="planted"):
        frames.copy_images(tmp_path / "src", ["a.png"], tmp_path / "dst")
    assert not (tmp_path / "dst" / "a.png").exists()


def test_photo_intake_lists_a_bad_photo_and_reads_exif_defaults(tmp_path, monkeypatch):
    import PIL.Image

    from nerf_app.process import frames
    (tmp_path / "src").mkdir()
    _png(tmp_path / "src" / "a.png")
    (tmp_path / "src" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    infos, unreadable = frames.copy_images(tmp_path / "src", ["a.png", "b.jpg"], tmp_path / "dst")
    assert [i.name for i in infos] == ["a.png"] and list(unreadable) == ["b.jpg"]
    assert not (tmp_path / "dst" / "b.jpg").exists()
    # EXIF: none -> the defaults; a bug while reading it is not "no EXIF"
    with PIL.Image.open(tmp_path / "src" / "a.png") as im:
        assert frames._exif_orientation(im) == 1 and frames._exif_camera(im) == ("", "", None)
        monkeypatch.setattr(type(im), "getexif", _planted(TypeError))
        with pytest.raises(TypeError, match="planted"):
            frames._exif_orientation(im)
        with pytest.raises(TypeError, match="planted"):
            frames._exif_camera(im)


@pytest.mark.parametrize("exc", BUGS)
def test_video_intake_lets_bugs_through(tmp_path, monkeypatch, exc):
    import imageio_ffmpeg

    from nerf_app.process import frames
    video = tmp_path / "clip.mp4"
    _write_video(video)
    # a bug while scoring frames: not "the video does not decode"
    monkeypatch.setattr(frames, "sharpness", _planted(exc))
    with pytest.raises(exc, match="planted"):
        frames.select_video_frames(video, 2, tmp_path / "out")
    # a bug while opening it: not "is not a video"
    monkeypatch.setattr(imageio_ffmpeg, "read_frames", _planted(exc))
    with pytest.raises(exc, match="planted"):
        frames.select_video_frames(video, 2, tmp_path / "out2")


def test_video_intake_keeps_a_bad_file_one_line(tmp_path):
    from nerf_app.process import frames
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 20)
    with pytest.raises(DatasetError) as info:
        frames.select_video_frames(video, 2, tmp_path / "out")
    check_error(info.value)


def _write_video(path, n=6):
    import imageio.v2 as imageio
    rng = np.random.default_rng(0)
    with imageio.get_writer(str(path), fps=10, codec="libx264", quality=9, macro_block_size=2,
                            pixelformat="yuv420p") as w:
        for _ in range(n):
            w.append_data(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))


@pytest.mark.parametrize("exc", BUGS)
def test_mask_intake_lets_bugs_through(tmp_path, monkeypatch, exc):
    import PIL.Image

    from nerf_app.process import pipeline
    from nerf_app.process.frames import ImageInfo
    (tmp_path / "masks").mkdir()
    _png(tmp_path / "masks" / "a.png")
    infos = [ImageInfo("a.png", 4, 3, ())]
    monkeypatch.setattr(PIL.Image, "open", _planted(exc))
    with pytest.raises(exc, match="planted"):
        pipeline._prepare_masks(tmp_path / "masks", infos, tmp_path / "colmap", tmp_path / "capture")


def test_mask_intake_keeps_a_bad_mask_one_line(tmp_path):
    from nerf_app.process import pipeline
    from nerf_app.process.frames import ImageInfo
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(DatasetError) as info:
        pipeline._prepare_masks(tmp_path / "masks", [ImageInfo("a.png", 4, 3, ())], tmp_path / "c", tmp_path / "d")
    check_error(info.value)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
