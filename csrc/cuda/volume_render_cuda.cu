// CUDA kernels of volume_render: one thread per ray, the same per-ray loops as the CPU
// (volume_render_math.h).
#include "common.h"
#include "volume_render_cuda.h"
#include "volume_render_math.h"

namespace nerf_app {
namespace cuda {
namespace {

constexpr int kThreads = 128;

__global__ void forward_kernel(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                               const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                               float* depth, int64_t n_rays) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_rays) return;
  render_ray_forward(sigmas, rgbs, t_starts, t_ends, packed[2 * r], packed[2 * r + 1], t_threshold, weights,
                     color + 3 * r, opacity + r, depth + r);
}

__global__ void backward_kernel(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                                const int64_t* packed, float t_threshold, const float* weights,
                                const float* grad_color, const float* grad_opacity, const float* grad_depth,
                                float* grad_sigmas, float* grad_rgbs, int64_t n_rays) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_rays) return;
  render_ray_backward(sigmas, rgbs, t_starts, t_ends, packed[2 * r], packed[2 * r + 1], t_threshold, weights,
                      grad_color + 3 * r, grad_opacity[r], grad_depth[r], grad_sigmas, grad_rgbs);
}

}  // namespace

void volume_render_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                           const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                           float* depth, int64_t n_rays, void* stream) {
  if (n_rays > 0)
    forward_kernel<<<grid_1d(n_rays, kThreads), kThreads, 0, as_stream(stream)>>>(
        sigmas, rgbs, t_starts, t_ends, packed, t_threshold, weights, color, opacity, depth, n_rays);
}

void volume_render_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                            const int64_t* packed, float t_threshold, const float* weights, const float* grad_color,
                            const float* grad_opacity, const float* grad_depth, float* grad_sigmas, float* grad_rgbs,
                            int64_t n_rays, void* stream) {
  if (n_rays > 0)
    backward_kernel<<<grid_1d(n_rays, kThreads), kThreads, 0, as_stream(stream)>>>(
        sigmas, rgbs, t_starts, t_ends, packed, t_threshold, weights, grad_color, grad_opacity, grad_depth,
        grad_sigmas, grad_rgbs, n_rays);
}

}  // namespace cuda
}  // namespace nerf_app
