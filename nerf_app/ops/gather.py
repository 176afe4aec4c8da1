"""Row gathers whose gradient is the same on every run, on any number of CPU threads.

``x[index]`` with a repeated index — a ray's origin and direction for each of its samples, an image's
appearance matrix for each of its rays, a ray's running sum for each of its samples — backpropagates
through ``index_put_(accumulate=True)``. On a CPU with more than one thread torch adds the repeated rows
there with atomic float adds in whatever order the threads reach them (torch's IndexKernel: parallel
when the gradient has >= 32768 elements), so the sum, and with it every later step of a training, can
change from run to run (issue 31: 13 distinct gradients in 20 repeats of one appearance gather on 2
threads; real-capture trainings differed after 12 steps in 3 of 3 runs). ``index_select``'s backward is
``index_add_``, which adds the rows in index order on the CPU: the same bits every time, and the same
values as ``x[index]`` in the forward. Every gather on a training path that can repeat an index and
carries a gradient goes through :func:`take_rows` (``tests/test_determinism.py`` walks the autograd graph
of each mode's training step and fails on any gather that does not).

On CUDA ``index_add_`` uses atomics too; CUDA training is documented as not bit-reproducible.
"""
from __future__ import annotations

import torch


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` for a 1-D integer ``index`` into ``x``'s first dimension, with an
    order-deterministic backward. Any index shape: the result is ``[*index.shape, *x.shape[1:]]``."""
    flat = index.reshape(-1)
    out = torch.index_select(x, 0, flat)
    return out if index.dim() == 1 else out.reshape(*index.shape, *x.shape[1:])
