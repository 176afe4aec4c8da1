"""nerf_app.ops.packed against plain per-ray loops, at awkward sizes (no rays, rays without samples, one sample)."""
import pytest
import torch

from nerf_app.ops import packed


def _random_packing(n_rays, max_count, seed):
    """Counts with empty rays among them, and the ray indices they pack."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_count + 1, (n_rays,), generator=g)
    if n_rays > 2:
        counts[torch.randint(0, n_rays, (n_rays // 3,), generator=g)] = 0
    ray_indices = torch.tensor([r for r in range(n_rays) for _ in range(int(counts[r]))], dtype=torch.int64)
    return counts, ray_indices, g


SIZES = [(0, 3), (1, 1), (1, 0), (3, 1), (7, 5), (37, 13), (200, 1)]


@pytest.mark.parametrize("n_rays,max_count", SIZES)
def test_pack_and_unpack_match_a_loop(n_rays, max_count):
    counts, ray_indices, _ = _random_packing(n_rays, max_count, seed=n_rays * 31 + max_count)
    info = packed.pack_info(ray_indices, n_rays)
    first = 0
    want = []
    for r in range(n_rays):
        want.append([first, int(counts[r])])
        first += int(counts[r])
    assert info.dtype == torch.int64 and info.shape == (n_rays, 2)
    assert info.tolist() == want
    assert torch.equal(packed.pack_counts(counts.int()), info)
    back = packed.unpack_info(info, len(ray_indices))
    assert back.dtype == torch.int64 and torch.equal(back, ray_indices)
    starts = packed.ray_starts(ray_indices)
    assert starts.tolist() == [want[int(r)][0] for r in ray_indices]


@pytest.mark.parametrize("n_rays,max_count", SIZES)
def test_exclusive_sum_and_segment_sum_match_a_loop_values_and_gradients(n_rays, max_count):
    counts, ray_indices, g = _random_packing(n_rays, max_count, seed=n_rays * 17 + max_count)
    S = len(ray_indices)
    x = torch.rand(S, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.rand(S, 3, generator=g, dtype=torch.float64, requires_grad=True)
    excl = packed.exclusive_sum(x, ray_indices)
    seg = packed.segment_sum(v, ray_indices, n_rays)
    # the loop: walk each ray's samples in order
    want_excl, want_seg = [], []
    i = 0
    for r in range(n_rays):
        run = torch.zeros((), dtype=torch.float64)
        total = torch.zeros(3, dtype=torch.float64)
        for _ in range(int(counts[r])):
            want_excl.append(run)
            run = run + x[i]
            total = total + v[i]
            i += 1
        want_seg.append(total)
    want_excl = torch.stack(want_excl) if want_excl else x.new_zeros(0)
    want_seg = torch.stack(want_seg) if want_seg else v.new_zeros(0, 3)
    assert excl.dtype == torch.float64 and excl.shape == (S,)
    assert seg.shape == (n_rays, 3)
    torch.testing.assert_close(excl, want_excl, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(seg, want_seg, rtol=1e-12, atol=1e-12)
    # each ray's first sample: exactly 0, whatever the rays before it add up to
    if S:
        assert (excl[packed.ray_starts(ray_indices) == torch.arange(S)] == 0).all()
        w_out = torch.rand(S, generator=g, dtype=torch.float64)
        w_seg = torch.rand(n_rays, 3, generator=g, dtype=torch.float64)
        got = torch.autograd.grad((excl * w_out).sum() + (seg * w_seg).sum(), (x, v))
        want = torch.autograd.grad((want_excl * w_out).sum() + (want_seg * w_seg).sum(), (x, v),
                                   allow_unused=True, materialize_grads=True)   # one sample a ray: no x in the loop
        torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)
        assert torch.autograd.gradcheck(lambda a: packed.exclusive_sum(a, ray_indices), (x.detach().requires_grad_(),))


def test_exclusive_sum_of_float32_keeps_what_earlier_rays_would_round_away():
    # a large total in the rays before must not cost a later ray's small sums their float32 digits (float64 inside)
    ray_indices = torch.tensor([0, 1, 1, 1])
    x = torch.tensor([1e4, 1e-3, 2e-3, 4e-3], dtype=torch.float32)
    xd = x.double()
    want = torch.stack([xd[0] * 0, xd[1], xd[1] + xd[2]]).float()
    torch.testing.assert_close(packed.exclusive_sum(x, ray_indices)[1:].float(), want, rtol=2e-7, atol=0)
    naive = torch.cumsum(x, 0) - x    # the same in float32 keeps about one digit of them
    assert ((naive[1:] - naive[1]) - want).abs().max() > 1e-5


def test_segment_sum_starts_from_a_copy_of_initial():
    initial = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    out = packed.segment_sum(torch.tensor([0.5, 0.25, 4.0], dtype=torch.float64), torch.tensor([0, 0, 2]), 3, initial)
    assert out.tolist() == [1.75, 2.0, 7.0] and initial.tolist() == [1.0, 2.0, 3.0]


def test_repeated_gathers_with_a_gradient_go_through_take_rows(monkeypatch):
    # issue 31: a ray's running sum read by each of its samples must use take_rows (index-ordered backward);
    # replacing take_rows by a recording wrapper shows exclusive_sum calls it with the repeated index
    seen = []
    real = packed.take_rows

    def spy(x, index):
        seen.append(index.clone())
        return real(x, index)

    monkeypatch.setattr(packed, "take_rows", spy)
    ray_indices = torch.tensor([0, 0, 0, 2, 2])
    packed.exclusive_sum(torch.rand(5, requires_grad=True), ray_indices)
    assert len(seen) == 1 and seen[0].tolist() == [0, 0, 0, 3, 3]


def test_march_in_rounds_without_retirement_is_the_single_march_in_pieces():
    # the round loop shared by march_compacted, render_rays_early_stop and export.depth.median_depth: with no
    # caller retiring a ray, its rounds put together are the one-pass march, and k doubles up to k_max
    from nerf_app.nerf.occupancy import OccupancyGrid
    from nerf_app.nerf.renderer import MarchSettings, _interval, march_in_rounds
    from nerf_app.ops.march import march_rays

    torch.manual_seed(4)
    grid = OccupancyGrid(2, 16)
    n = 29
    o = torch.tensor([0.5, 0.5, -0.3]) + 0.1 * torch.randn(n, 3)
    d = torch.nn.functional.normalize(0.5 + 0.4 * (torch.rand(n, 3) - 0.5) - o, dim=-1)
    march = MarchSettings(256, 1 / 256, 1024, 0.0, 1e-3, round_samples=3, round_samples_max=10)
    t0, t1 = _interval(o, d, grid, march, "cpp")
    full = march_rays(o, d, t0, t1, grid.bitfield, grid.n_cascades, grid.resolution, march.dt_min(),
                      march.dt_max(grid), march.cone_angle, march.max_samples, backend="cpp")
    per_ray = [[] for _ in range(n)]
    ks = []
    for i, step in enumerate(march_in_rounds(o, d, t0.clone(), t1, grid, march, march.round_samples_max, "cpp")):
        counts = step.samples.packed_info[:, 1]
        k = min(3 << i, 10)
        ks.append(int(counts.max()))
        assert ks[-1] <= k and torch.equal(step.go_on, counts >= k)
        for j, r in enumerate(step.alive.tolist()):
            first, c = step.samples.packed_info[j].tolist()
            per_ray[r] += step.samples.t_starts[first:first + c].tolist()
        assert torch.allclose(step.positions, o[step.alive][step.samples.ray_indices]
                              + (0.5 * (step.samples.t_starts + step.samples.t_ends))[:, None]
                              * d[step.alive][step.samples.ray_indices])
    assert ks[:3] == [3, 6, 10] and max(ks) == 10 and len(ks) > 3
    for r in range(n):
        first, c = full.packed_info[r].tolist()
        torch.testing.assert_close(torch.tensor(per_ray[r]), full.t_starts[first:first + c], rtol=0, atol=1e-5)
