// Fully fused MLP: the definitions shared by the CPU and CUDA kernels and their torch glue.
//
// The network is bias-free (tiny-cuda-nn's FullyFusedMLP): h_0 = x, h_{i+1} = a(h_i W_i^T), with the
// output activation on the last of n_layers = n_hidden_layers + 1 matrices. W_i is [out_i, in_i]
// row-major, as torch stores nn.Linear weights. nerf_app/ops/_reference.py::mlp_forward is the
// readable definition the kernels must agree with.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NA_MLP_HD __host__ __device__ __forceinline__
#else
#define NA_MLP_HD inline
#endif

namespace nerf_app {

// Activation codes, passed from Python as ints (nerf_app/ops/mlp.py keeps the same table).
enum MlpActivation : int { kActNone = 0, kActRelu = 1, kActSigmoid = 2, kActExp = 3 };

constexpr int kMlpMaxLayers = 16;  // matrices; deeper nets fall back to torch

NA_MLP_HD int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Derivative of the activation expressed through its *output* y = a(z), which is what the
// kernels keep (relu: y > 0 like torch's threshold_backward; sigmoid: y(1-y); exp: y).
NA_MLP_HD float activation_grad_from_output(int act, float y) {
  return act == kActRelu ? (y > 0.f ? 1.f : 0.f)
                         : (act == kActSigmoid ? y * (1.f - y) : (act == kActExp ? y : 1.f));
}

}  // namespace nerf_app
