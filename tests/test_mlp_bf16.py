"""bf16 inference of the CPU MLP (issue 28): the kernel against the float64 reference, and which path runs.

Two references, on random inputs at awkward sizes (rows not a multiple of the 6-row blocks or the 120-row
tiles, widths 16/32/64/128 and odd ones, odd input and output widths):

* the *emulation*: the float64 reference run on the kernel's own operands (x, weights and every hidden
  activation rounded to bf16, round to nearest even). What remains is fp32 accumulation and an occasional
  hidden value whose fp32 sum lands on the other side of a bf16 rounding boundary (one bf16 ulp, 2^-8
  relative, in one element): ``EMU_RTOL`` of max |y| (measured up to 1.2e-3 at width 128, 3 hidden layers).
* the float32 result the default kernel gives (the reference precision): the error bf16 inference costs,
  bounded by ``FP32_RTOL`` of max |y| (measured 4-6e-3, 1.3e-2 through an exp output; bf16 keeps 8 bits).

Every kernel test runs twice: on the AVX-512 BF16 kernel (``NERF_APP_MLP_AMX=0``) and on the AMX kernel
(``csrc/cpu/mlp_amx_cpu.cpp``, where the CPU and OS have AMX-BF16 tiles), which ``mlp_forward_bf16`` takes by
default. Both relative to each output's largest magnitude (max |error| / max |value|), so an error confined to a few
rows cannot hide in a norm. The dispatch tests force each path: fp32 via NERF_APP_MLP_PRECISION, and a CPU
without AVX-512 BF16 (a portable build on an older CPU) by making the support check say no.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nerf_app import backend
from nerf_app.errors import BackendError
from nerf_app.ops import _reference
from nerf_app.ops import mlp as mlp_op
from nerf_app.ops.mlp import ACTIVATION_CODES, inference_precision, mlp_forward

from conftest import requires_cpp

ROOT = Path(__file__).resolve().parents[1]
EMU_RTOL = 3e-3
FP32_RTOL = 2.5e-2

pytestmark = requires_cpp


def _supported() -> bool:
    return mlp_op.bf16_supported()


requires_bf16 = pytest.mark.skipif(not (backend.has_cpp() and _supported()),
                                   reason="this CPU has no AVX-512 BF16 (the fp32 path is tested below)")


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).double()


def _emulate(x, weights, activation, output_activation):
    h = _bf16(x)
    for i, w in enumerate(weights):
        z = h @ _bf16(w).t()
        if i == len(weights) - 1:
            return _reference._activate(z, output_activation)
        h = _bf16(_reference._activate(z, activation))


def _problem(n, n_in, width, n_hidden, n_out, seed):
    g = torch.Generator().manual_seed(seed)
    dims = [n_in] + [width] * n_hidden + [n_out]
    weights = [torch.randn(dims[i + 1], dims[i], generator=g) * (2.0 / dims[i]) ** 0.5 for i in range(len(dims) - 1)]
    return torch.randn(n, n_in, generator=g), weights


def _bf16_kernel(x, weights, activation="relu", output_activation="none"):
    return backend.extension().mlp_forward_bf16(x, weights, ACTIVATION_CODES[activation],
                                                ACTIVATION_CODES[output_activation])


AMX_ENV = "NERF_APP_MLP_AMX"


@pytest.fixture(params=["avx512bf16", "amx"])
def kernel(request, monkeypatch):
    """Which bf16 kernel mlp_forward_bf16 takes for the test."""
    if request.param == "amx":
        monkeypatch.delenv(AMX_ENV, raising=False)
        if not mlp_op.amx_supported():
            pytest.skip("this CPU or OS has no AMX-BF16 tiles")
    else:
        monkeypatch.setenv(AMX_ENV, "0")
        assert not mlp_op.amx_supported()
    return request.param


def _fp32_kernel(x, weights, activation="relu", output_activation="none"):
    return backend.extension().mlp_forward(x, weights, ACTIVATION_CODES[activation],
                                           ACTIVATION_CODES[output_activation], False)[0]


def _rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def _check(n, n_in, width, n_hidden, n_out, activation="relu", output_activation="none", seed=0):
    x, ws = _problem(n, n_in, width, n_hidden, n_out, seed)
    got = _bf16_kernel(x, ws, activation, output_activation)
    assert got.shape == (n, n_out) and got.dtype == torch.float32
    assert torch.isfinite(got).all()
    emu = _emulate(x.double(), [w.double() for w in ws], activation, output_activation)
    assert _rel(got, emu) <= EMU_RTOL, f"bf16 kernel vs its emulation: {_rel(got, emu):.2e}"
    fp32 = _fp32_kernel(x, ws, activation, output_activation)
    assert _rel(got, fp32) <= FP32_RTOL, f"bf16 kernel vs float32: {_rel(got, fp32):.2e}"
    return _rel(got, fp32)


@requires_bf16
@pytest.mark.parametrize("n", [1, 5, 7, 119, 121, 1001])
def test_bf16_rows(n, kernel):
    _check(n, 32, 64, 2, 16, seed=n)


@requires_bf16
@pytest.mark.parametrize("width", [16, 32, 64, 128])
@pytest.mark.parametrize("n_hidden", [0, 1, 3])
def test_bf16_widths_and_depths(width, n_hidden, kernel):
    _check(333, 32, width, n_hidden, 16, seed=width + n_hidden)


@requires_bf16
@pytest.mark.parametrize("shape", [(3, 24, 1, 1), (17, 80, 2, 3), (31, 48, 1, 17), (32, 112, 2, 33), (1, 8, 1, 2)])
def test_bf16_awkward_dims(shape, kernel):
    n_in, width, n_hidden, n_out = shape
    _check(257, n_in, width, n_hidden, n_out, seed=n_in)


@requires_bf16
@pytest.mark.parametrize("activation, output_activation",
                         [("relu", "sigmoid"), ("relu", "exp"), ("relu", "relu"), ("none", "none")])
def test_bf16_activations(activation, output_activation, kernel):
    _check(500, 32, 64, 2, 3, activation, output_activation, seed=3)


@requires_bf16
def test_bf16_is_not_the_fp32_kernel_and_nerf_sized_error(kernel):
    """The NeRF's two networks (density 32->64->16, colour 32->64x2->3 sigmoid): bf16 differs from float32
    (so the bf16 path did run) by less than the bound."""
    err_d = _check(4099, 32, 64, 1, 16, seed=11)
    err_c = _check(4099, 32, 64, 2, 3, output_activation="sigmoid", seed=12)
    assert err_d > 1e-5 and err_c > 1e-6


@requires_bf16
def test_amx_rows_are_independent_and_it_is_not_the_avx512_kernel(monkeypatch):
    """The AMX kernel: a row's result does not depend on how the batch is cut (16-row blocks, thread shares;
    the fused render's batches must give the composed path's rows), and it is a different kernel from the
    AVX-512 BF16 one (the two add each pair of products in the other order), agreeing to fp32 rounding."""
    monkeypatch.delenv(AMX_ENV, raising=False)
    if not mlp_op.amx_supported():
        pytest.skip("this CPU or OS has no AMX-BF16 tiles")
    x, ws = _problem(4099, 32, 64, 2, 3, seed=21)
    whole = _bf16_kernel(x, ws, output_activation="sigmoid")
    cuts = [0, 1, 5, 16, 17, 40, 1000, 2049, 4099]
    parts = torch.cat([_bf16_kernel(x[a:b].contiguous(), ws, output_activation="sigmoid")
                       for a, b in zip(cuts[:-1], cuts[1:])])
    assert torch.equal(parts, whole)
    monkeypatch.setenv(AMX_ENV, "0")
    other = _bf16_kernel(x, ws, output_activation="sigmoid")
    assert not torch.equal(other, whole)
    assert _rel(whole, other) <= EMU_RTOL


def _run_op(x, ws, **kw):
    return mlp_forward(x, ws, "relu", "none", backend="cpp", **kw)


@requires_bf16
def test_inference_context_selects_bf16_only_without_autograd(monkeypatch):
    monkeypatch.setenv(mlp_op.PRECISION_ENV, "bf16")
    x, ws = _problem(300, 32, 64, 1, 16, seed=5)
    fp32 = _fp32_kernel(x, ws)
    with torch.no_grad():
        assert torch.equal(_run_op(x, ws), fp32)               # outside the context: float32
        with inference_precision():
            assert torch.equal(_run_op(x, ws), _bf16_kernel(x, ws))
    # training inside the context: autograd keeps the float32 kernel (its backward needs the saved fp32 state)
    wg = [w.clone().requires_grad_(True) for w in ws]
    with inference_precision():
        y = _run_op(x, wg)
        y.sum().backward()
    assert torch.equal(y.detach(), fp32) and all(w.grad is not None for w in wg)


def test_forced_fp32_and_cpu_without_bf16_take_the_fp32_kernel(monkeypatch):
    """NERF_APP_MLP_PRECISION=fp32, and a CPU without AVX-512 BF16 under auto (the portable build's path on an
    older CPU): the float32 kernel's result, bit for bit; bf16 asked for where it cannot run is an error."""
    x, ws = _problem(300, 32, 64, 1, 16, seed=6)
    fp32 = _fp32_kernel(x, ws)
    with torch.no_grad(), inference_precision():
        monkeypatch.setenv(mlp_op.PRECISION_ENV, "fp32")
        assert mlp_op.inference_dtype(torch.device("cpu")) == "fp32"
        assert torch.equal(_run_op(x, ws), fp32)
        monkeypatch.setenv(mlp_op.PRECISION_ENV, "auto")  # auto: bf16 only on AMX (measured faster), else float32
        monkeypatch.setattr(mlp_op, "amx_supported", lambda: True)
        assert mlp_op.inference_dtype(torch.device("cpu")) == "bf16"
        monkeypatch.setattr(mlp_op, "amx_supported", lambda: False)
        assert mlp_op.inference_dtype(torch.device("cpu")) == "fp32"
        assert torch.equal(_run_op(x, ws), fp32)
        monkeypatch.setattr(mlp_op, "bf16_supported", lambda: False)
        assert mlp_op.inference_dtype(torch.device("cpu")) == "fp32"
        assert torch.equal(_run_op(x, ws), fp32)
        monkeypatch.setenv(mlp_op.PRECISION_ENV, "bf16")
        with pytest.raises(BackendError, match="NERF_APP_MLP_PRECISION=bf16"):
            _run_op(x, ws)
        monkeypatch.setenv(mlp_op.PRECISION_ENV, "half")
        with pytest.raises(BackendError, match="NERF_APP_MLP_PRECISION='half'"):
            _run_op(x, ws)


def test_render_image_runs_inside_the_inference_context():
    from nerf_app.nerf.occupancy import OccupancyGrid
    from nerf_app.nerf.renderer import MarchSettings, render_image

    seen = []

    class Field(torch.nn.Module):
        def forward(self, x, d):
            seen.append(mlp_op._inference.get())
            return torch.full((x.shape[0],), 5.0), torch.sigmoid(x)

    o = torch.tensor([0.5, 0.5, -0.5]).expand(4, 4, 3)
    d = torch.tensor([0.0, 0.0, 1.0]).expand(4, 4, 3)
    march = MarchSettings(64, 0.0, 64, render_min_weight=0.0)
    render_image(Field(), OccupancyGrid(1, 8), o, d, torch.zeros(3), march, backend="torch")
    assert seen and all(seen) and not mlp_op._inference.get()


@pytest.mark.skipif(shutil.which("g++") is None or not sys.platform.startswith("linux")
                    or os.uname().machine != "x86_64", reason="needs g++ on x86-64 Linux")
def test_bf16_kernel_compiles_in_a_portable_build(tmp_path):
    """NERF_APP_PORTABLE=1 builds without -march=native: the kernel must compile from its function-level
    target attributes (and contain the bf16 dot product), so a wheel carries it and picks it at run time; the
    AMX kernel likewise (its tile multiply)."""
    from torch.utils.cpp_extension import include_paths

    for source, instruction in (("mlp_bf16_cpu.cpp", "vdpbf16ps"), ("mlp_amx_cpu.cpp", "tdpbf16ps")):
        cmd = ["g++", "-std=c++17", "-O1", "-fopenmp", "-fPIC", "-c", str(ROOT / "csrc/cpu" / source),
               "-I" + str(ROOT / "csrc/include"), "-I" + str(ROOT / "csrc"), "-o", str(tmp_path / "k.o")]
        cmd += ["-I" + p for p in include_paths()]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        dis = subprocess.run(["objdump", "-d", str(tmp_path / "k.o")], capture_output=True, text=True)
        if dis.returncode == 0:
            assert instruction in dis.stdout, source
