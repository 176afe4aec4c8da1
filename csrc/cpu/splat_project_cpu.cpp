// CPU kernels of splat_project: one splat per iteration (at::parallel_for); the backward recomputes each
// splat's forward state instead of saving it (a few dozen flops against a pass over memory).
#include "splat_project_cpu.h"

#include <ATen/Parallel.h>

namespace nerf_app {
namespace cpu {

namespace {
constexpr int64_t kGrain = 2048;
}  // namespace

void splat_project_forward(const SplatProjCamera& cam, const float* means, const float* log_scales,
                           const float* quats, const float* opacity_logits, const float* sh, int64_t n, int64_t k,
                           int degree, float* mean2d, float* conic, float* color, float* opacity, float* depth,
                           int32_t* radius) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    SplatProjState st;
    for (int64_t i = b; i < e; ++i)
      splat_project_one(cam, means + 3 * i, log_scales + 3 * i, quats + 4 * i, opacity_logits[i], sh + 3 * k * i,
                        degree, mean2d + 2 * i, conic + 3 * i, color + 3 * i, opacity[i], depth[i], radius[i], st);
  });
}

void splat_project_backward(const SplatProjCamera& cam, const float* means, const float* log_scales,
                            const float* quats, const float* opacity_logits, const float* sh, int64_t n, int64_t k,
                            int degree, const float* g_mean2d, const float* g_conic, const float* g_color,
                            const float* g_opacity, const float* g_depth, float* g_means, float* g_log_scales,
                            float* g_quats, float* g_opacity_logits, float* g_sh) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    SplatProjState st;
    float m2[2], cn[3], col[3], op, dp;
    int32_t rad;
    for (int64_t i = b; i < e; ++i) {
      splat_project_one(cam, means + 3 * i, log_scales + 3 * i, quats + 4 * i, opacity_logits[i], sh + 3 * k * i,
                        degree, m2, cn, col, op, dp, rad, st);
      splat_project_one_backward(cam, sh + 3 * k * i, degree, op, st, g_mean2d + 2 * i, g_conic + 3 * i,
                                 g_color + 3 * i, g_opacity[i], g_depth[i], g_means + 3 * i, g_log_scales + 3 * i,
                                 g_quats + 4 * i, g_opacity_logits[i], g_sh + 3 * k * i);
    }
  });
}

}  // namespace cpu
}  // namespace nerf_app
