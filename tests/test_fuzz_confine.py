"""The fuzz harness's guarantees are the kernel's, and they hold: a read below Python (libc open(2), cv2,
numpy's C reader, an mmap, a subprocess) outside the case folder is refused AND counted; a background
thread's exception and a traceback printed by C code count even when the case returns normally; C code
that never returns is killed on time (see fuzz_confine.py)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from fuzz_confine import capability, traceback_in, why_not_confined
from fuzz_support import runner

NOT_CONFINED = why_not_confined()


@pytest.fixture()
def layout(tmp_path):
    import cv2
    case, outside = tmp_path / "case", tmp_path / "outside"
    case.mkdir()
    outside.mkdir()
    cv2.imwrite(str(case / "a.png"), np.full((4, 5, 3), 7, np.uint8))
    cv2.imwrite(str(outside / "secret.png"), np.full((4, 5, 3), 9, np.uint8))
    os.symlink(os.path.relpath(outside / "secret.png", case), case / "link.png")  # a link pointing out
    return case, outside


@pytest.mark.skipif(NOT_CONFINED is not None, reason=str(NOT_CONFINED))
@pytest.mark.parametrize("target", ["outside/secret.png", "case/link.png"])
def test_a_c_level_read_outside_is_refused_and_counted(layout, target):
    case, outside = layout
    path = case.parent / target
    report = runner("load").run("fuzz_cases:plant_reads", [case], {"inside": str(case / "a.png"), "outside": str(path)})
    seen = report["result"]
    assert report["confined"] and report["watch"] == "seccomp", report
    # inside: every reader works (the confinement is not simply "nothing works")
    assert seen["libc_open_inside"] == "ok" and seen["mmap_inside"] > 0 and seen["cv2_imread_inside"] == [4, 5, 3]
    assert seen["numpy_fromfile_inside"] > 0 and seen["cat_inside"] == 0
    # outside: refused by the kernel whatever library asks (EACCES = 13), no mmap possible
    assert seen["libc_open_outside"] == "errno 13" and "mmap_outside" not in seen
    assert seen["cv2_imread_outside"] == "none" and seen["numpy_fromfile_outside"] == "errno 13"
    assert seen["cat_outside"] != 0
    # and counted, resolved to the file it really is
    assert report["outside"] == [str((outside / "secret.png").resolve())], report["outside"]
    assert not traceback_in(report)


def test_without_the_kernel_the_same_reads_succeed(layout):
    """What the kernel adds: unconfined (an audit hook only), libc's open, cv2 and cat read the outside file."""
    case, outside = layout
    report = runner("load").run("fuzz_cases:plant_reads", [case], {"inside": str(case / "a.png"),
                                                               "outside": str(outside / "secret.png")}, confine=False)
    seen = report["result"]
    assert seen["libc_open_outside"] == "ok" and seen["cv2_imread_outside"] == [4, 5, 3] and seen["cat_outside"] == 0


@pytest.mark.parametrize("plant, evidence", [("plant_thread_error", "a background thread raised"),
                                             ("plant_printed_traceback", "printed on stderr")])
def test_a_traceback_counts_when_the_case_returns_normally(tmp_path, plant, evidence):
    report = runner("load").run(f"fuzz_cases:{plant}", [tmp_path])
    assert report["result"]["outcome"] == "ok" and report["exit"] == 0
    found = traceback_in(report)
    assert found and found.startswith(evidence), found


def test_c_code_that_never_returns_is_killed_on_time(tmp_path):
    report = runner("load").run("fuzz_cases:plant_hang", [tmp_path], timeout=1.0)
    assert report["hang"] and report["exit"] == -9 and report["seconds"] < 15, report


def test_the_kernel_here_is_reported():
    """The figures say how opens were seen; a kernel without Landlock is named with its errno."""
    cap = capability()
    assert isinstance(cap["landlock"], int) or cap["landlock"].startswith("errno ")
    assert runner("load").confined == (NOT_CONFINED is None)
