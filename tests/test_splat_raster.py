"""The Gaussian-splat rasteriser (issue 27): the C++ kernel against the torch twin, values and gradients of
every splat parameter at awkward sizes; a float64 gradcheck of the twin; determinism; refusals."""
import numpy as np
import pytest
import torch

from nerf_app import backend
from nerf_app.errors import BackendError
from nerf_app.ops import _reference
from nerf_app.ops.splat import SplatCamera, project_splats, rasterize_splats, render_splats

needs_cpp = pytest.mark.skipif(not backend.has_cpp(), reason="the compiled extension is not built")


@pytest.fixture(params=["scalar", "avx2", "avx512"])
def simd(request, monkeypatch):
    """Each of the kernel's per-pixel loops in turn (NERF_APP_SPLAT_SIMD); a loop this CPU lacks is skipped,
    since it cannot run here (the kernel refuses it in one line)."""
    monkeypatch.setenv("NERF_APP_SPLAT_SIMD", request.param)
    try:
        render_splats(*random_splats(1), camera(4, 4), torch.zeros(3), backend="cpp")
    except BackendError as exc:
        if "has no" in str(exc):
            pytest.skip(f"this CPU has no {request.param} (the splat kernel's {request.param} loop cannot run here)")
        raise
    return request.param


def random_splats(n, seed=0, dtype=torch.float32, depth=2.0, spread=(1.6, 1.2, 1.0), scale=(0.02, 0.17), degree=2):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor(spread, dtype=torch.float64)
    means[:, 2] += depth
    ls = torch.log(torch.rand(n, 3, generator=g, dtype=torch.float64) * (scale[1] - scale[0]) + scale[0])
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    op = torch.randn(n, generator=g, dtype=torch.float64) * 2
    sh = torch.randn(n, degree * degree, 3, generator=g, dtype=torch.float64) * 0.3
    return [t.to(dtype) for t in (means, ls, q, op, sh)]


def camera(width=37, height=29, f=30.0):
    return SplatCamera(np.eye(4), f, f * 1.07, width * 0.49, height * 0.45, width, height)


def both(params, cam, bg, weight_seed=3):
    """Image, alpha and every parameter's gradient from the C++ kernel and from the twin."""
    out = {}
    for which in ("cpp", "torch"):
        ps = [t.detach().clone().requires_grad_() for t in params]
        img, alpha, proj = render_splats(*ps, cam, bg, backend=which)
        w = torch.randn(img.shape, generator=torch.Generator().manual_seed(weight_seed))
        (img * w).sum().backward()
        out[which] = (img.detach(), alpha.detach(), [p.grad for p in ps], proj)
    return out


def assert_match(out, atol=2e-5, rtol=2e-4):
    (ic, ac, gc, _), (it, at, gt, _) = out["cpp"], out["torch"]
    torch.testing.assert_close(ic, it, atol=atol, rtol=rtol)
    torch.testing.assert_close(ac, at, atol=atol, rtol=rtol)
    for name, a, b in zip(("means", "log_scales", "quats", "opacity_logits", "sh"), gc, gt):
        scale = float(b.abs().max()) + 1e-6
        torch.testing.assert_close(a, b, atol=1e-4 * scale, rtol=1e-3, msg=lambda m: f"{name}: {m}")


@needs_cpp
@pytest.mark.parametrize("n,width,height,seed", [(1, 17, 13, 0), (7, 16, 16, 1), (60, 37, 29, 2), (200, 50, 33, 3)])
def test_cpp_matches_reference(n, width, height, seed, simd):
    params = random_splats(n, seed)
    cam = camera(width, height)
    out = both(params, cam, torch.tensor([0.2, 0.5, 0.9]))
    assert (out["torch"][3].radius > 0).any()
    assert_match(out)
    assert float(out["torch"][2][0].abs().max()) > 0   # a test that can fail: gradients flow


@needs_cpp
def test_awkward_scenes(simd):
    """Splats behind the camera and on its plane, splats straddling tile corners, empty tiles (a 70x45 image,
    splats only on its left), a splat far outside the image, an opaque stack that stops pixels early."""
    means, ls, q, op, sh = random_splats(40, 5)
    means[:5, 2] = -1.0            # behind
    means[5, 2] = 0.0              # on the camera plane
    means[6:14, 2] = 1.0
    # straddling the corners of 16x16 tiles: (16, 16) and (32, 16) in pixels at z = 1
    f = 30.0
    cam = SplatCamera(np.eye(4), f, f, 35.0, 22.5, 70, 45)
    for k, (u, v) in enumerate([(16, 16), (32, 16), (16, 32), (32, 32), (15.5, 16.5), (48, 16), (16, 0), (0, 16)]):
        means[6 + k, 0] = (u - 35.0) / f
        means[6 + k, 1] = (v - 22.5) / f
    means[14:, 0] = -0.9 * means[14:, 2].abs()     # the rest on the left: tiles on the right stay empty
    means[20, :] = torch.tensor([40.0, 0.0, 2.0])   # far outside the image
    op[21:30] = 6.0                                 # nearly opaque: pixels stop before T < 1e-4
    out = both([means, ls, q, op, sh], cam, torch.tensor([1.0, 1.0, 1.0]))
    proj = out["torch"][3]
    assert (proj.radius[:6] == 0).all()
    right = out["torch"][1][:, 60:]
    assert float(right.abs().max()) == 0.0          # empty tiles: background only
    assert_match(out)
    g_means = out["cpp"][2][0]
    assert float(g_means[:6].abs().max()) == 0.0    # culled splats get no gradient


@needs_cpp
def test_deterministic_and_thread_count_free(simd):
    params = random_splats(300, 7)
    cam = camera(61, 47)
    bg = torch.tensor([0.0, 0.0, 0.0])
    runs = []
    threads = torch.get_num_threads()
    try:
        for t in (threads, 1, threads):
            torch.set_num_threads(t)
            ps = [p.detach().clone().requires_grad_() for p in params]
            img, _, _ = render_splats(*ps, cam, bg, backend="cpp")
            img.square().sum().backward()
            runs.append([img.detach()] + [p.grad for p in ps])
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


def test_reference_gradcheck_float64():
    params = random_splats(6, 11, dtype=torch.float64, spread=(0.8, 0.6, 0.4), scale=(0.08, 0.2))
    cam = camera(12, 10, f=10.0)
    bg = torch.tensor([0.3, 0.6, 0.1], dtype=torch.float64)
    ps = [p.requires_grad_() for p in params]

    def f(*xs):
        return render_splats(*xs, cam, bg, backend="torch")[0]

    assert torch.autograd.gradcheck(f, ps, eps=1e-6, atol=1e-5, fast_mode=True)


def test_reference_rules():
    """The 3DGS rules on hand-made 2D splats: alpha clamped at 0.99, alpha < 1/255 skipped, the pixel stops
    before the splat that takes T below 1e-4, background behind, ties by index."""
    mean2d = torch.tensor([[0.5, 0.5]] * 3 + [[30.0, 30.0]])
    conic = torch.tensor([[1.0, 0.0, 1.0]] * 4)
    color = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]])
    opacity = torch.tensor([1.0, 0.5, 1.0, 0.003])
    depth = torch.tensor([1.0, 1.0, 1.0, 0.5])
    radius = torch.tensor([5, 5, 5, 5], dtype=torch.int32)
    bg = torch.tensor([0.0, 0.0, 0.0])
    img, alpha = _reference.splat_rasterize(mean2d, conic, color, opacity, depth, radius, 2, 1, bg)
    # pixel 0 is at the centre: 0.99 red (clamped), then green 0.5 at T=0.01 -> T = 0.005; blue would take T
    # to 5e-5 < 1e-4: the pixel stops before it; the white splat (opacity 0.003 < 1/255) never counts
    np.testing.assert_allclose(img[0, 0].numpy(), [0.99, 0.005, 0.0], rtol=1e-5, atol=1e-7)
    assert float(alpha[0, 0]) == pytest.approx(1 - 0.005, abs=1e-6)
    if backend.has_cpp():
        ic, ac = rasterize_splats(mean2d, conic, color, opacity, depth, radius, 2, 1, bg, backend="cpp")
        torch.testing.assert_close(ic, img)


def test_cuda_is_refused_loudly(monkeypatch):
    class FakeCuda:
        type = "cuda"
    monkeypatch.setattr(backend, "same_device", lambda op, **t: FakeCuda())
    z = torch.zeros(1, 2)
    with pytest.raises(BackendError, match="no CUDA splat rasteriser"):
        rasterize_splats(z, torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1), torch.zeros(1),
                         torch.zeros(1, dtype=torch.int32), 4, 4, torch.zeros(3))


def test_projection_cull_radius_bounds_alpha():
    """Every pixel where a splat's alpha reaches 1/255 lies within its cull radius (the tiles depend on it)."""
    params = random_splats(50, 13)
    cam = camera(64, 48)
    with torch.no_grad():
        p = project_splats(*params, cam)
        ys, xs = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(64) + 0.5, indexing="ij")
        dx = xs.reshape(-1, 1) - p.mean2d[None, :, 0]
        dy = ys.reshape(-1, 1) - p.mean2d[None, :, 1]
        power = -0.5 * (p.conic[:, 0] * dx * dx + p.conic[:, 2] * dy * dy) - p.conic[:, 1] * dx * dy
        alpha = p.opacity * torch.exp(power)
        reach = (alpha >= 1 / 255) & (p.radius > 0)
        assert reach.any()
        inside = (dx.abs() <= p.radius.float()) & (dy.abs() <= p.radius.float())
        assert bool(inside[reach].all())


@needs_cpp
def test_needle_splats_and_deep_stacks(simd):
    """The kernel's per-row skipping (a row where a splat's alpha cannot reach 1/255 is passed over) and its
    16-pixel rows: needle-thin splats at every angle (the conic's terms cancel), 1500 splats stacked on a
    33x21 image so pixels stop at different depths, half of them nearly transparent."""
    g = torch.Generator().manual_seed(21)
    n = 1500
    means, ls, q, op, sh = random_splats(n, 21, spread=(1.2, 0.9, 0.8), scale=(0.002, 0.3))
    ls[: n // 2, 0] = -7.0                        # needles: one axis ~1000x shorter than another
    ls[: n // 2, 1] = -0.9
    op[n // 2:] = torch.randn(n - n // 2, generator=g) - 4.0   # opacity mostly below 0.05
    cam = camera(33, 21, f=25.0)
    out = both([means, ls, q, op, sh], cam, torch.tensor([0.9, 0.1, 0.4]))
    assert_match(out, atol=5e-5, rtol=5e-4)
    alpha = out["torch"][1]
    assert float(alpha.min()) < 0.9 < float(alpha.max())   # some pixels stop early, some see the background


@needs_cpp
def test_an_unknown_simd_loop_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("NERF_APP_SPLAT_SIMD", "avx9")
    one_line = r"^NERF_APP_SPLAT_SIMD=avx9: unknown \(auto \| scalar \| avx2 \| avx512\)$"
    with pytest.raises(BackendError, match=one_line):
        render_splats(*random_splats(3), camera(8, 8), torch.zeros(3), backend="cpp")


@needs_cpp
def test_the_vector_loops_agree_with_the_scalar_loop(simd, monkeypatch):
    """Loop against loop on one scene of 400 splats over 5x4 tiles, image and every gradient: the vector loops
    differ from the scalar one only by exp's last bits and the order of a row's gradient sums."""
    params = random_splats(400, 31, scale=(0.01, 0.3))
    cam = camera(75, 60, f=55.0)
    bg = torch.tensor([0.3, 0.6, 0.1])

    def run():
        ps = [p.detach().clone().requires_grad_() for p in params]
        img, alpha, _ = render_splats(*ps, cam, bg, backend="cpp")
        (img * torch.linspace(-1, 1, img.numel()).reshape(img.shape)).sum().backward()
        return [img.detach(), alpha.detach()] + [p.grad for p in ps]

    got = run()
    monkeypatch.setenv("NERF_APP_SPLAT_SIMD", "scalar")
    ref = run()
    assert float(ref[1].max()) > 0.9 and float(ref[2].abs().max()) > 0
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-5 * (float(b.abs().max()) + 1e-6), rtol=1e-4)
