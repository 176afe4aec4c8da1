// Volume rendering of one ray's packed samples (forward and backward), shared verbatim by the CPU and
// CUDA kernels (one ray per call). nerf_app/ops/_reference.py::volume_render is the readable twin.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace nerf_app {

// Forward volume rendering of one ray's samples [begin, begin + count).
NA_HD void render_ray_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
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
NA_HD void render_ray_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
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
