// CPU kernels of volume_render on raw pointers. packed [R,2] = (first sample, count). Outputs weights [S],
// color [R,3], opacity [R], depth [R] (expected t of sample midpoints). Samples whose transmittance
// before them is below t_threshold get weight 0 (early termination).
#pragma once

#include <cstdint>

namespace nerf_app {
namespace cpu {

void volume_render_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                           const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                           float* depth, int64_t n_rays);
void volume_render_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                            const int64_t* packed, float t_threshold, const float* weights, const float* grad_color,
                            const float* grad_opacity, const float* grad_depth, float* grad_sigmas, float* grad_rgbs,
                            int64_t n_rays);

}  // namespace cpu
}  // namespace nerf_app
