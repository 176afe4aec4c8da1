"""The mip-NeRF 360 distortion loss on packed samples: values and gradients against the O(n^2) definition."""
from __future__ import annotations

import torch

from nerf_app.ops import _reference
from nerf_app.ops.distortion import distortion, distortion_reference, packed_weights


def _packed(n_rays=7, seed=0, empty_ray=3):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 9, (n_rays,), generator=g)
    counts[empty_ray] = 0
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts)
    steps = torch.rand(int(counts.sum()), generator=g, dtype=torch.float64) * 0.1 + 0.01
    starts, ends = [], []
    k = 0
    for c in counts.tolist():  # increasing, gapped intervals per ray
        t = 0.2
        for _ in range(c):
            gap = float(torch.rand((), generator=g)) * 0.05
            starts.append(t + gap)
            ends.append(t + gap + float(steps[k]))
            t = ends[-1]
            k += 1
    return (ray_indices, torch.tensor(starts, dtype=torch.float64), torch.tensor(ends, dtype=torch.float64), n_rays, g)


def test_distortion_matches_definition_values_and_gradients():
    ray_indices, t0, t1, n, g = _packed()
    w = torch.rand(len(t0), generator=g, dtype=torch.float64).requires_grad_(True)
    fast = distortion(w, t0, t1, ray_indices, n)
    ref = distortion_reference(w, t0, t1, ray_indices, n)
    assert torch.allclose(fast, ref, rtol=1e-10, atol=1e-12) and fast[3] == 0
    up = torch.rand(n, generator=g, dtype=torch.float64)
    (gf,) = torch.autograd.grad((fast * up).sum(), w)
    (gr,) = torch.autograd.grad((ref * up).sum(), w)
    assert torch.allclose(gf, gr, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: distortion(x, t0, t1, ray_indices, n), (w,))


def test_distortion_through_densities_matches_reference_weights():
    # the differentiable weights equal the renderer's, and d(loss)/d(sigma) matches the definition's
    ray_indices, t0, t1, n, g = _packed(seed=1)
    sigma = (torch.rand(len(t0), generator=g, dtype=torch.float64) * 20).requires_grad_(True)
    w = packed_weights(sigma, t0, t1, ray_indices, n)
    w_ref, *_ = _reference.volume_render(sigma, torch.zeros(len(t0), 3, dtype=torch.float64), t0, t1, ray_indices,
                                         n, 0.0)
    assert torch.allclose(w, w_ref, atol=1e-12)
    (g1,) = torch.autograd.grad(distortion(w, t0, t1, ray_indices, n).sum(), sigma)
    w2 = packed_weights(sigma, t0, t1, ray_indices, n)
    (g2,) = torch.autograd.grad(distortion_reference(w2, t0, t1, ray_indices, n).sum(), sigma)
    assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-12) and g1.abs().sum() > 0


def test_distortion_prefers_one_surface_to_fog():
    t0 = torch.linspace(0, 0.9, 10, dtype=torch.float64)
    t1 = t0 + 0.1
    ri = torch.zeros(10, dtype=torch.long)
    fog = torch.full((10,), 0.09, dtype=torch.float64)
    surface = torch.zeros(10, dtype=torch.float64)
    surface[5] = 0.9
    assert distortion(surface, t0, t1, ri, 1) < 0.2 * distortion(fog, t0, t1, ri, 1)
