"""Training's compacted march in one C++ pass per tile of rays (kernel: csrc/compact_fused.cpp,
csrc/cpu/compact_fused_cpu.cpp), on the CPU.

Per round and tile of live rays — march, hash-grid encode, density MLP, keep the samples compositing can
still weigh — without returning to torch between the stages. Its definition is
:func:`nerf_app.nerf.renderer.march_compacted` composed of the ops (the reference twin;
``tests/test_compact_fused.py`` checks one against the other): the same rounds per ray
(``march.compact_rounds``), the same kept samples in the same order, the same count of marched samples.

It also returns the kept samples' hash-grid features: the training step's differentiable pass takes them
instead of encoding the same points again (:func:`nerf_app.ops.hashgrid.hashgrid_encode_cached`), and its
gradients are the grid's own. Where it runs: as :func:`nerf_app.ops.render_fused.unsupported` says, for a
plain :class:`~nerf_app.nerf.field.NerfField` on the CPU with the ``cpp`` backend; elsewhere the composed
ops run (:func:`unsupported` says why).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .. import backend as _backend
from .march import PackedSamples
from .mlp import ACTIVATION_CODES
from .render_fused import MAX_ROUND_SAMPLES
from .render_fused import unsupported as _render_unsupported


def unsupported(field, grid, device: torch.device, backend: Optional[str] = "auto", march=None) -> Optional[str]:
    """Why :func:`march_compacted_fused` cannot compact for ``field`` through ``grid`` on ``device``, or None."""
    why = _render_unsupported(field, grid, device, backend)
    if why is not None:
        return why.replace("fused render", "fused compaction")
    if not hasattr(_backend.extension(), "march_compacted_fused"):
        return "the compiled extension has no march_compacted_fused (rebuild it: pip install --no-build-isolation -e .)"
    if march is not None:
        k_first, k_max = (int(k) for k in march.compact_rounds)
        if not (1 <= k_first <= MAX_ROUND_SAMPLES and 1 <= k_max <= MAX_ROUND_SAMPLES):
            return f"compact_rounds outside 1..{MAX_ROUND_SAMPLES}"
        if not 0 < march.t_threshold < 2:
            return "t_threshold outside (0, 2)"
    return None


@torch.no_grad()
def march_compacted_fused(field, grid, origins: torch.Tensor, dirs: torch.Tensor, t_near: torch.Tensor,
                          t_far: torch.Tensor, march) -> Tuple[PackedSamples, int, torch.Tensor]:
    """``origins, dirs [R, 3]`` (unit dirs), marching intervals ``t_near, t_far [R]`` -> ``(samples, n_marched,
    features)``: the packed samples :func:`~nerf_app.nerf.renderer.march_compacted` keeps (by ray, increasing
    t), how many were marched, and ``features [S', n_levels * F]``: the field's hash grid at the samples'
    midpoints (what ``field.encoding`` gives there; float32, no gradient)."""
    ext = _backend.extension()
    enc = field.encoding
    dn = field.density_net
    k_first, k_max = (int(k) for k in march.compact_rounds)
    rays, starts, ends, packed, features, marched = ext.march_compacted_fused(
        origins.float().contiguous(), dirs.float().contiguous(), t_near.float().contiguous(),
        t_far.float().contiguous(), grid.bitfield.contiguous(), int(grid.n_cascades), int(grid.resolution),
        float(march.dt_min()), float(march.dt_max(grid)), float(march.cone_angle), int(march.max_samples),
        k_first, k_max, float(march.t_threshold),
        enc.table.detach().contiguous(), *enc.layout.kernel_args(), enc.interpolation == "smoothstep",
        [w.detach().contiguous() for w in dn.weights], ACTIVATION_CODES[dn.activation],
        float(field.density_bias), float(field.bound_lo), float(field.bound_hi - field.bound_lo))
    return PackedSamples(rays, starts, ends, packed), int(marched.sum()), features
