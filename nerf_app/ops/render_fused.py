"""The fused NeRF inference render on the CPU (kernel: csrc/render_fused.cpp, csrc/cpu/render_fused_cpu.cpp).

One C++ pass per tile of rays — march, hash-grid encode, density MLP, colour MLP for the samples that can
still show, composite, retire — instead of a dozen torch ops per round between the compiled kernels. Its
definition is :func:`nerf_app.nerf.renderer.render_rays_early_stop` composed of the ops (the reference
twin; ``tests/test_render_fused.py`` checks one against the other): the same rounds per ray
(``round_samples`` doubling to ``round_samples_max``, each resumed where the last stopped), the same
samples, the same colour skip (``render_min_weight``) and retirement (``render_t_threshold``).

It takes :class:`~nerf_app.nerf.field.NerfField` as it is (a hash grid with float32 table, bias-free
MLPs, SH of the view direction) on CPU tensors with the ``cpp`` backend; anything else — CUDA, the
``torch`` backend, a field that changes ``density`` or ``color``, other encodings — renders through the
composed ops (:func:`unsupported` says why).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .. import backend as _backend
from .mlp import ACTIVATION_CODES, inference_in_bf16

MAX_ROUND_SAMPLES = 4096   # the kernel's bound on round_samples / round_samples_max


def unsupported(field, grid, device: torch.device, backend: Optional[str] = "auto", march=None) -> Optional[str]:
    """Why :func:`render_rays_fused` cannot render ``field`` through ``grid`` on ``device``, or None."""
    from ..encodings.hashgrid import HashGrid
    from ..nerf.field import NerfField
    device = torch.device(device)
    if device.type != "cpu":
        return f"the fused render runs on the CPU only (tensors on {device.type})"
    if _backend.requested(backend) == "torch":
        return "the torch backend was asked for"
    ext = _backend.extension()
    if ext is None or not hasattr(ext, "render_fused"):
        return "the compiled extension has no render_fused (rebuild it: pip install --no-build-isolation -e .)"
    if not isinstance(field, NerfField) or type(field).density is not NerfField.density \
            or type(field).color is not NerfField.color:
        return f"{type(field).__name__} is not a plain NerfField"
    enc = field.encoding
    if not isinstance(enc, HashGrid) or getattr(enc, "encoding_name", "hashgrid") != "hashgrid":
        return "the field's encoding is not a hash grid"
    if enc.table.dtype != torch.float32 or enc.layout.input_dim != 3:
        return "the hash grid's table is not float32 over 3-D points"
    nets = (field.density_net, field.color_net)
    if any(_backend.requested(m.backend) == "torch" for m in (enc, *nets)):
        return "a module of the field asks for the torch backend"
    if any(w.dtype != torch.float32 for m in nets for w in m.weights):
        return "the MLP weights are not float32"
    if field.density_net.activation != field.color_net.activation:
        return "the two MLPs use different hidden activations"
    if field.density_net.output_activation != "none":
        return "the density MLP has an output activation"
    if not 1 <= field.sh_degree <= 4:
        return f"SH degree {field.sh_degree} is outside 1..4"
    if march is not None and not (1 <= march.round_samples <= MAX_ROUND_SAMPLES
                                  and 1 <= march.round_samples_max <= MAX_ROUND_SAMPLES):
        return f"round_samples / round_samples_max outside 1..{MAX_ROUND_SAMPLES}"
    return None


@torch.no_grad()
def render_rays_fused(field, grid, origins: torch.Tensor, dirs: torch.Tensor, t_near: torch.Tensor,
                      t_far: torch.Tensor, background: torch.Tensor, march
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``origins, dirs [R, 3]`` (unit dirs), marching intervals ``t_near, t_far [R]``, ``background [3]`` or
    ``[R, 3]`` -> ``color [R, 3]`` (over the background), ``depth [R]``, ``opacity [R]``, ``samples [R]``
    (int64: samples marched and evaluated per ray). The MLPs run in bf16 where the composed ops' MLPs would
    (:func:`~nerf_app.ops.mlp.inference_in_bf16`)."""
    ext = _backend.extension()
    enc = field.encoding
    dn, cn = field.density_net, field.color_net
    bf16 = inference_in_bf16(origins.device)
    bg = background.float().contiguous()
    if bg.dim() == 2 and bg.shape[0] == 1:
        bg = bg[0].contiguous()
    color, depth, opacity, samples = ext.render_fused(
        origins.float().contiguous(), dirs.float().contiguous(), t_near.float().contiguous(),
        t_far.float().contiguous(), bg, grid.bitfield.contiguous(), int(grid.n_cascades), int(grid.resolution),
        float(march.dt_min()), float(march.dt_max(grid)), float(march.cone_angle), int(march.round_samples),
        int(march.round_samples_max), float(march.render_t_threshold), float(march.render_min_weight),
        enc.table.detach().contiguous(), *enc.layout.kernel_args(), enc.interpolation == "smoothstep",
        [w.detach().contiguous() for w in dn.weights], [w.detach().contiguous() for w in cn.weights],
        ACTIVATION_CODES[dn.activation], ACTIVATION_CODES[cn.output_activation], int(field.sh_degree),
        float(field.density_bias), float(field.bound_lo), float(field.bound_hi - field.bound_lo), bool(bf16))
    return color, depth, opacity, samples

