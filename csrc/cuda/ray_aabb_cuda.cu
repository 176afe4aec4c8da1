// CUDA kernel of ray_aabb: one thread per ray, the same slab test as the CPU (ray_aabb_math.h).
#include "common.h"
#include "ray_aabb_cuda.h"
#include "ray_aabb_math.h"

namespace nerf_app {
namespace cuda {
namespace {

constexpr int kThreads = 128;

__global__ void ray_aabb_kernel(const float* __restrict__ origins, const float* __restrict__ dirs, Aabb box,
                                float* __restrict__ t_near, float* __restrict__ t_far, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  nerf_app::ray_aabb(origins + 3 * i, dirs + 3 * i, box, t_near[i], t_far[i]);
}

}  // namespace

void ray_aabb(const float* origins, const float* dirs, const Aabb& box, float* t_near, float* t_far, int64_t n,
              void* stream) {
  if (n > 0)
    ray_aabb_kernel<<<grid_1d(n, kThreads), kThreads, 0, as_stream(stream)>>>(origins, dirs, box, t_near, t_far,
                                                                              n);
}

}  // namespace cuda
}  // namespace nerf_app
