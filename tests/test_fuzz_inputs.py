"""Fuzzing what a scene folder holds besides its pose files: image files, masks, and the paths that name
them (``../`` escapes, absolute paths, symlinks pointing out, loops) in transforms.json, COLMAP and masks.

Every case loads the scene AND decodes every image and mask (the training's first use). The outcome must be
a one-line DatasetError naming the file, or a scene that passes every invariant check; each case runs in a
child process confined by the kernel to the scene folder and the installation (fuzz_confine.py: an open
outside is refused and counted whatever library makes it - cv2 decodes in C), killed on time, and a
traceback printed anywhere counts; a mask whose size differs from its image, and a cropped image, must be
refused. Seeded generator: each case is reproducible
from its family and seed (printed on failure). ``NERF_APP_FUZZ_FULL=1`` runs the full counts.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from nerf_app.data import load_scene
from nerf_app.errors import DatasetError

from fuzz_support import Tally, cases, judge, runner
from scene_checks import check_error

TALLY = Tally()
CASE_SECONDS = 10.0  # a case is killed after this
W, H = 8, 6


def _png(arr) -> bytes:
    import cv2
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def _encode(arr, ext: str) -> bytes:
    import cv2
    ok, buf = cv2.imencode(ext, arr)
    assert ok
    return buf.tobytes()


def _img(w=W, h=H, c=3, value=100, dtype=np.uint8):
    shape = (h, w) if c == 1 else (h, w, c)
    rng = np.random.default_rng(w * 31 + h)
    return (rng.integers(0, 255, shape) if dtype == np.uint8 else rng.integers(0, 65535, shape)).astype(dtype)


CAMERAS_TXT = f"1 PINHOLE {W} {H} 10 10 4 3\n"
IMAGES = ["a.png", "b.png", "c.png"]
POSES = ["1 0 0 0 0 0 3", "0.9238795 0 0.3826834 0 0 0 3", "0.7071068 0 0.7071068 0 0.1 0 3"]


def _images_txt(names):
    return "".join(f"{i + 1} {POSES[i % 3]} 1 {n}\n\n" for i, n in enumerate(names))


def _colmap_scene(root: Path, names=IMAGES) -> None:
    (root / "sparse" / "0").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "sparse" / "0" / "cameras.txt").write_text(CAMERAS_TXT)
    (root / "sparse" / "0" / "images.txt").write_text(_images_txt(names))
    (root / "sparse" / "0" / "points3D.txt").write_text("")
    for n in IMAGES:
        (root / "images" / n).write_bytes(_png(_img()))


def _transforms(names, extra=None):
    eye = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]
    frames = [{"file_path": n, "transform_matrix": eye} for n in names]
    for f, e in zip(frames, extra or []):
        f.update(e)
    return {"fl_x": 10.0, "fl_y": 10.0, "cx": 4.0, "cy": 3.0, "frames": frames}


def _outside(base: Path) -> None:
    """Things beside the scene folder that a load must never open (valid images, so a read would load)."""
    (base / "outside").mkdir(exist_ok=True)
    for n in IMAGES + ["secret.png"]:
        (base / "outside" / n).write_bytes(_png(_img()))
    (base / "secret.png").write_bytes(_png(_img()))


def _run(family: str, seed: int, scene: Path, base: Path, check=None, check_args=None, **kw) -> None:
    """One case in a confined child (the scene folder is all it may read): load + decode everything,
    classify, record failures with a reproducer."""
    repro = f"{family} seed={seed}"
    report = runner("load").run("fuzz_cases:load_case", [scene],
                          {"path": str(scene), "kwargs": kw, "decode": True, "check": check, "check_args": check_args},
                          timeout=CASE_SECONDS)
    res = judge(report, TALLY, family, repro)
    TALLY.case(family, res["outcome"] if res else "tracebacks")
    if res and res.get("bad_error"):
        TALLY.fail(family, "tracebacks", f"{repro}: {res['bad_error']}")
    if res and res.get("bad_success"):
        TALLY.fail(family, "bad_success", f"{repro}: {res['bad_success']}")


# ------------------------------------------------------------------------------------------- images

def _corrupt_image(rng: random.Random) -> bytes:
    """A damaged or unusual image file for an 8x6 camera."""
    kind = rng.choice(["truncate", "flip", "magic", "empty", "crop", "upscale", "downscale", "bit16", "grey",
                       "grey_alpha", "rgba", "jpeg", "jpeg_truncate", "text", "huge_header", "webp", "bmp",
                       "zero_dims", "chunk_crc"])
    good = _png(_img())
    if kind == "truncate":
        return good[:rng.randrange(len(good))]
    if kind == "flip":
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == "magic":
        return rng.randbytes(8) + good[8:]
    if kind == "empty":
        return b""
    if kind == "crop":  # same width, fewer rows (or the reverse): a cropped image, not a downscaled copy
        return _png(_img(W, H - rng.randint(1, 3)) if rng.random() < 0.5 else _img(W - rng.randint(1, 3), H))
    if kind == "upscale":
        return _png(_img(2 * W, 2 * H))
    if kind == "downscale":
        return _png(_img(W // 2, H // 2))
    if kind == "bit16":
        return _png(_img(dtype=np.uint16))
    if kind == "grey":
        return _png(_img(c=1))
    if kind == "grey_alpha":
        from PIL import Image
        import io
        buf = io.BytesIO()
        Image.fromarray(_img(c=2), "LA").save(buf, "PNG")
        return buf.getvalue()
    if kind == "rgba":
        return _png(_img(c=4))
    if kind == "jpeg":
        return _encode(_img(), ".jpg")
    if kind == "jpeg_truncate":
        data = _encode(_img(), ".jpg")
        return data[:rng.randrange(2, len(data))]
    if kind == "text":
        return b"this is not an image\n" * rng.randint(0, 3)
    if kind == "huge_header":  # IHDR claims a gigantic image (a decompression bomb)
        data = bytearray(good)
        w, h = rng.choice([(2**31 - 1, 2**31 - 1), (1 << 20, 1 << 20), (0, 6), (W, 2**31 - 1)])
        ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
        data[16:29] = ihdr
        data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
        return bytes(data)
    if kind == "webp":
        return _encode(_img(), ".webp")
    if kind == "bmp":
        return _encode(_img(), ".bmp")
    if kind == "zero_dims":
        data = bytearray(good)
        data[16:24] = struct.pack(">II", 0, 0)
        return bytes(data)
    data = bytearray(good)  # chunk_crc: a wrong CRC in a chunk
    data[29] ^= 0xFF
    return bytes(data)


def test_fuzz_image_files(tmp_path):
    family = "images"
    base = tmp_path
    _outside(base)
    n = cases(120, 1500)
    for seed in range(n):
        rng = random.Random(seed)
        scene = base / f"s{seed % 2}"
        if scene.exists():
            shutil.rmtree(scene)
        scene.mkdir()
        if rng.random() < 0.5:
            _colmap_scene(scene)
            folder, fmt = scene / "images", "colmap"
        else:
            for nme in IMAGES:
                (scene / nme).write_bytes(_png(_img()))
            (scene / "transforms.json").write_text(json.dumps(_transforms(IMAGES)))
            folder, fmt = scene, "transforms"
        for _ in range(rng.randint(1, 3)):
            (folder / rng.choice(IMAGES)).write_bytes(_corrupt_image(rng))
        _run(family, seed, scene, base, check="fuzz_cases:image_sizes_match", check_args={"width": W, "height": H},
             format=fmt)
    TALLY.emit()
    assert TALLY.bad(family) == 0, TALLY.report(family)


# ------------------------------------------------------------------------------------------- masks

def test_fuzz_masks(tmp_path):
    family = "masks"
    base = tmp_path
    _outside(base)
    n = cases(80, 800)
    for seed in range(n):
        rng = random.Random(seed)
        scene = base / f"s{seed % 2}"
        if scene.exists():
            shutil.rmtree(scene)
        scene.mkdir()
        kind = rng.choice(["wrong_size", "corrupt", "missing", "link_out", "dir_link_out", "channels", "bit16",
                           "good", "mask_path_escape", "mask_path_type", "mask_path_partial"])
        use_transforms = kind.startswith("mask_path") or rng.random() < 0.3
        if use_transforms:
            for nme in IMAGES:
                (scene / nme).write_bytes(_png(_img()))
            (scene / "m").mkdir()
            for nme in IMAGES:
                (scene / "m" / nme).write_bytes(_png(np.full((H, W), 255, np.uint8)))
            extra = [{"mask_path": f"m/{nme}"} for nme in IMAGES]
            mask_dir = scene / "m"
        else:
            _colmap_scene(scene)
            mask_dir = scene / "masks"
            mask_dir.mkdir()
            for nme in IMAGES:
                (mask_dir / (nme + ".png")).write_bytes(_png(np.full((H, W), 255, np.uint8)))
            extra = None
        victim = rng.choice(IMAGES)
        mfile = mask_dir / (victim if use_transforms else victim + ".png")
        if kind == "wrong_size":
            mw, mh = rng.choice([(W // 2, H // 2), (W, H - 1), (2 * W, 2 * H), (1, 1), (H, W)])
            mfile.write_bytes(_png(np.full((mh, mw), 255, np.uint8)))
        elif kind == "corrupt":
            mfile.write_bytes(_corrupt_image(rng))
        elif kind == "missing":
            mfile.unlink()
        elif kind == "link_out":
            mfile.unlink()
            os.symlink(os.path.relpath(base / "outside" / "secret.png", mfile.parent), mfile)
        elif kind == "dir_link_out":
            shutil.rmtree(mask_dir)
            os.symlink(os.path.relpath(base / "outside", scene), mask_dir)
            for nme in IMAGES:  # the outside folder holds plausible masks
                (base / "outside" / (nme if use_transforms else nme + ".png")).write_bytes(
                    _png(np.full((H, W), 255, np.uint8)))
        elif kind == "channels":
            mfile.write_bytes(_png(_img(c=rng.choice([3, 4]))))
        elif kind == "bit16":
            mfile.write_bytes(_png(_img(c=1, dtype=np.uint16)))
        elif kind == "mask_path_escape":
            extra[IMAGES.index(victim)]["mask_path"] = rng.choice(
                ["../secret.png", "../outside/a.png", "/etc/passwd", "m/../../secret.png", "..\\secret.png",
                 "m/../../outside/a.png", str(base / "secret.png")])
        elif kind == "mask_path_type":
            extra[IMAGES.index(victim)]["mask_path"] = rng.choice([None, 3, [], {}, True, "", "m/\x00a.png"])
        elif kind == "mask_path_partial":
            del extra[IMAGES.index(victim)]["mask_path"]
        if use_transforms:
            (scene / "transforms.json").write_text(json.dumps(_transforms(IMAGES, extra)))
        _run(family, seed, scene, base, check="fuzz_cases:masks_match",
             format="transforms" if use_transforms else "colmap")
    TALLY.emit()
    assert TALLY.bad(family) == 0, TALLY.report(family)


# ------------------------------------------------------------------------------------------- paths

ESCAPES = ["../secret.png", "../../secret.png", "/etc/passwd", "images/../../secret.png", "..\\secret.png",
           "images\\..\\..\\secret.png", "../outside/a.png", "link_out/a.png", "images/evil.png",
           "images/evil_dir/a.png", "images/loop.png", "C:/secret.png", "C:\\secret.png", "//server/share/a.png",
           "~/secret.png", "file:///etc/passwd", "%2e%2e/secret.png", "images/./../../secret.png",
           "images/inner/../../../secret.png", "images", ".", "", "\x00", "images/a.png/",
           "/proc/self/environ", "images/../images/../../outside/a.png", "images/" + "a" * 300 + ".png"]
BENIGN = ["images/a.png", "images/b", "./images/c.png", "images/inner_link.png", "images/../images/a.png"]


def _path_layout(scene: Path, base: Path) -> None:
    _colmap_scene(scene)
    img = scene / "images"
    os.symlink(os.path.relpath(base / "secret.png", img), img / "evil.png")
    os.symlink(os.path.relpath(base / "outside", img), img / "evil_dir")
    os.symlink("loop.png", img / "loop.png")
    os.symlink("a.png", img / "inner_link.png")
    (img / "inner").mkdir()
    os.symlink(os.path.relpath(base / "outside", scene), scene / "link_out")


def test_fuzz_paths(tmp_path):
    family = "paths"
    base = tmp_path
    _outside(base)
    n = cases(80, 800)
    for seed in range(n):
        rng = random.Random(seed)
        scene = base / f"s{seed % 2}"
        if scene.exists():
            shutil.rmtree(scene)
        scene.mkdir()
        _path_layout(scene, base)
        how = rng.choice(["transforms", "colmap", "images_dir_link", "llff_images_link", "scene_is_link"])
        names = [rng.choice(BENIGN) for _ in range(3)]
        if how != "scene_is_link":
            names[rng.randrange(3)] = rng.choice(ESCAPES)
        target, fmt = scene, "transforms"
        if how == "transforms" or how == "scene_is_link":
            (scene / "transforms.json").write_text(json.dumps(_transforms(names)))
            if how == "scene_is_link":  # the user's own path may be a symlink: that is the scene folder
                target = base / f"link{seed % 2}"
                if target.is_symlink():
                    target.unlink()
                os.symlink(scene.name, target)
        elif how == "colmap":
            cnames = [x[len("images/"):] if x.startswith("images/") and x != "images/" else x for x in names]
            (scene / "sparse" / "0" / "images.txt").write_text(_images_txt(dict.fromkeys(cnames)))
            fmt = "colmap"
        elif how == "images_dir_link":  # the whole images folder points out of the scene
            shutil.rmtree(scene / "images")
            os.symlink(os.path.relpath(base / "outside", scene), scene / "images")
            fmt = "colmap"
        else:  # LLFF: images/ is a symlink out
            shutil.rmtree(scene / "sparse")
            shutil.rmtree(scene / "images")
            os.symlink(os.path.relpath(base / "outside", scene), scene / "images")
            rows = []
            for angle in (0.0, 0.3, 0.6, 0.9):
                c, s_ = np.cos(angle), np.sin(angle)
                right, down, fwd = np.array([c, 0, -s_]), np.array([0, 1.0, 0]), np.array([s_, 0, c])
                m = np.stack([down, right, -fwd, np.array([0, 0, -3.0]), np.array([H, W, 10.0])], 1)
                rows.append(np.concatenate([m.reshape(-1), [1.0, 10.0]]))
            np.save(scene / "poses_bounds.npy", np.array(rows))
            fmt = "llff"
        _run(family, seed, target, base, format=fmt)
    TALLY.emit()
    assert TALLY.bad(family) == 0, TALLY.report(family)


def test_overlong_image_name_is_one_error(tmp_path):
    scene = tmp_path / "scene"
    scene.mkdir()
    _colmap_scene(scene)
    (scene / "sparse" / "0" / "images.txt").write_text(_images_txt(["a" * 300 + ".png", "b.png"]))
    with pytest.raises(DatasetError) as info:
        load_scene(scene)
    check_error(info.value)
