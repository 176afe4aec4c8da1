"""Backend selection: lazy extension, explicit choices, env var, fallback messages."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from nerf_app import backend
from nerf_app.encodings import HashGrid
from nerf_app.errors import BackendError

from conftest import HAS_CPP, REPO_ROOT


def test_import_does_not_load_extension():
    code = "import sys, nerf_app, nerf_app.encodings, nerf_app.networks; print('nerf_app._C' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "False"


def test_extension_is_built_unless_disabled():
    """CI installs with the extension; a silently missing build would turn every cpp test into a skip."""
    if os.environ.get("NERF_APP_NO_EXTENSION") == "1":
        pytest.skip("NERF_APP_NO_EXTENSION=1: pure-torch install")
    assert HAS_CPP, backend.extension_error()
    assert backend.extension().openmp_threads() >= 1


def test_auto_picks_native_backend():
    expected = "cpp" if HAS_CPP else "torch"
    assert backend.resolve("test", "auto", torch.device("cpu"), torch.float32) == expected


def test_explicit_backend_that_cannot_run_raises():
    with pytest.raises(BackendError, match="cannot run on cpu"):
        backend.resolve("test", "cuda", torch.device("cpu"), torch.float32)
    if HAS_CPP:
        with pytest.raises(BackendError, match="float16"):
            backend.resolve("test", "cpp", torch.device("cpu"), torch.float16)
    with pytest.raises(BackendError):
        backend.resolve("test", "gpu", torch.device("cpu"))


def test_env_var_forces_backend(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "torch")
    assert backend.resolve("test", "auto", torch.device("cpu"), torch.float32) == "torch"
    # an explicit per-module choice wins over the environment
    if HAS_CPP:
        assert backend.resolve("test", "cpp", torch.device("cpu"), torch.float32) == "cpp"
    monkeypatch.setenv(backend.ENV_VAR, "nonsense")
    with pytest.raises(BackendError, match=backend.ENV_VAR):
        backend.resolve("test", "auto", torch.device("cpu"))


def test_fallback_is_reported_once(capsys):
    """auto on a dtype the kernels lack falls back to torch and says so on one line, once."""
    enc = HashGrid(input_dim=2, n_levels=2, log2_hashmap_size=8, dtype=torch.float16)
    x = torch.rand(10, 2)
    enc(x)
    enc(x)
    err = capsys.readouterr().err.strip().splitlines()
    reason = "do not support torch.float16" if HAS_CPP else "not available"
    lines = [line for line in err if "hashgrid" in line]
    assert len(lines) == 1 and reason in lines[0] and lines[0].startswith("[nerf_app]")


def test_info_command_reports_build(capsys):
    from nerf_app.cli import main
    assert main(["info", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"extension": "built"' in out if HAS_CPP else '"extension": "missing' in out
