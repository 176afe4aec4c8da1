// CPU kernels of volume_render: one ray per iteration; every output element is written by exactly one
// thread, so results do not depend on the thread count (csrc/include/volume_render_math.h).
#include "volume_render_cpu.h"

#include <ATen/Parallel.h>

#include "volume_render_math.h"

namespace nerf_app {
namespace cpu {

void volume_render_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                           const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                           float* depth, int64_t n_rays) {
  at::parallel_for(0, n_rays, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      render_ray_forward(sigmas, rgbs, t_starts, t_ends, packed[2 * r], packed[2 * r + 1], t_threshold, weights,
                         color + 3 * r, opacity + r, depth + r);
  });
}

void volume_render_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                            const int64_t* packed, float t_threshold, const float* weights, const float* grad_color,
                            const float* grad_opacity, const float* grad_depth, float* grad_sigmas, float* grad_rgbs,
                            int64_t n_rays) {
  at::parallel_for(0, n_rays, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      render_ray_backward(sigmas, rgbs, t_starts, t_ends, packed[2 * r], packed[2 * r + 1], t_threshold, weights,
                          grad_color + 3 * r, grad_opacity[r], grad_depth[r], grad_sigmas, grad_rgbs);
  });
}

}  // namespace cpu
}  // namespace nerf_app
