"""Training-pass compaction (nerf_app.ops.compact): the kept samples against a per-ray loop, and a compacted
training render against the uncompacted one — values and gradients — on a real NerfField."""
from __future__ import annotations

import math

import pytest
import torch

from nerf_app.nerf.field import NerfField
from nerf_app.nerf.occupancy import OccupancyGrid
from nerf_app.nerf.renderer import MarchSettings, _interval, march_compacted, render_rays
from nerf_app.ops.march import march_rays
from nerf_app.ops.compact import compact_samples
from nerf_app.ops.march import PackedSamples


def _random_packed(counts, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.tensor(counts, dtype=torch.int64)
    starts = torch.cumsum(counts, 0) - counts
    n = int(counts.sum())
    ray_indices = torch.repeat_interleave(torch.arange(len(counts)), counts)
    dt = torch.rand(n, generator=g) * 0.02 + 1e-3
    t_ends = torch.zeros(n)
    for r in range(len(counts)):   # increasing t within each ray
        s, c = int(starts[r]), int(counts[r])
        t_ends[s:s + c] = 0.1 + torch.cumsum(dt[s:s + c], 0)
    # densities from empty to opaque, with runs of zeros and a few huge ones
    sigmas = torch.rand(n, generator=g) ** 4 * 300
    sigmas[torch.rand(n, generator=g) < 0.2] = 0
    sigmas[torch.rand(n, generator=g) < 0.01] = 1e6
    return sigmas, PackedSamples(ray_indices, t_ends - dt, t_ends, torch.stack([starts, counts], 1))


def _rays_into_box(n, z0, spread):
    """``n`` unit rays from around ``(0.5, 0.5, z0)`` towards points within ``spread`` of the box centre."""
    o = torch.tensor([0.5, 0.5, z0]) + 0.1 * torch.randn(n, 3)
    d = 0.5 + spread * (torch.rand(n, 3) - 0.5) - o
    return o, d / d.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("thr,with_depth0", [(1e-4, False), (1e-2, False), (1e-3, True)])
def test_compact_keeps_exactly_the_prefix_a_loop_keeps(thr, with_depth0):
    counts = [0, 1, 37, 0, 129, 5, 300, 2, 0, 64, 1, 17]
    sigmas, s = _random_packed(counts)
    depth0 = torch.linspace(0, 8, len(counts), dtype=torch.float64) if with_depth0 else None
    kept, index, depth = compact_samples(sigmas, s, thr, depth0)
    want = []
    for r, (start, c) in enumerate(s.packed_info.tolist()):
        tau0 = 0.0 if depth0 is None else float(depth0[r])
        T, tau = math.exp(-tau0), tau0
        for i in range(start, start + c):
            tau += float(sigmas[i]) * float(s.t_ends[i] - s.t_starts[i])
            if T >= thr / 2:
                want.append(i)
            T = math.exp(-tau)
        assert math.isclose(float(depth[r]), tau, rel_tol=1e-9)   # the optical depth after the ray's samples
    assert index.tolist() == want
    assert len(want) < s.n_samples            # something was dropped, and not everything
    assert torch.equal(kept.ray_indices, s.ray_indices[index])
    assert torch.equal(kept.t_starts, s.t_starts[index]) and torch.equal(kept.t_ends, s.t_ends[index])
    # packed again: each ray's slot, its first kept sample and count
    assert kept.n_rays == s.n_rays and int(kept.packed_info[:, 1].sum()) == len(want)
    for r in range(s.n_rays):
        first, c = kept.packed_info[r].tolist()
        assert (kept.ray_indices[first:first + c] == r).all()
        assert c == 0 or (c <= counts[r] and kept.t_starts[first] == s.t_starts[int(s.packed_info[r, 0])])
    # a diverged field's samples are kept from the first non-finite density on (the loss must see them)
    bad = sigmas.clone()
    bad[s.packed_info[4, 0] + 3] = float("nan")
    _, bad_index, _ = compact_samples(bad, s, thr, depth0)
    ray4 = bad_index[s.ray_indices[bad_index] == 4]
    assert len(ray4) == counts[4] and set(index.tolist()) <= set(bad_index.tolist())
    everything, all_index, _ = compact_samples(sigmas, s, 0.0)
    assert everything is s and torch.equal(all_index, torch.arange(s.n_samples))


def test_compacted_training_render_equals_the_full_one_values_and_gradients():
    torch.manual_seed(3)
    # a dense field (density bias +4: rays go opaque within the box) so compaction has samples to drop
    field = NerfField(0.0, 1.0, density_bias=4.0, backend="cpp")
    grid = OccupancyGrid(1, 16)
    n = 173
    o, d = _rays_into_box(n, -0.4, 0.3)
    bg = torch.rand(n, 3)
    target = torch.rand(n, 3)
    march = MarchSettings(512, 0.0, 1024, 0.0, 1e-4)
    outs, grads = [], []
    for compact in (False, True):
        field.zero_grad(set_to_none=True)
        out = render_rays(field, grid, o, d, bg, march, backend="cpp", compact=compact)
        ((out.color - target) ** 2).mean().backward()
        outs.append(out)
        grads.append([p.grad.clone() for p in field.parameters()])
    full, comp = outs
    assert full.n_samples == full.n_marched
    # nothing behind the opaque part was evaluated with gradients, or even marched
    assert comp.n_samples <= comp.n_marched < 0.7 * full.n_samples
    assert torch.allclose(comp.color, full.color, atol=1e-6)
    assert torch.allclose(comp.opacity, full.opacity, atol=1e-6)
    assert torch.allclose(comp.depth, full.depth, atol=1e-5)
    for gf, gc in zip(*grads):
        assert torch.allclose(gc, gf, rtol=1e-4, atol=1e-7 * gf.abs().max().item() + 1e-12)


def test_march_compacted_is_the_single_march_cut_where_compositing_stops():
    torch.manual_seed(5)
    field = NerfField(0.0, 1.0, density_bias=3.0, backend="cpp")
    grid = OccupancyGrid(2, 16)
    o, d = _rays_into_box(211, -0.3, 0.4)
    march = MarchSettings(384, 1 / 256, 1024, 0.0, 1e-3, compact_rounds=(3, 20))
    t0, t1 = _interval(o, d, grid, march, "cpp")
    full = march_rays(o, d, t0, t1, grid.bitfield, grid.n_cascades, grid.resolution, march.dt_min(),
                      march.dt_max(grid), march.cone_angle, march.max_samples)
    got, n_marched = march_compacted(field, grid, o, d, t0, t1, march, "cpp")
    with torch.no_grad():
        mid = 0.5 * (full.t_starts + full.t_ends)
        sigma, _ = field.density(o[full.ray_indices] + mid[:, None] * d[full.ray_indices])
    want, _, _ = compact_samples(sigma, full, march.t_threshold)
    assert torch.equal(got.packed_info, want.packed_info) and torch.equal(got.ray_indices, want.ray_indices)
    assert torch.allclose(got.t_starts, want.t_starts, atol=1e-6) and torch.allclose(got.t_ends, want.t_ends,
                                                                                       atol=1e-6)
    # rays retire behind the opaque part: far fewer samples marched than the single pass marches
    assert got.n_samples <= n_marched < 0.6 * full.n_samples


def test_train_compact_setting_is_checked_and_off_only_on_cuda_by_default(shared_data):
    from nerf_app.errors import ConfigError
    from nerf_app.nerf.config import NerfConfig
    from nerf_app.nerf.task import NerfTask, train_compact_on
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert train_compact_on("auto", cpu) and not train_compact_on("auto", cuda)
    assert train_compact_on("always", cuda) and not train_compact_on("never", cpu)
    cfg = NerfConfig(input=str(shared_data / "lego"))
    cfg.rays.train_compact = "sometimes"
    with pytest.raises(ConfigError, match="rays.train_compact"):
        NerfTask(cfg).build()
