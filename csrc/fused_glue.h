// What the glue of the two fused CPU passes shares (csrc/render_fused.cpp defines it; csrc/compact_fused.cpp
// uses it too): the checks of their rays and grid, and the field's hash grid + density MLP as a FusedField.
#pragma once

#include <vector>

#include "cpu/render_fused_cpu.h"
#include "glue.h"

namespace nerf_app {

// origins, dirs [n, 3], t_near, t_far [n] float32 on the CPU; the bitfield of n_cascades * resolution^3 bits;
// the step parameters. Returns n.
int64_t check_fused_rays(const char* op, const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_near,
                         const at::Tensor& t_far, const at::Tensor& bitfield, const at::Tensor& table,
                         int64_t n_cascades, int64_t resolution, double dt_min, double dt_max, double cone_angle);

// The field's hash grid and density MLP (checked; density_ptrs keeps the weights' pointers the result points
// to, so it must outlive it); the colour MLP and the flags are left for the caller.
cpu::FusedField fused_density_field(const char* op, const at::Tensor& origins, const at::Tensor& table,
                                    const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                                    const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                                    bool smoothstep, const std::vector<at::Tensor>& density_weights, int64_t act,
                                    double density_bias, double bound_lo, double extent,
                                    std::vector<const float*>& density_ptrs);

}  // namespace nerf_app
