"""Training's fused compaction (nerf_app/ops/compact_fused.py, csrc/cpu/compact_fused_cpu.cpp) against its
reference twin, march_compacted composed of the ops: the kept samples, their order and the marched count at
awkward ray counts and settings; the reused hash-grid features against the grid itself; and a whole
differentiable pass (render_rays with compaction) fused and composed: values and every gradient."""
import dataclasses

import pytest
import torch

from nerf_app.errors import BackendError
from nerf_app.nerf.renderer import MarchSettings, _interval, march_compacted, render_rays
from nerf_app.ops.compact_fused import march_compacted_fused, unsupported
from nerf_app.ops.hashgrid import hashgrid_encode, hashgrid_encode_cached

from test_render_fused import _rays, _scene

SETTINGS = [
    dict(),                                                                     # training's defaults (8, 64)
    dict(compact_rounds=(3, 10), cone_angle=1 / 256),                           # odd rounds, growing steps
    dict(compact_rounds=(1, 1), t_threshold=0.3),                               # a sample a round, early stop
    dict(compact_rounds=(5, 7), max_samples=9, steps_per_unit_diagonal=512),    # the sample cap mid-round
    dict(t_threshold=1.5),                                                      # keeps little
]


def _inputs(n, near=0.05, **settings):
    field, grid = _scene()
    o, d = (v.reshape(-1, 3) for v in _rays(n))
    march = dataclasses.replace(MarchSettings(steps_per_unit_diagonal=256), **settings)
    t_near, t_far = _interval(o, d, grid, march, "auto", torch.full((n,), near))
    return field, grid, o, d, t_near, t_far, march


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("n", [1, 33, 1037])
def test_fused_compaction_keeps_what_the_composed_ops_keep(settings, n):
    field, grid, o, d, t_near, t_far, march = _inputs(n, **settings)
    ref, ref_marched = march_compacted(field, grid, o, d, t_near, t_far, march)
    got, marched, features = march_compacted_fused(field, grid, o, d, t_near, t_far, march)
    assert marched == ref_marched
    for name in ("ray_indices", "t_starts", "t_ends", "packed_info"):
        a, b = getattr(ref, name), getattr(got, name)
        assert b.dtype == a.dtype and torch.equal(b, a), name
    if n == 1037 and march.compact_rounds[0] > 1 and march.max_samples > 100:
        # a scene where compaction matters: rays stop mid-round (with one sample a round, all marched are kept)
        assert 0 < got.n_samples < marched
    # the features are the grid's own at the samples' midpoints, as the differentiable pass computes them
    x = o[got.ray_indices] + (0.5 * (got.t_starts + got.t_ends))[:, None] * d[got.ray_indices]
    u = field._unit(x)
    assert torch.equal(features, hashgrid_encode(u, field.encoding.table.detach(), field.encoding.layout))


def test_fused_compaction_is_the_same_on_any_thread_count():
    field, grid, o, d, t_near, t_far, march = _inputs(777)
    threads = torch.get_num_threads()
    try:
        outs = []
        for k in (1, 2, 3):
            torch.set_num_threads(k)
            outs.append(march_compacted_fused(field, grid, o, d, t_near, t_far, march))
    finally:
        torch.set_num_threads(threads)
    for s, m, f in outs[1:]:
        assert m == outs[0][1] and torch.equal(f, outs[0][2]) and torch.equal(s.t_starts, outs[0][0].t_starts)


def test_cached_grid_has_the_grids_gradients():
    field, _ = _scene()
    enc = field.encoding
    g = torch.Generator().manual_seed(3)
    x = torch.rand(301, 3, generator=g, requires_grad=True)
    w = torch.randn(301, enc.n_output_dims, generator=g)
    y = hashgrid_encode(x, enc.table, enc.layout)
    (y * w).sum().backward()
    gx, gt = x.grad.clone(), enc.table.grad.clone()
    x.grad = None
    enc.table.grad = None
    y2 = hashgrid_encode_cached(x, enc.table, enc.layout, y.detach())
    assert torch.equal(y2, y)
    (y2 * w).sum().backward()
    assert torch.equal(x.grad, gx) and torch.equal(enc.table.grad, gt)


@pytest.mark.parametrize("settings", SETTINGS[:3])
def test_training_pass_fused_equals_composed(settings):
    """render_rays(compact=True): colour, opacity, depth and the gradients of every parameter, fused or not."""
    field, grid, o, d, _, _, march = _inputs(513, **settings)
    bg = torch.rand(513, 3, generator=torch.Generator().manual_seed(5))
    target = torch.rand(513, 3, generator=torch.Generator().manual_seed(6))
    results = []
    for fused in (False, True):
        field.zero_grad(set_to_none=True)
        out = render_rays(field, grid, o, d, bg, march, compact=True, fused=fused, near=torch.full((513,), 0.05))
        loss = ((out.color - target) ** 2).mean() + out.sigmas.mean() * 1e-3
        loss.backward()
        results.append((out, {k: p.grad.clone() for k, p in field.named_parameters()}))
    (ref, ref_g), (got, got_g) = results
    assert got.n_samples == ref.n_samples > 513 and got.n_marched == ref.n_marched
    for a, b in ((ref.color, got.color), (ref.opacity, got.opacity), (ref.depth, got.depth),
                 (ref.sigmas, got.sigmas)):
        assert torch.equal(b, a)
    assert ref_g.keys() == got_g.keys() and len(ref_g) >= 3
    for k in ref_g:
        assert torch.equal(got_g[k], ref_g[k]), k
        assert got_g[k].abs().sum() > 0, k


def test_required_fused_compaction_says_why_not():
    field, grid, o, d, _, _, march = _inputs(17)
    bg = torch.zeros(3)
    assert unsupported(field, grid, o.device, "auto", march) is None
    assert "torch backend" in unsupported(field, grid, o.device, "torch", march)
    with pytest.raises(BackendError, match="fused compaction cannot run: the torch backend"):
        render_rays(field, grid, o, d, bg, march, backend="torch", compact=True, fused=True)
    bad = dataclasses.replace(march, compact_rounds=(0, 8))
    assert "compact_rounds" in unsupported(field, grid, o.device, "auto", bad)
