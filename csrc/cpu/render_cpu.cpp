// CPU kernels of the NeRF rendering ops: one ray (or one direction) per loop iteration, split across
// threads with at::parallel_for. Every output element is written by exactly one thread, so results
// do not depend on the thread count.
#include "render_cpu.h"

#include <ATen/Parallel.h>

#include "render_loops.h"
#include "render_math.h"

namespace nerf_app {
namespace cpu {

void sh_encode_forward(const float* dirs, float* out, int64_t n, int degree) {
  const int k = degree * degree;
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      sh_basis<float>(dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2], degree, out + i * k, nullptr);
  });
}

void sh_encode_backward(const float* dirs, const float* grad_out, float* grad_dirs, int64_t n, int degree) {
  const int k = degree * degree;
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    float basis[16], grad[16][3];
    for (int64_t i = b; i < e; ++i) {
      sh_basis<float>(dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2], degree, basis, grad);
      float g[3] = {0.f, 0.f, 0.f};
      for (int j = 0; j < k; ++j)
        for (int a = 0; a < 3; ++a) g[a] += grad_out[i * k + j] * grad[j][a];
      for (int a = 0; a < 3; ++a) grad_dirs[3 * i + a] = g[a];
    }
  });
}

void ray_box(const float* origins, const float* dirs, float lo, float hi, float* t_near, float* t_far, int64_t n) {
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) nerf_app::ray_box(origins + 3 * i, dirs + 3 * i, lo, hi, t_near[i], t_far[i]);
  });
}

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
                const uint8_t* bitfield, const MarchParams& p, const int64_t* starts, int64_t* ray_indices,
                float* t_starts, float* t_ends, int64_t n_rays) {
  at::parallel_for(0, n_rays, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const MarchRay ray{origins + 3 * r, dirs + 3 * r, t_min[r], t_max[r]};
      const int64_t base = starts[r];
      march_ray(ray, bitfield, p.n_cascades, p.resolution, p.dt_min, p.dt_max, p.cone_angle, p.max_samples,
                [&](int j, float t0, float t1) {
                  ray_indices[base + j] = r;
                  t_starts[base + j] = t0;
                  t_ends[base + j] = t1;
                });
    }
  });
}

void render_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                    const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                    float* depth, int64_t n_rays) {
  at::parallel_for(0, n_rays, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      render_ray_forward(sigmas, rgbs, t_starts, t_ends, packed[2 * r], packed[2 * r + 1], t_threshold, weights,
                         color + 3 * r, opacity + r, depth + r);
  });
}

void render_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
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
