"""The fused CPU render (nerf_app/ops/render_fused.py, csrc/cpu/render_fused_cpu.cpp) against its reference
twin, render_rays_early_stop composed of the ops: random small fields, awkward ray counts, every setting that
changes which samples are marched, coloured or retired."""
import dataclasses

import pytest
import torch

from nerf_app.encodings.factory import EncodingSettings
from nerf_app.errors import BackendError
from nerf_app.nerf.field import NerfField
from nerf_app.nerf.occupancy import OccupancyGrid
from nerf_app.nerf.renderer import MarchSettings, render_image
from nerf_app.ops import mlp as mlp_ops
from nerf_app.ops.render_fused import unsupported


def _scene(seed=0, n_cascades=2, sh_degree=4, smooth=False, lo=None, hi=None):
    """A field whose density mixes empty, foggy and opaque space, and a grid with holes in it."""
    torch.manual_seed(seed)   # the MLPs' initialisation
    g = torch.Generator().manual_seed(seed)
    grid = OccupancyGrid(n_cascades, 16)
    bits = torch.randint(0, 256, grid.bitfield.shape, generator=g, dtype=torch.int64)
    grid.bitfield.copy_((bits | torch.randint(0, 256, bits.shape, generator=g)).to(torch.uint8))  # ~3/4 occupied
    glo, ghi = grid.bound
    field = NerfField(glo if lo is None else lo, ghi if hi is None else hi,
                      EncodingSettings(n_levels=5, n_features_per_level=2, log2_hashmap_size=9, base_resolution=3,
                                       finest_resolution=40),
                      geo_features=7, density_width=24, density_layers=1, color_width=20, color_layers=2,
                      sh_degree=sh_degree, density_bias=-1.0)
    if smooth:
        field.encoding.interpolation = "smoothstep"
    with torch.no_grad():
        field.encoding.table.uniform_(-1.0, 1.0, generator=g)
        for w in list(field.density_net.weights) + list(field.color_net.weights):
            w.mul_(2.0)
    return field, grid


def _rays(n, seed=1, n_cascades=2):
    g = torch.Generator().manual_seed(seed)
    half = 0.5 * 2 ** (n_cascades - 1)
    # cameras around the box (some inside it), looking roughly at its centre; a few rays miss it entirely
    o = 0.5 + (half + 0.4) * torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    o[: n // 7] = 0.5 + 0.3 * (torch.rand(n // 7, 3, generator=g) - 0.5)
    target = 0.5 + half * 1.6 * (torch.rand(n, 3, generator=g) - 0.5)
    d = torch.nn.functional.normalize(target - o, dim=-1)
    d[-5:] = torch.nn.functional.normalize(o[-5:] - 0.5, dim=-1)   # looking away from the box
    return o.reshape(1, n, 3), d.reshape(1, n, 3)


def _both(field, grid, o, d, march, bg=(0.2, 0.5, 0.9), **kw):
    bg = torch.tensor(bg)
    s_ref, s_fused = {}, {}
    ref = render_image(field, grid, o, d, bg, march, fused=False, chunk=333, stats=s_ref, **kw)
    got = render_image(field, grid, o, d, bg, march, fused=True, stats=s_fused, **kw)
    return ref, got, s_ref, s_fused


SETTINGS = [
    dict(),                                                                    # the defaults
    dict(round_samples=3, round_samples_max=10, cone_angle=1 / 256),          # odd rounds, growing steps
    dict(render_min_weight=0.0, steps_per_unit_diagonal=128),                 # colour for every sample
    dict(render_t_threshold=0.0, round_samples=1, round_samples_max=1),       # no early stop, one sample a round
    dict(render_t_threshold=0.3, render_min_weight=1e-2, round_samples=5, round_samples_max=5),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_fused_matches_the_composed_ops(settings):
    field, grid = _scene()
    o, d = _rays(1037)
    march = dataclasses.replace(MarchSettings(steps_per_unit_diagonal=256), **settings)
    ref, got, s_ref, s_fused = _both(field, grid, o, d, march, near=0.05)
    assert s_fused["samples"] == s_ref["samples"] > 1037
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=2e-6)
    assert 0.05 < float(ref[2].mean()) < 0.95     # a test scene with both empty and opaque rays


@pytest.mark.parametrize("seed,sh,smooth,cascades", [(3, 1, False, 1), (5, 2, True, 3), (7, 3, False, 2)])
def test_fused_matches_on_other_fields(seed, sh, smooth, cascades):
    field, grid = _scene(seed, cascades, sh, smooth, lo=-0.3, hi=1.7)   # a field box other than the grid's
    o, d = _rays(613, seed + 1, cascades)
    near = 0.02 + 0.3 * torch.rand(1, 613, generator=torch.Generator().manual_seed(seed))
    march = MarchSettings(steps_per_unit_diagonal=200, cone_angle=1 / 128, round_samples=4, round_samples_max=12)
    ref, got, s_ref, s_fused = _both(field, grid, o, d, march, near=near,
                                     color_transform=lambda c: c * torch.tensor([0.9, 1.1, 1.0]) + 0.01)
    assert s_fused["samples"] == s_ref["samples"]
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=2e-6)


def test_rays_that_march_nothing_get_the_background_exactly():
    field, grid = _scene()
    o, d = _rays(64)
    grid.bitfield.zero_()
    color, depth, opacity = render_image(field, grid, o, d, torch.tensor([0.25, 0.5, 0.75]),
                                         MarchSettings(256), fused=True)
    assert torch.equal(color, torch.tensor([0.25, 0.5, 0.75]).expand_as(color))
    assert not depth.any() and not opacity.any()


def test_fused_gives_the_same_bits_on_one_and_two_threads():
    field, grid = _scene(11)
    o, d = _rays(2111, 12)
    march = MarchSettings(256, cone_angle=1 / 256)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = render_image(field, grid, o, d, torch.ones(3), march, fused=True)
        torch.set_num_threads(2)
        two = render_image(field, grid, o, d, torch.ones(3), march, fused=True)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


@pytest.mark.skipif(not mlp_ops.bf16_supported(), reason="this CPU has no AVX-512 BF16")
def test_fused_bf16_is_within_the_bf16_bounds(monkeypatch):
    field, grid = _scene(13)
    o, d = _rays(777, 14)
    march = MarchSettings(256)
    ref = render_image(field, grid, o, d, torch.zeros(3), march, fused=False)
    monkeypatch.setenv(mlp_ops.PRECISION_ENV, "bf16")
    ref16 = render_image(field, grid, o, d, torch.zeros(3), march, fused=False)
    got16 = render_image(field, grid, o, d, torch.zeros(3), march, fused=True)
    err_ref, err_got = (ref16[0] - ref[0]).abs().max(), (got16[0] - ref[0]).abs().max()
    assert 0 < err_got < 0.1 and err_got < 3 * err_ref + 1e-3   # rounding like the composed bf16 path


def test_what_the_fused_render_does_not_take():
    field, grid = _scene()
    assert "torch backend" in unsupported(field, grid, "cpu", "torch")
    assert "CPU only" in unsupported(field, grid, "meta")
    field.color_net.backend = "torch"
    assert "torch backend" in unsupported(field, grid, "cpu")
    field.color_net.backend = "auto"

    class Tinted(NerfField):
        def color(self, d, h):
            return super().color(d, h) * 0.5
    assert "not a plain NerfField" in unsupported(Tinted(), grid, "cpu")
    o, d = _rays(50)
    with pytest.raises(BackendError, match="torch backend"):
        render_image(field, grid, o, d, torch.zeros(3), MarchSettings(256), backend="torch", fused=True)
    # the default falls back to the composed ops, which the torch backend runs
    got = render_image(field, grid, o, d, torch.zeros(3), MarchSettings(256), backend="torch")
    ref = render_image(field, grid, o, d, torch.zeros(3), MarchSettings(256), fused=True)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-4, atol=1e-5)
