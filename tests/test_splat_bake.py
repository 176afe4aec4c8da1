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


def test_ring_rays_continue_the_views_rays_and_ring_splats_lie_outside_its_frame(tmp_path, nerf_run):
    """The bake's ring (``bake.RING``): ``strip_rays`` over the frame's own rectangle are the view's rays (same
    pixel centres, same pose), the four strips tile exactly the widened frame minus the frame, every splat a
    strip yields projects outside its view's frame (the frame is the view's own, finer bake), and the bake
    counts the ring's candidates among its own."""
    import shutil

    import numpy as np

    from nerf_app.splats import bake
    from nerf_app.train.modes import open_run
    run = tmp_path / "run"
    shutil.copytree(nerf_run[0], run)
    task, _, _ = open_run(run, lock=False)
    i = int(task.scene.split_indices("train")[1])
    cam = task.scene.cameras[i]
    assert not cam.is_distorted
    vo, vd = task.view_rays(i, 3)
    # view_rays samples pixel 0, 3, 6, ... (centres 0.5, 3.5, ...); strip_rays the centres of 3-pixel blocks
    # (1.5, 4.5, ...): the same rays one pixel over
    o1, d1 = bake.strip_rays(task, i, 3, (-1.0, float(cam.width) - 1, -1.0, float(cam.height) - 1))
    assert o1.shape == vo.shape and torch.allclose(o1, vo, atol=1e-5) and torch.allclose(d1, vd, atol=1e-5)
    rects = bake.ring_strips(task, i, 0.25)
    area = sum((x1 - x0) * (y1 - y0) for x0, x1, y0, y1 in rects)
    assert math.isclose(area, (1.5 ** 2 - 1) * cam.width * cam.height, rel_tol=1e-9)
    assert all(x1 <= 0 or x0 >= cam.width or y1 <= 0 or y0 >= cam.height for x0, x1, y0, y1 in rects)
    n_out = 0
    for rect in rects:
        part = bake._view_splats(task, i, 4, (0.0, 0.0, 0.0), task.eval_color_transform(None), rect)
        if part is None:
            continue
        c2w = bake.corrected_c2w(task, i)
        pc = (part["means"].double().numpy() - c2w[:3, 3]) @ c2w[:3, :3]
        u = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx
        v = cam.fy * pc[:, 1] / pc[:, 2] + cam.cy
        assert not np.any((pc[:, 2] > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height))
        n_out += len(u)
    assert n_out > 0
    _, rep = bake.bake_splats(task, max_splats=100_000, views=3, step=4, progress=False, ring=0.25)
    _, rep0 = bake.bake_splats(task, max_splats=100_000, views=3, step=4, progress=False, ring=0.0)
    assert rep["ring_candidates"] > 0 and rep0["ring_candidates"] == 0
    assert rep["candidates"] == rep0["candidates"] + rep["ring_candidates"]
