#pragma once

#include <cstdint>
#include <vector>

#include "render_fused_cpu.h"

namespace nerf_app {
namespace cpu {

// The settings of nerf_app/nerf/renderer.py::march_compacted: the march (max_samples per ray), its rounds
// (k_first samples per live ray, doubling to k_max) and the compaction's limit log(2 / t_threshold) on the
// optical depth before a sample.
struct CompactMarch {
  const uint8_t* bitfield;
  int n_cascades, resolution;
  float dt_min, dt_max, cone_angle;
  int max_samples, k_first, k_max;
  double limit;
};

// The kept samples of one worker, in the order it found them (each ray's in increasing t; a ray belongs to
// one worker): ray, interval and hash-grid features (enc_dim floats each).
struct CompactedPart {
  std::vector<int64_t> ray;
  std::vector<float> t0, t1, feat;
};

// march_compacted for the field's density only (f's colour MLP is not used): per ray, rounds of march_ray,
// hash grid, density MLP, sigma = exp(h_0 + bias), and compaction. Fills kept[n] and marched[n] (samples
// per ray) and returns the workers' kept samples; compacted_write puts them in ray order.
std::vector<CompactedPart> march_compacted_fused(const float* origins, const float* dirs, const float* t_near,
                                                 const float* t_far, const FusedField& f, const CompactMarch& m,
                                                 int64_t* kept, int64_t* marched, int64_t n);

// Writes the parts' samples at offsets[ray] onwards (offsets: exclusive sum of kept): ray_indices [S'],
// t_starts, t_ends [S'], features [S', enc_dim].
void compacted_write(const std::vector<CompactedPart>& parts, const int64_t* offsets, int enc_dim, int64_t n,
                     int64_t* ray_indices, float* t_starts, float* t_ends, float* features);

}  // namespace cpu
}  // namespace nerf_app
