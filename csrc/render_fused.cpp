// Torch glue of render_fused (CPU only): checks, outputs, and the fused per-tile render of
// csrc/cpu/render_fused_cpu.cpp. Inference only: nothing here records autograd.
#include "fused_glue.h"
#include "ops.h"

namespace nerf_app {

int64_t check_fused_rays(const char* op, const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_near,
                         const at::Tensor& t_far, const at::Tensor& bitfield, const at::Tensor& table,
                         int64_t n_cascades, int64_t resolution, double dt_min, double dt_max, double cone_angle) {
  const at::Device device = check_same_device(op, {{"origins", &origins}, {"dirs", &dirs}, {"t_near", &t_near},
                                                   {"t_far", &t_far}, {"bitfield", &bitfield}, {"table", &table}});
  TORCH_CHECK(device.is_cpu(), op, ": CPU tensors only (CUDA runs the composed ops)");
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
  return n;
}

cpu::FusedField fused_density_field(const char* op, const at::Tensor& origins, const at::Tensor& table,
                                    const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                                    const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                                    bool smoothstep, const std::vector<at::Tensor>& density_weights, int64_t act,
                                    double density_bias, double bound_lo, double extent,
                                    std::vector<const float*>& density_ptrs) {
  TORCH_CHECK(extent > 0, op, ": the field's box must have a positive extent");
  cpu::FusedField f{};
  f.levels = make_levels(3, offsets, sizes, resolutions, scales, table.size(0));
  f.table = table.data_ptr<float>();
  f.features = (int)table.size(1);
  f.smoothstep = smoothstep;
  f.density = check_mlp_weights(op, origins, (int64_t)f.levels.n_levels * f.features, density_weights, act, 0);
  density_ptrs.clear();
  for (const auto& w : density_weights) density_ptrs.push_back(w.data_ptr<float>());
  f.density_w = density_ptrs.data();
  f.density_bias = (float)density_bias;
  f.bound_lo = (float)bound_lo;
  f.extent = (float)extent;
  return f;
}

std::vector<at::Tensor> render_fused(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_near,
                                     const at::Tensor& t_far, const at::Tensor& background,
                                     const at::Tensor& bitfield, int64_t n_cascades, int64_t resolution,
                                     double dt_min, double dt_max, double cone_angle, int64_t round_samples,
                                     int64_t round_samples_max, double t_threshold, double min_weight,
                                     const at::Tensor& table, const std::vector<int64_t>& offsets,
                                     const std::vector<int64_t>& sizes, const std::vector<int64_t>& resolutions,
                                     const std::vector<double>& scales, bool smoothstep,
                                     const std::vector<at::Tensor>& density_weights,
                                     const std::vector<at::Tensor>& color_weights, int64_t act, int64_t color_out_act,
                                     int64_t sh_degree, double density_bias, double bound_lo, double extent,
                                     bool bf16) {
  constexpr const char* op = "render_fused";
  const int64_t n = check_fused_rays(op, origins, dirs, t_near, t_far, bitfield, table, n_cascades, resolution, dt_min,
                                     dt_max, cone_angle);
  TORCH_CHECK(background.device().is_cpu(), op, ": background must be a CPU tensor");
  TORCH_CHECK(background.scalar_type() == at::kFloat && background.is_contiguous() &&
                  (background.dim() == 1 ? background.size(0) == 3
                                         : background.dim() == 2 && background.size(0) == n && background.size(1) == 3),
              op, ": background must be contiguous float32 [3] or [R, 3]");
  TORCH_CHECK(round_samples >= 1 && round_samples_max >= 1 && round_samples_max <= 4096, op,
              ": round_samples and round_samples_max must be in 1..4096");
  TORCH_CHECK(sh_degree >= 1 && sh_degree <= 4, op, ": sh_degree must be 1..4");
  std::vector<const float*> dw, cw;
  cpu::FusedField f = fused_density_field(op, origins, table, offsets, sizes, resolutions, scales, smoothstep,
                                          density_weights, act, density_bias, bound_lo, extent, dw);
  f.color = check_mlp_weights(op, origins, sh_degree * sh_degree + f.density.n_out, color_weights, act,
                              color_out_act);
  TORCH_CHECK(!bf16 || cpu::mlp_bf16_supported(), op, ": bf16 asked for, but this CPU lacks AVX-512 BF16");
  for (const auto& w : color_weights) cw.push_back(w.data_ptr<float>());
  f.color_w = cw.data();
  f.sh_degree = (int)sh_degree;
  f.bf16 = bf16;
  const cpu::FusedMarch m{bitfield.data_ptr<uint8_t>(), (int)n_cascades, (int)resolution, (float)dt_min,
                          (float)dt_max, (float)cone_angle, (int)round_samples, (int)round_samples_max,
                          (float)t_threshold, (float)min_weight};
  at::Tensor color = at::empty({n, 3}, origins.options());
  at::Tensor depth = at::empty({n}, origins.options()), opacity = at::empty({n}, origins.options());
  at::Tensor samples = at::empty({n}, origins.options().dtype(at::kLong));
  cpu::render_fused(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_near.data_ptr<float>(),
                    t_far.data_ptr<float>(), background.data_ptr<float>(), background.dim() == 1 ? 0 : 3, f, m,
                    color.data_ptr<float>(), depth.data_ptr<float>(), opacity.data_ptr<float>(),
                    samples.data_ptr<int64_t>(), n);
  return {color, depth, opacity, samples};
}

}  // namespace nerf_app
