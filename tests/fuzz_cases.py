"""What a fuzz case runs inside its confined child (see fuzz_confine.py): the functions named in
``Runner.run("fuzz_cases:NAME", ...)``. Each returns a small JSON-able dict; the parent judges it.
"""
from __future__ import annotations

import ctypes
import importlib
import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import Optional


def load_case(path: str, kwargs: dict, decode: bool = True, check: Optional[str] = None,
              check_args: Optional[dict] = None) -> dict:
    """Load a scene (and decode every image and mask when ``decode``): ``outcome`` "ok" (then every invariant
    of scene_checks.check_scene and ``check`` - "module:function" - must hold) or "errors" (a DatasetError,
    which must be one line naming the file). Anything else escapes and is a traceback."""
    from nerf_app.data import load_scene
    from nerf_app.errors import DatasetError
    from scene_checks import check_error, check_scene
    try:
        scene = load_scene(path, **kwargs)
        if decode:
            for i in range(len(scene)):
                scene.images.load(i)
                scene.images.mask(i)
    except DatasetError as exc:
        try:
            check_error(exc)
        except AssertionError as bad:
            return {"outcome": "errors", "bad_error": str(bad)}
        return {"outcome": "errors", "message": str(exc)}
    try:
        check_scene(scene, decode=decode)
        if check:
            module, _, name = check.partition(":")
            getattr(importlib.import_module(module), name)(scene, **(check_args or {}))
    except AssertionError as bad:
        return {"outcome": "ok", "bad_success": str(bad)}
    return {"outcome": "ok"}


def image_sizes_match(scene, width: int, height: int) -> None:
    """A cropped image (not a uniform 2x downscale of the camera's size) must be refused."""
    from PIL import Image
    for p in scene.image_paths:
        with Image.open(p) as im:
            iw, ih = im.size
        assert (iw, ih) in ((width, height), (width // 2, height // 2)), f"{p.name} is {iw}x{ih}, camera {width}x{height}"


def masks_match(scene) -> None:
    """A mask whose size differs from its image's must be refused."""
    from PIL import Image
    for i, p in enumerate(scene.images.mask_paths or []):
        with Image.open(p) as im:
            size = im.size
        cam = scene.cameras[i]
        assert size == (cam.width, cam.height), \
            f"mask {p.name} is {size[0]}x{size[1]} but its image is {cam.width}x{cam.height}"


def cli_case(argv: list) -> dict:
    """``nerf_app.cli.main(argv)``: its exit code (SystemExit from argparse included) and what it wrote on
    sys.stderr. A traceback escaping main is left to escape (the child reports it)."""
    from nerf_app.cli import main
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
    text = err.getvalue()
    sys.__stderr__.write(text)  # also on fd 2, where the parent looks for tracebacks
    return {"rc": rc, "stderr": text[-4000:]}


# ---------------------------------------------------------------------------------------- self-test plants

def plant_reads(inside: str, outside: str) -> dict:
    """Reads made below Python: libc open(2) through ctypes, cv2.imread (C++ fopen), numpy.fromfile, an
    mmap of a descriptor opened by libc, a subprocess (cat). Each outside one must fail; each inside one
    must work. Returns what each saw."""
    import cv2
    import numpy as np
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    for tag, path in (("inside", inside), ("outside", outside)):
        fd = libc.open(path.encode(), os.O_RDONLY)
        out[f"libc_open_{tag}"] = "ok" if fd >= 0 else f"errno {ctypes.get_errno()}"
        if fd >= 0:
            import mmap
            try:
                with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as m:
                    out[f"mmap_{tag}"] = len(m)
            finally:
                libc.close(fd)
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        out[f"cv2_imread_{tag}"] = "none" if img is None else list(img.shape)
        try:
            out[f"numpy_fromfile_{tag}"] = int(np.fromfile(path, dtype=np.uint8).size)
        except OSError as exc:
            out[f"numpy_fromfile_{tag}"] = f"errno {exc.errno}"
        import subprocess
        proc = subprocess.run(["cat", path], capture_output=True)
        out[f"cat_{tag}"] = proc.returncode
    return out


def plant_thread_error() -> dict:
    """A background thread that raises while the case itself returns normally."""
    import threading
    t = threading.Thread(target=lambda: 1 / 0, name="planted")
    t.start()
    t.join()
    return {"outcome": "ok"}


def plant_printed_traceback() -> dict:
    """A traceback printed on fd 2 by C-level code (os.write), then a normal return."""
    os.write(2, b"Traceback (most recent call last):\n  File \"x\", line 1\nValueError: planted\n")
    return {"outcome": "ok"}


def plant_hang() -> dict:
    """C code that never returns (a blocking libc call with no Python in between)."""
    libc = ctypes.CDLL(None)
    libc.pause()
    return {"outcome": "ok"}


def imports_of(func: str, kwargs: dict) -> dict:
    """The modules that running ``func`` imports (what the zygote should preload so cases do not pay)."""
    before = set(sys.modules)
    module, _, name = func.partition(":")
    try:
        getattr(importlib.import_module(module), name)(**kwargs)
    except BaseException:  # noqa: BLE001 - only the imports matter here
        pass
    return {"new": sorted(set(sys.modules) - before)}
