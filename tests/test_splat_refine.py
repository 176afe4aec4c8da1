"""Refinement's density control (issue 27): the budget holds, nearly transparent splats go, split parents are
replaced by two children, and the optimiser's moments follow the rows they belong to."""
import math

import numpy as np
import torch

from nerf_app.splats.refine import LR, _densify_and_prune


def test_densify_and_prune_budget_and_moments():
    g = torch.Generator().manual_seed(0)
    n = 50
    params = {"means": torch.randn(n, 3, generator=g), "log_scales": torch.randn(n, 3, generator=g) - 3,
              "quats": torch.randn(n, 4, generator=g), "opacity_logits": torch.randn(n, generator=g),
              "sh": torch.randn(n, 4, 3, generator=g)}
    params["opacity_logits"][:5] = -10.0          # pruned
    params["log_scales"][10:15] += 3.0            # the largest: split when their gradient is large
    params = {k: v.requires_grad_() for k, v in params.items()}
    opt = torch.optim.Adam([{"params": [v], "lr": LR.get(k, 1e-3)} for k, v in params.items()], eps=1e-15)
    sum(p.square().sum() for p in params.values()).backward()
    opt.step()
    hook = params["sh"].register_hook(lambda t: t)
    grad = torch.zeros(n)
    grad[10:15] = 1.0        # split (large)
    grad[20:25] = 1.0        # cloned (small)
    grad[0:2] = 1.0          # pruned anyway
    seen = torch.ones(n)

    def factory(new):
        return torch.optim.Adam(list(new.values()), eps=1e-15)

    out, opt2, gacc, seen2, densified, pruned = _densify_and_prune(params, opt, grad, seen, 56, factory, hook,
                                                                   lambda t: t)
    # 5 pruned -> 45 kept; room for 11 more: 5 splits (+1 each) and 6 clones fit in 56 -> 10 candidates, all fit
    assert pruned == 5
    assert densified == 10
    m = out["means"].shape[0]
    assert m == 45 - 5 + 5 + 2 * 5 == 55 and m <= 56
    assert all(v.shape[0] == m for v in out.values()) and gacc.shape[0] == m
    # kept rows keep their Adam moments, new rows start at zero
    st = opt.state[params["means"]]
    kept = torch.ones(n, dtype=torch.bool)
    kept[:5] = False
    kept[10:15] = False
    assert opt2.param_groups[0]["params"][0] is out["means"]   # the optimiser holds the new tensors
    st2 = opt2.state[out["means"]]
    torch.testing.assert_close(st2["exp_avg"][:int(kept.sum())], st["exp_avg"][kept])
    assert float(st2["exp_avg"][int(kept.sum()):].abs().max()) == 0.0
    # children of a split: scales / 1.6, placed symmetrically about the parent
    parents = params["means"][10:15].detach()
    kids = out["means"][-10:].detach()
    torch.testing.assert_close(0.5 * (kids[:5] + kids[5:]), parents)
    torch.testing.assert_close(out["log_scales"][-10:-5].detach(), params["log_scales"][10:15].detach() - math.log(1.6))


def test_densify_respects_a_full_budget():
    n = 20
    params = {"means": torch.randn(n, 3), "log_scales": torch.full((n, 3), -3.0), "quats": torch.randn(n, 4),
              "opacity_logits": torch.ones(n), "sh": torch.randn(n, 1, 3)}
    params = {k: v.requires_grad_() for k, v in params.items()}
    opt = torch.optim.Adam(list(params.values()))
    hook = params["sh"].register_hook(lambda t: t)
    out, *_ , densified, pruned = _densify_and_prune(params, opt, torch.ones(n), torch.ones(n), n,
                                                     lambda new: torch.optim.Adam(list(new.values())),
                                                     hook, lambda t: t)
    assert densified == 0 and pruned == 0 and out["means"].shape[0] == n


def test_refinement_targets_downsample_by_block_means_with_replicated_edges():
    """A 5x7 photo at step 2 -> 3x4: each pixel the mean of its 2x2 block, the last row/column replicated
    to fill the blocks (a [H, W, 3] pad was refused by torch for every photo larger than max_side)."""
    from types import SimpleNamespace

    from nerf_app.splats.refine import _Targets
    photo = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    task = SimpleNamespace(scene=SimpleNamespace(images=SimpleNamespace(rgb=lambda i, background=None: photo)))
    out = _Targets(task, [0], 2, (1.0, 1.0, 1.0))(0).numpy()
    padded = np.pad(photo, ((0, 1), (0, 1), (0, 0)), mode="edge")
    expect = padded.reshape(3, 2, 4, 2, 3).mean((1, 3))
    assert out.shape == (3, 4, 3) and np.allclose(out, expect, atol=1e-6)


def test_block_camera_puts_a_block_centre_at_its_target_pixel_centre():
    """The refinement compares a render with means of step x step blocks: a point seen at the full-resolution
    centre of block (k, j) must land at that block's pixel centre (k + 0.5, j + 0.5) of the render (the
    every-step-th-pixel camera put it (step - 1) / 2 full-resolution pixels off)."""
    from types import SimpleNamespace

    from nerf_app.ops.splat import project_splats
    from nerf_app.splats.refine import block_camera
    cam = SimpleNamespace(fx=300.0, fy=280.0, cx=201.3, cy=149.7, width=402, height=301)
    task = SimpleNamespace(scene=SimpleNamespace(cameras=[cam], c2w=np.eye(4)[None]), pose_correction=lambda i: None)
    step, k, j = 4, 37, 22
    x, y = (k + 0.5) * step, (j + 0.5) * step          # full-resolution pixel coordinates of the block centre
    z = 2.5
    point = torch.tensor([[(x - cam.cx) / cam.fx * z, (y - cam.cy) / cam.fy * z, z]])
    bc = block_camera(task, 0, step)
    assert (bc.width, bc.height) == (101, 76)             # ceil: the targets' padded blocks
    p = project_splats(point, torch.full((1, 3), -3.0), torch.tensor([[1.0, 0, 0, 0]]), torch.zeros(1),
                       torch.zeros(1, 1, 3), bc)
    torch.testing.assert_close(p.mean2d[0], torch.tensor([k + 0.5, j + 0.5]), atol=1e-4, rtol=0)


def test_refinement_by_steps_is_repeatable_and_follows_its_schedule(tmp_path, nerf_run, monkeypatch):
    """``max_steps`` stops the refinement after that many steps whatever the clock says, two refinements of
    the same bake are bit-identical (the schedule follows the steps, not the time), and the learning-rate
    decay (``LR_FINAL``) is applied: decaying the position's rate moves the means less than a constant rate."""
    import shutil

    from nerf_app.splats import refine
    from nerf_app.splats.bake import bake_splats
    from nerf_app.train.modes import open_run
    run = tmp_path / "run"
    shutil.copytree(nerf_run[0], run)
    task, _, _ = open_run(run, lock=False)
    splats, _ = bake_splats(task, max_splats=2000, views=3, step=8, progress=False)
    a, rep = refine.refine_splats(task, splats, 1e9, 2000, max_steps=6, progress=False)
    b, _ = refine.refine_splats(task, splats, 1e9, 2000, max_steps=6, progress=False)
    assert rep["refine_steps"] == 6
    for x, y in zip(a.tensors(), b.tensors()):
        assert torch.equal(x, y)
    monkeypatch.setitem(refine.LR_FINAL, "means", 1e-3)
    c, _ = refine.refine_splats(task, splats, 1e9, 2000, max_steps=6, progress=False)
    moved = lambda s: float((s.means - splats.means).norm(dim=-1).sum())  # noqa: E731
    assert 0 < moved(c) < 0.5 * moved(a)


def test_the_cool_down_lowers_every_rate_linearly_at_the_end_of_the_budget(monkeypatch):
    from nerf_app.splats import refine
    monkeypatch.setattr(refine, "COOL_SHARE", 0.2)
    monkeypatch.setattr(refine, "COOL_FACTOR", 0.1)
    monkeypatch.setitem(refine.LR_FINAL, "means", 0.01)
    for share in (0.0, 0.5, 0.8):   # before the cool-down: LR_FINAL's decay alone
        assert refine.rate_factor("sh", share) == 1.0
        assert math.isclose(refine.rate_factor("means", share), 0.01 ** share)
    assert math.isclose(refine.rate_factor("sh", 0.9), 0.55)          # halfway down from 1 to 0.1
    assert math.isclose(refine.rate_factor("sh", 1.0), 0.1)
    assert math.isclose(refine.rate_factor("means", 1.0), 0.01 * 0.1)
    assert math.isclose(refine.rate_factor("sh", 1.5), 0.1)           # a step past the budget stays at the floor
    monkeypatch.setattr(refine, "COOL_SHARE", 0.0)
    assert refine.rate_factor("sh", 1.0) == 1.0


def test_density_control_stops_after_its_share_of_the_budget(tmp_path, nerf_run, monkeypatch):
    """``DENSIFY_UNTIL``: density control runs every ``densify_every`` steps only while that share of the
    budget is not spent (6 steps, every 2nd: at shares 1/3, 2/3, 1)."""
    import shutil

    from nerf_app.splats import refine
    from nerf_app.splats.bake import bake_splats
    from nerf_app.train.modes import open_run
    run = tmp_path / "run"
    shutil.copytree(nerf_run[0], run)
    task, _, _ = open_run(run, lock=False)
    splats, _ = bake_splats(task, max_splats=2000, views=3, step=8, progress=False)
    rounds = {}
    for until in (1.0, 0.7, 0.4, 0.2):
        monkeypatch.setattr(refine, "DENSIFY_UNTIL", until)
        _, rep = refine.refine_splats(task, splats, 1e9, 2000, max_steps=6, densify_every=2, progress=False)
        rounds[until] = rep["densify_rounds"]
    assert rounds == {1.0: 3, 0.7: 2, 0.4: 1, 0.2: 0}


def test_a_cropped_camera_draws_the_window_of_the_full_render():
    """Refinement on random windows (``refine.CROP``): the window camera's render is the full render's pixels
    in that window, to float rounding (the same splats, the same pixel centres)."""
    from nerf_app.ops.splat import SplatCamera, render_splats
    g = torch.Generator().manual_seed(3)
    n = 200
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 1.5, 1.0]) - torch.tensor([1.0, 0.75, -2.0])
    args = (means, torch.rand(n, 3, generator=g) * 2 - 5.0, torch.randn(n, 4, generator=g),
            torch.randn(n, generator=g), torch.rand(n, 4, 3, generator=g) - 0.5)
    cam = SplatCamera(np.eye(4), 110.0, 105.0, 61.3, 47.9, 123, 97)
    bg = torch.tensor([0.2, 0.3, 0.4])
    full, alpha, _ = render_splats(*args, cam, bg)
    x0, y0, w, h = 37, 21, 50, 33
    part, palpha, _ = render_splats(*args, cam.cropped(x0, y0, w, h), bg)
    assert part.shape == (h, w, 3) and float(alpha[y0:y0 + h, x0:x0 + w].max()) > 0.5
    torch.testing.assert_close(part, full[y0:y0 + h, x0:x0 + w], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(palpha, alpha[y0:y0 + h, x0:x0 + w], atol=2e-5, rtol=1e-4)


def test_the_separable_ssim_window_equals_the_full_window():
    """The refinement's D-SSIM term runs the 11x11 Gaussian as a column then a row pass: the same loss and
    gradient as the 2-D window (to float rounding), on random images with borders (zero padding in both)."""
    import torch.nn.functional as F

    from nerf_app.splats.refine import _ssim_loss

    def full(a, b):
        x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
        g = torch.exp(-0.5 * ((torch.arange(11, dtype=a.dtype) - 5) / 1.5) ** 2)
        g = g / g.sum()
        w = (g[:, None] * g[None, :]).expand(3, 1, 11, 11).contiguous()
        f = lambda t: F.conv2d(t, w, padding=5, groups=3)  # noqa: E731
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        return 1 - (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))).mean()

    g = torch.Generator().manual_seed(5)
    a = torch.rand(23, 37, 3, generator=g, dtype=torch.float64).requires_grad_()
    b = (a.detach() + 0.1 * torch.randn(23, 37, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    sep, ref = _ssim_loss(a, b), full(a, b)
    assert 0.01 < float(ref.detach()) < 0.9
    torch.testing.assert_close(sep, ref, rtol=1e-12, atol=1e-12)
    (ga,) = torch.autograd.grad(sep, a)
    (gr,) = torch.autograd.grad(full(a, b), a)
    torch.testing.assert_close(ga, gr, rtol=1e-9, atol=1e-12)
