"""Pure-PyTorch twins of the compiled ops: the readable definition of each op's semantics.

Every function here is differentiable by autograd (including double backward) and runs on any
device and dtype. The C++ and CUDA kernels must agree with these to float rounding; the tests check
values and gradients on random inputs.
"""
from __future__ import annotations

import torch

# tiny-cuda-nn's coherent primes (one per input dimension).
HASH_PRIMES = (1, 2654435761, 805459861, 3674653429)
_U32 = 0xFFFFFFFF


def hashgrid_encode(x: torch.Tensor, table: torch.Tensor, layout, smoothstep: bool = False) -> torch.Tensor:
    r"""Multiresolution hash encoding (Instant-NGP), tiny-cuda-nn GridEncoding semantics.

    For level :math:`l` with scale :math:`s_l = N_{min} b^l - 1` and :math:`r_l = \lceil s_l \rceil + 1`
    vertices per axis, a point :math:`x \in [0,1]^D` maps to :math:`p = x s_l + 0.5`, lower vertex
    :math:`g = \lfloor p \rfloor` and fraction :math:`f = p - g`. Its feature is

    .. math:: y_l(x) = \sum_{c \in \{0,1\}^D} \Big(\prod_d c_d\,\sigma(f_d) + (1-c_d)(1-\sigma(f_d))\Big)\,
              \theta_l[\mathrm{idx}_l(g + c)]

    with :math:`\sigma` the identity (linear) or smoothstep :math:`3f^2 - 2f^3`, and
    :math:`\mathrm{idx}_l(v) = (\sum_d v_d r_l^d) \bmod T_l` while :math:`r_l^D \le T_l` (dense) or
    :math:`(\oplus_d v_d \pi_d) \bmod T_l` (hashed; 32-bit products, primes :data:`HASH_PRIMES`).
    Inputs are clamped to [0, 1] first (NaN -> 0), a deliberate difference from tiny-cuda-nn.

    Args:
        x: ``[N, D]`` points in :math:`[0,1]^D`, float32 or float64.
        table: ``[n_rows, F]`` feature table (all levels stacked, ``layout.offsets`` gives each level's first row).
        layout: a :class:`nerf_app.ops.hashgrid.HashGridLayout`.
        smoothstep: smoothstep instead of linear interpolation weights.

    Returns:
        ``[N, n_levels * F]`` features, level-major (level 0's F features first), in the promoted dtype of
        ``x`` and ``table``: positions and weights are computed in ``x.dtype`` and the weighted sums in
        the promoted dtype, so a float64 table gives a float64-accurate sum of the float32 kernels' terms.
    """
    n, dim = x.shape
    xc = torch.nan_to_num(x.clamp(0.0, 1.0), nan=0.0)
    # corner c has bit d set when it takes the upper vertex along axis d: [C, D]
    corners = torch.tensor([[(c >> d) & 1 for d in range(dim)] for c in range(1 << dim)], device=x.device)
    up = corners.bool()
    indices, weights = [], []
    for level in range(layout.n_levels):
        scale = layout.scales[level]
        if x.dtype == torch.float32:
            # x*scale is exact in float64, so this rounds once, like the kernels' fused multiply-add.
            pos = (xc.double() * scale + 0.5).float()
        else:
            pos = xc * scale + 0.5
        lower = torch.floor(pos).detach()
        frac = pos - lower
        w_up = frac * frac * (3.0 - 2.0 * frac) if smoothstep else frac      # [N, D]
        vertex = lower.long()[:, None, :] + corners[None]                     # [N, C, D]
        # corner weight: product over axes, in axis order (the kernels multiply in the same order)
        weight = torch.where(up[None, :, 0], w_up[:, None, 0], 1.0 - w_up[:, None, 0])
        for d in range(1, dim):
            weight = weight * torch.where(up[None, :, d], w_up[:, None, d], 1.0 - w_up[:, None, d])
        res, size = layout.resolutions[level], layout.sizes[level]
        if layout.hashed[level]:
            index = vertex[..., 0] * HASH_PRIMES[0]
            for d in range(1, dim):
                index = index ^ ((vertex[..., d] * HASH_PRIMES[d]) & _U32)
            index = index & (size - 1)
        else:
            index = vertex[..., 0]
            for d in range(1, dim):
                index = index + vertex[..., d] * (res ** d)
            index = index % size
        indices.append(layout.offsets[level] + index)
        weights.append(weight)
    index = torch.stack(indices, dim=1)                                       # [N, L, C]
    weight = torch.stack(weights, dim=1)                                      # [N, L, C]
    dtype = torch.promote_types(x.dtype, table.dtype)
    features = table[index].to(dtype)                                         # [N, L, C, F]
    return (weight.to(dtype)[..., None] * features).sum(dim=2).reshape(n, -1)


def _activate(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return torch.relu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "exp":
        return torch.exp(x)
    return x


def mlp_forward(x: torch.Tensor, weights, activation: str = "relu", output_activation: str = "none") -> torch.Tensor:
    r"""Bias-free MLP: :math:`h_0 = x`, :math:`h_{i+1} = a(h_i W_i^T)`, output activation on the last layer.

    Args:
        x: ``[N, n_in]``.
        weights: list of ``[out_i, in_i]`` matrices, ``in_0 = n_in``.
        activation: hidden activation (``"relu"`` or ``"none"``).
        output_activation: ``"none"``, ``"relu"``, ``"sigmoid"`` or ``"exp"``.

    Returns:
        ``[N, out_last]``.
    """
    h = x
    for i, w in enumerate(weights):
        h = h @ w.t().to(h.dtype)
        h = _activate(h, output_activation if i == len(weights) - 1 else activation)
    return h
