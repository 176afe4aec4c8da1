// CUDA kernels of sh_encode: one thread per direction, the same sh_basis as the CPU (sh_math.h).
#include "common.h"
#include "sh_cuda.h"
#include "sh_math.h"

namespace nerf_app {
namespace cuda {
namespace {

constexpr int kThreads = 128;

__global__ void sh_forward_kernel(const float* __restrict__ dirs, float* __restrict__ out, int64_t n, int degree) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  sh_basis<float>(dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2], degree, out + i * degree * degree, nullptr);
}

__global__ void sh_backward_kernel(const float* __restrict__ dirs, const float* __restrict__ grad_out,
                                   float* __restrict__ grad_dirs, int64_t n, int degree) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float basis[16], grad[16][3];
  sh_basis<float>(dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2], degree, basis, grad);
  const int k = degree * degree;
  float g[3] = {0.f, 0.f, 0.f};
  for (int j = 0; j < k; ++j)
    for (int a = 0; a < 3; ++a) g[a] += grad_out[i * k + j] * grad[j][a];
  for (int a = 0; a < 3; ++a) grad_dirs[3 * i + a] = g[a];
}

}  // namespace

void sh_encode_forward(const float* dirs, float* out, int64_t n, int degree, void* stream) {
  if (n > 0) sh_forward_kernel<<<grid_1d(n, kThreads), kThreads, 0, as_stream(stream)>>>(dirs, out, n, degree);
}

void sh_encode_backward(const float* dirs, const float* grad_out, float* grad_dirs, int64_t n, int degree,
                        void* stream) {
  if (n > 0)
    sh_backward_kernel<<<grid_1d(n, kThreads), kThreads, 0, as_stream(stream)>>>(dirs, grad_out, grad_dirs, n,
                                                                                 degree);
}

}  // namespace cuda
}  // namespace nerf_app
