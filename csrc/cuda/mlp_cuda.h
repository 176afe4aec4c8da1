// CUDA fully fused MLP launchers on raw pointers (no torch headers: nvcc compiles them fast and CI can
// compile-check them without a CUDA build of torch). `stream` is a cudaStream_t passed as void*; half
// buffers are passed as void* (torch's at::Half and CUDA's __half share the 16-bit layout).
//
// Layouts (rows padded to mlp_cuda_padded_rows(N), columns to mlp_cuda_padded_dim, i.e. 16):
//   x [N, n_in] float32, y / grad_y [N, n_out] float32, grad_x [N, n_in] float32, grad_w[i] [out_i, in_i] float32
//   w_half: every W_i as a zero-padded [out_p, in_p] half block at mlp_cuda_weight_offsets(d)[i]
//   x_half [N_pad, in_p], hidden [L-1, N_pad, width] half: saved by a training forward (else null)
//   g: scratch for every layer's pre-activation gradient (mlp_cuda_grad_elements half)
//   partial: scratch for per-chunk weight-gradient partials (chunks * mlp_cuda_weight_elements float32)
//   amax: one float32 scratch on the device, zeroed by the caller
#pragma once

#include <cstdint>
#include <vector>

namespace nerf_app {
namespace cuda {

struct MlpCudaDims {
  int n_in, width, n_out, n_layers;
  int act, out_act;  // MlpActivation codes (mlp_common.h)
};

// Widths 16/32/64/128, n_in and n_out at most 128, 1 to kMlpMaxLayers matrices.
bool mlp_cuda_supported(const MlpCudaDims& d);
int64_t mlp_cuda_padded_rows(int64_t n);
int mlp_cuda_padded_dim(int v);
std::vector<int64_t> mlp_cuda_weight_offsets(const MlpCudaDims& d);  // L entries
int64_t mlp_cuda_weight_elements(const MlpCudaDims& d);
int64_t mlp_cuda_grad_elements(const MlpCudaDims& d, int64_t n_pad);
int64_t mlp_cuda_weight_grad_chunks(int64_t n_pad);

void mlp_forward(const float* x, const void* w_half, float* y, void* x_half, void* hidden, int64_t n,
                 const MlpCudaDims& d, void* stream);

// The output gradient grad_y * a'(y) is multiplied by a power-of-two loss scale before it is rounded to
// half, and every gradient divided by it again in float32 (mlp_common.h, mlp_fp16_loss_scale). The scale
// is computed on the device from max |grad_y * a'(y)| (a reduction into `amax`), so the backward never
// waits for the host.
void mlp_backward(const void* x_half, const void* w_half, const void* hidden, const float* y, const float* grad_y,
                  float* amax, void* g, float* partial, float* grad_x, float* const* grad_w, int64_t n,
                  const MlpCudaDims& d, void* stream);

}  // namespace cuda
}  // namespace nerf_app
