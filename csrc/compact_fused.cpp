// Torch glue of march_compacted_fused (CPU only): checks, outputs, and training's compacted march of
// csrc/cpu/compact_fused_cpu.cpp. No autograd: the march and the densities it compacts by take no gradients.
#include <cmath>

#include "cpu/compact_fused_cpu.h"
#include "glue.h"
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
  const at::Device device = check_same_device(op, {{"origins", &origins}, {"dirs", &dirs}, {"t_near", &t_near},
                                                   {"t_far", &t_far}, {"bitfield", &bitfield}, {"table", &table}});
  TORCH_CHECK(device.is_cpu(), op, ": CPU tensors only (CUDA compacts through the composed ops)");
  check_tensor(op, "origins", origins, at::kFloat, 2, 3);
  check_tensor(op, "dirs", dirs, at::kFloat, 2, 3);
  check_tensor(op, "t_near", t_near, at::kFloat, 1);
  check_tensor(op, "t_far", t_far, at::kFloat, 1);
  check_tensor(op, "bitfield", bitfield, at::kByte, 1);
  check_tensor(op, "table", table, at::kFloat, 2);
  const int64_t n = origins.size(0);
  for (const auto& [name, t] : {NamedTensor{"dirs", &dirs}, {"t_near", &t_near}, {"t_far", &t_far}})
    check_rows(op, name, *t, n);
  TORCH_CHECK(resolution > 0 && resolution % 8 == 0 && n_cascades >= 1 && n_cascades <= 16 &&
                  bitfield.numel() * 8 == n_cascades * resolution * resolution * resolution,
              op, ": bitfield size does not match n_cascades * resolution^3 bits");
  TORCH_CHECK(dt_min > 0 && dt_max >= dt_min && cone_angle >= 0, op, ": bad step parameters");
  TORCH_CHECK(max_samples >= 1 && k_first >= 1 && k_max >= 1 && k_max <= 4096, op,
              ": max_samples and the rounds (k_first, k_max in 1..4096) must be positive");
  TORCH_CHECK(t_threshold > 0 && t_threshold < 2, op, ": t_threshold must be in (0, 2)");
  TORCH_CHECK(extent > 0, op, ": the field's box must have a positive extent");
  cpu::FusedField f{};
  f.levels = make_levels(3, offsets, sizes, resolutions, scales, table.size(0));
  f.table = table.data_ptr<float>();
  f.features = (int)table.size(1);
  f.smoothstep = smoothstep;
  f.density = check_mlp_weights(op, origins, (int64_t)f.levels.n_levels * f.features, density_weights, act, 0);
  std::vector<const float*> dw;
  for (const auto& w : density_weights) dw.push_back(w.data_ptr<float>());
  f.density_w = dw.data();
  f.density_bias = (float)density_bias;
  f.bound_lo = (float)bound_lo;
  f.extent = (float)extent;
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
  std::vector<int64_t> offsets_(n);
  for (int64_t r = 0; r < n; ++r) offsets_[r] = pk[2 * r];
  const int enc_dim = f.levels.n_levels * f.features;
  at::Tensor ray_indices = at::empty({total}, long_opts);
  at::Tensor t_starts = at::empty({total}, origins.options()), t_ends = at::empty({total}, origins.options());
  at::Tensor features = at::empty({total, enc_dim}, origins.options());
  cpu::compacted_write(parts, offsets_.data(), enc_dim, n, ray_indices.data_ptr<int64_t>(),
                       t_starts.data_ptr<float>(), t_ends.data_ptr<float>(), features.data_ptr<float>());
  return {ray_indices, t_starts, t_ends, packed, features, marched};
}

}  // namespace nerf_app
