// CPU (OpenMP) fully fused MLP on raw float32 pointers. Shapes, with L = n_layers matrices and
// dims d = [n_in, width x (L-1), n_out]:
//   x [N, n_in], weights[i] [d[i+1], d[i]] row-major, y / grad_y [N, n_out], grad_x [N, n_in],
//   grad_weights[i] like weights[i] (overwritten, not accumulated).
//   hidden: the L-1 hidden activations saved by a training forward for the backward, stored as
//   [L-1, N, mlp_cpu_hidden_width(width)] (columns padded to the SIMD width; internal to the op).
#pragma once

#include <cstdint>
#include <vector>

#include "mlp_common.h"

namespace nerf_app {
namespace cpu {

struct MlpDims {
  int n_in, width, n_out, n_layers;
  int act, out_act;  // MlpActivation codes for hidden layers and the output
};

// Columns of one saved hidden row (the width rounded up to the 8-float vector).
int mlp_cpu_hidden_width(int width);

// Forward over tiles of rows, all layers per tile. `hidden` may be null (inference: nothing saved).
void mlp_forward(const float* x, const float* const* weights, float* y, float* hidden, int64_t n,
                 const MlpDims& dims);

// Backward from the saved forward (x, hidden, y). `grad_x` may be null (input needs no gradient).
// Weight gradients are summed per chunk of rows (chunks depend only on N) and the chunk partials
// reduced in chunk order, so they are bit-identical on every run and for any thread count.
void mlp_backward(const float* x, const float* const* weights, const float* hidden, const float* y,
                  const float* grad_y, float* grad_x, float* const* grad_weights, int64_t n, const MlpDims& dims);

// bf16 inference (mlp_bf16_cpu.cpp): operands rounded to bf16, fp32 accumulation (AVX-512 BF16), the output
// layer's result and activation in fp32. Only where mlp_bf16_supported() (checked at run time: the kernel
// is compiled into every x86-64 build, portable ones included); anywhere else it throws.
bool mlp_bf16_supported();
void mlp_forward_bf16(const float* x, const float* const* weights, float* y, int64_t n, const MlpDims& dims);

// bf16 inference on AMX tiles (mlp_amx_cpu.cpp): the same operands and fp32 accumulation as mlp_forward_bf16,
// which takes this kernel wherever mlp_amx_supported(): the CPU has AMX-BF16, the OS granted the tile state,
// and NERF_APP_MLP_AMX is not 0. The weights are packed once (mlp_bf16_pack), so a caller that runs many small
// batches (the fused render) packs once per call, not per batch.
struct MlpBf16Weights {
  MlpDims dims;
  std::vector<int> kp, np;               // padded input (multiple of 32) and output (of 16) widths per layer
  std::vector<std::vector<uint16_t>> w;  // per layer [kp/2][np][2] bf16
};
MlpBf16Weights mlp_bf16_pack(const float* const* weights, const MlpDims& dims);
bool mlp_amx_supported();
void mlp_forward_amx(const MlpBf16Weights& net, const float* x, float* y, int64_t n);

}  // namespace cpu
}  // namespace nerf_app
