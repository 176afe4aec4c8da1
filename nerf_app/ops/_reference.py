"""Pure-PyTorch twins of the compiled ops: the readable definition of each op's semantics.

Every function here is differentiable by autograd (including double backward) and runs on any
device and dtype. The C++ and CUDA kernels must agree with these to float rounding; the tests check
values and gradients on random inputs.
"""
from __future__ import annotations

import torch

from .gather import take_rows
from .packed import exclusive_sum, pack_counts, segment_sum, unpack_info

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
    features = take_rows(table, index).to(dtype)                              # [N, L, C, F]
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


# --------------------------------------------------------------------------------------------------
# NeRF rendering ops (twins of csrc/include/sh_math.h, ray_aabb_math.h, march_math.h, volume_render_math.h)

SH_C = (0.28209479177387814, 0.48860251190291987, 1.0925484305920792, 0.94617469575755997,
        0.31539156525251999, 0.54627421529603959, 0.59004358992664352, 2.8906114426405538,
        0.45704579946446572, 0.3731763325901154, 1.4453057213202769)


def sh_encode(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    r"""Real spherical harmonics :math:`Y_l^m(d)`, :math:`l < \text{degree}`, of unit directions.

    Args:
        dirs: ``[N, 3]`` unit vectors.
        degree: 1..4 (``degree**2`` outputs, ordered by l then m, tiny-cuda-nn's sign convention).

    Returns:
        ``[N, degree**2]``.
    """
    x, y, z = dirs.unbind(-1)
    c = SH_C
    out = [x * 0.0 + c[0]]  # constant, but part of the graph (zero gradient)
    if degree > 1:
        out += [-c[1] * y, c[1] * z, -c[1] * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [c[2] * x * y, -c[2] * y * z, c[3] * zz - c[4], -c[2] * x * z, c[5] * (xx - yy)]
    if degree > 3:
        out += [c[6] * y * (3.0 * xx - yy) * -1.0, c[7] * x * y * z, c[8] * y * (1.0 - 5.0 * zz),
                c[9] * z * (5.0 * zz - 3.0), c[8] * x * (1.0 - 5.0 * zz), c[10] * z * (xx - yy),
                c[6] * x * (3.0 * yy - xx)]
    return torch.stack(out, dim=-1)


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, lo, hi):
    """Slab test of rays ``[R,3]`` against the box ``[lo, hi]`` (``lo``, ``hi``: numbers, the same bound on
    every axis, or 3 per-axis bounds): ``(t_near [R], t_far [R])`` along the whole line (``t_near < 0``
    when the origin is inside or past the box); no hit when ``t_near > t_far``. fmin/fmax drop the NaN of
    ``0 * inf`` (a ray lying in a slab plane)."""
    lo = torch.as_tensor(lo, dtype=origins.dtype, device=origins.device)
    hi = torch.as_tensor(hi, dtype=origins.dtype, device=origins.device)
    inv = 1.0 / dirs
    t0 = (lo - origins) * inv
    t1 = (hi - origins) * inv
    t_near = torch.fmin(t0, t1).amax(dim=-1)
    t_far = torch.fmax(t0, t1).amin(dim=-1)
    return t_near, t_far


def _march_dt(t, cone_angle: float, dt_min: float, dt_max: float):
    return (t * cone_angle).clamp(dt_min, dt_max)


def march_rays(origins, dirs, t_min, t_max, bitfield, n_cascades: int, resolution: int, dt_min: float,
               dt_max: float, cone_angle: float, max_samples: int):
    r"""Occupancy-grid ray marching to packed samples (the readable twin of the kernel).

    Each ray starts at ``t_min`` and steps by :math:`\Delta t = \mathrm{clamp}(t\,\text{cone\_angle},
    \text{dt\_min}, \text{dt\_max})`. A step's midpoint is looked up in the smallest cascade containing it
    (cascade k: the cube of side :math:`2^k` centred on 0.5, ``resolution``^3 cells, bit
    ``k R^3 + x + R(y + R z)`` of ``bitfield``): occupied -> a sample ``[t, t + dt]``; empty -> steps are
    skipped while their midpoints stay in that cell. Marching stops at ``t_max``, outside the last
    cascade, or after ``max_samples`` samples. All arithmetic is float32 in the kernel's order.

    Returns:
        ``packed_info [R, 2]`` (first sample, count; int64), ``ray_indices [S]``, ``t_starts [S]``, ``t_ends [S]``.
    """
    R = resolution
    n_rays = origins.shape[0]
    device = origins.device
    bits = ((bitfield[:, None] >> torch.arange(8, device=device, dtype=torch.uint8)) & 1).reshape(-1).bool()
    t = t_min.clone()
    active = t < t_max
    samples = [[] for _ in range(n_rays)]
    while bool(active.any()):
        idx = active.nonzero()[:, 0]
        o, d, tt = origins[idx], dirs[idx], t[idx]
        dt = _march_dt(tt, cone_angle, dt_min, dt_max)
        mid = tt + 0.5 * dt
        p = o + mid[:, None] * d
        m = (p - 0.5).abs().amax(dim=-1)
        k = torch.zeros_like(idx)
        half = torch.full_like(m, 0.5)
        for _ in range(n_cascades):
            grow = m > half
            k = k + grow.long()
            half = torch.where(grow, half * 2.0, half)
        outside = k >= n_cascades
        kk = k.clamp(max=n_cascades - 1)
        scale = (2.0 ** kk).to(torch.float32)
        inv_scale = 1.0 / scale
        cell = torch.floor(((p - 0.5) * inv_scale[:, None] + 0.5) * float(R)).long().clamp(0, R - 1)
        bit = kk * R ** 3 + cell[:, 0] + R * (cell[:, 1] + R * cell[:, 2])
        occupied = bits[bit] & ~outside
        for j in occupied.nonzero()[:, 0].tolist():
            samples[idx[j]].append((float(tt[j]), float(tt[j] + dt[j])))
        new_t = torch.where(occupied, tt + dt, tt)
        # empty cells: advance whole steps while the next midpoint stays inside the cell
        empty = ~occupied & ~outside
        if bool(empty.any()):
            edge = (cell + (d > 0).long()).to(torch.float32) / float(R)
            world = (edge - 0.5) * scale[:, None] + 0.5
            t_exit = torch.fmin(torch.fmin((world[:, 0] - o[:, 0]) / d[:, 0], (world[:, 1] - o[:, 1]) / d[:, 1]),
                                (world[:, 2] - o[:, 2]) / d[:, 2])
            te = tt.clone()
            moving = empty.clone()
            tmax = t_max[idx]
            while bool(moving.any()):
                te = torch.where(moving, te + _march_dt(te, cone_angle, dt_min, dt_max), te)
                nxt = te + 0.5 * _march_dt(te, cone_angle, dt_min, dt_max)
                moving = moving & (nxt < t_exit) & (te < tmax)
            new_t = torch.where(empty, te, new_t)
        t[idx] = new_t
        counts = torch.tensor([len(samples[i]) for i in idx.tolist()], device=device)
        still = (~outside) & (new_t < t_max[idx]) & (counts < max_samples)
        active[idx] = still
    packed_info = pack_counts(torch.tensor([len(s) for s in samples], dtype=torch.long, device=device))
    flat = [iv for s in samples for iv in s]
    tt = torch.tensor(flat, dtype=torch.float32, device=device).reshape(-1, 2)
    return packed_info, unpack_info(packed_info, len(flat)), tt[:, 0].contiguous(), tt[:, 1].contiguous()


def volume_render(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays: int, t_threshold: float = 1e-4):
    r"""Volume rendering of packed samples.

    Per sample :math:`\tau_i = \sigma_i (t^{end}_i - t^{start}_i)`, transmittance
    :math:`T_i = \exp(-\sum_{j<i} \tau_j)` (same ray), weight :math:`w_i = T_i (1 - e^{-\tau_i})`, and
    :math:`w_i = 0` once :math:`T_i <` ``t_threshold`` (early termination). Per ray:
    colour :math:`\sum w_i c_i`, opacity :math:`\sum w_i`, depth :math:`\sum w_i (t^{start}_i + t^{end}_i)/2`.
    Samples must be grouped by ray in increasing t (as :func:`march_rays` returns them).

    Returns:
        ``weights [S]``, ``color [R, 3]``, ``opacity [R]``, ``depth [R]``; differentiable in sigmas and rgbs.
    """
    tau = sigmas * (t_ends - t_starts)
    trans = torch.exp(-exclusive_sum(tau, ray_indices)).to(sigmas.dtype)   # float64 inside
    alive = (trans >= t_threshold).to(sigmas.dtype)
    weights = trans * (1.0 - torch.exp(-tau)) * alive
    color = segment_sum(weights[:, None] * rgbs, ray_indices, n_rays)
    opacity = segment_sum(weights, ray_indices, n_rays)
    depth = segment_sum(weights * 0.5 * (t_starts + t_ends), ray_indices, n_rays)
    return weights, color, opacity, depth


# Gaussian-splat rasterisation (twin of csrc/include/splat_math.h, csrc/cpu/splat_cpu.cpp)

SPLAT_ALPHA_MIN = 1.0 / 255.0   # a splat's alpha below this at a pixel: skipped there
SPLAT_ALPHA_MAX = 0.99          # alpha is clamped to this (a splat never hides what is behind it entirely)
SPLAT_T_MIN = 1e-4              # a pixel stops at the splat that would take its transmittance below this


def splat_rasterize(mean2d, conic, color, opacity, depth, radius, width: int, height: int, background):
    r"""Front-to-back alpha compositing of projected 2D Gaussians, the 3D Gaussian Splatting rules.

    Per pixel centre :math:`p` (pixel ``(row, col)`` has its centre at ``(col + 0.5, row + 0.5)``), the splats
    with ``radius > 0`` in increasing ``depth`` (ties: lower index first), :math:`d = p - \mu`,
    :math:`\alpha = \min(0.99, o \exp(-\tfrac12 d^T \Sigma^{-1} d))` with the conic
    :math:`\Sigma^{-1} = [[a, b], [b, c]]`; a splat with :math:`\alpha < 1/255` (or a non-negative-definite
    exponent) is skipped at that pixel; the pixel stops *before* the splat that would take its transmittance
    :math:`T` below 1e-4. :math:`C = \sum_i c_i \alpha_i T_i + T_{final}\,\text{background}`.

    ``radius`` only culls (0: not drawn); it must bound every pixel where the splat's alpha reaches 1/255,
    so it never changes the image (the kernels bin splats into 16x16 tiles by it).

    Args:
        mean2d ``[N, 2]`` (pixels), conic ``[N, 3]`` (a, b, c), color ``[N, 3]``, opacity ``[N]``,
        depth ``[N]``, radius ``[N]`` int, background ``[3]``.

    Returns:
        ``color [H, W, 3]``, ``alpha [H, W]`` (1 - final transmittance); differentiable in mean2d, conic,
        color and opacity. Dense (pixels x splats): for tests and small images.
    """
    dev, dt = mean2d.device, mean2d.dtype
    keep = torch.nonzero(radius > 0)[:, 0]
    order = keep[torch.sort(depth[keep], stable=True)[1]]
    m, q, c, o = mean2d[order], conic[order], color[order], opacity[order]
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=dt) + 0.5,
                            torch.arange(width, device=dev, dtype=dt) + 0.5, indexing="ij")
    px = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)            # [P, 2]
    dx = px[:, None, 0] - m[None, :, 0]
    dy = px[:, None, 1] - m[None, :, 1]
    power = -0.5 * (q[None, :, 0] * dx * dx + q[None, :, 2] * dy * dy) - q[None, :, 1] * dx * dy
    alpha = torch.clamp(o[None, :] * torch.exp(power), max=SPLAT_ALPHA_MAX)
    use = (power <= 0) & (alpha >= SPLAT_ALPHA_MIN)
    alpha = torch.where(use, alpha, torch.zeros_like(alpha))
    t_after = torch.cumprod(1.0 - alpha, dim=1)
    stop = use & (t_after < SPLAT_T_MIN)
    alpha = torch.where(torch.cumsum(stop.to(torch.int32), 1) == 0, alpha, torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    t_before = torch.cumprod(torch.cat([torch.ones_like(one_minus[:, :1]), one_minus[:, :-1]], 1), 1)
    weights = alpha * t_before
    t_final = t_before[:, -1] * one_minus[:, -1] if alpha.shape[1] else torch.ones(px.shape[0], device=dev, dtype=dt)
    out = weights @ c + t_final[:, None] * background.to(dt)[None, :]
    return out.reshape(height, width, 3), (1.0 - t_final).reshape(height, width)


# Gaussian-splat projection (twin of csrc/include/splat_project_math.h, csrc/cpu/splat_project_cpu.cpp)

SPLAT_DILATION = 0.3       # px^2 added to the 2D covariance's diagonal (3DGS): every splat covers about a pixel
SPLAT_FRUSTUM_SLACK = 0.3  # the Jacobian is taken at x/z clamped to the image plus this share of its width (3DGS)


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` quaternions (w, x, y, z; normalised here) -> ``[N, 3, 3]`` rotation matrices."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(q.shape[:-1] + (3, 3))


def splat_frustum_limits(camera):
    """``(lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos)``: the range of x/z and y/z the projection's Jacobian
    is evaluated in (the image plus SPLAT_FRUSTUM_SLACK of its size on each side, 3DGS)."""
    W, H = camera.width, camera.height
    return (camera.cx / camera.fx + SPLAT_FRUSTUM_SLACK * W / camera.fx,
            (W - camera.cx) / camera.fx + SPLAT_FRUSTUM_SLACK * W / camera.fx,
            camera.cy / camera.fy + SPLAT_FRUSTUM_SLACK * H / camera.fy,
            (H - camera.cy) / camera.fy + SPLAT_FRUSTUM_SLACK * H / camera.fy)


def splat_project(means, log_scales, quats, opacity_logits, sh, camera, degree: int):
    r"""Project 3D Gaussians into a pinhole camera (3D Gaussian Splatting's EWA splatting).

    ``camera``: ``c2w`` 4x4 (OpenCV axes), ``fx fy cx cy`` pixels, ``width height``, ``near``. Per splat:
    camera-space mean :math:`p = W\mu + t`; the 2D covariance :math:`J W R S S^T R^T W^T J^T` with the
    Jacobian :math:`J` of the perspective map at :math:`p` (x/z and y/z clamped to
    :func:`splat_frustum_limits`), plus SPLAT_DILATION on its diagonal; its conic (inverse);
    mean2d :math:`(f_x x/z + c_x, f_y y/z + c_y)`; opacity :math:`\sigma(\text{logit})`; colour
    :math:`\max(\sum_k sh_k Y_k(d) + 0.5, 0)` with :math:`d` the unit vector from the camera centre to the
    mean and :func:`sh_encode`'s basis of degree ``degree`` (the first ``degree**2`` rows of ``sh``).

    The cull radius bounds where the splat's alpha can reach 1/255: ``|d| <= sqrt(2 ln(255 o) lambda_max)``,
    plus one pixel for rounding; splats behind ``camera.near``, with a degenerate covariance or an opacity
    below 1/255 get radius 0.

    Returns:
        ``mean2d [N,2], conic [N,3], color [N,3], opacity [N], depth [N]`` (camera z, 0 behind the near
        plane), ``radius [N]`` int32; differentiable in every input but the camera.
    """
    import numpy as np
    dev, dt = means.device, means.dtype
    w2c = torch.as_tensor(np.linalg.inv(np.asarray(camera.c2w, np.float64)), dtype=dt, device=dev)
    R, t = w2c[:3, :3], w2c[:3, 3]
    pc = means @ R.T + t
    x, y, z = pc.unbind(-1)
    in_front = z > camera.near
    zs = torch.where(in_front, z, torch.ones_like(z))          # culled splats: finite numbers, no gradient
    W, H = camera.width, camera.height
    lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos = splat_frustum_limits(camera)
    tx = zs * torch.clamp(x / zs, -lim_x_neg, lim_x_pos)
    ty = zs * torch.clamp(y / zs, -lim_y_neg, lim_y_pos)
    zero = torch.zeros_like(zs)
    J = torch.stack([camera.fx / zs, zero, -camera.fx * tx / (zs * zs),
                     zero, camera.fy / zs, -camera.fy * ty / (zs * zs)], -1).reshape(-1, 2, 3)
    M = quat_to_rotmat(quats) * torch.exp(log_scales)[:, None, :]   # R S
    T = J @ R[None] @ M                                             # [N, 2, 3]
    cov = T @ T.transpose(1, 2)
    a = cov[:, 0, 0] + SPLAT_DILATION
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + SPLAT_DILATION
    det = a * c - b * b
    ok = in_front & (det > 0)
    det_s = torch.where(ok, det, torch.ones_like(det))
    conic = torch.stack([c / det_s, -b / det_s, a / det_s], -1)
    mean2d = torch.stack([camera.fx * x / zs + camera.cx, camera.fy * y / zs + camera.cy], -1)
    opacity = torch.sigmoid(opacity_logits)
    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.0))
        reach = torch.sqrt(2.0 * torch.log(torch.clamp(opacity * 255.0, min=1.0)))
        r = torch.ceil(reach * torch.sqrt(torch.clamp(lam, min=0.0))) + 1.0
        ok = ok & (opacity >= SPLAT_ALPHA_MIN) & torch.isfinite(r) & torch.isfinite(mean2d).all(-1)
        radius = torch.where(ok, torch.clamp(r, max=float(4 * max(W, H))), torch.zeros_like(r)).to(torch.int32)
    cam_pos = torch.as_tensor(np.asarray(camera.c2w, np.float64)[:3, 3], dtype=dt, device=dev)
    dirs = means - cam_pos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_encode(dirs, degree)                                  # [N, degree^2]
    color = torch.clamp((basis[:, :, None] * sh[:, :degree * degree, :]).sum(1) + 0.5, min=0.0)
    return mean2d, conic, color, opacity, torch.where(in_front, z, zero), radius
