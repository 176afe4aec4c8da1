// CUDA launchers of the NeRF rendering ops on raw pointers (no torch headers; stream as void*).
// Shapes and semantics as in csrc/cpu/render_cpu.h.
#pragma once

#include <cstdint>

namespace nerf_app {
namespace cuda {

void sh_encode_forward(const float* dirs, float* out, int64_t n, int degree, void* stream);
void sh_encode_backward(const float* dirs, const float* grad_out, float* grad_dirs, int64_t n, int degree,
                        void* stream);
void ray_box(const float* origins, const float* dirs, float lo, float hi, float* t_near, float* t_far, int64_t n,
             void* stream);
void march_count(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                 const uint8_t* bitfield, int n_cascades, int resolution, float dt_min, float dt_max,
                 float cone_angle, int max_samples, int64_t* counts, int64_t n_rays, void* stream);
void march_fill(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                const uint8_t* bitfield, int n_cascades, int resolution, float dt_min, float dt_max, float cone_angle,
                int max_samples, const int64_t* starts, int64_t* ray_indices, float* t_starts, float* t_ends,
                int64_t n_rays, void* stream);
void render_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                    const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                    float* depth, int64_t n_rays, void* stream);
void render_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                     const int64_t* packed, float t_threshold, const float* weights, const float* grad_color,
                     const float* grad_opacity, const float* grad_depth, float* grad_sigmas, float* grad_rgbs,
                     int64_t n_rays, void* stream);

}  // namespace cuda
}  // namespace nerf_app
