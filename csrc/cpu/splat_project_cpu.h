// CPU kernels of splat_project on raw pointers (csrc/include/splat_project_math.h holds the per-splat maths).
// Splats: means [N,3], log_scales [N,3], quats [N,4], opacity_logits [N], sh [N,K,3] (the first degree^2
// rows used). One splat per iteration, no shared state: the result does not depend on the thread count.
#pragma once

#include <cstdint>

#include "splat_project_math.h"

namespace nerf_app {
namespace cpu {

void splat_project_forward(const SplatProjCamera& cam, const float* means, const float* log_scales,
                           const float* quats, const float* opacity_logits, const float* sh, int64_t n, int64_t k,
                           int degree, float* mean2d, float* conic, float* color, float* opacity, float* depth,
                           int32_t* radius);

// g_sh [N,K,3] must be zeroed by the caller (rows past degree^2 get no gradient).
void splat_project_backward(const SplatProjCamera& cam, const float* means, const float* log_scales,
                            const float* quats, const float* opacity_logits, const float* sh, int64_t n, int64_t k,
                            int degree, const float* g_mean2d, const float* g_conic, const float* g_color,
                            const float* g_opacity, const float* g_depth, float* g_means, float* g_log_scales,
                            float* g_quats, float* g_opacity_logits, float* g_sh);

}  // namespace cpu
}  // namespace nerf_app
