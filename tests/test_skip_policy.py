"""Only missing hardware (a GPU, a CPU feature) may skip a test in CI: conftest.py turns any other skip into a failed run under CI=true
(and lists it elsewhere). Checked by running pytest on a probe test that skips on request."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def test_probe_skip():
    """Passes in the suite; skips only inside the child runs below."""
    kind = os.environ.get("NERF_APP_SKIP_PROBE")
    if kind == "other":
        pytest.skip("probe: a data set that is not there")
    if kind == "gpu":
        pytest.skip("needs a CUDA GPU (probe)")
    if kind == "cpu":
        pytest.skip("this CPU has no AVX-512 (probe)")
    if kind == "cpu-mid":
        pytest.skip("probe: this CPU has no AVX-512")   # the CPU mark counts only at the start of the reason


@pytest.mark.parametrize("kind, ci, code", [("other", "true", 1), ("gpu", "true", 0), ("other", "", 0),
                                            ("none", "true", 0), ("cpu", "true", 0), ("cpu-mid", "true", 1)])
def test_only_a_missing_gpu_may_skip_in_ci(kind, ci, code):
    env = dict(os.environ, NERF_APP_SKIP_PROBE=kind, CI=ci)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        f"{__file__}::test_probe_skip"], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == code, r.stdout + r.stderr
    if kind == "other":
        assert "probe: a data set that is not there" in r.stdout and "skip(s) for a reason other than" in r.stdout
