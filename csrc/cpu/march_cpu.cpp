// CPU kernels of march_rays: one ray per iteration, running the same per-ray loop as the CUDA kernels.
#include "march_cpu.h"

#include <ATen/Parallel.h>

#include "march_math.h"

namespace nerf_app {
namespace cpu {

void march_count(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                 const uint8_t* bitfield, const MarchParams& p, int64_t* counts, int64_t n_rays) {
  at::parallel_for(0, n_rays, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const MarchRay ray{origins + 3 * r, dirs + 3 * r, t_min[r], t_max[r]};
      counts[r] = march_ray(ray, bitfield, p.n_cascades, p.resolution, p.dt_min, p.dt_max, p.cone_angle,
                            p.max_samples, [](int, float, float) {});
    }
  });
}

void march_fill(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                const uint8_t* bitfield, const MarchParams& p, const int64_t* starts, const int64_t* counts,
                int64_t* ray_indices, float* t_starts, float* t_ends, int64_t n_rays) {
  at::parallel_for(0, n_rays, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const MarchRay ray{origins + 3 * r, dirs + 3 * r, t_min[r], t_max[r]};
      march_fill_ray(ray, bitfield, p.n_cascades, p.resolution, p.dt_min, p.dt_max, p.cone_angle, p.max_samples, r,
                     starts[r], counts[r], ray_indices, t_starts, t_ends);
    }
  });
}

}  // namespace cpu
}  // namespace nerf_app
