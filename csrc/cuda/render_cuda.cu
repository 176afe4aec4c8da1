// CUDA kernels of the NeRF rendering ops: one thread per direction or per ray, running the same
// per-ray loops as the CPU (csrc/include/render_loops.h), so both backends take the same steps.
#include <cuda_runtime.h>

#include "render_cuda.h"
#include "render_loops.h"
#include "render_math.h"

namespace nerf_app {
namespace cuda {
namespace {

constexpr int kThreads = 128;
inline unsigned blocks(int64_t n) { return (unsigned)((n + kThreads - 1) / kThreads); }

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

__global__ void ray_box_kernel(const float* __restrict__ origins, const float* __restrict__ dirs, float lo, float hi,
                               float* __restrict__ t_near, float* __restrict__ t_far, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  nerf_app::ray_box(origins + 3 * i, dirs + 3 * i, lo, hi, t_near[i], t_far[i]);
}

struct NoEmit {
  __device__ void operator()(int, float, float) const {}
};

struct WriteEmit {
  int64_t base, ray;
  int64_t* ray_indices;
  float* t_starts;
  float* t_ends;
  __device__ void operator()(int j, float t0, float t1) const {
    ray_indices[base + j] = ray;
    t_starts[base + j] = t0;
    t_ends[base + j] = t1;
  }
};

__global__ void march_count_kernel(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                                   const uint8_t* bitfield, int n_cascades, int res, float dt_min, float dt_max,
                                   float cone_angle, int max_samples, int64_t* counts, int64_t n_rays) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_rays) return;
  const MarchRay ray{origins + 3 * r, dirs + 3 * r, t_min[r], t_max[r]};
  counts[r] = march_ray(ray, bitfield, n_cascades, res, dt_min, dt_max, cone_angle, max_samples, NoEmit{});
}

__global__ void march_fill_kernel(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                                  const uint8_t* bitfield, int n_cascades, int res, float dt_min, float dt_max,
                                  float cone_angle, int max_samples, const int64_t* starts, int64_t* ray_indices,
                                  float* t_starts, float* t_ends, int64_t n_rays) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_rays) return;
  const MarchRay ray{origins + 3 * r, dirs + 3 * r, t_min[r], t_max[r]};
  march_ray(ray, bitfield, n_cascades, res, dt_min, dt_max, cone_angle, max_samples,
            WriteEmit{starts[r], r, ray_indices, t_starts, t_ends});
}

__global__ void render_forward_kernel(const float* sigmas, const float* rgbs, const float* t_starts,
                                      const float* t_ends, const int64_t* packed, float t_threshold, float* weights,
                                      float* color, float* opacity, float* depth, int64_t n_rays) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_rays) return;
  render_ray_forward(sigmas, rgbs, t_starts, t_ends, packed[2 * r], packed[2 * r + 1], t_threshold, weights,
                     color + 3 * r, opacity + r, depth + r);
}

__global__ void render_backward_kernel(const float* sigmas, const float* rgbs, const float* t_starts,
                                       const float* t_ends, const int64_t* packed, float t_threshold,
                                       const float* weights, const float* grad_color, const float* grad_opacity,
                                       const float* grad_depth, float* grad_sigmas, float* grad_rgbs,
                                       int64_t n_rays) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_rays) return;
  render_ray_backward(sigmas, rgbs, t_starts, t_ends, packed[2 * r], packed[2 * r + 1], t_threshold, weights,
                      grad_color + 3 * r, grad_opacity[r], grad_depth[r], grad_sigmas, grad_rgbs);
}

}  // namespace

#define NR_STREAM static_cast<cudaStream_t>(stream)

void sh_encode_forward(const float* dirs, float* out, int64_t n, int degree, void* stream) {
  if (n > 0) sh_forward_kernel<<<blocks(n), kThreads, 0, NR_STREAM>>>(dirs, out, n, degree);
}

void sh_encode_backward(const float* dirs, const float* grad_out, float* grad_dirs, int64_t n, int degree,
                        void* stream) {
  if (n > 0) sh_backward_kernel<<<blocks(n), kThreads, 0, NR_STREAM>>>(dirs, grad_out, grad_dirs, n, degree);
}

void ray_box(const float* origins, const float* dirs, float lo, float hi, float* t_near, float* t_far, int64_t n,
             void* stream) {
  if (n > 0) ray_box_kernel<<<blocks(n), kThreads, 0, NR_STREAM>>>(origins, dirs, lo, hi, t_near, t_far, n);
}

void march_count(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                 const uint8_t* bitfield, int n_cascades, int resolution, float dt_min, float dt_max,
                 float cone_angle, int max_samples, int64_t* counts, int64_t n_rays, void* stream) {
  if (n_rays > 0)
    march_count_kernel<<<blocks(n_rays), kThreads, 0, NR_STREAM>>>(origins, dirs, t_min, t_max, bitfield,
                                                                   n_cascades, resolution, dt_min, dt_max,
                                                                   cone_angle, max_samples, counts, n_rays);
}

void march_fill(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                const uint8_t* bitfield, int n_cascades, int resolution, float dt_min, float dt_max, float cone_angle,
                int max_samples, const int64_t* starts, int64_t* ray_indices, float* t_starts, float* t_ends,
                int64_t n_rays, void* stream) {
  if (n_rays > 0)
    march_fill_kernel<<<blocks(n_rays), kThreads, 0, NR_STREAM>>>(origins, dirs, t_min, t_max, bitfield, n_cascades,
                                                                  resolution, dt_min, dt_max, cone_angle,
                                                                  max_samples, starts, ray_indices, t_starts, t_ends,
                                                                  n_rays);
}

void render_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                    const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                    float* depth, int64_t n_rays, void* stream) {
  if (n_rays > 0)
    render_forward_kernel<<<blocks(n_rays), kThreads, 0, NR_STREAM>>>(sigmas, rgbs, t_starts, t_ends, packed,
                                                                      t_threshold, weights, color, opacity, depth,
                                                                      n_rays);
}

void render_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                     const int64_t* packed, float t_threshold, const float* weights, const float* grad_color,
                     const float* grad_opacity, const float* grad_depth, float* grad_sigmas, float* grad_rgbs,
                     int64_t n_rays, void* stream) {
  if (n_rays > 0)
    render_backward_kernel<<<blocks(n_rays), kThreads, 0, NR_STREAM>>>(sigmas, rgbs, t_starts, t_ends, packed,
                                                                       t_threshold, weights, grad_color,
                                                                       grad_opacity, grad_depth, grad_sigmas,
                                                                       grad_rgbs, n_rays);
}

}  // namespace cuda
}  // namespace nerf_app
