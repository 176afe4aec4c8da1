// CPU kernels of the NeRF rendering ops on raw pointers (see csrc/include/render_math.h for the math).
#pragma once

#include <cstdint>

namespace nerf_app {
namespace cpu {

// dirs [N,3] -> out [N, degree^2]; backward: grad_out [N, degree^2] -> grad_dirs [N,3].
void sh_encode_forward(const float* dirs, float* out, int64_t n, int degree);
void sh_encode_backward(const float* dirs, const float* grad_out, float* grad_dirs, int64_t n, int degree);

// origins, dirs [R,3] -> t_near, t_far [R] against the box [lo, hi]^3.
void ray_box(const float* origins, const float* dirs, float lo, float hi, float* t_near, float* t_far, int64_t n);

struct MarchParams {
  int n_cascades;
  int resolution;
  float dt_min, dt_max, cone_angle;
  int max_samples;  // per ray
};

// Pass 1: samples per ray. counts [R].
void march_count(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                 const uint8_t* bitfield, const MarchParams& p, int64_t* counts, int64_t n_rays);
// Pass 2: write samples at offsets starts [R] (exclusive prefix sum of counts).
void march_fill(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                const uint8_t* bitfield, const MarchParams& p, const int64_t* starts, int64_t* ray_indices,
                float* t_starts, float* t_ends, int64_t n_rays);

// Volume rendering of packed samples. packed [R,2] = (first sample, count). Outputs weights [S],
// color [R,3], opacity [R], depth [R] (expected t of sample midpoints). Samples whose transmittance
// before them is below t_threshold get weight 0 (early termination).
void render_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                    const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                    float* depth, int64_t n_rays);
void render_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                     const int64_t* packed, float t_threshold, const float* weights, const float* grad_color,
                     const float* grad_opacity, const float* grad_depth, float* grad_sigmas, float* grad_rgbs,
                     int64_t n_rays);

}  // namespace cpu
}  // namespace nerf_app
