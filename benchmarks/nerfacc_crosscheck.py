"""Cross-check of our marching and compositing against nerfacc's (CUDA only), on the same inputs.

    python benchmarks/nerfacc_crosscheck.py [--rays 4096]

Prints one JSON line per comparison. Compositing must agree to float32 rounding (same formula).
Marching is compared where the two step rules coincide — a fully occupied single-level grid, constant
steps (cone_angle 0): the same t lattice from the same start — and, with empty-space skipping, by how
many of our samples nerfacc also produces (the skip rules differ: nerfacc jumps to the next cell
boundary, ours advances whole steps to keep the lattice). nerfacc is optional and JIT-builds its
kernels on first use; nothing else depends on this script.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402

from nerf_app.ops.march import march_rays  # noqa: E402
from nerf_app.ops.ray_aabb import ray_aabb  # noqa: E402
from nerf_app.ops.volume_render import volume_render  # noqa: E402


def compositing(nerfacc, n_rays: int, gen: torch.Generator) -> dict:
    counts = torch.randint(0, 64, (n_rays,), generator=gen)
    n = int(counts.sum())
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts).cuda()
    dt = (torch.rand(n, generator=gen) * 0.02 + 0.002)
    starts = torch.cumsum(counts, 0) - counts
    t0 = torch.cumsum(dt, 0) - dt
    t0 = (t0 - t0[starts][torch.repeat_interleave(torch.arange(n_rays), counts)] + 0.1).cuda()
    t1 = t0 + dt.cuda()
    sigmas = (torch.rand(n, generator=gen) * 50).cuda()
    rgbs = torch.rand(n, 3, generator=gen).cuda()
    from nerf_app.ops.march import PackedSamples
    samples = PackedSamples(ray_indices, t0, t1, torch.stack([starts, counts], 1).cuda())
    w, color, opacity, depth = volume_render(sigmas, rgbs, samples, 0.0, backend="cuda")
    w_ref, _, _ = nerfacc.render_weight_from_density(t0, t1, sigmas, ray_indices=ray_indices, n_rays=n_rays)
    color_ref = nerfacc.accumulate_along_rays(w_ref, rgbs, ray_indices=ray_indices, n_rays=n_rays)
    return {"check": "compositing", "samples": n, "max_abs_weight_diff": (w - w_ref).abs().max().item(),
            "max_abs_color_diff": (color - color_ref).abs().max().item()}


def marching(nerfacc, n_rays: int, gen: torch.Generator, fill: float) -> dict:
    res = 64
    occupied = torch.rand(res, res, res, generator=gen) < fill
    # ours: bit x + R*(y + R*z); nerfacc binaries[level, x, y, z]
    flat = occupied.permute(2, 1, 0).reshape(-1)
    bitfield = (flat.reshape(-1, 8).long() * (2 ** torch.arange(8))).sum(1).to(torch.uint8).cuda()
    o = (torch.rand(n_rays, 3, generator=gen) * 3 - 1).cuda()
    d = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=gen), dim=-1).cuda()
    tn, tf = ray_aabb(o, d, 0.0, 1.0, backend="cuda")
    tn = tn.clamp(min=0.0)
    tf = torch.where(tn < tf, tf, tn)
    step = 3 ** 0.5 / 256
    ours = march_rays(o, d, tn, tf, bitfield, 1, res, step, step, 0.0, 100000, backend="cuda")
    est = nerfacc.OccGridEstimator(roi_aabb=[0, 0, 0, 1, 1, 1], resolution=res, levels=1).cuda()
    est.binaries = occupied[None].cuda()
    ray_indices, t_starts, t_ends = est.sampling(o, d, near_plane=0.0, render_step_size=step, t_min=tn, t_max=tf,
                                                 cone_angle=0.0, early_stop_eps=0.0, alpha_thre=0.0)
    key = lambda r, t: set(zip(r.tolist(), [round(v, 4) for v in t.tolist()]))
    a, b = key(ours.ray_indices, ours.t_starts), key(ray_indices, t_starts)
    return {"check": "marching", "fill": fill, "ours": ours.n_samples, "nerfacc": int(t_starts.shape[0]),
            "shared": len(a & b), "ours_also_in_nerfacc": round(len(a & b) / max(1, len(a)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rays", type=int, default=4096)
    args = parser.parse_args()
    try:
        import nerfacc
    except Exception as exc:  # optional
        emit({"check": "nerfacc", "available": False, "error": repr(exc)})
        return
    gen = torch.Generator().manual_seed(0)
    emit({"check": "nerfacc", "available": True, "version": getattr(nerfacc, "__version__", "?")})
    for fn, kw in ((compositing, {}), (marching, {"fill": 1.0}), (marching, {"fill": 0.3})):
        try:
            emit(fn(nerfacc, args.rays, gen, **kw))
        except Exception as exc:  # report, never fail the GPU check on nerfacc's API
            emit({"check": fn.__name__, **kw, "error": repr(exc)[:500]})


if __name__ == "__main__":
    main()
