// Torch-facing entry points of every op (tensors in, tensors out). Each op's glue file validates
// its arguments, allocates outputs and calls the CPU or CUDA launcher; bindings.cpp exposes them.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace nerf_app {

// ---- hash grid (csrc/hashgrid.cpp) ----
// Level layout arrays have one entry per level: first row, rows, vertices per axis, scale.
at::Tensor hashgrid_forward(const at::Tensor& x, const at::Tensor& table, const std::vector<int64_t>& offsets,
                            const std::vector<int64_t>& sizes, const std::vector<int64_t>& resolutions,
                            const std::vector<double>& scales, bool smoothstep);
at::Tensor hashgrid_backward_table(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grad_y,
                                   const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                                   const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                                   bool smoothstep);
// CPU: the table gradient written into out (like table), or added to it with accumulate (the training step's
// persistent gradient: no fresh table-sized allocation per step; ops/hashgrid.py)
void hashgrid_backward_table_into(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grad_y,
                                  const at::Tensor& out, bool accumulate, const std::vector<int64_t>& offsets,
                                  const std::vector<int64_t>& sizes, const std::vector<int64_t>& resolutions,
                                  const std::vector<double>& scales, bool smoothstep);
at::Tensor hashgrid_backward_input(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grad_y,
                                   const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                                   const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                                   bool smoothstep);

// ---- fully fused MLP (csrc/mlp.cpp) ----
// x [N, n_in] float32, weights[i] [out_i, in_i] float32 (bias-free), act / out_act MlpActivation codes.
// forward returns {y [N, n_out], saved...}; with training=false nothing is saved for a backward.
// backward takes the saved tensors back and returns {grad_x (undefined unless need_grad_x), grad_w...}.
std::vector<at::Tensor> mlp_forward(const at::Tensor& x, const std::vector<at::Tensor>& weights, int64_t act,
                                    int64_t out_act, bool training);
std::vector<at::Tensor> mlp_backward(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                     const std::vector<at::Tensor>& saved, const at::Tensor& y,
                                     const at::Tensor& grad_y, int64_t act, int64_t out_act, bool need_grad_x);
// The fp16 loss scale the CUDA backward would choose for this grad_y / y (computed here on the CPU
// with the same per-element code; exposed for tests): a power of two putting max |grad_y * a'(y)| near 2^10.
double mlp_fp16_loss_scale(const at::Tensor& y, const at::Tensor& grad_y, int64_t out_act);
// CPU inference in bf16 with fp32 accumulation (no autograd, nothing saved) -> y [N, n_out] float32; raises
// unless mlp_bf16_supported() (the CPU has AVX-512 BF16; decided at run time).
at::Tensor mlp_forward_bf16(const at::Tensor& x, const std::vector<at::Tensor>& weights, int64_t act,
                            int64_t out_act);
bool mlp_bf16_supported();
// Whether mlp_forward_bf16 runs on AMX tiles here (AMX-BF16 CPU, tile state granted, NERF_APP_MLP_AMX not 0).
bool mlp_amx_supported();

}  // namespace nerf_app

// ---- NeRF rendering ops: csrc/sh.cpp, ray_aabb.cpp, march.cpp, volume_render.cpp ----
namespace nerf_app {
at::Tensor sh_encode_forward(const at::Tensor& dirs, int64_t degree);
at::Tensor sh_encode_backward(const at::Tensor& dirs, const at::Tensor& grad_out, int64_t degree);
// -> [t_near [R], t_far [R]]
// lo, hi: the box's 3 lower and 3 upper bounds
std::vector<at::Tensor> ray_aabb(const at::Tensor& origins, const at::Tensor& dirs, const std::vector<double>& lo,
                                 const std::vector<double>& hi);
// -> [packed_info [R,2] int64, ray_indices [S] int64, t_starts [S], t_ends [S]]
std::vector<at::Tensor> march_rays(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_min,
                                   const at::Tensor& t_max, const at::Tensor& bitfield, int64_t n_cascades,
                                   int64_t resolution, double dt_min, double dt_max, double cone_angle,
                                   int64_t max_samples);
// -> [weights [S], color [R,3], opacity [R], depth [R]]
std::vector<at::Tensor> volume_render_forward(const at::Tensor& sigmas, const at::Tensor& rgbs,
                                              const at::Tensor& t_starts, const at::Tensor& t_ends,
                                              const at::Tensor& packed_info, double t_threshold);
// -> [grad_sigmas [S], grad_rgbs [S,3]]
std::vector<at::Tensor> volume_render_backward(const at::Tensor& sigmas, const at::Tensor& rgbs,
                                               const at::Tensor& t_starts, const at::Tensor& t_ends,
                                               const at::Tensor& packed_info, double t_threshold,
                                               const at::Tensor& weights, const at::Tensor& grad_color,
                                               const at::Tensor& grad_opacity, const at::Tensor& grad_depth);
}  // namespace nerf_app

namespace nerf_app {
// ---- fused NeRF inference render (csrc/render_fused.cpp; CPU) ----
// -> [color [R,3] over the background, depth [R], opacity [R], samples per ray [R] int64]: the rays through a
// NeRF field (hash grid -> density MLP, SH ++ h -> colour MLP), as nerf/renderer.py::render_rays_early_stop.
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
                                     bool bf16);
}  // namespace nerf_app

namespace nerf_app {
// ---- training's compacted march, fused (csrc/compact_fused.cpp; CPU) ----
// -> [ray_indices [S'] int64, t_starts [S'], t_ends [S'], packed_info [R,2] int64, features [S', L*F],
// marched per ray [R] int64]: the samples nerf/renderer.py::march_compacted keeps, with their hash-grid features.
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
                                              double density_bias, double bound_lo, double extent);
}  // namespace nerf_app

namespace nerf_app {
// ---- Gaussian splats (csrc/splat.cpp) ----
// -> [image [H,W,3], alpha [H,W], tile_offsets, isect_gid, gauss_offsets, entry_of, last] (the last five: for backward)
std::vector<at::Tensor> splat_rasterize_forward(const at::Tensor& mean2d, const at::Tensor& conic,
                                                const at::Tensor& color, const at::Tensor& opacity,
                                                const at::Tensor& depth, const at::Tensor& radius, int64_t width,
                                                int64_t height, const at::Tensor& background);
// -> [grad_mean2d, grad_conic, grad_color, grad_opacity]
std::vector<at::Tensor> splat_rasterize_backward(const at::Tensor& mean2d, const at::Tensor& conic,
                                                 const at::Tensor& color, const at::Tensor& opacity,
                                                 const at::Tensor& background, const at::Tensor& image,
                                                 const at::Tensor& tile_offsets, const at::Tensor& isect_gid,
                                                 const at::Tensor& gauss_offsets, const at::Tensor& entry_of,
                                                 const at::Tensor& last, const at::Tensor& grad_image);
// ---- splat projection (csrc/splat_project.cpp) ----
// intrinsics: [fx, fy, cx, cy, lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos, near]
// -> [mean2d [N,2], conic [N,3], color [N,3], opacity [N], depth [N], radius [N] int32]
std::vector<at::Tensor> splat_project_forward(const at::Tensor& means, const at::Tensor& log_scales,
                                              const at::Tensor& quats, const at::Tensor& opacity_logits,
                                              const at::Tensor& sh, const at::Tensor& w2c, const at::Tensor& cam_pos,
                                              const std::vector<double>& intrinsics, int64_t width, int64_t height,
                                              int64_t degree);
// -> [grad_means, grad_log_scales, grad_quats, grad_opacity_logits, grad_sh]
std::vector<at::Tensor> splat_project_backward(const at::Tensor& means, const at::Tensor& log_scales,
                                               const at::Tensor& quats, const at::Tensor& opacity_logits,
                                               const at::Tensor& sh, const at::Tensor& w2c, const at::Tensor& cam_pos,
                                               const std::vector<double>& intrinsics, int64_t width, int64_t height,
                                               int64_t degree, const at::Tensor& g_mean2d, const at::Tensor& g_conic,
                                               const at::Tensor& g_color, const at::Tensor& g_opacity,
                                               const at::Tensor& g_depth);
}  // namespace nerf_app
