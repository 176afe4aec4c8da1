"""FusedMLP: the cpp and cuda kernels against the torch reference (values and gradients), determinism of
the cpp weight gradients, the fp16 loss scale, backend selection and fallbacks. Kernel tests are
parametrised by device (``cpu`` runs the cpp kernels, ``cuda`` the fp16 tensor-core ones).

References and tolerances (max |error| / max |value| of each tensor, so an error confined to a few rows
cannot hide in a norm):

* cpp (float32): the float64 reference on the same inputs, ``CPP_RTOL``.
* cuda (fp16 storage, fp32 accumulation): the float64 reference run on the *fp16-rounded* inputs and
  weights, the kernel's actual operands. Against unrounded inputs, fp16 rounding alone flips ReLU kinks
  and correct kernels land at 3-5e-2. What remains is the rounding of hidden activations and of the
  scaled gradients to fp16: ``CUDA_RTOL``, which ``test_fp16_emulation_within_cuda_tolerance`` checks on
  the CPU against an emulation of the kernel's roundings.

Where a pre-activation lies within ``KINK`` of a ReLU kink, float32 and float64 may legitimately
disagree on the derivative (0 or 1) and a whole row's gradient flips; those rows get a zero output
gradient (their values are still compared: ReLU is continuous). The CUDA kernels store hidden
activations in fp16, which moves the next layer's pre-activations by ~1e-3 of their scale, so there
the margin is ``CUDA_KINK`` (measured: at 1e-4 the emulation flips rows and errs by 5-18 %, at 1e-3 it
agrees to ~5e-4).
"""
from __future__ import annotations

import pytest
import torch

from nerf_app import backend
from nerf_app.errors import BackendError
from nerf_app.networks import FusedMLP
from nerf_app.ops import _reference
from nerf_app.ops.mlp import ACTIVATION_CODES, mlp_forward

from conftest import requires_cpp, requires_cuda

DEVICES = [pytest.param("cpu", marks=requires_cpp), pytest.param("cuda", marks=requires_cuda)]
NATIVE = {"cpu": "cpp", "cuda": "cuda"}
KINK = 1e-4
CUDA_KINK = 1e-3
CPP_RTOL = 2e-5      # float32
CUDA_RTOL = 4e-3     # fp16 operands and storage, fp32 accumulation, against the fp16-rounded reference


def _near_kink(x, weights, activation, output_activation, kink=KINK):
    """Rows with a ReLU pre-activation within ``kink`` of 0 (in float64)."""
    near = torch.zeros(x.shape[0], dtype=torch.bool)
    h = x.detach().double().cpu()
    for i, w in enumerate(weights):
        z = h @ w.detach().double().cpu().t()
        act = output_activation if i == len(weights) - 1 else activation
        if act == "relu":
            near |= (z.abs() < kink).any(dim=1)
        h = _reference._activate(z, act)
    return near


def _fp16(t):
    return t.half().float()


def _problem(n, n_in, width, n_hidden, n_out, activation="relu", output_activation="none", seed=0,
             device="cpu"):
    """x, weights, grad_y on ``device``. For cuda (and "cuda_emulated": the same problem kept on the CPU)
    the inputs are fp16-representable already (the kernel's operands), so the float64 reference sees
    exactly what the kernel computes with."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FusedMLP(n_in, n_out, width, n_hidden, activation, output_activation)
    weights = [w.detach().clone() for w in net.weights]
    x = torch.randn(n, n_in, generator=gen)
    if device.startswith("cuda"):
        x, weights = _fp16(x), [_fp16(w) for w in weights]
    grad_y = torch.randn(n, n_out, generator=gen)
    kink = CUDA_KINK if device.startswith("cuda") else KINK
    grad_y[_near_kink(x, weights, activation, output_activation, kink)] = 0.0
    device = "cpu" if device == "cuda_emulated" else device
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


def _check(device, n, n_in, width, n_hidden, n_out, activation="relu", output_activation="none", seed=0):
    x, ws, gy = _problem(n, n_in, width, n_hidden, n_out, activation, output_activation, seed, device)
    ref = _run(x.cpu(), [w.cpu() for w in ws], gy.cpu(), activation, output_activation, "torch", torch.float64)
    got = _run(x, ws, gy, activation, output_activation, NATIVE[device])
    rtol = CPP_RTOL if device == "cpu" else CUDA_RTOL
    names = ["y", "grad_x"] + [f"grad_w{i}" for i in range(len(ws))]
    for name, a, b in zip(names, got, ref):
        assert a.shape == b.shape, name
        assert torch.isfinite(a).all(), f"{name}: non-finite values"
        err = _max_rel(a, b)
        assert err <= rtol, f"{device} {name}: max rel error {err:.2e} (limit {rtol:.0e})"


# ---- compiled kernels vs reference ---------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 7, 63, 65, 1000, 65537])
def test_sizes(device, n):
    """Row counts around the CUDA kernel's 64-row blocks and the CPU tiles."""
    _check(device, n, 32, 64, 2, 16, seed=n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("width", [16, 32, 64, 128])
@pytest.mark.parametrize("n_hidden", [0, 1, 3])
def test_widths_and_depths(device, width, n_hidden):
    _check(device, 1000, 32, width, n_hidden, 16, seed=width + n_hidden)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["relu", "none"])
@pytest.mark.parametrize("output_activation", ["none", "relu", "sigmoid", "exp"])
def test_activations(device, activation, output_activation):
    """One problem for both devices (n_in 16); the exp output drives grad_y * a'(y) far above grad_y."""
    _check(device, 257, 16, 32, 2, 4, activation, output_activation, seed=3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(3, 16, 1), (1, 32, 3), (5, 16, 7), (61, 64, 9), (17, 128, 100), (128, 32, 128)])
def test_awkward_input_and_output_dims(device, shape):
    """n_in / n_out that are not multiples of 8 or 16: padded inside the kernels, invisible outside."""
    n_in, width, n_out = shape
    _check(device, 1001, n_in, width, 2, n_out, output_activation="sigmoid", seed=n_in)


@requires_cpp
@pytest.mark.parametrize("shape", [(3, 24, 1), (1, 8, 3), (5, 13, 7), (61, 40, 9), (7, 5, 2), (9, 100, 33),
                                   (2, 1, 1)])
def test_cpp_awkward_widths(shape):
    """The cpp kernels take any hidden width (padded to the SIMD width internally)."""
    n_in, width, n_out = shape
    _check("cpu", 1001, n_in, width, 2, n_out, output_activation="sigmoid", seed=n_in + width)


@requires_cpp
def test_cpp_large_width_many_rows():
    _check("cpu", 65537, 32, 128, 3, 16, seed=11)


@requires_cpp
def test_cpp_weight_gradients_are_deterministic():
    x, ws, gy = _problem(65537, 32, 64, 2, 16, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # explicitly: get_num_threads() may be 1 already on a 1-core machine
        first = _run(x, ws, gy, "relu", "none", "cpp")
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




# ---- fp16 loss scale and the CUDA tolerance, checked on the CPU ------------------------------------------

@requires_cpp
def test_fp16_loss_scale_is_sized_from_the_stored_product():
    """The CUDA backward stores scale * grad_y * a'(y) in fp16. With an exp output a'(y) = y, so sizing the
    scale from grad_y alone overflowed fp16 (65504) in the relu-exp activation test; the scale must put
    the stored maximum in [2^10, 2^11)."""
    ext = backend.extension()
    torch.manual_seed(0)
    y = torch.exp(torch.randn(257, 4) * 4)          # an exp output: up to ~1e7
    grad_y = torch.randn(257, 4)
    stored = (grad_y * y).abs().max().item()
    scale = ext.mlp_fp16_loss_scale(y, grad_y, ACTIVATION_CODES["exp"])
    assert 2 ** 10 <= stored * scale < 2 ** 11
    assert scale == 2.0 ** round(torch.log2(torch.tensor(scale)).item())      # a power of two: exact
    old = 2.0 ** (10 - int(torch.floor(torch.log2(grad_y.abs().max()))))      # the former rule
    assert stored * old > 65504                                                # overflowed fp16
    assert torch.isfinite((grad_y * y * scale).half()).all()
    # other activations: a'(y) from the output, relu masks y <= 0
    for act in ("none", "relu", "sigmoid"):
        yy = torch.randn(100, 3)
        gg = torch.randn(100, 3)
        deriv = {"none": torch.ones_like(yy), "relu": (yy > 0).float(), "sigmoid": yy * (1 - yy)}[act]
        m = (gg * deriv).abs().max().item()
        assert 2 ** 10 <= m * ext.mlp_fp16_loss_scale(yy, gg, ACTIVATION_CODES[act]) < 2 ** 11
    # nothing to scale: zero, or a non-finite gradient (left for the trainer's finiteness check)
    assert ext.mlp_fp16_loss_scale(y, torch.zeros_like(y), 0) == 1.0
    assert ext.mlp_fp16_loss_scale(y, torch.full_like(y, float("inf")), 0) == 1.0
    # extreme magnitudes keep scale and 1/scale finite
    for m in (1e-30, 1e30):
        sc = ext.mlp_fp16_loss_scale(torch.ones(1, 1), torch.full((1, 1), m), 0)
        assert 0 < sc < float("inf") and 0 < 1 / sc < float("inf")


def _emulate_cuda(x, weights, grad_y, activation, output_activation):
    """The CUDA kernels' arithmetic on the CPU: fp16 operands and saved activations, float32 accumulation,
    the scaled output gradient and every layer's pre-activation gradient rounded to fp16."""
    ext = backend.extension()
    L = len(weights)
    W = [_fp16(w) for w in weights]
    hs = [_fp16(x)]
    for i, w in enumerate(W):
        z = hs[-1] @ w.t()
        a = _reference._activate(z, output_activation if i == L - 1 else activation)
        if i < L - 1:
            hs.append(_fp16(a))
        else:
            y = a
    scale = ext.mlp_fp16_loss_scale(y.contiguous(), grad_y.contiguous(), ACTIVATION_CODES[output_activation])
    deriv = {"none": torch.ones_like(y), "relu": (y > 0).float(), "sigmoid": y * (1 - y), "exp": y}[output_activation]
    G = _fp16(scale * grad_y * deriv)
    assert torch.isfinite(G).all()
    grad_w = [None] * L
    for i in reversed(range(L)):
        grad_w[i] = (G.t() @ hs[i]) / scale
        back = G @ W[i]
        if i == 0:
            grad_x = back / scale
        else:
            if activation == "relu":
                back = back * (hs[i] > 0).float()
            G = _fp16(back)
    return [t.double() for t in [y, grad_x] + grad_w]


@requires_cpp
@pytest.mark.parametrize("case", [(1000, 32, 64, 2, 16, "relu", "none"), (257, 16, 32, 2, 4, "relu", "exp"),
                                  (257, 16, 32, 2, 4, "none", "sigmoid"), (1000, 32, 128, 3, 16, "relu", "relu"),
                                  (1001, 17, 128, 2, 100, "relu", "sigmoid")])
def test_fp16_emulation_within_cuda_tolerance(case):
    """What CUDA_RTOL must absorb, measured on the CPU: the emulated kernel against the float64 reference
    on the same fp16-rounded inputs stays within half the limit (the kernel's fp32 accumulation order
    differs from the emulation's only at float32 rounding)."""
    n, n_in, width, n_hidden, n_out, act, out_act = case
    x, ws, gy = _problem(n, n_in, width, n_hidden, n_out, act, out_act, seed=n_in + width, device="cuda_emulated")
    ref = _run(x, ws, gy, act, out_act, "torch", torch.float64)
    emu = _emulate_cuda(x, ws, gy, act, out_act)
    worst = max(_max_rel(a, b) for a, b in zip(emu, ref))
    assert worst <= CUDA_RTOL / 2, worst


# ---- selection on a GPU --------------------------------------------------------------------------------

@requires_cuda
def test_cuda_unsupported_width_falls_back():
    x = torch.randn(10, 8, device="cuda")
    ws = [torch.randn(48, 8, device="cuda"), torch.randn(2, 48, device="cuda")]
    with pytest.raises(BackendError):
        mlp_forward(x, ws, backend="cuda")
    assert torch.allclose(mlp_forward(x, ws, backend="auto"), _reference.mlp_forward(x, ws))
