// CUDA launchers of volume_render on raw pointers (no torch headers; stream as void*). Shapes and
// semantics as in cpu/volume_render_cpu.h.
#pragma once

#include <cstdint>

namespace nerf_app {
namespace cuda {

void volume_render_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                           const int64_t* packed, float t_threshold, float* weights, float* color, float* opacity,
                           float* depth, int64_t n_rays, void* stream);
void volume_render_backward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                            const int64_t* packed, float t_threshold, const float* weights, const float* grad_color,
                            const float* grad_opacity, const float* grad_depth, float* grad_sigmas, float* grad_rgbs,
                            int64_t n_rays, void* stream);

}  // namespace cuda
}  // namespace nerf_app
