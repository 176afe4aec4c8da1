"""Render rays through a NeRF: box intersection -> occupancy-grid marching -> field -> compositing."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..errors import BackendError
from ..ops.compact import compact_samples
from ..ops.compact_fused import march_compacted_fused
from ..ops.compact_fused import unsupported as compact_unsupported
from ..ops.gather import take_rows
from ..ops.march import PackedSamples, march_rays
from ..ops.mlp import inference_precision
from ..ops.packed import pack_info, segment_sum
from ..ops.ray_aabb import ray_aabb
from ..ops.volume_render import volume_render
from .field import NerfField
from .occupancy import OccupancyGrid


@dataclass
class MarchSettings:
    """Step rule (Instant-NGP): ``dt = clamp(t * cone_angle, dt_min, dt_max)``."""
    steps_per_unit_diagonal: int = 1024   # dt_min = sqrt(3) / this
    cone_angle: float = 0.0               # 0 for synthetic objects, ~1/256 for unbounded captures
    max_samples: int = 1024               # per ray
    near: float = 0.0                     # distance from the camera where marching may start
    t_threshold: float = 1e-4             # early termination: transmittance below this ends a ray
    # inference (render_image): march in rounds of this many samples per live ray (doubling up to
    # round_samples_max), evaluate the field only there, and retire a ray once its transmittance is below
    # render_t_threshold — nothing behind an opaque surface is ever evaluated. Short rounds waste fewer
    # samples past the point where a ray retires: 4/4 against the earlier 8/16 marched 24 % fewer samples on
    # cup and 21 % fewer on fox at equal held-out PSNR (+0.04 / +0.01 dB; docs/benchmarks.md)
    round_samples: int = 4
    round_samples_max: int = 4
    render_t_threshold: float = 1e-2
    # inference: a sample whose compositing weight (transmittance x alpha) is below this gets no colour
    # evaluation (it would add at most this much of its colour); 0 evaluates every sample's colour
    render_min_weight: float = 1e-4
    # training's compacted march (march_compacted): its own rounds, doubling from the first to the second
    compact_rounds: tuple = (8, 64)

    def dt_min(self) -> float:
        return math.sqrt(3.0) / self.steps_per_unit_diagonal

    def dt_max(self, grid: OccupancyGrid) -> float:
        # one cell of the outermost cascade
        return (2.0 ** (grid.n_cascades - 1)) * math.sqrt(3.0) / grid.resolution


@dataclass
class RenderOutput:
    color: torch.Tensor       # [R, 3], composited over the background
    opacity: torch.Tensor     # [R]
    depth: torch.Tensor       # [R] expected distance along the ray (unit directions)
    n_samples: int                            # samples evaluated with gradients (training) / at all (inference)
    samples: Optional[PackedSamples] = None   # the packed samples (training: for the distortion loss)
    sigmas: Optional[torch.Tensor] = None     # [S] their densities (differentiable)
    n_marched: int = 0                        # samples marched (more than n_samples when training compacts)


def _interval(origins, dirs, grid: OccupancyGrid, march: MarchSettings, backend, near=None):
    """Where marching runs: the rays' overlap with the outer cascade, starting no closer than ``march.near``
    or the per-ray ``near [R]``."""
    lo, hi = grid.bound
    t_near, t_far = ray_aabb(origins, dirs, lo, hi, backend=backend)
    t_near = t_near.clamp(min=march.near)
    if near is not None:
        t_near = torch.maximum(t_near, near)
    t_far = torch.where(t_near < t_far, t_far, t_near)  # rays that miss the box get an empty interval
    return t_near.contiguous(), t_far.contiguous()


def render_rays(field: NerfField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor,
                background: torch.Tensor, march: MarchSettings, backend: Optional[str] = "auto",
                near: Optional[torch.Tensor] = None, compact: bool = False,
                fused: Optional[bool] = None) -> RenderOutput:
    """``origins, dirs [R, 3]`` (unit dirs, normalised world), ``background [R, 3]`` or ``[3]``; ``near [R]``
    optional per-ray start distances. Every marched sample is evaluated (training: all get gradients) unless
    ``compact``: then rays are marched in rounds with densities taken without gradients
    (:func:`march_compacted`), and the field runs with gradients only on the samples compositing can still
    weigh (each ray's prefix down to transmittance ``march.t_threshold``). Colour, opacity, depth and every
    gradient are the same either way; compaction only skips work on samples whose weight is 0.
    ``fused`` (compaction only): None (default) compacts in one C++ pass per tile of rays where it can run
    (:mod:`nerf_app.ops.compact_fused`, whose definition is :func:`march_compacted`; the kept samples'
    hash-grid features are reused, not encoded again), True requires it (a
    :class:`~nerf_app.errors.BackendError` saying why not), False the composed ops."""
    t_near, t_far = _interval(origins, dirs, grid, march, backend, near)
    features = None
    if compact and march.t_threshold > 0:
        why = "fused=False" if fused is False else compact_unsupported(field, grid, origins.device, backend, march)
        if why is None:
            samples, n_marched, features = march_compacted_fused(field, grid, origins, dirs, t_near, t_far, march)
        elif fused:
            raise BackendError(f"the fused compaction cannot run: {why}")
        else:
            samples, n_marched = march_compacted(field, grid, origins, dirs, t_near, t_far, march, backend)
    else:
        samples = march_rays(origins, dirs, t_near, t_far, grid.bitfield, grid.n_cascades, grid.resolution,
                             march.dt_min(), march.dt_max(grid), march.cone_angle, march.max_samples, backend=backend)
        n_marched = samples.n_samples
    n_rays = origins.shape[0]
    background = background.expand(n_rays, 3)
    if samples.n_samples == 0:
        zeros = torch.zeros(n_rays, device=origins.device)
        return RenderOutput(background.clone(), zeros, zeros.clone(), 0, n_marched=n_marched)
    mid = 0.5 * (samples.t_starts + samples.t_ends)
    # take_rows: a ray's origin and direction repeat for each of its samples; with camera refinement they
    # carry a gradient, and x[index]'s backward adds the repeats in thread order (nerf_app/ops/gather.py)
    ray_dirs = take_rows(dirs, samples.ray_indices)
    x = take_rows(origins, samples.ray_indices) + mid[:, None] * ray_dirs
    sigma, rgb = field(x, ray_dirs) if features is None else field(x, ray_dirs, features=features)
    _, color, opacity, depth = volume_render(sigma, rgb, samples, march.t_threshold, backend=backend)
    color = color + (1.0 - opacity)[:, None] * background
    return RenderOutput(color, opacity, depth, samples.n_samples, samples, sigma, n_marched)


def _next_round(origins, dirs, t, t_far, alive, grid: OccupancyGrid, march: MarchSettings, k: int, backend):
    """March the live rays ``alive`` up to ``k`` more samples each, from ``t`` (advanced in place to where each
    stopped) -> ``(samples, positions [S, 3], directions [S, 3])``; packed over the live rays, in their order."""
    o, d = origins[alive].contiguous(), dirs[alive].contiguous()
    s = march_rays(o, d, t[alive], t_far[alive], grid.bitfield, grid.n_cascades, grid.resolution,
                   march.dt_min(), march.dt_max(grid), march.cone_angle, k, backend=backend)
    if not s.n_samples:
        return s, o[:0], d[:0]
    counts = s.packed_info[:, 1]
    last = (s.packed_info[:, 0] + counts - 1).clamp(min=0)
    t[alive] = torch.where(counts > 0, s.t_ends[last], t_far[alive])
    ds = d[s.ray_indices].contiguous()
    return s, o[s.ray_indices] + (0.5 * (s.t_starts + s.t_ends))[:, None] * ds, ds


@dataclass
class MarchRound:
    """One round of :func:`march_in_rounds`: the rays marched (``alive [A]``, indices into the batch), their
    samples packed over ``alive`` in its order, the samples' midpoints ``positions [S, 3]`` and
    ``directions [S, 3]``, and ``go_on [A]``: whether the ray marches again next round. It starts as "the ray
    took all ``k`` samples it was allowed" (else its interval or its sample budget ended); the caller narrows
    it (``go_on &= ...``) with its own reason to retire a ray before the next round starts."""
    alive: torch.Tensor
    samples: PackedSamples
    positions: torch.Tensor
    directions: torch.Tensor
    go_on: torch.Tensor


def march_in_rounds(origins: torch.Tensor, dirs: torch.Tensor, t: torch.Tensor, t_far: torch.Tensor,
                    grid: OccupancyGrid, march: MarchSettings, k_max: int, backend,
                    k_first: Optional[int] = None) -> Iterator[MarchRound]:
    """The round loop shared by compacted training marches, early-stopping renders and median depths: the live
    rays march ``k_first`` (default ``march.round_samples``) samples each, doubling every round up to
    ``k_max``, each round resuming where the last stopped (``t [R]`` is advanced in place) until every ray has
    stopped or been retired through :attr:`MarchRound.go_on`. The rounds together give the samples of a single
    march of the same intervals, cut where the caller retired each ray."""
    alive = torch.nonzero(t < t_far)[:, 0]
    k = max(1, int(march.round_samples if k_first is None else k_first))
    k_max = max(k, int(k_max))
    while alive.numel():
        s, x, ds = _next_round(origins, dirs, t, t_far, alive, grid, march, k, backend)
        step = MarchRound(alive, s, x, ds, s.packed_info[:, 1] >= k)
        yield step
        alive = alive[step.go_on]
        k = min(2 * k, k_max)


@torch.no_grad()
def march_compacted(field: NerfField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor,
                    t_near: torch.Tensor, t_far: torch.Tensor, march: MarchSettings,
                    backend: Optional[str] = "auto"):
    """The samples of :func:`render_rays` that compositing with ``march.t_threshold`` can weigh, and how many
    were marched: ``(PackedSamples, n_marched)``.

    Rays are marched in rounds (``march.compact_rounds``: samples per live ray in the first round, doubling
    up to the second), resuming where the last round stopped, as
    :func:`render_rays_early_stop` does; each round's densities are taken without gradients and
    :func:`nerf_app.ops.compact.compact_samples` keeps the samples before the ray's transmittance falls
    below ``t_threshold / 2``. A ray retires there, at the end of its interval or once it has marched
    ``march.max_samples`` (the last round may take it up to ``k - 1`` past that),
    so the space behind an opaque surface is neither marched nor evaluated. The kept samples are the prefix
    of the single-pass march's samples that compositing can weigh, packed by ray in increasing t."""
    n_rays, device = origins.shape[0], origins.device
    depth = torch.zeros(n_rays, dtype=torch.float64, device=device)
    marched_per_ray = torch.zeros(n_rays, dtype=torch.int64, device=device)
    limit = math.log(2.0 / march.t_threshold)
    rays, starts, ends = [], [], []
    n_marched = 0
    k_first, k_max = (int(k) for k in march.compact_rounds)
    for step in march_in_rounds(origins, dirs, t_near.clone(), t_far, grid, march, k_max, backend, k_first):
        alive, s = step.alive, step.samples
        if s.n_samples:
            n_marched += s.n_samples
            sigma, _ = field.density(step.positions)
            kept, _, depth_alive = compact_samples(sigma.float(), s, march.t_threshold, depth[alive])
            depth[alive] = depth_alive
            rays.append(alive[kept.ray_indices.long()])
            starts.append(kept.t_starts)
            ends.append(kept.t_ends)
            marched_per_ray[alive] += s.packed_info[:, 1].long()
        # ~(depth > limit): a ray whose density is not finite marches on (compact_samples keeps such samples)
        step.go_on &= ~(depth[alive] > limit) & (marched_per_ray[alive] < march.max_samples)
    if not rays:
        empty = torch.zeros(0, device=device)
        return PackedSamples(torch.zeros(0, dtype=torch.int64, device=device), empty, empty.clone(),
                             torch.zeros(n_rays, 2, dtype=torch.int64, device=device)), 0
    ray = torch.cat(rays)
    order = torch.sort(ray, stable=True)[1]   # by ray; rounds were appended in order, so t stays increasing
    ray = ray[order]
    return PackedSamples(ray.contiguous(), torch.cat(starts)[order].contiguous(), torch.cat(ends)[order].contiguous(),
                         pack_info(ray, n_rays)), n_marched


@torch.no_grad()
def render_rays_early_stop(field: NerfField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor,
                           background: torch.Tensor, march: MarchSettings, backend: Optional[str] = "auto",
                           near: Optional[torch.Tensor] = None) -> RenderOutput:
    """Inference rendering with early ray termination: the same samples as :func:`render_rays` (same marching
    rule, resumed where the previous round stopped), evaluated round by round; a ray retires when marching
    ends or its transmittance falls below ``march.render_t_threshold``. Each round composites its samples
    from transmittance 1 and is chained: ``C += T c_round``, ``T *= 1 - opacity_round``."""
    n_rays = origins.shape[0]
    device = origins.device
    t, t_far = _interval(origins, dirs, grid, march, backend, near)
    trans = torch.ones(n_rays, device=device)
    color = torch.zeros(n_rays, 3, device=device)
    depth = torch.zeros(n_rays, device=device)
    total = 0
    for step in march_in_rounds(origins, dirs, t, t_far, grid, march, march.round_samples_max, backend):
        alive, s, x, ds = step.alive, step.samples, step.positions, step.directions
        if s.n_samples:
            total += s.n_samples
            tr = trans[alive]
            if march.render_min_weight > 0 and hasattr(field, "color"):
                # density first; colour only where the sample's weight along the whole ray is worth it
                sigma, h = field.density(x)
                w, _, op, dep = volume_render(sigma.float().contiguous(), sigma.new_zeros(len(sigma), 3), s, 0.0,
                                              backend=backend)
                need = torch.nonzero(w * tr[s.ray_indices] >= march.render_min_weight)[:, 0]
                rgb = field.color(ds[need], h[need]).float() if need.numel() else torch.zeros(0, 3, device=device)
                c = segment_sum(w[need, None] * rgb, s.ray_indices[need], len(alive))
            else:
                sigma, rgb = field(x, ds)
                _, c, op, dep = volume_render(sigma.float().contiguous(), rgb.float().contiguous(), s, 0.0,
                                              backend=backend)
            color[alive] += tr[:, None] * c
            depth[alive] += tr * dep
            trans[alive] = tr * (1.0 - op)
        if march.render_t_threshold > 0:   # 0: no early termination (every marched sample, as render_rays)
            step.go_on &= trans[alive] > march.render_t_threshold
    opacity = 1.0 - trans
    color = color + trans[:, None] * background.expand(n_rays, 3)
    return RenderOutput(color, opacity, depth, total, n_marched=total)


@torch.no_grad()
@inference_precision()   # the MLPs may run in bf16 here (nerf_app/ops/mlp.py: NERF_APP_MLP_PRECISION)
def render_image(field: NerfField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor,
                 background: torch.Tensor, march: MarchSettings, chunk: Optional[int] = None,
                 backend: Optional[str] = "auto", near=None,
                 color_transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 early_stop: bool = True, stats: Optional[dict] = None, fused: Optional[bool] = None):
    """Render ``[H, W, 3]`` rays in tiles of ``chunk`` rays -> ``color [H, W, 3]``, ``depth [H, W]``,
    ``opacity [H, W]``. ``near``: a float or ``[H, W]`` per-ray start distances; ``color_transform``: applied
    to the composited colours (per-image appearance); ``early_stop``: :func:`render_rays_early_stop` (default)
    or every marched sample (:func:`render_rays`); ``stats`` (a dict) receives ``samples`` and ``rays``.
    ``chunk`` None: 8192 rays on a CPU (the live rays' samples and activations stay in cache: measured ~8 %
    faster than 32768 on a 800x600 cup view), 32768 elsewhere.
    ``fused``: early-stop rendering in one C++ pass per tile of rays (:mod:`nerf_app.ops.render_fused`, whose
    definition is :func:`render_rays_early_stop`): None (default) where it can run, True required (a
    :class:`~nerf_app.errors.BackendError` saying why not), False the composed ops."""
    H, W = origins.shape[:2]
    # Camera paths and exports build rays on the CPU while a trained model may live on the GPU: render
    # on the model's device (the ops refuse mixed devices) and hand the images back on the rays' device.
    out_device, device = origins.device, grid.bitfield.device
    o, d = origins.reshape(-1, 3).to(device), dirs.reshape(-1, 3).to(device)
    background = background.to(device)
    if torch.is_tensor(near):
        near = near.to(device)
    if near is not None and not torch.is_tensor(near):
        near = torch.full((o.shape[0],), float(near), device=o.device)
    near = None if near is None else near.reshape(-1).float()
    if early_stop and fused is not False:
        from ..ops.render_fused import unsupported
        why = unsupported(field, grid, device, backend, march)
        if why is None:
            return _render_image_fused(field, grid, o, d, background, march, backend, near, color_transform, stats,
                                       (H, W), out_device)
        if fused:
            from ..errors import BackendError
            raise BackendError(f"render_image: the fused render was asked for, but {why}")
    fn = render_rays_early_stop if early_stop else render_rays
    if chunk is None:
        chunk = 1 << 13 if device.type == "cpu" else 1 << 15
    colors, depths, opac = [], [], []
    total = 0
    for s in range(0, o.shape[0], chunk):
        out = fn(field, grid, o[s:s + chunk], d[s:s + chunk], background, march, backend,
                 None if near is None else near[s:s + chunk])
        c = out.color if color_transform is None else color_transform(out.color)
        colors.append(c)
        depths.append(out.depth)
        opac.append(out.opacity)
        total += out.n_samples
    if stats is not None:
        stats["samples"] = stats.get("samples", 0) + total
        stats["rays"] = stats.get("rays", 0) + o.shape[0]
    return (torch.cat(colors).reshape(H, W, 3).to(out_device), torch.cat(depths).reshape(H, W).to(out_device),
            torch.cat(opac).reshape(H, W).to(out_device))


def _render_image_fused(field, grid, o, d, background, march, backend, near, color_transform, stats, size,
                        out_device):
    """:func:`render_image` through :func:`nerf_app.ops.render_fused.render_rays_fused`: every ray in one call
    (the kernel tiles them itself and balances the tiles over the threads)."""
    from ..ops.render_fused import render_rays_fused
    H, W = size
    t, t_far = _interval(o, d, grid, march, backend, near)
    color, depth, opacity, samples = render_rays_fused(field, grid, o, d, t, t_far, background.reshape(-1, 3)[0]
                                                       if background.numel() == 3 else background, march)
    if color_transform is not None:
        color = color_transform(color)
    if stats is not None:
        stats["samples"] = stats.get("samples", 0) + int(samples.sum())
        stats["rays"] = stats.get("rays", 0) + o.shape[0]
    return (color.reshape(H, W, 3).to(out_device), depth.reshape(H, W).to(out_device),
            opacity.reshape(H, W).to(out_device))
