// CPU (OpenMP) hash-grid kernels on raw pointers. Layouts:
//   x [N, D], table [rows, F], y / grad_y [N, n_levels * F], grad_table [rows, F], grad_x [N, D].
#pragma once

#include <cstdint>

#include "hashgrid_math.h"

namespace nerf_app {
namespace cpu {

template <typename T>
void hashgrid_forward(const T* x, const T* table, T* y, int64_t n, int dim, int features,
                      const HashGridLevels& levels, bool smoothstep);

// Writes every row of grad_table (the levels must tile it: offsets 0, size_0, ...), or with accumulate adds to
// what is there. Each level is owned by one thread and its points are visited in order, so the result is
// bit-identical on every run and for any thread count.
template <typename T>
void hashgrid_backward_table(const T* x, const T* grad_y, T* grad_table, int64_t n, int dim, int features,
                             const HashGridLevels& levels, bool smoothstep, bool accumulate = false);

template <typename T>
void hashgrid_backward_input(const T* x, const T* table, const T* grad_y, T* grad_x, int64_t n, int dim,
                             int features, const HashGridLevels& levels, bool smoothstep);

}  // namespace cpu
}  // namespace nerf_app
