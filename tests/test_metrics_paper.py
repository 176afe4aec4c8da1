"""Paper metrics: SSIM with the 11x11 Gaussian window, LPIPS from local weights only, masked PSNR/SSIM; masks never sampled."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def test_masked_pixels_are_never_sampled(shared_data):
    from nerf_app.data import load_scene
    scene = load_scene(shared_data / "liberty", downscale=8)
    assert scene.images.mask_paths
    masks = {int(i): scene.images.mask(int(i)) for i in scene.split_indices("train")}
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    assert 0 < kept < total
    sampler = scene.ray_sampler("train")
    assert len(sampler) == kept
    b = sampler.sample(20000)
    hit = [masks[int(i)][int(p[1]), int(p[0])] for i, p in zip(b.image_index.tolist(), b.pixel.tolist())]
    assert all(hit)
    # without the masks the same draw lands on masked pixels (so the check above can fail)
    unmasked = load_scene(shared_data / "liberty", downscale=8, masks=False).ray_sampler("train")
    b = unmasked.sample(2000)
    hit = [masks[int(i)][int(p[1]), int(p[0])] for i, p in zip(b.image_index.tolist(), b.pixel.tolist())]
    assert not all(hit)


def test_masked_metrics_ignore_masked_pixels():
    from nerf_app.metrics import psnr, ssim
    rng = np.random.default_rng(0)
    gt = rng.random((40, 50, 3))
    pred = gt.copy()
    pred[:, :20] = 1 - pred[:, :20]         # wrong where the mask drops pixels
    mask = np.ones((40, 50), bool)
    mask[:, :25] = False
    assert psnr(pred, gt, mask=mask) > 100 and psnr(pred, gt) < 20
    assert ssim(pred, gt, mask=mask) > 0.999 > ssim(pred, gt)


def test_paper_ssim_is_the_gaussian_window():
    from scipy.ndimage import gaussian_filter
    from nerf_app.metrics import ssim
    rng = np.random.default_rng(1)
    a = rng.random((64, 64, 3))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)

    def reference(x, y):  # the mip-NeRF / NeRF evaluation SSIM: 11x11 Gaussian (sigma 1.5), valid region
        out = []
        for ch in range(3):
            f = lambda z: gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")[5:-5, 5:-5]
            mx, my = f(x[..., ch]), f(y[..., ch])
            sxx = f(x[..., ch] ** 2) - mx ** 2
            syy = f(y[..., ch] ** 2) - my ** 2
            sxy = f(x[..., ch] * y[..., ch]) - mx * my
            c1, c2 = 0.01 ** 2, 0.03 ** 2
            out.append((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean())
        return float(np.mean(out))

    assert abs(ssim(a, b) - reference(a, b)) < 1e-6
    assert abs(ssim(a, b, window="uniform7") - ssim(a, b)) > 1e-3   # the old number is a different metric


def test_lpips_uses_local_weights_only(tmp_path, monkeypatch):
    import nerf_app.metrics as metrics
    monkeypatch.setenv("NERF_APP_LPIPS_WEIGHTS", str(tmp_path / "missing.pth"))
    monkeypatch.setattr(metrics, "_LPIPS_NET", None)
    a = np.random.default_rng(0).random((64, 64, 3))
    assert metrics.lpips(a, a) is None
    reason = metrics.lpips_unavailable_reason()
    assert "\n" not in reason and "missing.pth" in reason and "downloaded" in reason
    # a stub with the shapes of AlexNet's features and lpips' linear layers
    g = torch.Generator().manual_seed(0)
    state = {}
    for i, cin, cout, k, _, _ in metrics._ALEX_CONVS:
        state[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.zeros(cout)
    for k, c in enumerate([64, 192, 384, 256, 256]):
        state[f"lin{k}.model.1.weight"] = torch.rand(1, c, 1, 1, generator=g) * 0.1
    stub = tmp_path / "lpips_stub.pth"
    torch.save(state, stub)
    monkeypatch.setenv("NERF_APP_LPIPS_WEIGHTS", str(stub))
    assert metrics.lpips_unavailable_reason() is None
    b = np.clip(a + 0.2 * np.random.default_rng(1).standard_normal(a.shape), 0, 1)
    assert metrics.lpips(a, a) == pytest.approx(0.0, abs=1e-7)
    assert metrics.lpips(a, b) > 1e-4


def test_fit_left_score_right_undoes_a_colour_shift_without_seeing_the_right_half():
    from nerf_app.nerf.evaluate import fit_left_score_right
    rng = np.random.default_rng(11)
    H, W = 37, 50
    ys, xs = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    gt = np.clip(np.stack([xs, ys, 0.5 + 0.3 * np.sin(6 * xs * ys)], -1) + 0.02 * rng.normal(size=(H, W, 3)), 0, 1)
    M = np.array([[0.8, 0.05, 0.0], [0.0, 0.9, 0.05], [0.05, 0.0, 0.85]])
    rendered = gt @ M.T + np.array([0.05, 0.08, 0.0])         # a render whose exposure / white balance is off
    out = fit_left_score_right(rendered, gt)
    assert out["psnr_unfitted"] < 25 and out["psnr"] > 35, out   # measured 23.0 -> 37.3 (the ridge keeps a little)
    # the right half alone decides the score: garbage there stays garbage however good the left half is
    broken = rendered.copy()
    broken[:, W // 2:] = rng.uniform(size=(H, W - W // 2, 3))
    assert fit_left_score_right(broken, gt)["psnr"] < 15
    # a right half masked out entirely has nothing to score: NaN, not an error that stops the eval
    mask = np.ones((H, W), bool)
    mask[:, W // 2:] = False
    assert np.isnan(fit_left_score_right(rendered, gt, mask)["psnr"])
