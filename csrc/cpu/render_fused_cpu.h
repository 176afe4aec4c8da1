#pragma once

#include <cstdint>

#include "hashgrid_math.h"
#include "mlp_cpu.h"

namespace nerf_app {
namespace cpu {

// The radiance field of nerf_app/nerf/field.py::NerfField, read-only: hash grid over the unit cube of
// [bound_lo, bound_hi]^3 -> density MLP -> h [geo]; sigma = exp(h_0 + density_bias);
// SH(d) ++ h -> colour MLP (sigmoid) -> rgb.
struct FusedField {
  const float* table;
  int features;  // per level
  HashGridLevels levels;
  bool smoothstep;
  const float* const* density_w;
  MlpDims density;
  const float* const* color_w;
  MlpDims color;
  int sh_degree;
  float density_bias, bound_lo, extent;  // unit = (x - bound_lo) / extent
  bool bf16;                             // the MLPs in bf16 (mlp_forward_bf16); else the fp32 kernel
  // bf16 on AMX: both networks packed once per render (render_fused sets these where mlp_amx_supported())
  const MlpBf16Weights* density_amx = nullptr;
  const MlpBf16Weights* color_amx = nullptr;
};

// The marching and early-stop settings of nerf_app/nerf/renderer.py::MarchSettings as render_rays_early_stop
// uses them.
struct FusedMarch {
  const uint8_t* bitfield;
  int n_cascades, resolution;
  float dt_min, dt_max, cone_angle;
  int round_samples, round_samples_max;
  float t_threshold, min_weight;  // render_t_threshold, render_min_weight
};

// Renders rays [n] through the field, one fused pass per tile of rays (march, encode, both MLPs,
// composite, retire), with render_rays_early_stop's rounds per ray. background: [n, 3] rows, or one
// colour when bg_stride is 0. Outputs colour [n, 3] over the background, depth, opacity, samples per ray.
void render_fused(const float* origins, const float* dirs, const float* t_near, const float* t_far,
                  const float* background, int64_t bg_stride, const FusedField& field, const FusedMarch& march,
                  float* color, float* depth, float* opacity, int64_t* n_samples, int64_t n);

}  // namespace cpu
}  // namespace nerf_app
