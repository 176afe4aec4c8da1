// Torch glue of march_compacted_fused (CPU only): checks, outputs, and training's compacted march of
// csrc/cpu/compact_fused_cpu.cpp. No autograd: the march and the densities it compacts by take no gradients.
#include <cmath>

#include "cpu/compact_fused_cpu.h"
#include "fused_glue.h"
#include "ops.h"

namespace nerf_app {

std::vector<at::Tensor> march_compacted_fused(const at::Tensor& origins, const at::Tensor& dirs,
                                              const at::Tensor& t_near, const at::Tensor& t_far,
                                              const at::Tensor& bitfield, int64_t n_cascades, int64_t resolution,
                                              double dt_min, double dt_max, double cone_angle, int64_t max_samples,
                                              int64_t k_first, int64_t k_max, double t_threshold,
                                              const at::Tensor& table, const std::vector<int64_t>& offsets,
                                              const std::vector<int64_t>& sizes,
                                              const std::vector<int64_t>& resolutions,
                                              const std::vector<double>& scales, bool smoothstep,
                                              const std::vector<at::Tensor>& density_weights, int64_t act,
                                              double density_bias, double bound_lo, double extent) {
  constexpr const char* op = "march_compacted_fused";
  const int64_t n = check_fused_rays(op, origins, dirs, t_near, t_far, bitfield, table, n_cascades, resolution, dt_min,
                                     dt_max, cone_angle);
  TORCH_CHECK(max_samples >= 1 && k_first >= 1 && k_max >= 1 && k_max <= 4096, op,
              ": max_samples and the rounds (k_first, k_max in 1..4096) must be positive");
  TORCH_CHECK(t_threshold > 0 && t_threshold < 2, op, ": t_threshold must be in (0, 2)");
  std::vector<const float*> dw;
  const cpu::FusedField f = fused_density_field(op, origins, table, offsets, sizes, resolutions, scales, smoothstep,
                                                density_weights, act, density_bias, bound_lo, extent, dw);
  const cpu::CompactMarch m{bitfield.data_ptr<uint8_t>(), (int)n_cascades, (int)resolution, (float)dt_min,
                            (float)dt_max, (float)cone_angle, (int)max_samples, (int)k_first, (int)k_max,
                            std::log(2.0 / t_threshold)};
  const auto long_opts = origins.options().dtype(at::kLong);
  at::Tensor kept = at::zeros({n}, long_opts), marched = at::zeros({n}, long_opts);
  const auto parts = cpu::march_compacted_fused(origins.data_ptr<float>(), dirs.data_ptr<float>(),
                                                t_near.data_ptr<float>(), t_far.data_ptr<float>(), f, m,
                                                kept.data_ptr<int64_t>(), marched.data_ptr<int64_t>(), n);
  // packed_info as ops/packed.py::pack_counts: (first sample, count), int64
  at::Tensor packed = at::empty({n, 2}, long_opts);
  int64_t* pk = packed.data_ptr<int64_t>();
  const int64_t* kp = kept.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t r = 0; r < n; ++r) {
    pk[2 * r] = total;
    pk[2 * r + 1] = kp[r];
    total += kp[r];
  }
  std::vector<int64_t> starts(n);
  for (int64_t r = 0; r < n; ++r) starts[r] = pk[2 * r];
  const int enc_dim = f.levels.n_levels * f.features;
  at::Tensor ray_indices = at::empty({total}, long_opts);
  at::Tensor t_starts = at::empty({total}, origins.options()), t_ends = at::empty({total}, origins.options());
  at::Tensor features = at::empty({total, enc_dim}, origins.options());
  cpu::compacted_write(parts, starts.data(), enc_dim, n, ray_indices.data_ptr<int64_t>(),
                       t_starts.data_ptr<float>(), t_ends.data_ptr<float>(), features.data_ptr<float>());
  return {ray_indices, t_starts, t_ends, packed, features, marched};
}

}  // namespace nerf_app
