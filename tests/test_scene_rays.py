"""Rays and normalisation: rays pass exactly through projected points, the sampler returns the right
pixels, and the normalisation transform round-trips to capture coordinates."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nerf_app.data import load_scene
from nerf_app.data.transforms import GL_TO_CV

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # never skipped: CI has it


@pytest.mark.parametrize("scene", ["fox", "liberty", "cup"])
def test_rays_pass_through_the_points_they_image(scene):
    s = load_scene(DATA / scene, check_images=False)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(s), 2000)
    # random points in front of random cameras, projected with the camera model...
    cams = [s.cameras[i] for i in idx]
    pix = np.stack([[rng.uniform(0, c.width), rng.uniform(0, c.height)] for c in cams])
    depth = rng.uniform(0.2, 3.0, (2000, 1))
    o, d = s.rays_at(idx, pix)
    points = o + d * depth
    w2c = np.linalg.inv(s.c2w[idx])
    X = np.einsum("bij,bj->bi", w2c[:, :3, :3], points) + w2c[:, :3, 3]
    back = np.stack([c.project(x[None])[0] for c, x in zip(cams, X)])
    # ...land back on the pixel the ray came from (distortion undone exactly)
    assert np.abs(back - pix).max() < 1e-6
    assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-12)


def test_whole_image_rays_and_pixel_centres():
    s = load_scene(DATA / "lego", check_images=False)
    o, d = s.rays(0)
    assert o.shape == d.shape == (400, 400, 3)
    # pixel centres at +0.5: the four central rays are symmetric about the optical axis
    axis = s.c2w[0, :3, 2]
    cos = d[199:201, 199:201] @ axis
    assert np.allclose(cos, cos[0, 0], atol=1e-12)


def test_normalisation_round_trips_and_keeps_capture_poses():
    s = load_scene(DATA / "fox", check_images=False)
    n = s.normalization
    x = np.random.default_rng(1).normal(size=(100, 3))
    assert np.allclose(n.to_capture(n.to_normalized(x)), x, atol=1e-12)
    assert np.allclose(n.inverse_matrix @ n.matrix, np.eye(4), atol=1e-12)
    raw = json.loads((DATA / "fox" / "transforms.json").read_text())["frames"]
    by_name = {f["file_path"]: np.array(f["transform_matrix"]) @ GL_TO_CV for f in raw}
    for name, c2w in zip(s.names, s.c2w_capture):
        assert np.allclose(c2w, by_name[name], atol=1e-12)
    assert s.c2w.dtype == np.float64
    # every camera lies inside the cascades' aabb; the unit cube holds the region of interest
    centres = s.c2w[:, :3, 3]
    assert np.all((centres > s.aabb[0]) & (centres < s.aabb[1]))


@pytest.mark.parametrize("scene", ["cup", "king_statue/dense/0", "liberty"])
def test_sparse_points_sit_inside_the_cascades(scene):
    s = load_scene(DATA / scene, check_images=False)
    p = s.points3D.xyz
    inside = np.all((p > s.aabb[0]) & (p < s.aabb[1]), axis=1)
    assert inside.mean() > 0.98
    in_unit = np.all((p > 0) & (p < 1), axis=1)
    assert in_unit.mean() > 0.3  # the unit cube is where the content is


def test_sampler_returns_the_pixels_it_names():
    s = load_scene(DATA / "lego", check_images=False)
    sampler = s.ray_sampler("val", background="random", seed=3)
    b = sampler.sample(4096)
    assert b.rgb.shape == (4096, 3) and b.rgb.dtype == torch.float32
    assert set(b.image_index.unique().tolist()) <= set(s.splits["val"].tolist())
    o, d = s.rays_at(b.image_index.numpy(), b.pixel.numpy() + 0.5)
    assert np.abs(d - b.directions.double().numpy()).max() < 1e-6
    for k in range(0, 4096, 512):
        i, (x, y) = int(b.image_index[k]), b.pixel[k].tolist()
        rgba = s.images.load(i)[y, x] / 255.0
        expect = rgba[:3] * rgba[3] + b.background[k].numpy() * (1 - rgba[3])
        assert np.allclose(b.rgb[k].numpy(), expect, atol=1e-6)
    keep = s.ray_sampler("val", background="keep").sample(16)
    assert keep.rgb.shape == (16, 4) and keep.background is None


def test_sampler_covers_images_uniformly_per_pixel_with_exact_distorted_rays():
    s = load_scene(DATA / "fox", downscale=8, check_images=False)
    sampler = s.ray_sampler("train", jitter=True)
    b = sampler.sample(20000)
    counts = np.bincount(b.image_index.numpy(), minlength=len(s))[s.splits["train"]]
    assert counts.min() > 0.6 * counts.mean()  # equal-size images get equal shares
    assert torch.allclose(b.directions.norm(dim=-1), torch.ones(20000), atol=1e-6)


def test_whole_image_rays_are_world_rays_bit_for_bit_and_reuse_the_camera():
    """Scene.rays keeps the camera-frame directions of recent shared cameras (a shared distorted camera's
    Newton undistortion is as long as a render): the rays stay world_rays' for every pixel, bit for bit, a
    second view of the same camera reuses the directions, and a camera of one image only is not kept."""
    from types import SimpleNamespace

    from nerf_app.data.cameras import Camera
    from nerf_app.data.rays import pixel_grid, world_rays
    from nerf_app.data.scene import GRID_DIRECTION_CACHE, Scene

    W, H = 37, 23
    shared = Camera("OPENCV", W, H, [30.0, 32.0, 18.0, 11.0, -0.08, 0.02, 0.001, -0.002])
    other = Camera("OPENCV", W, H, [30.0, 32.0, 18.0, 11.0, -0.07, 0.02, 0.001, -0.002])
    cams = [shared, shared, other, Camera("SIMPLE_RADIAL", W, H, [28.0, 18.5, 11.5, 0.05])]
    rng = np.random.default_rng(3)
    c2w = np.tile(np.eye(4), (len(cams), 1, 1))
    for k in range(len(cams)):
        c2w[k, :3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        c2w[k, :3, 3] = rng.uniform(-1, 1, 3)
    scene = SimpleNamespace(cameras=cams, c2w=c2w)
    scene._grid_directions = lambda cam: Scene._grid_directions(scene, cam)
    grid = pixel_grid(W, H).reshape(-1, 2)
    for i in (0, 1, 2, 3, 0):
        o, d = Scene.rays(scene, i)
        o_ref, d_ref = world_rays(c2w, cams, np.full(len(grid), i), grid)
        assert o.shape == d.shape == (H, W, 3)
        assert np.array_equal(d.reshape(-1, 3), d_ref) and np.array_equal(o.reshape(-1, 3), o_ref)
    # only the shared camera is kept: a camera of one image never comes back
    cache = scene._grid_direction_cache
    assert len(cache) == 1 <= GRID_DIRECTION_CACHE
    first = Scene._grid_directions(scene, shared)
    assert Scene._grid_directions(scene, cams[1]) is first and not first.flags.writeable
    assert Scene._grid_directions(scene, other) is not first and len(cache) == 1
