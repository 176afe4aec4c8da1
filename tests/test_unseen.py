"""Space no training camera saw (nerf_app/nerf/unseen.py): which grid cells count as seen, on synthetic
cameras, and what a render does once the unseen ones are left out."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerf_app.camera_paths.orbit import look_at, pinhole_rays
from nerf_app.nerf import unseen as U
from nerf_app.nerf.occupancy import OccupancyGrid
from nerf_app.nerf.renderer import MarchSettings, render_image

R = 16
W, H, F = 32, 24, 30.0           # the synthetic cameras' image (pixels) and focal length
K = (F, F, W / 2, H / 2)


def full_grid(n_cascades=1):
    g = OccupancyGrid(n_cascades, R)   # every cell occupied until a first update
    return g


def centre_of(grid, cascade, xyz):
    """The cell index holding point ``xyz`` in ``cascade``."""
    p = (np.asarray(xyz, float) - 0.5) / 2.0 ** cascade + 0.5
    i, j, k = (np.clip((p * R).astype(int), 0, R - 1))
    return int(i + R * (j + R * k))


def camera(eye, target=(0.5, 0.5, 0.5)):
    return look_at(eye, target, up=(0.0, 1.0, 0.0))


def test_frustum_near_and_depth_decide_what_is_seen():
    grid = full_grid()
    cam = camera((0.5, 0.5, -0.2))              # looks along +z through the unit cube
    c2w = cam[None]
    seen = U.seen_cells(grid, c2w, [K], [(W, H)])[0]
    on_axis = centre_of(grid, 0, (0.5, 0.5, 0.7))
    aside = centre_of(grid, 0, (0.97, 0.5, 0.03))   # ~64 degrees off the axis: outside a ~56 x 44 degree view
    assert seen[on_axis] and not seen[aside]
    # a near plane in the cube's front half: the front cells are no longer seen, the back ones are
    seen = U.seen_cells(grid, c2w, [K], [(W, H)], near=[0.8])[0]
    assert not seen[centre_of(grid, 0, (0.5, 0.5, 0.2))] and seen[centre_of(grid, 0, (0.5, 0.5, 0.9))]
    # a wall the camera saw 0.7 units away (z = 0.5): what lies well behind it is hidden, what is in front is not
    depth = torch.full((6, 8), 0.7)
    seen = U.seen_cells(grid, c2w, [K], [(W, H)], depth_maps=[depth])[0]
    assert seen[centre_of(grid, 0, (0.5, 0.5, 0.3))] and seen[centre_of(grid, 0, (0.5, 0.5, 0.55))]
    assert not seen[centre_of(grid, 0, (0.5, 0.5, 0.95))]
    # a pixel that saw through (inf) hides nothing along its ray
    depth[:, :] = math.inf
    assert U.seen_cells(grid, c2w, [K], [(W, H)], depth_maps=[depth])[0][centre_of(grid, 0, (0.5, 0.5, 0.95))]


def test_any_one_camera_is_enough_and_outer_cascades_are_tested():
    grid = full_grid(2)
    front, side = camera((0.5, 0.5, -0.3)), camera((3.0, 0.5, 0.5))
    one = U.seen_cells(grid, front[None], [K], [(W, H)])
    both = U.seen_cells(grid, np.stack([front, side]), [K, K], [(W, H)] * 2)
    assert (both >= one).all() and both.sum() > one.sum()
    x = centre_of(grid, 1, (1.45, 0.5, 0.0))      # cascade 1: in the side camera's view, ~70 degrees off the front one
    assert not one[1, x] and both[1, x]
    # only the cells asked about are tested
    ask = torch.zeros_like(both)
    ask[1, x] = True
    only = U.seen_cells(grid, np.stack([front, side]), [K, K], [(W, H)] * 2, cells=ask)
    assert only.sum() == 1 and only[1, x]


def test_hide_unseen_clears_only_unseen_occupied_bits():
    grid = full_grid(2)
    occ = torch.rand(2, R ** 3, generator=torch.Generator().manual_seed(0)) < 0.3
    grid.bitfield.copy_(U.pack_bits(occ))
    assert torch.equal(U.occupied_cells(grid), occ)
    seen = torch.rand(2, R ** 3, generator=torch.Generator().manual_seed(1)) < 0.5
    share = U.hide_unseen(grid, seen)
    assert torch.equal(U.occupied_cells(grid), occ & seen)
    assert share == pytest.approx(float((occ & ~seen).sum()) / float(occ.sum()))


class BlobField:
    """Two fuzzy blobs of density: one at the cube's centre (red), one at ``fog`` (grey)."""

    def __init__(self, fog):
        self.fog = torch.tensor(fog, dtype=torch.float32)

    def density(self, x):
        a = torch.exp(-((x - 0.5) ** 2).sum(-1) / 0.01) * 200.0
        b = torch.exp(-((x - self.fog) ** 2).sum(-1) / 0.004) * 60.0
        h = torch.stack([a, b], -1)
        return a + b, h

    def color(self, d, h):
        red = torch.tensor([0.9, 0.1, 0.1])
        grey = torch.tensor([0.5, 0.5, 0.5])
        w = h[:, :1] / (h.sum(-1, keepdim=True) + 1e-12)
        return w * red + (1 - w) * grey

    def __call__(self, x, d):
        s, h = self.density(x)
        return s, self.color(d, h)


def render(grid, field, c2w, bg=(1.0, 1.0, 1.0)):
    o, d = pinhole_rays(c2w, W, H, 2 * math.degrees(math.atan(0.5 * H / F)))
    o = torch.from_numpy(o).float().reshape(H, W, 3)
    d = torch.from_numpy(d).float().reshape(H, W, 3)
    march = MarchSettings(steps_per_unit_diagonal=256, max_samples=512)
    return render_image(field, grid, o, d, torch.tensor(bg), march)


def test_fog_nobody_saw_is_not_drawn_and_seen_space_is_unchanged():
    """Cameras on one side look at an opaque blob; a fog blob hangs behind it, where each of them looks
    only through the blob (inside their frusta, so the training grid marches it). A novel camera on the far
    side looks back through the fog. With the unseen cells hidden (depth maps rendered from the cameras, as
    NerfTask.hide_unseen does) the novel view shows the blob with no grey fog in front of it; a training
    camera's own view is unchanged (every cell it marches is seen)."""
    torch.manual_seed(0)
    field = BlobField(fog=(0.5, 0.5, 1.05))
    cams = np.stack([camera((0.5 + 1.2 * math.sin(a), 0.5, 0.5 - 1.2 * math.cos(a))) for a in (-0.12, 0.0, 0.12)])
    novel = camera((0.5, 0.5, 1.25))                 # the far side, looking back at the centre through the fog
    grid = OccupancyGrid(2, R)
    grid.mark_visible(cams, [K] * 3, [(W, H)] * 3)
    grid.update(lambda x: field.density(x)[0], warmup=True, dt_min=math.sqrt(3) / 256)
    before_train = render(grid, field, cams[1])
    before_novel = render(grid, field, novel)
    march = MarchSettings(steps_per_unit_diagonal=256, max_samples=512, render_t_threshold=1 - U.OPAQUE)
    maps = []
    for c in cams:
        pix, h, w = U.block_pixels(W, H)
        d = (np.concatenate([(pix - [K[2], K[3]]) / F, np.ones((len(pix), 1))], 1)) @ c[:3, :3].T
        d = torch.from_numpy(d / np.linalg.norm(d, axis=1, keepdims=True)).float().reshape(h, w, 3)
        o = torch.from_numpy(np.broadcast_to(c[:3, 3], d.shape).copy()).float()
        maps.append(U.depth_map(lambda o_, d_, n_: render_image(U.DensityOnly(field), grid, o_, d_,
                                                                torch.zeros(3), march), o, d, None))
        assert torch.isfinite(maps[-1][h // 2, w // 2]) and torch.isinf(maps[-1][0, 0])   # the blob; around it
    seen = U.seen_cells(grid, cams, [K] * 3, [(W, H)] * 3, depth_maps=maps, cells=U.occupied_cells(grid))
    share = U.hide_unseen(grid, seen)
    assert 0 < share < 1
    after_train = render(grid, field, cams[1])
    after_novel = render(grid, field, novel)
    for b, a in zip(before_train, after_train):
        assert torch.allclose(a, b, atol=1e-6)         # the training view: same pixels
    # the novel view's middle: red object, no grey fog in front of it any more
    mid = after_novel[0][H // 2, W // 2]
    assert before_novel[0][H // 2, W // 2][1] > 0.3 > mid[1] and mid[0] > 0.6


def test_unseen_mode_per_scene_kind():
    assert U.unseen_mode("auto", bounded=False) == "background"
    assert U.unseen_mode("auto", bounded=True) == "keep"
    assert U.unseen_mode("tint", bounded=True) == "tint"
    from nerf_app.errors import ConfigError
    with pytest.raises(ConfigError, match="rays.unseen"):
        U.unseen_mode("fog", bounded=False)


def test_a_task_in_training_never_hides_anything():
    """hide_unseen only acts on a run loaded for eval/render/view: the grid training marches is left alone."""
    from nerf_app.nerf.task import NerfTask
    task = object.__new__(NerfTask)       # no load_for_inference: as during training (and its live viewer)
    assert NerfTask.hide_unseen(task) == {"mode": "keep"}


def test_a_bad_setting_is_one_error_when_the_run_is_loaded(monkeypatch):
    """rays.unseen / rays.unseen_tint are checked by load_for_inference, before anything renders."""
    from types import SimpleNamespace
    from nerf_app.errors import ConfigError
    from nerf_app.nerf.task import NerfTask
    from nerf_app.train.task import Task
    monkeypatch.setattr(Task, "load_for_inference", lambda self, checkpoint: None)
    for rays, match in ((SimpleNamespace(unseen="fog", unseen_tint=(1, 0, 1)), "rays.unseen must"),
                        (SimpleNamespace(unseen="tint", unseen_tint=(2.0, 0.0)), "rays.unseen_tint")):
        task = object.__new__(NerfTask)
        task.config = SimpleNamespace(rays=rays, appearance=SimpleNamespace(mode="none"))
        task.scene = SimpleNamespace(bounded=False)
        with pytest.raises(ConfigError, match=match):
            NerfTask.load_for_inference(task, {"model": {"appearance": 0}})
    task.config.rays.unseen_tint = (1.0, 0.5, 0.0)
    NerfTask.load_for_inference(task, {"model": {"appearance": 0}})
    assert task.unseen is None and task._unseen_tint() == (1.0, 0.5, 0.0)
