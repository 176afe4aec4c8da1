"""The splat projection (issue 27): the C++ kernel against the torch twin (_reference.splat_project), values
and the gradient of every splat parameter from every output, at awkward sizes and on the twin's branches
(behind the camera, the Jacobian's clamp, the colour's clamp at zero, SH rows past the degree); determinism."""
import numpy as np
import pytest
import torch

from nerf_app import backend
from nerf_app.ops import _reference
from nerf_app.ops.splat import SplatCamera, project_splats

needs_cpp = pytest.mark.skipif(not backend.has_cpp(), reason="the compiled extension is not built")


def splats(n, seed, degree_rows=4, spread=(3.0, 2.4, 2.0), depth=2.0):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor(spread)
    means[:, 2] += depth
    ls = torch.log(torch.rand(n, 3, generator=g) * 0.3 + 0.01)
    q = torch.randn(n, 4, generator=g)
    op = torch.randn(n, generator=g) * 3
    sh = torch.randn(n, degree_rows, 3, generator=g) * 0.4
    return [means, ls, q, op, sh]


def turned_camera(width=41, height=23):
    """A camera off the origin, turned about two axes (so the world -> camera rotation is not the identity)."""
    a, b = 0.3, -0.5
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    c2w = np.eye(4)
    c2w[:3, :3] = Ry @ Rx
    c2w[:3, 3] = [0.7, -0.4, -0.3]
    return SplatCamera(c2w, 31.0, 33.5, width * 0.47, height * 0.55, width, height, near=0.05)


def both(params, cam, degree, seed=1):
    """Outputs and input gradients of a random weighting of every differentiable output, per backend."""
    out = {}
    for which in ("cpp", "torch"):
        ps = [t.detach().clone().requires_grad_() for t in params]
        p = project_splats(*ps, cam, degree, backend=which)
        g = torch.Generator().manual_seed(seed)
        loss = sum((t * torch.randn(t.shape, generator=g)).sum() for t in (p.mean2d, p.conic, p.color, p.opacity,
                                                                           p.depth))
        loss.backward()
        out[which] = (p, [t.grad for t in ps])
    return out


def assert_close_scaled(a, b, name, rtol=2e-4):
    a, b = a.detach(), b.detach()
    scale = float(b.abs().max()) + 1e-6
    torch.testing.assert_close(a, b, atol=2e-5 * scale, rtol=rtol, msg=lambda m: f"{name}: {m}")


@needs_cpp
@pytest.mark.parametrize("n,degree,rows,seed", [(1, 1, 1, 0), (7, 2, 4, 1), (333, 3, 9, 2), (1000, 4, 16, 3),
                                                (65, 2, 9, 4)])
def test_cpp_matches_twin(n, degree, rows, seed):
    params = splats(n, seed, rows)
    cam = turned_camera()
    out = both(params, cam, degree)
    (pc, gc), (pt, gt) = out["cpp"], out["torch"]
    for name in ("mean2d", "conic", "color", "opacity", "depth"):
        assert_close_scaled(getattr(pc, name), getattr(pt, name), name)
    # the radius decides tiles only; a float ulp in log/sqrt may move a ceil by one
    assert int((pc.radius - pt.radius).abs().max()) <= 1
    assert torch.equal(pc.radius > 0, pt.radius > 0)
    for name, a, b in zip(("means", "log_scales", "quats", "opacity_logits", "sh"), gc, gt):
        assert float(b.abs().max()) > 0 or name == "sh"
        assert_close_scaled(a, b, name, rtol=1e-3)
    if rows > degree * degree:   # rows past the degree get no gradient
        assert float(gc[4][:, degree * degree:].abs().max()) == 0.0


@needs_cpp
def test_branches():
    """Splats behind the camera and on the near plane, far outside the image (the Jacobian's clamp holds),
    a colour clamped at zero, a degenerate (zero-scale) splat: the same values and gradients as the twin."""
    params = splats(12, 7)
    means, ls, q, op, sh = params
    cam = turned_camera()
    c2w = np.asarray(cam.c2w)
    to_world = lambda p: torch.tensor(c2w[:3, :3] @ np.asarray(p) + c2w[:3, 3], dtype=torch.float32)  # noqa: E731
    means[0] = to_world([0.1, 0.2, -1.0])     # behind
    means[1] = to_world([0.0, 0.0, 0.04])     # in front of the camera, nearer than near
    means[2] = to_world([30.0, 0.3, 2.0])     # far right: x/z clamped
    means[3] = to_world([0.2, -25.0, 1.5])    # far up: y/z clamped
    sh[4, 0] = torch.tensor([-5.0, 0.1, -5.0])  # colour below zero in two channels
    ls[5] = -30.0                               # a vanishing splat: only the dilation is left
    out = both(params, cam, 2)
    (pc, gc), (pt, gt) = out["cpp"], out["torch"]
    assert int(pt.radius[0]) == 0 and int(pt.radius[1]) == 0
    assert float(pt.color[4, 0].detach()) == 0.0
    for name in ("mean2d", "conic", "color", "opacity", "depth"):
        assert_close_scaled(getattr(pc, name), getattr(pt, name), name)
    assert torch.equal(pc.radius > 0, pt.radius > 0)
    for name, a, b in zip(("means", "log_scales", "quats", "opacity_logits", "sh"), gc, gt):
        assert_close_scaled(a, b, name, rtol=1e-3)


def test_twin_gradcheck_float64():
    params = [t.double().requires_grad_() for t in splats(5, 9, 4, spread=(1.0, 0.8, 0.6))]
    cam = turned_camera(13, 11)

    def f(*xs):
        p = _reference.splat_project(*xs, cam, 2)
        return p[0], p[1], p[2], p[3]

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, fast_mode=True)


@needs_cpp
def test_deterministic_and_thread_count_free():
    params = splats(5000, 5, 9)
    cam = turned_camera()
    runs = []
    threads = torch.get_num_threads()
    try:
        for t in (threads, 1, threads):
            torch.set_num_threads(t)
            ps = [p.detach().clone().requires_grad_() for p in params]
            p = project_splats(*ps, cam, 3, backend="cpp")
            (p.mean2d.sum() + p.conic.square().sum() + p.color.sum() + p.opacity.sum()).backward()
            runs.append([p.mean2d.detach(), p.conic.detach(), p.radius] + [x.grad for x in ps])
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


def test_cuda_is_refused_loudly(monkeypatch):
    from nerf_app.errors import BackendError

    class FakeCuda:
        type = "cuda"
    monkeypatch.setattr(backend, "same_device", lambda op, **t: FakeCuda())
    with pytest.raises(BackendError, match="no CUDA splat projection"):
        project_splats(*splats(2, 0), turned_camera())
