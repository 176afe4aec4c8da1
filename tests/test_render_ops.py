"""NeRF rendering ops (sh_encode, ray_aabb, march_rays, volume_render): compiled backends against the
torch reference (values and gradients) on random inputs at awkward sizes, checks of the math against
closed forms, and the glue's refusal of mixed devices / wrong dtypes."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from nerf_app import backend
from nerf_app.errors import BackendError
from nerf_app.ops import _reference
from nerf_app.ops.march import PackedSamples, march_rays
from nerf_app.ops.ray_aabb import ray_aabb
from nerf_app.ops.sh import sh_encode
from nerf_app.ops.volume_render import volume_render

from conftest import requires_cpp, requires_cuda

R = SimpleNamespace(sh_encode=sh_encode, ray_aabb=ray_aabb, march_rays=march_rays, volume_render=volume_render,
                    PackedSamples=PackedSamples)

DEVICES = [pytest.param("cpu", marks=requires_cpp), pytest.param("cuda", marks=requires_cuda)]
NATIVE = {"cpu": "cpp", "cuda": "cuda"}


def random_dirs(n, gen, device="cpu"):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=gen).to(device), dim=-1)


def random_bitfield(n_cascades, res, fill, gen, device="cpu"):
    bits = torch.rand(n_cascades * res ** 3, generator=gen) < fill
    weights = 2 ** torch.arange(8)
    return (bits.reshape(-1, 8).long() * weights).sum(1).to(torch.uint8).to(device)


def test_sh_reference_is_orthonormal():
    """Monte-Carlo check of the real SH basis: integral of Y_i Y_j over the sphere = delta_ij."""
    gen = torch.Generator().manual_seed(0)
    d = random_dirs(400000, gen).double()
    Y = _reference.sh_encode(d, 4)
    gram = 4 * math.pi * (Y.t() @ Y) / d.shape[0]
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=2e-2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("degree", (1, 2, 3, 4))
def test_sh_matches_reference(device, degree):
    gen = torch.Generator().manual_seed(degree)
    for n in (1, 7, 1000, 65537):
        d = random_dirs(n, gen, device).requires_grad_(True)
        g = torch.randn(n, degree * degree, generator=gen).to(device)
        y = R.sh_encode(d, degree, backend=NATIVE[device])
        (y * g).sum().backward()
        grad = d.grad.clone()
        d.grad = None
        y_ref = _reference.sh_encode(d.double(), degree)
        (y_ref * g.double()).sum().backward()
        assert torch.allclose(y.double(), y_ref, atol=1e-6, rtol=1e-5)
        assert torch.allclose(grad.double(), d.grad.double(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_ray_aabb_matches_reference_and_geometry(device):
    gen = torch.Generator().manual_seed(1)
    o = (torch.rand(1001, 3, generator=gen) * 4 - 1.5).to(device)
    d = random_dirs(1001, gen, device)
    d[:5] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0], [0.6, 0.8, 0], [0, 0, 1.0]], device=device)
    tn, tf = R.ray_aabb(o, d, -0.5, 1.5, backend=NATIVE[device])
    tn_ref, tf_ref = _reference.ray_aabb(o, d, -0.5, 1.5)
    assert torch.equal(tn, tn_ref) and torch.equal(tf, tf_ref)
    hit = tn <= tf
    for t in (tn[hit], tf[hit]):  # entry and exit points lie on the box surface
        p = o[hit] + t[:, None] * d[hit]
        dist = torch.maximum((p - 0.5).abs().amax(-1) - 1.0, torch.zeros_like(t))
        assert dist.max() < 1e-5
        assert ((p - 0.5).abs().amax(-1) - 1.0).abs().max() < 1e-5


def march_inputs(n, gen, n_cascades, device):
    o = (torch.rand(n, 3, generator=gen) * 3 - 1).to(device)
    d = random_dirs(n, gen, device)
    half = 0.5 * 2 ** (n_cascades - 1)
    tn, tf = _reference.ray_aabb(o, d, 0.5 - half, 0.5 + half)
    tn = tn.clamp(min=0.0)
    tf = torch.where(tn < tf, tf, tn)  # misses: empty interval
    return o, d, tn, tf


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_cascades,fill,cone", [(1, 0.3, 0.0), (2, 0.1, 1 / 64), (3, 0.9, 1 / 256), (2, 0.0, 0.0)])
def test_march_matches_reference_exactly(device, n_cascades, fill, cone):
    """Same float32 steps in the same order: identical samples, not just close ones."""
    gen = torch.Generator().manual_seed(n_cascades)
    res = 16
    bitfield = random_bitfield(n_cascades, res, fill, gen, device)
    for n in (1, 7, 150):
        o, d, tn, tf = march_inputs(n, gen, n_cascades, device)
        args = (o, d, tn, tf, bitfield, n_cascades, res, 0.02, 0.1, cone, 64)
        got = R.march_rays(*args, backend=NATIVE[device])
        ref = _reference.march_rays(*(a.cpu() if torch.is_tensor(a) else a for a in args))
        assert torch.equal(got.packed_info.cpu(), ref[0])
        assert torch.equal(got.ray_indices.cpu(), ref[1])
        assert torch.equal(got.t_starts.cpu(), ref[2]) and torch.equal(got.t_ends.cpu(), ref[3])


@requires_cpp
def test_march_samples_lie_in_occupied_cells_and_respect_limits():
    gen = torch.Generator().manual_seed(5)
    res, n_cascades = 32, 2
    bitfield = random_bitfield(n_cascades, res, 0.2, gen)
    o, d, tn, tf = march_inputs(500, gen, n_cascades, "cpu")
    s = R.march_rays(o, d, tn, tf, bitfield, n_cascades, res, 0.01, 0.04, 1 / 128, 50, backend="cpp")
    counts = s.packed_info[:, 1]
    assert counts.max() <= 50 and int(counts.sum()) == s.n_samples
    assert torch.equal(s.packed_info[:, 0], torch.cumsum(counts, 0) - counts)
    assert (s.t_ends > s.t_starts).all() and (s.t_starts >= tn[s.ray_indices] - 1e-6).all()
    dt = s.t_ends - s.t_starts
    assert (dt >= 0.01 - 1e-6).all() and (dt <= 0.04 + 1e-6).all()
    mid = 0.5 * (s.t_starts + s.t_ends)
    p = o[s.ray_indices] + mid[:, None] * d[s.ray_indices]
    bits = ((bitfield[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1).reshape(-1).bool()
    m = (p - 0.5).abs().amax(-1)
    k = torch.where(m > 0.5, 1, 0)
    cell = torch.floor(((p - 0.5) / (2.0 ** k)[:, None] + 0.5) * res).long().clamp(0, res - 1)
    assert bits[k * res ** 3 + cell[:, 0] + res * (cell[:, 1] + res * cell[:, 2])].all()
    # an all-empty grid yields no samples, a full one samples every ray that crosses it
    empty = R.march_rays(o, d, tn, tf, torch.zeros_like(bitfield), n_cascades, res, 0.01, 0.04, 0.0, 1000)
    assert empty.n_samples == 0 and empty.packed_info.shape == (500, 2)
    full = R.march_rays(o, d, tn, tf, torch.full_like(bitfield, 255), n_cascades, res, 0.01, 0.04, 0.0, 100000)
    crossing = (tf - tn) > 0.02
    assert (full.packed_info[crossing, 1] > 0).all()


def render_inputs(n_rays, gen, device, max_per_ray=40):
    counts = torch.randint(0, max_per_ray, (n_rays,), generator=gen)
    counts[0] = 0 if n_rays > 3 else counts[0]  # an empty ray
    n = int(counts.sum())
    dt = torch.rand(n, generator=gen) * 0.05 + 0.005
    starts = torch.cumsum(counts, 0) - counts
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts)
    csum = torch.cumsum(dt, 0) - dt
    t0 = csum - (csum - 0)[starts][ray_indices] + 0.1 if n else dt
    samples = R.PackedSamples(ray_indices.to(device), t0.to(device).contiguous(), (t0 + dt).to(device).contiguous(),
                              torch.stack([starts, counts], 1).to(device))
    sigmas = (torch.rand(n, generator=gen) * 60).to(device)
    sigmas[::7] = 0.0
    rgbs = torch.rand(n, 3, generator=gen).to(device)
    return samples, sigmas, rgbs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("threshold", (0.0, 1e-4, 0.3))
def test_volume_render_matches_reference(device, threshold):
    gen = torch.Generator().manual_seed(int(threshold * 100))
    for n_rays in (1, 7, 1000, 4097):
        samples, sigmas, rgbs = render_inputs(n_rays, gen, device)
        gc = torch.randn(n_rays, 3, generator=gen).to(device)
        go = torch.randn(n_rays, generator=gen).to(device)
        gd = torch.randn(n_rays, generator=gen).to(device)
        outs = {}
        for name in (NATIVE[device], "torch"):
            s = sigmas.clone().requires_grad_(True)
            c = rgbs.clone().requires_grad_(True)
            w, color, opacity, depth = R.volume_render(s, c, samples, threshold, backend=name)
            ((color * gc).sum() + (opacity * go).sum() + (depth * gd).sum()).backward()
            outs[name] = (w, color, opacity, depth, s.grad, c.grad)
        for a, b, what in zip(outs[NATIVE[device]], outs["torch"], ("w", "color", "opacity", "depth", "dsigma", "drgb")):
            assert torch.allclose(a, b, atol=2e-5, rtol=1e-4), (what, n_rays, (a - b).abs().max().item())


def test_volume_render_reference_closed_form():
    """One ray, constant density: opacity = 1 - exp(-sigma L); colour = opacity * c; early termination cuts."""
    n, L, sigma = 100, 2.0, 1.5
    t0 = torch.linspace(0, L, n + 1)[:-1]
    samples = R.PackedSamples(torch.zeros(n, dtype=torch.long), t0, t0 + L / n, torch.tensor([[0, n]]))
    rgb = torch.tensor([0.2, 0.4, 0.6]).expand(n, 3)
    w, color, opacity, depth = _reference.volume_render(torch.full((n,), sigma), rgb, samples.t_starts,
                                                        samples.t_ends, samples.ray_indices, 1, 0.0)
    assert opacity.item() == pytest.approx(1 - math.exp(-sigma * L), rel=1e-5)
    assert torch.allclose(color[0], opacity * torch.tensor([0.2, 0.4, 0.6]), rtol=1e-5)
    # sigma * dt = 1 per sample: T = 1 before the first sample (kept), e^-1 < 0.5 before the second (cut),
    # so exactly one sample contributes
    _, _, op_cut, _ = _reference.volume_render(torch.full((n,), 50.0), rgb, samples.t_starts, samples.t_ends,
                                               samples.ray_indices, 1, 0.5)
    assert op_cut.item() == pytest.approx(1 - math.exp(-1.0), rel=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_opacity_never_exceeds_one(device):
    """Weights are T_i (1 - exp(-tau_i)) with T_{i+1} = T_i exp(-tau_i): they telescope to 1 - T_end <= 1."""
    gen = torch.Generator().manual_seed(9)
    samples, sigmas, rgbs = render_inputs(2000, gen, device, max_per_ray=200)
    sigmas = sigmas * 1000.0  # saturating rays
    for name in (NATIVE[device], "torch"):
        w, color, opacity, _ = R.volume_render(sigmas, rgbs, samples, 0.0, backend=name)
        assert (opacity <= 1.0 + 1e-6).all() and (opacity >= 0).all(), name
        assert (color <= opacity[:, None] + 1e-6).all(), name  # colours in [0, 1]


@pytest.mark.parametrize("device", DEVICES)
def test_ray_aabb_per_axis_box(device):
    """A box with different bounds per axis (as the SDF renders use), against the reference and against
    the distances to its faces."""
    gen = torch.Generator().manual_seed(4)
    lo, hi = [-0.2, 0.1, 0.3], [0.9, 0.4, 1.7]
    o = (torch.rand(997, 3, generator=gen) * 4 - 1.5).to(device)
    d = random_dirs(997, gen, device)
    tn, tf = R.ray_aabb(o, d, lo, hi, backend=NATIVE[device])
    tn_ref, tf_ref = _reference.ray_aabb(o, d, lo, hi)
    assert torch.equal(tn, tn_ref) and torch.equal(tf, tf_ref)
    hit = tn <= tf
    assert hit.any() and (~hit).any()
    centre, half = torch.tensor([0.35, 0.25, 1.0], device=device), torch.tensor([0.55, 0.15, 0.7], device=device)
    for t in (tn[hit], tf[hit]):
        p = o[hit] + t[:, None] * d[hit]
        assert (((p - centre).abs() / half).amax(-1) - 1.0).abs().max() < 1e-4


@requires_cpp
def test_march_count_and_fill_agree():
    """The fill pass writes exactly the samples the count pass reserved: per-ray blocks are contiguous,
    labelled with their ray, strictly increasing in t, and of positive length (a padded slot would have
    zero length), for step rules with contraction-prone arithmetic (cone steps, several cascades)."""
    gen = torch.Generator().manual_seed(13)
    for n_cascades, res, cone in ((1, 8, 0.0), (3, 16, 1 / 256), (4, 24, 1 / 64)):
        bitfield = random_bitfield(n_cascades, res, 0.4, gen)
        o, d, tn, tf = march_inputs(3001, gen, n_cascades, "cpu")
        s = R.march_rays(o, d, tn, tf, bitfield, n_cascades, res, 0.003, 0.05, cone, 4096, backend="cpp")
        starts, counts = s.packed_info[:, 0], s.packed_info[:, 1]
        assert int(counts.sum()) == s.n_samples > 0
        assert torch.equal(starts, torch.cumsum(counts, 0) - counts)
        assert torch.equal(s.ray_indices, torch.repeat_interleave(torch.arange(3001), counts))
        assert (s.t_ends > s.t_starts).all()
        same_ray = s.ray_indices[1:] == s.ray_indices[:-1]
        assert (s.t_starts[1:][same_ray] >= s.t_ends[:-1][same_ray]).all()


def _valid_args(name):
    """Valid CPU arguments of every compiled entry point, tensors first-class so the tests can swap them."""
    gen = torch.Generator().manual_seed(0)
    o = torch.rand(5, 3, generator=gen)
    d = random_dirs(5, gen)
    if name == "sh_encode_forward":
        return [d, 2]
    if name == "sh_encode_backward":
        return [d, torch.randn(5, 4, generator=gen), 2]
    if name == "ray_aabb":
        return [o, d, [0.0] * 3, [1.0] * 3]
    if name == "march_rays":
        return [o, d, torch.zeros(5), torch.ones(5), torch.full((64,), 255, dtype=torch.uint8), 1, 8, 0.01, 0.1, 0.0,
                16]
    packed = torch.tensor([[0, 2], [2, 0], [2, 1], [3, 1], [4, 0]])
    common = [torch.rand(4, generator=gen), torch.rand(4, 3, generator=gen), torch.arange(4.0) * 0.1,
              torch.arange(4.0) * 0.1 + 0.05, packed, 1e-4]
    if name == "volume_render_forward":
        return common
    if name == "volume_render_backward":
        return common + [torch.rand(4), torch.randn(5, 3), torch.randn(5), torch.randn(5)]
    if name == "hashgrid_forward":
        return [torch.rand(5, 3), torch.rand(16, 2), [0], [16], [2], [1.0], False]
    if name in ("hashgrid_backward_table", "hashgrid_backward_input"):
        return [torch.rand(5, 3), torch.rand(16, 2), torch.randn(5, 2), [0], [16], [2], [1.0], False]
    if name == "mlp_forward":
        return [torch.rand(5, 4), [torch.randn(16, 4), torch.randn(2, 16)], 1, 0, True]
    raise KeyError(name)


ENTRY_POINTS = ("sh_encode_forward", "sh_encode_backward", "ray_aabb", "march_rays", "volume_render_forward",
                "volume_render_backward", "hashgrid_forward", "hashgrid_backward_table", "hashgrid_backward_input",
                "mlp_forward")


def _tensor_slots(args):
    """(position, index in a list or None) of every tensor argument."""
    for i, a in enumerate(args):
        if torch.is_tensor(a):
            yield i, None
        elif isinstance(a, list) and a and torch.is_tensor(a[0]):
            for j in range(len(a)):
                yield i, j


def _replace(args, slot, fn):
    args = [list(a) if isinstance(a, list) else a for a in args]
    i, j = slot
    if j is None:
        args[i] = fn(args[i])
    else:
        args[i][j] = fn(args[i][j])
    return args


@requires_cpp
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_glue_rejects_mixed_devices(name):
    """Every compiled entry point refuses a tensor on another device (a meta tensor stands in for a GPU
    one here) with an error naming it, instead of running the CPU loop on a foreign pointer."""
    ext = backend.extension()
    fn = getattr(ext, name)
    fn(*_valid_args(name))  # the valid arguments run
    for slot in _tensor_slots(_valid_args(name)):
        args = _replace(_valid_args(name), slot, lambda t: t.to("meta"))
        with pytest.raises(RuntimeError, match="meta"):
            fn(*args)


@requires_cpp
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_glue_rejects_wrong_dtype_and_layout(name):
    ext = backend.extension()
    fn = getattr(ext, name)
    for slot in _tensor_slots(_valid_args(name)):
        args = _valid_args(name)
        t = args[slot[0]] if slot[1] is None else args[slot[0]][slot[1]]
        wrong = torch.int32 if t.is_floating_point() else torch.float32
        with pytest.raises((RuntimeError, ValueError)):
            fn(*_replace(args, slot, lambda t: t.to(wrong)))
        if t.dim() == 2 and t.shape[0] > 1 and t.shape[1] > 1:
            with pytest.raises((RuntimeError, ValueError)):
                fn(*_replace(args, slot, lambda t: t.t().contiguous().t()))  # same shape, not contiguous


def test_ops_refuse_mixed_devices_before_choosing_a_backend():
    """The Python ops name the odd tensor out whatever the backend (even the torch reference)."""
    gen = torch.Generator().manual_seed(0)
    o, d = torch.rand(4, 3, generator=gen), random_dirs(4, gen)
    bitfield = torch.full((64,), 255, dtype=torch.uint8)
    for which in ("auto", "torch"):
        with pytest.raises(BackendError, match="bitfield is on meta"):
            R.march_rays(o, d, torch.zeros(4), torch.ones(4), bitfield.to("meta"), 1, 8, 0.01, 0.1, backend=which)
        with pytest.raises(BackendError, match="dirs is on meta"):
            R.ray_aabb(o, d.to("meta"), backend=which)
    samples = R.PackedSamples(torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.ones(2),
                              torch.tensor([[0, 2]]).to("meta"))
    with pytest.raises(BackendError, match="packed_info is on meta"):
        R.volume_render(torch.ones(2), torch.ones(2, 3), samples)
