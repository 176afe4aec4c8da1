"""MLP op: the fully fused MLP's autograd wrapper and backend dispatch.

``mlp_forward(x, weights, ...)`` runs the ``cuda`` (fp16 tensor cores), ``cpp`` (float32, cache-tiled)
or ``torch`` implementation; all share the semantics of :func:`nerf_app.ops._reference.mlp_forward`.

What each compiled backend supports (anything else runs the reference, saying why once under
``auto``, or raises :class:`~nerf_app.errors.BackendError` when that backend was asked for):

* ``cpp``: float32 ``x`` and weights, any widths, up to 16 matrices. Weight gradients are
  bit-reproducible (fixed reduction order).
* ``cuda``: float32 ``x`` and weights (computed in fp16 with fp32 accumulation), hidden width
  16/32/64/128, ``n_in`` and ``n_out`` at most 128, up to 16 matrices, a GPU of compute capability
  7.0 or newer.

Inference precision on the CPU (issue 28): inside :func:`inference_precision` (which
:func:`nerf_app.nerf.renderer.render_image` enters, so eval, render, the viewer and export's photo stage
use it), a ``cpp`` pass without autograd may run in bf16 with fp32 accumulation where the CPU has
AVX-512 BF16 (checked at run time, so a portable build on an older CPU takes float32); where the CPU also
has AMX-BF16 tiles (and the OS grants them) the same arithmetic runs on the AMX unit
(``csrc/cpu/mlp_amx_cpu.cpp``). The environment variable ``NERF_APP_MLP_PRECISION`` chooses: ``auto``
(default: bf16 where AMX runs it, float32 elsewhere; AVX-512 BF16's dot product alone measured slower than
the AVX-512 float32 kernel, AMX several times faster: docs/benchmarks.md), ``fp32`` (the float32 kernel,
the reference), ``bf16`` (required: an error where the CPU lacks AVX-512 BF16). ``NERF_APP_MLP_AMX=0``
keeps bf16 off the AMX unit (the AVX-512 BF16 kernel; then ``auto`` is float32). Training, its compaction
and the occupancy-grid updates run outside that context and stay float32.

The compiled backward is once-differentiable: second derivatives (e.g. an eikonal loss on an SDF's
input gradient) need ``backend="torch"``.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator, List, Optional, Sequence

import torch
from torch.autograd.function import once_differentiable

from .. import backend as _backend
from ..errors import BackendError, ConfigError
from . import _reference

ACTIVATIONS = ("relu", "none")
OUTPUT_ACTIVATIONS = ("none", "relu", "sigmoid", "exp")
# Codes shared with the kernels (csrc/include/mlp_common.h, MlpActivation).
ACTIVATION_CODES = {"none": 0, "relu": 1, "sigmoid": 2, "exp": 3}

MAX_LAYERS = 16
PRECISION_ENV = "NERF_APP_MLP_PRECISION"
PRECISIONS = ("auto", "fp32", "bf16")
_inference = contextvars.ContextVar("nerf_app_mlp_inference", default=False)


@contextlib.contextmanager
def inference_precision() -> Iterator[None]:
    """Within: MLP passes without autograd on CPU tensors may run in reduced precision (module docstring).
    Also a decorator (``@inference_precision()``); per thread and per asyncio task (a context variable)."""
    token = _inference.set(True)
    try:
        yield
    finally:
        _inference.reset(token)


def bf16_supported() -> bool:
    """Whether the compiled extension has the bf16 inference kernel and this CPU runs it (AVX-512 BF16)."""
    ext = _backend.extension()
    return ext is not None and hasattr(ext, "mlp_bf16_supported") and bool(ext.mlp_bf16_supported())


def amx_supported() -> bool:
    """Whether the bf16 inference kernel runs on AMX tiles here (AMX-BF16 CPU, tile state granted by the OS,
    ``NERF_APP_MLP_AMX`` not 0)."""
    ext = _backend.extension()
    return ext is not None and hasattr(ext, "mlp_amx_supported") and bool(ext.mlp_amx_supported())


def requested_precision() -> str:
    """``NERF_APP_MLP_PRECISION`` (``auto`` when unset); :class:`BackendError` for anything else."""
    choice = os.environ.get(PRECISION_ENV, "auto").strip().lower() or "auto"
    if choice not in PRECISIONS:
        raise BackendError(f"{PRECISION_ENV}={choice!r} is not one of {', '.join(PRECISIONS)}")
    return choice


def inference_dtype(device: torch.device) -> str:
    """The precision an inference pass of the cpp MLP takes on ``device`` inside :func:`inference_precision`:
    ``"bf16"`` or ``"fp32"``."""
    if torch.device(device).type != "cpu":
        return "fp32"
    choice = requested_precision()
    if choice == "fp32":
        return "fp32"
    if choice == "auto":
        # measured on an AVX-512 BF16 + AMX CPU (docs/benchmarks.md): the fp32 kernel at AVX-512 width outruns
        # the VDPBF16PS kernel, the AMX kernel outruns both; image quality within 0.05 dB (lego, cup)
        return "bf16" if amx_supported() else "fp32"
    if bf16_supported():
        return "bf16"
    if choice == "bf16":
        raise BackendError(f"{PRECISION_ENV}=bf16 but this CPU or build has no bf16 MLP kernel "
                           "(needs x86-64 with AVX-512 BF16)")
    return "fp32"
def inference_in_bf16(device: torch.device) -> bool:
    """Whether an inference pass of the cpp MLP on ``device`` runs in bf16 here and now (inside
    :func:`inference_precision`, where :func:`inference_dtype` says bf16)."""
    return bool(_inference.get()) and inference_dtype(device) == "bf16"


CUDA_WIDTHS = (16, 32, 64, 128)
CUDA_MAX_IO = 128


def _unsupported(which: str, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> Optional[str]:
    """Why the ``which`` kernels cannot run this network, or ``None`` if they can."""
    ext = _backend.extension()
    if not hasattr(ext, "mlp_forward"):
        return "the compiled extension predates the MLP kernels (rebuild it: pip install --no-build-isolation -e .)"
    if len(weights) > MAX_LAYERS:
        return f"the {which} MLP kernels support at most {MAX_LAYERS} weight matrices, got {len(weights)}"
    if any(w.dtype != torch.float32 for w in weights):
        return f"the {which} MLP kernels need float32 weights"
    if which == "cuda":
        width = weights[0].shape[0] if len(weights) > 1 else None
        if width is not None and width not in CUDA_WIDTHS:
            return f"the cuda MLP kernels support hidden widths {CUDA_WIDTHS}, got {width}"
        n_in, n_out = x.shape[1], weights[-1].shape[0]
        if n_in > CUDA_MAX_IO or n_out > CUDA_MAX_IO:
            return f"the cuda MLP kernels support n_input and n_output up to {CUDA_MAX_IO}, got {n_in} and {n_out}"
        major, minor = torch.cuda.get_device_capability(x.device)
        if major < 7:
            return f"the cuda MLP kernels need tensor cores (compute capability >= 7.0), this GPU is {major}.{minor}"
    return None


def _choose(x: torch.Tensor, weights: Sequence[torch.Tensor], backend: Optional[str]) -> str:
    return _backend.resolve("mlp", backend, x.device, x.dtype, cpp_dtypes=(torch.float32,),
                            cuda_dtypes=(torch.float32,), unsupported=lambda which: _unsupported(which, x, weights))


class _FusedMLPFunction(torch.autograd.Function):
    """Autograd wrapper of the compiled kernels (cpp and cuda share the entry points).

    The forward keeps what its device's backward needs (``ext.mlp_forward`` returns ``[y, saved...]``:
    the hidden activations, and on CUDA the fp16 copies of ``x`` and the weights); the backward
    returns gradients for ``x`` and every weight matrix.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, act: int, out_act: int, *weights: torch.Tensor) -> torch.Tensor:
        out = _backend.extension().mlp_forward(x, list(weights), act, out_act, True)
        y = out[0]
        ctx.save_for_backward(x, y, *weights)
        ctx.internal = out[1:]  # kernel-private buffers, never seen or modified by the caller
        ctx.act, ctx.out_act = act, out_act
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        x, y, *weights = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        grads = _backend.extension().mlp_backward(x, weights, list(ctx.internal), y,
                                                  grad_y.to(torch.float32).contiguous(), ctx.act, ctx.out_act,
                                                  need_x)
        ctx.internal = None
        grad_w = [g if ctx.needs_input_grad[3 + i] else None for i, g in enumerate(grads[1:])]
        return (grads[0] if need_x else None, None, None, *grad_w)


def mlp_forward(x: torch.Tensor, weights: List[torch.Tensor], activation: str = "relu",
                output_activation: str = "none", backend: Optional[str] = "auto") -> torch.Tensor:
    """Run a bias-free MLP: ``x`` ``[N, n_in]``, ``weights[i]`` ``[out_i, in_i]`` -> ``[N, n_out]``.

    Hidden layers (all but the last matrix) use ``activation``, the last ``output_activation``.
    Differentiable with respect to ``x`` and every weight on all backends.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"mlp activation must be one of {ACTIVATIONS}, got {activation!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ConfigError(f"mlp output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    if x.dim() != 2 or not weights or x.shape[1] != weights[0].shape[1]:
        raise ConfigError(f"mlp expects x [N, {weights[0].shape[1] if weights else '?'}], got {list(x.shape)}")
    which = _choose(x, weights, backend)
    if which == "torch":
        return _reference.mlp_forward(x, weights, activation, output_activation)
    act, out_act = ACTIVATION_CODES[activation], ACTIVATION_CODES[output_activation]
    x = x.contiguous()
    weights = [w.contiguous() for w in weights]
    if torch.is_grad_enabled() and (x.requires_grad or any(w.requires_grad for w in weights)):
        return _FusedMLPFunction.apply(x, act, out_act, *weights)
    # inference: nothing is saved for a backward
    if inference_in_bf16(x.device):
        return _backend.extension().mlp_forward_bf16(x, weights, act, out_act)
    return _backend.extension().mlp_forward(x, weights, act, out_act, False)[0]
