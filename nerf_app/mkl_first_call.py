"""Call each of torch's MKL-backed elementwise functions once, on one thread, before any parallel use.

Why: torch's CPU build computes ``exp``, ``log``, ``sqrt``, ``tanh`` and a few more with MKL's vector math
library (VML). When a process's *first* VML call is made by two OpenMP threads at once (any tensor large
enough for ``at::parallel_for`` to split), MKL's one-time set-up races, and the thread that loses computes
its whole share through another code path. Measured on this project's 2-core Xeon (torch 2.13.0+cpu, MKL
2024.2): a fresh process calling ``torch.exp`` on 32,768 floats with 2 threads got one half wrong in 2 of
100 runs (16,341 and 16,352 of 16,384 values, up to 1.5e-4 relative error, not one ulp); the same call
again in the same process is always right. That is the likeliest reason two training processes with the
same seed could differ from the first occupancy-grid update on (issue 31). One single-threaded call per
function at import does the set-up before any thread can race for it: ``benchmarks/mkl_first_call.py
--trials 300`` (alternating fresh processes, loaded box) counted 3 wrong first calls of 300 without it and
0 of 300 with it; with the two earlier probes, 8 of 700 against 0 of 700.

Which functions: those whose results change under ``MKL_CBWR=COMPATIBLE`` on torch 2.13.0, i.e. the ones
torch hands to MKL; calling the others is harmless and keeps the list robust to torch moving a function.
"""
from __future__ import annotations

import torch

# torch functions computed by MKL VML on CPU float tensors (measured), plus near relatives
VML_FUNCTIONS = ("exp", "log", "log10", "log2", "log1p", "sqrt", "tanh", "tan", "sin", "cos",
                 "asin", "acos", "atan", "erf", "erfc", "erfinv")

_done = False


def warm_up() -> None:
    """Idempotent: one call of each VML-backed function on a one-element float32 and float64 tensor."""
    global _done
    if _done:
        return
    _done = True
    for dtype in (torch.float32, torch.float64):
        # one value, inside every function's domain (erfinv, asin, acos). One, not more: MKL threads a
        # call of 256 values itself, and a process whose OpenMP pool exists before it forks hangs in the
        # child's first parallel op (measured), which the fuzz harness's fork-per-case relies on not doing
        x = torch.full((1,), 0.5, dtype=dtype)
        for name in VML_FUNCTIONS:
            getattr(torch, name)(x)


warm_up()
