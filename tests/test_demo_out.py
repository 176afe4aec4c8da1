"""`nerf-app demo --out` replaces only an earlier demo run: never the current folder, a folder above it,
a file, or a folder of something else (it once deleted whatever folder it was given)."""
from __future__ import annotations

import subprocess
import sys

import pytest


def _demo(cwd, out):
    return subprocess.run([sys.executable, "-m", "nerf_app.cli", "demo", "--out", out, "--max-time", "1"],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("out", ["", ".", "..", "keep", "keep/precious.txt"])
def test_demo_refuses_to_replace_what_is_not_a_demo_run(tmp_path, out):
    work = tmp_path / "work"
    (work / "keep").mkdir(parents=True)
    (work / "keep" / "precious.txt").write_text("x")
    (work / "sentinel.txt").write_text("y")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = _demo(work, out)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--out" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (work / "keep" / "precious.txt").read_text() == "x"
