// CUDA hash-grid launchers on raw pointers (no torch headers, so nvcc compiles them fast and CI can
// compile-check them without a CUDA build of torch). `stream` is a cudaStream_t passed as void*.
// x [N, D] float32; table [rows, F] float32 or float16 (`half_table`); y / grad_y [N, L*F] float32;
// grad_table [rows, F] float32 whatever the table's type (zeroed by the caller: the kernel accumulates
// into it with float atomics); grad_x [N, D] float32.
#pragma once

#include <cstdint>

#include "hashgrid_math.h"

namespace nerf_app {
namespace cuda {

void hashgrid_forward(const float* x, const void* table, bool half_table, float* y, int64_t n, int dim,
                      int features, const HashGridLevels& levels, bool smoothstep, void* stream);

void hashgrid_backward_table(const float* x, const float* grad_y, float* grad_table, int64_t n, int dim,
                             int features, const HashGridLevels& levels, bool smoothstep, void* stream);

void hashgrid_backward_input(const float* x, const void* table, bool half_table, const float* grad_y,
                             float* grad_x, int64_t n, int dim, int features, const HashGridLevels& levels,
                             bool smoothstep, void* stream);

}  // namespace cuda
}  // namespace nerf_app
