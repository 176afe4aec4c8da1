"""Differentiable per-sample weights and the mip-NeRF 360 distortion loss on packed samples.

Packed samples (see :mod:`nerf_app.ops.march`): ``ray_indices [S]``, ``t_starts [S]``, ``t_ends [S]``,
grouped by ray in increasing t.

The distortion loss of one ray (mip-NeRF 360, eq. 15) with weights ``w_i`` on intervals ``[s_i, s_i']``
(midpoints ``m_i``, lengths ``d_i``) is

    L = sum_{i,j} w_i w_j |m_i - m_j|  +  1/3 sum_i w_i^2 d_i

It is small when a ray's weight sits in one short interval (an opaque surface) and large when it is spread
along the ray (fog, floaters in front of the surface, semi-transparent background). The double sum is
computed in O(S) with per-ray prefix sums (as nerfacc does; :func:`nerf_app.ops.packed.exclusive_sum`): for
sorted samples ``sum_{i,j} w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_i - M_i)`` with ``W_i = sum_{j<i} w_j`` and
``M_i = sum_{j<i} w_j m_j``. Prefix sums run in float64 over all samples at once, each ray's offset
subtracted, so no per-ray loop and no padding. Autograd differentiates it exactly;
:func:`distortion_reference` is the O(n^2) definition the tests compare values and gradients against.
"""
from __future__ import annotations

import torch

from .packed import exclusive_sum, segment_sum


def _exclusive_sum(x: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
    """Per-ray exclusive prefix sums of packed ``x [S]`` in ``x``'s dtype (float64 inside)."""
    return exclusive_sum(x, ray_indices).to(x.dtype)


def packed_weights(sigmas: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor, ray_indices: torch.Tensor,
                   n_rays: int) -> torch.Tensor:
    """Volume-rendering weights ``w_i = T_i (1 - exp(-sigma_i d_i))`` of packed samples, differentiable in
    ``sigmas`` (the compiled renderer returns its weights detached)."""
    tau = sigmas * (t_ends - t_starts)
    trans = torch.exp(-_exclusive_sum(tau, ray_indices))
    return trans * (1.0 - torch.exp(-tau))


def contract_distance(t: torch.Tensor) -> torch.Tensor:
    """``s = t / (1 + t)``: distances along a ray (scene units; the region of interest is the unit cube) in
    [0, 1), linear near the camera and compressing the background, so the distortion loss of far samples
    (long cone steps) does not dominate — mip-NeRF 360 measures it in its normalised inverse-depth space
    for the same reason."""
    return t / (1.0 + t)


def distortion(weights: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor, ray_indices: torch.Tensor,
               n_rays: int) -> torch.Tensor:
    """Distortion loss per ray ``[n_rays]`` of packed samples (samples grouped by ray, increasing t).
    Differentiable in ``weights`` (and in the interval ends)."""
    mid = 0.5 * (t_starts + t_ends)
    length = t_ends - t_starts
    w_before = _exclusive_sum(weights, ray_indices)
    wm_before = _exclusive_sum(weights * mid, ray_indices)
    per_sample = 2.0 * weights * (mid * w_before - wm_before) + weights * weights * length / 3.0
    return segment_sum(per_sample, ray_indices, n_rays)


def distortion_reference(weights: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor,
                         ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """The definition, an O(n^2) double sum per ray (tests only)."""
    out = []
    for r in range(n_rays):
        sel = ray_indices == r
        w, s0, s1 = weights[sel], t_starts[sel], t_ends[sel]
        m = 0.5 * (s0 + s1)
        pair = (w[:, None] * w[None, :] * (m[:, None] - m[None, :]).abs()).sum()
        out.append(pair + (w * w * (s1 - s0)).sum() / 3.0)
    return torch.stack(out) if out else weights.new_zeros(0)
