"""``LatentSDF``: one decoder for many shapes, conditioned on a learned code per shape (auto-decoder).

    f(x, z) = MLP([HashGrid(x), z])          x in [0,1]^3, z in R^dim  ->  signed distance (unit-cube units)

The codes are an ``nn.Embedding`` (one row per training shape, initialised N(0, init_std^2) as in
DeepSDF) inside the module, so they are checkpointed and optimised with the decoder.

Why this design:
  * A shared hash grid alone cannot tell shapes apart (a point has one feature vector whatever the
    shape), so the code enters the MLP beside the grid features: the grid supplies spatial detail
    for all shapes at once, and the MLP reads out the shape that ``z`` selects. A pure
    positional-encoding MLP (the DeepSDF paper's 8x512) would need far more steps than a few CPU
    minutes allow; the grid makes each step cheap and converge fast.
  * The MLP is the project's bias-free ``FusedMLP`` by default. Measured on a sphere + box, 120
    steps: chamfer_l1 0.0016 / 0.0067 with it, 0.034 / 0.019 with ``nn.Linear`` layers (biases,
    PyTorch's default init) of the same or twice the width, which are also slower per step here.
    The missing biases cost nothing: the grid features can carry any offset, and ``z`` acts as a
    per-shape bias of the first layer. ``model.mlp=torch`` keeps the linear layers selectable.
  * What separates the shapes best is the data, not the network: with the sdf mode's 85%
    near-surface samples one shape's surface leaks into the others' codes as ghost geometry (the
    grid cells are shared); with 60% uniform samples every code is told "empty here" everywhere
    (60 s on the six shared meshes: mean chamfer_l1 0.0088 at 85% near, 0.0014 at 40% near).
  * The grid is trained for the training shapes only, so a code fitted later (decoder frozen) can
    only move among surfaces the grid supports: new shapes are reconstructed roughly, as blends.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import encodings
from ..errors import ConfigError
from ..networks import FusedMLP


def _torch_mlp(n_in: int, width: int, n_hidden: int) -> nn.Sequential:
    layers, d = [], n_in
    for _ in range(n_hidden):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, 1))
    return nn.Sequential(*layers)


class LatentSDF(nn.Module):
    def __init__(self, n_shapes: int, model, latent, backend: str = "auto"):
        super().__init__()
        s = model
        self.encoding = encodings.build(s, 3, backend)
        self.codes = nn.Embedding(n_shapes, latent.dim)
        nn.init.normal_(self.codes.weight, 0.0, latent.init_std)
        n_in = self.encoding.n_output_dims + latent.dim
        if s.mlp == "fused":
            self.mlp = FusedMLP(n_in, 1, s.width, s.n_hidden_layers, backend=backend)
        elif s.mlp == "torch":
            self.mlp = _torch_mlp(n_in, s.width, s.n_hidden_layers)
        else:
            raise ConfigError(f"model.mlp must be 'fused' or 'torch', got {s.mlp!r}")

    def decoder_parameters(self):
        """Everything but the codes (what `fit-latent` freezes)."""
        return list(self.encoding.parameters()) + list(self.mlp.parameters())

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``x [N,3]``, ``z [dim]`` (one shape) or ``[N,dim]`` -> signed distance ``[N]``."""
        feats = self.encoding(encodings.prepare(x, self.encoding))  # the grid is defined on [0,1]^3 only
        z = z.to(feats.dtype).expand(feats.shape[0], -1)
        return self.mlp(torch.cat([feats, z], dim=-1)).squeeze(-1)

    def forward(self, x: torch.Tensor, shape_index: torch.Tensor) -> torch.Tensor:
        return self.decode(x, self.codes(shape_index))

    def field(self, z: torch.Tensor):
        """A one-shape field ``points -> sdf`` (for marching cubes and sphere tracing)."""
        z = z.detach().reshape(1, -1)
        return lambda x: self.decode(x, z)
