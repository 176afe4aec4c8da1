"""Backend selection: ``cuda`` / ``cpp`` / ``torch`` for every op.

* ``torch`` is the pure-PyTorch reference (:mod:`nerf_app.ops._reference`); it always works.
* ``cpp`` is the C++/OpenMP extension ``nerf_app._C`` running on CPU tensors.
* ``cuda`` is the same extension's CUDA kernels, present when it was built with a CUDA torch.

The extension is imported lazily, on first use, and at most once; importing :mod:`nerf_app` never
compiles and never fails for lack of it. ``auto`` picks the fastest backend that can run on the
tensor's device and dtype; when that is not the natural one (e.g. CPU tensors but no extension) it
says so once, on one line of stderr, with the reason. An explicit request that cannot be honoured
raises :class:`~nerf_app.errors.BackendError` instead of silently running something else.

Precedence: an op's or module's own ``backend=`` argument, when not ``"auto"``; else the
environment variable ``NERF_APP_BACKEND`` (``auto|torch|cpp|cuda``); else ``auto``.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Callable, Iterable, Optional, Set, Tuple

import torch

from . import mkl_first_call  # noqa: F401  (MKL's one-time set-up, single-threaded, before any op runs)
from .errors import BackendError

BACKENDS = ("auto", "torch", "cpp", "cuda")
ENV_VAR = "NERF_APP_BACKEND"

_ext = None
_ext_error: Optional[str] = None
_ext_loaded = False
_said: Set[Tuple[str, str, str]] = set()


def extension():
    """The compiled module ``nerf_app._C``, or ``None`` if it cannot be imported (see :func:`extension_error`)."""
    global _ext, _ext_error, _ext_loaded
    if not _ext_loaded:
        _ext_loaded = True
        try:
            _ext = importlib.import_module("nerf_app._C")
        except ImportError as exc:  # not built, or built against another torch
            _ext = None
            _ext_error = f"the compiled extension nerf_app._C is not available ({exc})"
    return _ext


def extension_error() -> Optional[str]:
    extension()
    return _ext_error


def has_cpp() -> bool:
    return extension() is not None


def has_cuda_kernels() -> bool:
    ext = extension()
    return ext is not None and bool(ext.built_with_cuda())


def _say_once(op: str, device: str, message: str) -> None:
    key = (op, device, message)
    if key not in _said:
        _said.add(key)
        print(f"[nerf_app] {message}", file=sys.stderr)


def requested(backend: Optional[str]) -> str:
    """Apply the precedence rule: explicit argument, then ``NERF_APP_BACKEND``, then ``auto``."""
    if backend is not None and backend != "auto":
        choice = backend
    else:
        choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        if choice not in BACKENDS:
            raise BackendError(f"{ENV_VAR}={choice!r} is not one of {', '.join(BACKENDS)}")
    if choice not in BACKENDS:
        raise BackendError(f"backend {choice!r} is not one of {', '.join(BACKENDS)}")
    return choice


def resolve(op: str, backend: Optional[str], device: torch.device,
            dtype: Optional[torch.dtype] = None,
            cpp_dtypes: Iterable[torch.dtype] = (torch.float32, torch.float64),
            cuda_dtypes: Iterable[torch.dtype] = (torch.float32, torch.float16),
            unsupported: Optional[Callable[[str], Optional[str]]] = None) -> str:
    """Choose the backend that runs ``op`` on tensors of ``device``/``dtype``.

    ``unsupported(native)``, when given, returns why the op's compiled kernels cannot take these
    particular inputs (e.g. a width the kernel lacks), or None.

    Returns one of ``"torch"``, ``"cpp"``, ``"cuda"``. Raises :class:`BackendError` if an explicit
    choice cannot run; reports (once per op/device/reason) when ``auto`` falls back to ``torch``.
    """
    choice = requested(backend)
    device = torch.device(device)
    native = "cuda" if device.type == "cuda" else "cpp"
    if choice == "torch":
        return "torch"
    if choice in ("cpp", "cuda") and choice != native:
        raise BackendError(f"{op}: backend {choice!r} cannot run on {device.type} tensors "
                           f"(use {native!r}, 'torch' or 'auto')")
    reason = None
    if device.type not in ("cpu", "cuda"):
        reason = f"no kernels for {device.type} tensors"
    elif not has_cpp():
        reason = extension_error()
    elif native == "cuda" and not has_cuda_kernels():
        reason = "the extension was built without CUDA kernels (CPU-only torch or no nvcc at build time)"
    elif dtype is not None and dtype not in tuple(cpp_dtypes if native == "cpp" else cuda_dtypes):
        reason = f"the {native} kernels do not support {dtype}"
    elif unsupported is not None:
        reason = unsupported(native)
    if reason is None:
        return native
    if choice != "auto":
        raise BackendError(f"{op}: backend {choice!r} requested but unavailable: {reason}")
    _say_once(op, f"{device.type}:{dtype}", f"{op}: using the slow 'torch' reference backend on "
              f"{device.type} because {reason}")
    return "torch"


def same_device(op: str, **tensors: torch.Tensor) -> torch.device:
    """The one device all ``tensors`` share; raises :class:`BackendError` naming the odd one out.

    Checked before a backend is chosen, since the choice follows the first tensor's device: rays built
    on the CPU with a GPU occupancy grid must fail here with a clear message (the compiled kernels check
    again, so a direct ``nerf_app._C`` call fails the same way instead of reading a foreign pointer).
    """
    (first, t0), *rest = tensors.items()
    for name, t in rest:
        if t.device != t0.device:
            raise BackendError(f"{op}: {name} is on {t.device} but {first} is on {t0.device} "
                               f"(move all inputs to one device)")
    return t0.device


def build_report() -> dict:
    """What was built and what ``auto`` picks, for ``nerf-app info`` and benchmark records."""
    ext = extension()
    report = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "extension": "built" if ext is not None else f"missing: {_ext_error}",
        "cuda_kernels": bool(ext is not None and ext.built_with_cuda()),
        "openmp_threads": int(ext.openmp_threads()) if ext is not None else None,
        "env_backend": os.environ.get(ENV_VAR, "auto"),
    }
    return report


class BackendChoice:
    """Mixin for modules whose ops dispatch by backend: a validated, changeable ``backend`` attribute."""

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            from .errors import ConfigError
            raise ConfigError(f"backend must be one of {BACKENDS}, got {value!r}")
        self._backend = value
