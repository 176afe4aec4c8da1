"""FusedMLP: the cpp and cuda kernels against the torch reference (values and gradients), determinism of
the cpp weight gradients, backend selection and fallbacks.

The reference is evaluated in float64, so the measured error is the kernel's own. Where a hidden
pre-activation lies within ``KINK`` of a ReLU kink, float32 and float64 may legitimately disagree on
the derivative (0 or 1) and a whole row's gradient flips; those rows get a zero output gradient (their
values are still compared: ReLU is continuous).
"""
from __future__ import annotations

import pytest
import torch

from nerf_app.errors import BackendError
from nerf_app.networks import FusedMLP
from nerf_app.ops import _reference
from nerf_app.ops.mlp import mlp_forward

from conftest import requires_cpp, requires_cuda

KINK = 1e-4
CPP_RTOL = 2e-5      # float32: max abs error / max abs value, values and gradients
CUDA_VALUE_RTOL = 1e-2  # fp16 storage, fp32 accumulation: relative Frobenius error
CUDA_GRAD_RTOL = 3e-2


def _near_kink(x, weights, activation, output_activation):
    """Rows with a ReLU pre-activation within KINK of 0 (in float64)."""
    near = torch.zeros(x.shape[0], dtype=torch.bool)
    h = x.detach().double().cpu()
    for i, w in enumerate(weights):
        z = h @ w.detach().double().cpu().t()
        act = output_activation if i == len(weights) - 1 else activation
        if act == "relu":
            near |= (z.abs() < KINK).any(dim=1)
        h = _reference._activate(z, act)
    return near


def _problem(n, n_in, width, n_hidden, n_out, activation="relu", output_activation="none", seed=0,
             device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FusedMLP(n_in, n_out, width, n_hidden, activation, output_activation)
    weights = [w.detach().clone() for w in net.weights]
    x = torch.randn(n, n_in, generator=gen)
    grad_y = torch.randn(n, n_out, generator=gen)
    grad_y[_near_kink(x, weights, activation, output_activation)] = 0.0
    return x.to(device), [w.to(device) for w in weights], grad_y.to(device)


def _run(x, weights, grad_y, activation, output_activation, which, dtype=None):
    """Values and gradients (input, every weight) of one backend, as float64 CPU tensors."""
    dtype = dtype or x.dtype
    xs = x.detach().to(dtype).requires_grad_(True)
    ws = [w.detach().to(dtype).requires_grad_(True) for w in weights]
    y = mlp_forward(xs, ws, activation, output_activation, backend=which)
    y.backward(grad_y.to(dtype))
    return [t.detach().double().cpu() for t in [y, xs.grad] + [w.grad for w in ws]]


def _max_rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _norm_rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _check_cpp(n, n_in, width, n_hidden, n_out, activation="relu", output_activation="none", seed=0):
    x, ws, gy = _problem(n, n_in, width, n_hidden, n_out, activation, output_activation, seed)
    ref = _run(x, ws, gy, activation, output_activation, "torch", torch.float64)
    got = _run(x, ws, gy, activation, output_activation, "cpp")
    names = ["y", "grad_x"] + [f"grad_w{i}" for i in range(len(ws))]
    for name, a, b in zip(names, got, ref):
        assert a.shape == b.shape, name
        err = _max_rel(a, b)
        assert err <= CPP_RTOL, f"{name}: max rel error {err:.2e}"


# ---- cpp vs reference ------------------------------------------------------------------------------------

@requires_cpp
@pytest.mark.parametrize("n", [1, 7, 1000, 65537])
def test_cpp_sizes(n):
    _check_cpp(n, 32, 64, 2, 16, seed=n)


@requires_cpp
@pytest.mark.parametrize("width", [16, 32, 64, 128])
@pytest.mark.parametrize("n_hidden", [0, 1, 3])
def test_cpp_widths_and_depths(width, n_hidden):
    _check_cpp(1000, 32, width, n_hidden, 16, seed=width + n_hidden)


@requires_cpp
@pytest.mark.parametrize("activation", ["relu", "none"])
@pytest.mark.parametrize("output_activation", ["none", "relu", "sigmoid", "exp"])
def test_cpp_activations(activation, output_activation):
    _check_cpp(257, 16, 32, 2, 4, activation, output_activation, seed=3)


@requires_cpp
@pytest.mark.parametrize("shape", [(3, 24, 1), (1, 8, 3), (5, 16, 7), (61, 40, 9)])
def test_cpp_odd_dims(shape):
    """Input, width and output not multiples of the SIMD width: padded internally, invisible outside."""
    n_in, width, n_out = shape
    _check_cpp(1001, n_in, width, 2, n_out, output_activation="sigmoid", seed=n_in)


@requires_cpp
def test_cpp_large_width_many_rows():
    _check_cpp(65537, 32, 128, 3, 16, seed=11)


@requires_cpp
def test_cpp_weight_gradients_are_deterministic():
    x, ws, gy = _problem(65537, 32, 64, 2, 16, seed=5)
    first = _run(x, ws, gy, "relu", "none", "cpp")
    threads = torch.get_num_threads()
    try:
        second = _run(x, ws, gy, "relu", "none", "cpp")
        torch.set_num_threads(1)  # the reduction order depends on N only, not on the thread count
        single = _run(x, ws, gy, "relu", "none", "cpp")
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(first, second, single):
        assert torch.equal(a, b) and torch.equal(a, c)


@requires_cpp
def test_cpp_inference_and_partial_gradients():
    """No-grad forward (nothing saved) equals the training forward; x without grad gets none."""
    x, ws, gy = _problem(333, 12, 32, 2, 5, seed=2)
    with torch.no_grad():
        y_inf = mlp_forward(x, ws, backend="cpp")
    w_leaf = [w.clone().requires_grad_(True) for w in ws]
    y = mlp_forward(x, w_leaf, backend="cpp")
    assert torch.equal(y_inf, y.detach())
    y.backward(gy)
    assert x.grad is None and all(w.grad is not None for w in w_leaf)
    ref = _run(x, ws, gy, "relu", "none", "torch", torch.float64)
    for a, b in zip([w.grad.double() for w in w_leaf], ref[2:]):
        assert _max_rel(a, b) <= CPP_RTOL


@requires_cpp
def test_module_backends_share_state_and_agree():
    torch.manual_seed(0)
    net = FusedMLP(32, 4, 64, 2, output_activation="sigmoid", backend="cpp")
    keys = sorted(net.state_dict())
    assert keys == [f"weights.{i}" for i in range(3)]
    x = torch.rand(2, 50, 32)
    y_cpp = net(x)
    net.backend = "torch"
    y_ref = net(x)
    assert y_cpp.shape == (2, 50, 4)
    assert _max_rel(y_cpp.double(), y_ref.double()) <= CPP_RTOL


# ---- selection and fallback ---------------------------------------------------------------------------

@requires_cpp
def test_cpp_rejects_float64_explicitly_and_auto_falls_back(capsys):
    x = torch.randn(10, 8, dtype=torch.float64)
    ws = [torch.randn(16, 8, dtype=torch.float64), torch.randn(2, 16, dtype=torch.float64)]
    with pytest.raises(BackendError):
        mlp_forward(x, ws, backend="cpp")
    y = mlp_forward(x, ws, backend="auto")
    assert y.dtype == torch.float64
    assert torch.allclose(y, _reference.mlp_forward(x, ws))


def test_cuda_request_on_cpu_raises():
    x = torch.randn(4, 8)
    with pytest.raises(BackendError):
        mlp_forward(x, [torch.randn(16, 8), torch.randn(2, 16)], backend="cuda")


def test_reference_gradcheck():
    torch.manual_seed(1)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    ws = [torch.randn(8, 5, dtype=torch.float64, requires_grad=True),
          torch.randn(3, 8, dtype=torch.float64, requires_grad=True)]
    for out_act in ("none", "sigmoid", "exp"):
        assert torch.autograd.gradcheck(lambda x, a, b: _reference.mlp_forward(x, [a, b], "relu", out_act),
                                        (x, *ws))


# ---- cuda vs reference (fp16 tensor cores; needs a GPU) ------------------------------------------------

def _check_cuda(n, n_in, width, n_hidden, n_out, activation="relu", output_activation="none", seed=0):
    x, ws, gy = _problem(n, n_in, width, n_hidden, n_out, activation, output_activation, seed, device="cuda")
    ref = _run(x, ws, gy, activation, output_activation, "torch", torch.float64)
    got = _run(x, ws, gy, activation, output_activation, "cuda")
    names = ["y", "grad_x"] + [f"grad_w{i}" for i in range(len(ws))]
    for k, (name, a, b) in enumerate(zip(names, got, ref)):
        err = _norm_rel(a, b)
        assert err <= (CUDA_VALUE_RTOL if k == 0 else CUDA_GRAD_RTOL), f"{name}: rel error {err:.2e}"


@requires_cuda
@pytest.mark.parametrize("n", [1, 7, 1000, 65537])
def test_cuda_sizes(n):
    _check_cuda(n, 32, 64, 2, 16, seed=n)


@requires_cuda
@pytest.mark.parametrize("width", [16, 32, 64, 128])
@pytest.mark.parametrize("n_hidden", [0, 1, 3])
def test_cuda_widths_and_depths(width, n_hidden):
    _check_cuda(1000, 32, width, n_hidden, 16, seed=width + n_hidden)


@requires_cuda
@pytest.mark.parametrize("activation", ["relu", "none"])
@pytest.mark.parametrize("output_activation", ["none", "relu", "sigmoid", "exp"])
def test_cuda_activations(activation, output_activation):
    _check_cuda(257, 3, 32, 2, 4, activation, output_activation, seed=3)


@requires_cuda
def test_cuda_unsupported_width_falls_back():
    x = torch.randn(10, 8, device="cuda")
    ws = [torch.randn(48, 8, device="cuda"), torch.randn(2, 48, device="cuda")]
    with pytest.raises(BackendError):
        mlp_forward(x, ws, backend="cuda")
    assert torch.allclose(mlp_forward(x, ws, backend="auto"), _reference.mlp_forward(x, ws))
