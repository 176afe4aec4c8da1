// CUDA kernels of march_rays: one thread per ray, the same per-ray loop as the CPU (march_math.h), whose
// arithmetic is written with non-contracted operations so both passes take identical steps.
#include "common.h"
#include "march_cuda.h"
#include "march_math.h"

namespace nerf_app {
namespace cuda {
namespace {

constexpr int kThreads = 128;

__global__ void march_count_kernel(const float* __restrict__ origins, const float* __restrict__ dirs,
                                   const float* __restrict__ t_min, const float* __restrict__ t_max,
                                   const uint8_t* __restrict__ bitfield, MarchParams p, int64_t* __restrict__ counts,
                                   int64_t n_rays) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_rays) return;
  const MarchRay ray{origins + 3 * r, dirs + 3 * r, t_min[r], t_max[r]};
  counts[r] = march_ray(ray, bitfield, p.n_cascades, p.resolution, p.dt_min, p.dt_max, p.cone_angle, p.max_samples,
                        [](int, float, float) {});
}

__global__ void march_fill_kernel(const float* __restrict__ origins, const float* __restrict__ dirs,
                                  const float* __restrict__ t_min, const float* __restrict__ t_max,
                                  const uint8_t* __restrict__ bitfield, MarchParams p,
                                  const int64_t* __restrict__ starts, const int64_t* __restrict__ counts,
                                  int64_t* __restrict__ ray_indices, float* __restrict__ t_starts,
                                  float* __restrict__ t_ends, int64_t n_rays) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n_rays) return;
  const MarchRay ray{origins + 3 * r, dirs + 3 * r, t_min[r], t_max[r]};
  march_fill_ray(ray, bitfield, p.n_cascades, p.resolution, p.dt_min, p.dt_max, p.cone_angle, p.max_samples, r,
                 starts[r], counts[r], ray_indices, t_starts, t_ends);
}

}  // namespace

void march_count(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                 const uint8_t* bitfield, const MarchParams& p, int64_t* counts, int64_t n_rays, void* stream) {
  if (n_rays > 0)
    march_count_kernel<<<grid_1d(n_rays, kThreads), kThreads, 0, as_stream(stream)>>>(origins, dirs, t_min, t_max,
                                                                                      bitfield, p, counts, n_rays);
}

void march_fill(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                const uint8_t* bitfield, const MarchParams& p, const int64_t* starts, const int64_t* counts,
                int64_t* ray_indices, float* t_starts, float* t_ends, int64_t n_rays, void* stream) {
  if (n_rays > 0)
    march_fill_kernel<<<grid_1d(n_rays, kThreads), kThreads, 0, as_stream(stream)>>>(
        origins, dirs, t_min, t_max, bitfield, p, starts, counts, ray_indices, t_starts, t_ends, n_rays);
}

}  // namespace cuda
}  // namespace nerf_app
