// Fully fused MLP: the definitions shared by the CPU and CUDA kernels and their torch glue.
//
// The network is bias-free (tiny-cuda-nn's FullyFusedMLP): h_0 = x, h_{i+1} = a(h_i W_i^T), with the
// output activation on the last of n_layers = n_hidden_layers + 1 matrices. W_i is [out_i, in_i]
// row-major, as torch stores nn.Linear weights. nerf_app/ops/_reference.py::mlp_forward is the
// readable definition the kernels must agree with.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace nerf_app {

// Activation codes, passed from Python as ints (nerf_app/ops/mlp.py keeps the same table).
enum MlpActivation : int { kActNone = 0, kActRelu = 1, kActSigmoid = 2, kActExp = 3 };

constexpr int kMlpMaxLayers = 16;  // matrices; deeper nets fall back to torch

NA_HD int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Derivative of the activation expressed through its *output* y = a(z), which is what the
// kernels keep (relu: y > 0 like torch's threshold_backward; sigmoid: y(1-y); exp: y).
NA_HD float activation_grad_from_output(int act, float y) {
  return act == kActRelu ? (y > 0.f ? 1.f : 0.f)
                         : (act == kActSigmoid ? y * (1.f - y) : (act == kActExp ? y : 1.f));
}

// ---- fp16 loss scaling of the CUDA backward
// The CUDA backward stores G = scale * grad_y * a'(y) in fp16, so the scale must be sized from that
// product, not from grad_y alone: with an `exp` output a'(y) = y, and grad_y * y can be 1e5 times
// grad_y (beyond fp16's 65504 -> Inf -> NaN weights). The value rounded to fp16:
NA_HD float mlp_stored_grad(int out_act, float grad_y, float y) {
  return grad_y * activation_grad_from_output(out_act, y);
}

// log2 of the largest stored |G| the scale aims at: 2^10 keeps small gradients clear of the fp16
// subnormals (below 6e-5) and leaves 2^5.9 of headroom (65504 / 1024) for the growth of G through the
// hidden layers' backward products.
constexpr int kMlpLossScaleLog2 = 10;

// The scale for a largest stored magnitude `amax`: a power of two (exact to apply and to undo), so
// that amax * scale lies in [2^10, 2^11). amax of 0 (no gradient), Inf or NaN gives 1: nothing to aim
// at, and a non-finite gradient is caught by the trainer's finiteness check, not hidden here. The
// exponent is clamped so scale and 1/scale stay normal floats.
NA_HD float mlp_fp16_loss_scale(float amax) {
  if (!(amax > 0.f) || !(amax <= 3.402823466e38f)) return 1.f;
  int e = kMlpLossScaleLog2 - ilogbf(amax);
  e = e < -126 ? -126 : (e > 126 ? 126 : e);
  return ldexpf(1.f, e);
}

}  // namespace nerf_app
