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

}  // namespace nerf_app
