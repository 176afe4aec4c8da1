"""The encoding factory: every field (NeRF, SDF, DeepSDF, INR) takes every encoding by name, and each learns.

A field that silently kept the hash grid would pass a shape check; these tests look at the module that was
built, at the domain its input arrives in, and at a fit that must reduce the loss of a smooth target.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from nerf_app import encodings
from nerf_app.encodings import FourierFeatures, HashGrid, IdentityEncoding, PositionalEncoding
from nerf_app.errors import ConfigError
from nerf_app.nerf.config import NerfModelSettings
from nerf_app.nerf.field import NerfField
from nerf_app.sdf.config import FieldModelSettings
from nerf_app.sdf.field import MeshField

KINDS = {"hashgrid": HashGrid, "fourier": FourierFeatures, "positional": PositionalEncoding,
         "identity": IdentityEncoding}
SMALL = dict(n_levels=4, log2_hashmap_size=10, base_resolution=4, finest_resolution=32, fourier_features=16,
             fourier_sigma=2.0, n_frequencies=3)


@pytest.mark.parametrize("name", list(KINDS))
def test_build_and_domain(name):
    s = dataclasses.replace(encodings.EncodingSettings(), encoding=name, **SMALL)
    enc = encodings.build(s, 3, backend="torch")
    assert type(enc) is KINDS[name]
    x = torch.tensor([[0.0, 0.5, 1.0], [1.25, -0.25, 0.5]])
    p = encodings.prepare(x, enc)
    if name in ("hashgrid", "fourier"):     # [0,1]^D, clamped
        assert torch.equal(p, x.clamp(0, 1))
        assert torch.equal(encodings.prepare(x, enc, clamp=False), x)
    else:                                    # [-1,1]^D
        assert torch.equal(p, 2 * x - 1)


def test_unknown_encoding_is_a_config_error():
    s = dataclasses.replace(encodings.EncodingSettings(), encoding="wavelet")
    with pytest.raises(ConfigError, match="model.encoding must be one of"):
        encodings.build(s, 3)


def _fit(model_fn, target, steps=60):
    torch.manual_seed(0)
    x = torch.rand(512, 3)
    y = target(x)
    model = model_fn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


@pytest.mark.parametrize("name", list(KINDS))
def test_sdf_field_takes_every_encoding(name):
    torch.set_num_threads(1)
    s = dataclasses.replace(FieldModelSettings(), encoding=name, width=32, n_hidden_layers=2, **SMALL)
    model, losses = _fit(lambda: MeshField(s, backend="torch"), lambda x: (x - 0.5).norm(dim=-1) - 0.3)
    assert type(model.encoding) is KINDS[name]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", list(KINDS))
def test_nerf_field_takes_every_encoding(name):
    torch.set_num_threads(1)
    s = dataclasses.replace(NerfModelSettings(), encoding=name, **SMALL)

    def make():
        return NerfField(0.0, 1.0, s, geo_features=8, density_width=32, density_layers=1, color_width=32,
                         color_layers=1, sh_degree=2, backend="torch")

    d = torch.nn.functional.normalize(torch.ones(512, 3), dim=-1)

    class Colour(torch.nn.Module):          # fit the colour through density features and view directions
        def __init__(self):
            super().__init__()
            self.f = make()

        def forward(self, x):
            return self.f(x, d)[1]

    model, losses = _fit(Colour, lambda x: x)       # rgb = position: needs a position-aware encoding
    assert type(model.f.encoding) is KINDS[name]
    assert losses[-1] < 0.5 * losses[0]
    sigma, _ = model.f.density(torch.rand(7, 3))
    assert torch.isfinite(sigma).all() and (sigma > 0).all()
