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

}  // namespace nerf_app
