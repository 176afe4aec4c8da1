"""The bake's depth-edge test (issue 27): splats are not placed on silhouette samples, whose depth lies between
the object and what is behind it (on cup10 those 'flying' splats hid the cup from the held-out views)."""
import math

import torch

from nerf_app.splats.bake import EDGE, depth_edges


def test_an_oblique_plane_has_no_depth_edge():
    # depth growing steeply but linearly across the image (an oblique plane's depth per sample, to first order)
    v, u = torch.meshgrid(torch.arange(30.0), torch.arange(40.0), indexing="ij")
    assert not depth_edges(5.0 + 0.3 * u - 0.1 * v).any()
    # the same plane with a kink of 10 % of the depth between two samples (a corner of a room) is an edge there
    t = 2.0 + 0.3 * u
    t[:, 20:] += 0.3 * (u[:, 20:] - 19)
    e = depth_edges(t)
    assert e[:, 19].all() and not e[:, :19].any() and not e[:, 20:].any()


def test_a_depth_step_marks_the_samples_beside_it_only():
    t = torch.full((6, 9), 1.0)
    t[:, 5:] = 3.0                      # a cup at depth 1 in front of a wall at depth 3, edge between columns 4, 5
    e = depth_edges(t)
    assert e[:, 4].all() and e[:, 5].all()
    assert not e[:, :4].any() and not e[:, 6:].any()
    # a small step (a rough surface) within EDGE x depth is no edge
    t2 = torch.full((5, 5), 1.0)
    t2[:, 3:] += 0.25 * EDGE
    assert not depth_edges(t2).any()


def test_non_finite_depths_are_edges():
    t = torch.full((4, 4), 2.0)
    t[1, 1] = math.inf
    t[2, 2] = math.nan
    e = depth_edges(t)
    assert e[1, 1] and e[2, 2]


def test_bake_step_follows_the_photo_size():
    """200 bake samples along the training views' longer side: cup's 800x600 photos step 4, lego's 400x400
    step 2 (measured best, docs/splats.md), small images step 1; held-out views do not count."""
    from types import SimpleNamespace

    import numpy as np

    from nerf_app.splats.export import bake_step

    def task(sizes, train):
        cams = [SimpleNamespace(width=w, height=h) for w, h in sizes]
        scene = SimpleNamespace(cameras=cams, split_indices=lambda split: np.asarray(train))
        return SimpleNamespace(scene=scene)

    assert bake_step(task([(800, 600)] * 3, [0, 1, 2])) == 4
    assert bake_step(task([(400, 400)] * 2, [0, 1])) == 2
    assert bake_step(task([(90, 60)], [0])) == 1
    assert bake_step(task([(400, 300), (1920, 1080)], [0])) == 2   # view 1 is held out
    assert bake_step(task([(1920, 1080)], [0]), samples=400) == 5


def test_fill_holes_keeps_only_candidates_where_the_base_has_none():
    """A plane of base samples 0.01 apart with a square hole [0.4, 0.6]^2: of a denser set of extra samples
    (spacing 0.005, reach 2 -> 0.01), exactly those more than 0.01 from every base sample are kept - inside
    the hole, away from its rim."""
    from nerf_app.splats.bake import _fill_holes
    u = torch.arange(0, 1.0001, 0.01)
    gx, gy = torch.meshgrid(u, u, indexing="ij")
    base = torch.stack([gx.flatten(), gy.flatten(), torch.zeros(gx.numel())], 1)
    inside = lambda p, lo, hi: ((p[:, 0] > lo) & (p[:, 0] < hi) & (p[:, 1] > lo) & (p[:, 1] < hi))  # noqa: E731
    base = base[~inside(base, 0.4, 0.6)]
    v = torch.arange(0.0025, 1.0, 0.005)
    hx, hy = torch.meshgrid(v, v, indexing="ij")
    extra = torch.stack([hx.flatten(), hy.flatten(), torch.zeros(hx.numel())], 1)
    keep = _fill_holes({"means": base}, {"means": extra, "spacing": torch.full((len(extra),), 0.005)}, 2.0)
    d = torch.cdist(extra.double(), base.double()).amin(1)
    assert torch.equal(keep, d > 0.01)
    assert bool(keep.any()) and bool(inside(extra[keep], 0.4, 0.6).all())
    assert not bool(inside(extra, 0.42, 0.58)[~keep].any())   # the hole's core is filled entirely
