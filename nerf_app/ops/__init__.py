"""Ops: one module per op, each a public function plus its autograd wrapper and backend dispatch.

:mod:`nerf_app.ops._reference` holds the pure-PyTorch twin of every op; it defines the semantics
that the ``cpp`` and ``cuda`` kernels are tested against.
"""
from .hashgrid import HashGridLayout, hashgrid_encode

__all__ = ["HashGridLayout", "hashgrid_encode"]
