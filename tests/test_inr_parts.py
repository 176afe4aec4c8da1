"""INR building blocks: frequency encodings against their closed forms, SIREN's initialisation
statistics (Sitzmann et al. 2020, Sec. 3.2) and gradients (gradcheck in float64)."""
import math

import pytest
import torch

from nerf_app.encodings import FourierFeatures, IdentityEncoding, PositionalEncoding
from nerf_app.networks import Siren


def test_positional_encoding_closed_form():
    torch.manual_seed(0)
    x = torch.rand(7, 3, dtype=torch.float64)
    enc = PositionalEncoding(3, 4)
    y = enc(x)
    assert y.shape == (7, 3 * (1 + 8)) == (7, enc.n_output_dims)
    assert torch.equal(y[:, :3], x)
    for k in range(4):
        for d in range(3):
            w = 2.0 ** k * math.pi
            assert torch.allclose(y[:, 3 + k * 3 + d], torch.sin(w * x[:, d]))
            assert torch.allclose(y[:, 3 + 12 + k * 3 + d], torch.cos(w * x[:, d]))
    y2 = PositionalEncoding(3, 4, include_input=False)(x)
    assert torch.equal(y2, y[:, 3:])
    assert PositionalEncoding(2, 0)(x[:, :2]).shape == (7, 2)


def test_fourier_features_closed_form_and_seed():
    enc = FourierFeatures(2, 16, sigma=5.0, seed=3)
    assert torch.equal(enc.B, FourierFeatures(2, 16, sigma=5.0, seed=3).B)
    assert not torch.equal(enc.B, FourierFeatures(2, 16, sigma=5.0, seed=4).B)
    assert "B" in enc.state_dict() and not any(p.requires_grad for p in enc.parameters())
    x = torch.rand(5, 2)
    y = enc(x)
    assert y.shape == (5, 32) == (5, enc.n_output_dims)
    B = enc.B
    for j in range(16):
        ph = 2 * math.pi * (x[:, 0] * B[j, 0] + x[:, 1] * B[j, 1])
        assert torch.allclose(y[:, j], torch.cos(ph), atol=1e-5)
        assert torch.allclose(y[:, 16 + j], torch.sin(ph), atol=1e-5)
    # B ~ N(0, sigma^2)
    big = FourierFeatures(3, 4096, sigma=5.0, seed=0).B
    assert abs(big.std().item() - 5.0) < 0.15 and abs(big.mean().item()) < 0.15
    # global RNG untouched
    torch.manual_seed(0)
    a = torch.rand(1)
    torch.manual_seed(0)
    FourierFeatures(2, 8, 1.0, seed=9)
    assert torch.equal(a, torch.rand(1))
    assert torch.equal(IdentityEncoding(2)(x), x)


def _arcsine_ks(a: torch.Tensor) -> float:
    """Kolmogorov-Smirnov distance of samples in [-1,1] to the arcsine law F(y) = 1/2 + asin(y)/pi."""
    a = a.flatten().sort().values
    F = 0.5 + torch.asin(a.clamp(-1, 1)) / math.pi
    emp = (torch.arange(len(a), dtype=a.dtype) + 0.5) / len(a)
    return (F - emp).abs().max().item()


def test_siren_initialisation_bounds():
    torch.manual_seed(0)
    s = Siren(2, 3, width=64, n_hidden_layers=3, w0=30.0)
    assert s.layers[0].weight.abs().max() <= 1 / 2
    for lin in s.layers[1:]:
        bound = math.sqrt(6 / 64) / 30
        assert lin.weight.abs().max() <= bound
        assert lin.weight.abs().max() > 0.9 * bound  # actually uniform over the whole range
    assert s(torch.rand(10, 2)).shape == (10, 3)


@pytest.mark.parametrize("zero_bias", [True, False])
def test_siren_activation_statistics_through_depth(zero_bias):
    """Paper: w0 W h with h arcsine (var 1/2) has var 1 -> pre-activations ~N(0,1), activations
    arcsine in [-1,1], at every depth. nn.Linear biases (times w0) add variance ~w0^2/(3n): the
    std is then larger (~1.47 at n=256) but still the same through depth."""
    torch.manual_seed(0)
    s = Siren(1, 1, width=256, n_hidden_layers=7)
    if zero_bias:
        with torch.no_grad():
            for lin in s.layers:
                lin.bias.zero_()
    x = torch.rand(16_000, 1) * 2 - 1
    with torch.no_grad():
        zs = s.preactivations(x)
    stds = [z.std().item() for z in zs[1:]]   # layer 0 sees the raw input: std ~ w0/sqrt(3)*|w|
    expected = 1.0 if zero_bias else math.sqrt(1 + 30.0 ** 2 / (3 * 256))
    for sd in stds:
        assert abs(sd - expected) < 0.15 * expected, stds
    assert max(stds) / min(stds) < 1.25
    for z in zs[1:]:
        a = torch.sin(z)[::4]
        # sin of N(0, s^2) has variance (1 - exp(-2 s^2)) / 2 (-> 1/2, the arcsine law's, as s grows)
        sd = z.std().item()
        assert abs(a.var().item() - (1 - math.exp(-2 * sd * sd)) / 2) < 0.03
        assert _arcsine_ks(a) < (0.12 if zero_bias else 0.07)


def test_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.rand(4, 2, dtype=torch.float64, requires_grad=True)
    pe = PositionalEncoding(2, 3).double()
    ff = FourierFeatures(2, 5, sigma=2.0).double()
    s = Siren(2, 2, width=6, n_hidden_layers=2, w0=5.0, w0_initial=5.0).double()
    s_sine_out = Siren(2, 1, width=5, n_hidden_layers=1, outermost_linear=False).double()
    assert torch.autograd.gradcheck(pe, (x,))
    assert torch.autograd.gradcheck(ff, (x,))
    assert torch.autograd.gradcheck(s, (x,))
    assert torch.autograd.gradcheck(s_sine_out, (x,))
    # parameters too: gradcheck a function of the first and last weights
    params = [s.layers[0].weight, s.layers[-1].weight]

    def f(w0, w1):
        h = torch.sin(5.0 * torch.nn.functional.linear(x, w0, s.layers[0].bias))
        h = torch.sin(5.0 * s.layers[1](h))
        return torch.nn.functional.linear(h, w1, s.layers[2].bias)
    assert torch.autograd.gradcheck(f, [p.detach().clone().requires_grad_() for p in params])
    # and the module's own parameter gradients agree with that function's
    out = s(x).sum()
    out.backward()
    w0 = params[0].detach().clone().requires_grad_()
    f(w0, params[1].detach()).sum().backward()
    assert torch.allclose(w0.grad, s.layers[0].weight.grad)


@pytest.mark.parametrize("encoding", ["hashgrid", "fourier", "positional", "identity"])
@pytest.mark.parametrize("network", ["mlp", "siren"])
def test_inr_field_combinations(encoding, network):
    """Every encoding x network composes, maps [N, D] -> [N, C] and gets gradients."""
    from nerf_app.inr.config import InrModelSettings
    from nerf_app.inr.field import InrField
    torch.manual_seed(0)
    s = InrModelSettings(encoding=encoding, network=network, width=16, n_hidden_layers=2, n_levels=4,
                         log2_hashmap_size=10, finest_resolution=64, fourier_features=8, n_frequencies=3)
    f = InrField(2, 3, s, resolution=64)
    y = f(torch.rand(33, 2))
    assert y.shape == (33, 3) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in f.parameters())
