// CPU kernel of ray_aabb: one ray per iteration (csrc/include/ray_aabb_math.h holds the math).
#include "ray_aabb_cpu.h"

#include <ATen/Parallel.h>

#include "ray_aabb_math.h"

namespace nerf_app {
namespace cpu {

void ray_aabb(const float* origins, const float* dirs, const Aabb& box, float* t_near, float* t_far, int64_t n) {
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) nerf_app::ray_aabb(origins + 3 * i, dirs + 3 * i, box, t_near[i], t_far[i]);
  });
}

}  // namespace cpu
}  // namespace nerf_app
