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
