"""Real captures: early-termination rendering, near planes from sparse points, per-image appearance, camera refinement wiring, defaults per kind of capture."""
from __future__ import annotations

import numpy as np
import torch

from nerf_app.nerf.occupancy import OccupancyGrid
from nerf_app.nerf.renderer import MarchSettings, render_image, render_rays, render_rays_early_stop


class _Blobs(torch.nn.Module):
    """A small analytic field: a dense ball and a faint haze, coloured by position."""

    def forward(self, x, d):
        r = (x - 0.5).norm(dim=-1)
        sigma = torch.where(r < 0.2, 200.0, 0.5)
        return sigma, torch.sigmoid(4 * (x - 0.5))


def _rays(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.5, 0.5, -0.6]) + 0.05 * torch.randn(n, 3, generator=g)
    target = 0.5 + 0.3 * (torch.rand(n, 3, generator=g) - 0.5)
    d = target - o
    return o, d / d.norm(dim=-1, keepdim=True)


def test_early_stop_renderer_equals_full_marching_and_skips_what_is_hidden():
    field, grid = _Blobs(), OccupancyGrid(2, 32)
    o, d = _rays()
    bg = torch.tensor([0.2, 0.3, 0.4])
    march = MarchSettings(256, 1 / 256, 1024, 0.0, 0.0, round_samples=4, round_samples_max=32, render_t_threshold=0.0)
    full = render_rays(field, grid, o, d, bg, march, backend="torch")
    rounds = render_rays_early_stop(field, grid, o, d, bg, march, backend="torch")
    assert rounds.n_samples == full.n_samples            # the same samples, marched in rounds
    assert torch.allclose(rounds.color, full.color, atol=1e-5)
    assert torch.allclose(rounds.depth, full.depth, atol=1e-4)
    march.render_t_threshold = 1e-3
    early = render_rays_early_stop(field, grid, o, d, bg, march, backend="torch")
    assert early.n_samples < 0.6 * full.n_samples         # nothing behind the opaque ball is evaluated
    assert (early.color - full.color).abs().max() < 2e-3
    # render_image tiles and counts
    stats = {}
    img, _, _ = render_image(field, grid, o.reshape(20, 20, 3), d.reshape(20, 20, 3), bg, march, chunk=64,
                             backend="torch", stats=stats)
    assert stats["rays"] == 400 and stats["samples"] == early.n_samples
    assert torch.allclose(img.reshape(-1, 3), early.color, atol=1e-6)


class _SplitBlobs(_Blobs):
    """A dense ball in a much fainter haze (alpha per step ~3e-5) with NerfField's split interface (density,
    then colour from the features); counts colour evaluations."""

    def __init__(self):
        super().__init__()
        self.coloured = 0

    def density(self, x):
        return torch.where((x - 0.5).norm(dim=-1) < 0.2, 200.0, 0.005), x

    def color(self, d, h):
        self.coloured += len(h)
        return torch.sigmoid(4 * (h - 0.5))

    def forward(self, x, d):
        sigma, h = self.density(x)
        return sigma, self.color(d, h)


def test_early_stop_renderer_skips_colour_of_weightless_samples():
    field, grid = _SplitBlobs(), OccupancyGrid(2, 32)
    o, d = _rays(seed=2)
    bg = torch.tensor([0.2, 0.3, 0.4])
    march = MarchSettings(256, 1 / 256, 1024, 0.0, 0.0, round_samples=4, round_samples_max=32,
                          render_t_threshold=1e-3, render_min_weight=0.0)
    every = render_rays_early_stop(field, grid, o, d, bg, march, backend="torch")
    assert field.coloured == every.n_samples
    field.coloured = 0
    march.render_min_weight = 1e-4
    skip = render_rays_early_stop(field, grid, o, d, bg, march, backend="torch")
    assert skip.n_samples == every.n_samples            # the same samples marched and their densities taken ...
    assert field.coloured < 0.5 * every.n_samples       # ... but the faint haze's colours are not evaluated
    # each skipped sample would have added at most render_min_weight x its colour (<= 1)
    bound = 1e-4 * every.n_samples / len(o) * 4
    assert (skip.color - every.color).abs().max() <= bound
    assert torch.equal(skip.opacity, every.opacity) and torch.equal(skip.depth, every.depth)


def test_near_planes_from_sparse_points(shared_data):
    from nerf_app.data import load_scene
    from nerf_app.nerf.near import near_from_points
    scene = load_scene(shared_data / "cup", downscale=4)
    cams = scene.cameras
    near = near_from_points(scene.points3D.xyz, scene.c2w, [(c.fx, c.fy, c.cx, c.cy) for c in cams],
                            [(c.width, c.height) for c in cams])
    assert near.shape == (len(scene),) and (near > 0.05).all() and (near < 0.6).all()
    # no point of the capture lies closer to a camera than its near plane
    w2c = np.linalg.inv(scene.c2w)
    for i in range(0, len(scene), 10):
        z = scene.points3D.xyz @ w2c[i, :3, :3].T + w2c[i, :3, 3]
        dist = np.linalg.norm(z, axis=1)[z[:, 2] > 0]
        assert np.mean(dist < near[i]) < 0.01
    # and the renderer starts there: no sample of a ray lies before its near
    grid = OccupancyGrid(2, 32)
    o, d = _rays(50)
    nr = torch.linspace(0.3, 0.9, 50)
    out = render_rays(_Blobs(), grid, o, d, torch.zeros(3), MarchSettings(256, 0.0, 1024), backend="torch", near=nr)
    s = out.samples
    assert s.n_samples > 0 and (s.t_starts >= nr[s.ray_indices] - 1e-6).all()


def test_appearance_absorbs_a_per_image_colour_shift():
    # one shared colour per ray seen by 4 images, each with its own exposure / white balance; with the
    # per-image affine (the task's apply_affine + its L2 pull) the residual vanishes; without it it cannot
    from nerf_app.nerf.task import apply_affine
    g = torch.Generator().manual_seed(0)
    true = torch.rand(128, 3, generator=g) * 0.6 + 0.2          # 128 points, each seen by all 4 images
    gains = torch.tensor([[1.0, 1.0, 1.0], [1.3, 1.1, 0.9], [0.7, 0.8, 0.75], [1.1, 0.9, 1.2]])
    point, image = torch.arange(512) // 4, torch.arange(512) % 4
    target = true[point] * gains[image]

    def fit(appearance: bool) -> float:
        c = torch.full((128, 3), 0.5, requires_grad=True)
        A = torch.zeros(4, 3, 4, requires_grad=True)
        opt = torch.optim.Adam([c, A] if appearance else [c], lr=0.02)
        for _ in range(600):
            opt.zero_grad()
            pred = apply_affine(c[point], A[image]) if appearance else c[point]
            loss = ((pred - target) ** 2).mean() + 1e-4 * A.pow(2).sum(dim=(1, 2)).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = apply_affine(c[point], A[image]) if appearance else c[point]
            return float(((pred - target) ** 2).mean())

    assert fit(True) < 1e-4 < 1e-3 < fit(False)


def _tiny_task(data, *overrides):
    from nerf_app.nerf.config import NerfConfig
    from nerf_app.nerf.task import NerfTask
    from nerf_app.train.config import load_config
    sets = ["data.downscale=8", "model.log2_hashmap_size=12", "model.n_levels=4", "model.finest_resolution=64",
            "grid.resolution=16", "rays.target_samples=2048", "rays.initial_rays=128", "rays.min_rays=64",
            "rays.steps_per_unit_diagonal=128", *overrides]
    cfg = load_config(NerfConfig, "nerf", overrides=sets)
    cfg.input = str(data)
    torch.manual_seed(0)
    task = NerfTask(cfg, torch.device("cpu"))
    task.build()
    return task


def test_real_capture_defaults_and_camera_refinement_wiring(shared_data):
    # cup (COLMAP, unbounded): appearance on, distortion on, near planes from its points, cameras fixed
    task = _tiny_task(shared_data / "cup")
    assert task.use_appearance and task.distortion_weight > 0 and task.model.pose_delta is None
    assert task.near_images is not None and (task.near_images > 0).all()
    out = task.train_step(0)
    assert "distortion" in out and task.model.appearance.grad.abs().sum() > 0
    # free space in front of every camera is scored, from its own sparse-point depth
    assert task.free_space_weight > 0 and "free_space" in out
    assert torch.allclose(task.free_images, task.near_images * (task.config.rays.free_space_margin /
                                                                  task.config.rays.near_margin))
    # held-out images render with the training images' mean colour map
    test = int(task.scene.split_indices("test")[0])
    c = torch.rand(5, 3)
    mean = task.model.appearance.detach()[torch.from_numpy(task.scene.split_indices("train"))].mean(0)
    assert torch.allclose(task.eval_color_transform(test)(c), c + c @ mean[:, :3].t() + mean[:, 3])
    # camera refinement: frozen before cameras.start of the budget, then pose gradients flow
    task = _tiny_task(shared_data / "cup", "cameras.optimize=true", "cameras.start=0.5")
    task.optimizer.zero_grad()
    task.budget_fraction = 0.0
    task.train_step(0)
    assert task.model.pose_delta.grad.abs().sum() > 0
    task.optimizer.step()
    assert task.model.pose_delta.abs().sum() == 0          # lr 0 while frozen
    task.optimizer.zero_grad()
    task.budget_fraction = 0.9
    task.train_step(1)
    task.optimizer.step()
    assert task.model.pose_delta.abs().sum() > 0
    # a held-out camera takes the mean correction of its nearest training cameras
    with torch.no_grad():
        task.model.pose_delta.normal_()
    corr = task.pose_correction(test)
    train = task.scene.split_indices("train")
    dist = np.linalg.norm(task.scene.c2w[train, :3, 3] - task.scene.c2w[test, :3, 3], axis=1)
    near = train[np.argsort(dist)[:3]]
    assert torch.allclose(corr[0], task.model.pose_delta.detach()[near].mean(0))


def test_objects_keep_their_defaults(shared_data):
    task = _tiny_task(shared_data / "lego")
    assert not task.use_appearance and task.distortion_weight == 0 and task.near_images is None
    assert task.free_space_weight == 0


def test_free_space_loss_scores_only_the_space_before_free():
    from nerf_app.nerf.near import free_space_loss

    centre = torch.tensor([0.5, 0.5, 0.3], requires_grad=True)

    def density(x):  # a fog ball of density 50 around ``centre``
        return 50.0 * torch.exp(-((x - centre) ** 2).sum(-1) / 0.01)

    o, d = _rays(300, seed=4)          # from z ~ -0.6 towards the middle of the box: they cross the ball
    torch.manual_seed(0)
    before = free_space_loss(density, o, d, torch.full((300,), 1.2), 0.0, 1.0, samples=8)
    assert before > 0.05
    before.backward()
    assert centre.grad.abs().sum() > 0          # the penalty moves the fog
    # the ball lies beyond every ray's free distance: nothing to penalise (samples never reach it)
    far = free_space_loss(density, o, d, torch.full((300,), 0.5), 0.0, 1.0, samples=8)
    assert far.item() < 1e-6
    # rays with free = 0 (a camera without enough points) and points outside the box count as empty
    assert free_space_loss(density, o, d, torch.zeros(300), 0.0, 1.0).item() == 0.0
    # Monte Carlo estimate of the mean segment opacity: with one segment per ray and a constant density,
    # exactly 1 - exp(-sigma * free) for the rays whose sample is inside the box
    const = free_space_loss(lambda x: torch.full((x.shape[0],), 2.0), o, d, torch.full((300,), 1.2), -5.0, 5.0,
                            samples=1)
    assert abs(const.item() - (1 - np.exp(-2.0 * 1.2))) < 1e-6
