// Per-ray loops of ray marching and volume rendering, shared verbatim by the CPU and CUDA kernels
// (one ray per call), so both walk exactly the same steps.
#pragma once

#include "render_math.h"

namespace nerf_app {

struct MarchRay {
  const float* o;
  const float* d;
  float t_min, t_max;
};

// Walks one ray through the cascaded grid; calls emit(t0, t1) for each sample in an occupied cell.
// Inside cascade k the step is march_dt(t); an empty cell is skipped to where the ray leaves it (in
// whole steps, so samples stay on the same lattice as if the cell had been marched through).
template <typename Emit>
NR_HD int march_ray(const MarchRay& r, const uint8_t* bitfield, int n_cascades, int res, float dt_min, float dt_max,
                    float cone_angle, int max_samples, Emit&& emit) {
  int n = 0;
  float t = r.t_min;
  while (t < r.t_max && n < max_samples) {
    const float dt = march_dt(t, cone_angle, dt_min, dt_max);
    const float mid = t + 0.5f * dt;
    float p[3];
    for (int a = 0; a < 3; ++a) p[a] = r.o[a] + mid * r.d[a];
    const int k = cascade_of(p, n_cascades);
    if (k >= n_cascades) break;  // left the outermost cascade
    const float scale = (float)(1 << k), inv_scale = 1.0f / scale;
    const int cx = cell_coord(p[0], inv_scale, res), cy = cell_coord(p[1], inv_scale, res),
              cz = cell_coord(p[2], inv_scale, res);
    if (grid_occupied(bitfield, k, cx, cy, cz, res)) {
      emit(n, t, t + dt);
      ++n;
      t += dt;
    } else {
      const float t_exit = cell_exit_t(r.o, r.d, cx, cy, cz, scale, res);
      do {
        t += march_dt(t, cone_angle, dt_min, dt_max);
      } while (t + 0.5f * march_dt(t, cone_angle, dt_min, dt_max) < t_exit && t < r.t_max);
    }
  }
  return n;
}

// Forward volume rendering of one ray's samples [begin, begin + count).
NR_HD void render_ray_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                              int64_t begin, int64_t count, float t_threshold, float* weights, float* color,
                              float* opacity, float* depth) {
  float optical = 0.f, c0 = 0.f, c1 = 0.f, c2 = 0.f, acc = 0.f, dep = 0.f;
  for (int64_t i = begin; i < begin + count; ++i) {
    const float T = expf(-optical);
    if (T < t_threshold) {
      for (int64_t j = i; j < begin + count; ++j) weights[j] = 0.f;
      break;
    }
    const float dt = t_ends[i] - t_starts[i];
    const float tau = sigmas[i] * dt;
    const float w = T * (1.0f - expf(-tau));
    weights[i] = w;
    c0 += w * rgbs[3 * i];
    c1 += w * rgbs[3 * i + 1];
    c2 += w * rgbs[3 * i + 2];
    acc += w;
    dep += w * 0.5f * (t_starts[i] + t_ends[i]);
    optical += tau;
  }
  color[0] = c0;
  color[1] = c1;
  color[2] = c2;
  *opacity = acc;
  *depth = dep;
}

// Backward of render_ray_forward. With q_i = rgb_i . gC + gO + gD * t_mid_i and Q = sum_i w_i q_i:
//   dL/dsigma_k = dt_k * (T_{k+1} q_k - sum_{i>k} w_i q_i),   dL/drgb_k = w_k * gC.
NR_HD void render_ray_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                               int64_t begin, int64_t count, float t_threshold, const float* weights,
                               const float* gC, float gO, float gD, float* grad_sigmas, float* grad_rgbs) {
  const int64_t end = begin + count;
  float total = 0.f;
  for (int64_t i = begin; i < end; ++i) {
    const float q = rgbs[3 * i] * gC[0] + rgbs[3 * i + 1] * gC[1] + rgbs[3 * i + 2] * gC[2] + gO +
                    gD * 0.5f * (t_starts[i] + t_ends[i]);
    total += weights[i] * q;  // terminated samples have weight 0
    grad_rgbs[3 * i] = weights[i] * gC[0];
    grad_rgbs[3 * i + 1] = weights[i] * gC[1];
    grad_rgbs[3 * i + 2] = weights[i] * gC[2];
    grad_sigmas[i] = 0.f;
  }
  float optical = 0.f, prefix = 0.f;
  for (int64_t i = begin; i < end; ++i) {
    const float T = expf(-optical);
    if (T < t_threshold) break;  // early-terminated samples: no gradient
    const float dt = t_ends[i] - t_starts[i];
    const float tau = sigmas[i] * dt;
    const float q = rgbs[3 * i] * gC[0] + rgbs[3 * i + 1] * gC[1] + rgbs[3 * i + 2] * gC[2] + gO +
                    gD * 0.5f * (t_starts[i] + t_ends[i]);
    prefix += weights[i] * q;
    optical += tau;
    grad_sigmas[i] = dt * (expf(-optical) * q - (total - prefix));
  }
}

}  // namespace nerf_app
