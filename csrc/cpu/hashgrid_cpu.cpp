// CPU hash-grid kernels. Work is split with at::parallel_for (OpenMP): forward and input gradient over
// blocks of points (each block walks level by level, so one level's table stays hot in cache), table
// gradient over levels (one owner per level: no atomics, deterministic order).
#include "hashgrid_cpu.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <stdexcept>
#include <string>

namespace nerf_app {
namespace cpu {
namespace {

constexpr int64_t kGrain = 2048;  // points per task: enough work to amortise scheduling

template <typename T, int D, int F>
void forward_kernel(const T* x, const T* table, T* y, int64_t n, const HashGridLevels& L, bool smooth) {
  const int64_t out_stride = (int64_t)L.n_levels * F;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int l = 0; l < L.n_levels; ++l) {
      const T* tab = table + (int64_t)L.offset[l] * F;
      const uint32_t res = L.resolution[l], size = L.size[l];
      const bool hashed = L.hashed[l];
      const float scale = L.scale[l];
      for (int64_t i = begin; i < end; ++i) {
        uint32_t g[D];
        T w[D], dw[D];
        grid_cell<T, D>(x + i * D, scale, smooth, g, w, dw);
        T acc[F];
        for (int f = 0; f < F; ++f) acc[f] = T(0);
        for (uint32_t c = 0; c < (1u << D); ++c) {
          const T weight = corner_weight<T, D>(w, c);
          const T* row = tab + (int64_t)grid_index<D>(g, c, res, size, hashed) * F;
          for (int f = 0; f < F; ++f) acc[f] += weight * row[f];
        }
        T* out = y + i * out_stride + (int64_t)l * F;
        for (int f = 0; f < F; ++f) out[f] = acc[f];
      }
    }
  });
}

template <typename T, int D, int F>
void backward_table_kernel(const T* x, const T* grad_y, T* grad_table, int64_t n, const HashGridLevels& L,
                           bool smooth) {
  const int64_t out_stride = (int64_t)L.n_levels * F;
  // Threads take whole levels from a shared counter, finest (most cache-missing) first, so uneven
  // levels still balance; a level's sum is always done by one thread in point order.
  std::atomic<int> next{0};
  const int n_tasks = std::min<int>(L.n_levels, std::max(1, at::get_num_threads()));
  at::parallel_for(0, n_tasks, 1, [&](int64_t, int64_t) {
    for (int k = next.fetch_add(1); k < L.n_levels; k = next.fetch_add(1)) {
      const int l = L.n_levels - 1 - k;
      T* tab = grad_table + (int64_t)L.offset[l] * F;
      const uint32_t res = L.resolution[l], size = L.size[l];
      const bool hashed = L.hashed[l];
      const float scale = L.scale[l];
      for (int64_t i = 0; i < n; ++i) {
        const T* gy = grad_y + i * out_stride + (int64_t)l * F;
        T gyv[F];
        bool any = false;
        for (int f = 0; f < F; ++f) { gyv[f] = gy[f]; any |= gyv[f] != T(0); }
        if (!any) continue;
        uint32_t g[D];
        T w[D], dw[D];
        grid_cell<T, D>(x + i * D, scale, smooth, g, w, dw);
        for (uint32_t c = 0; c < (1u << D); ++c) {
          const T weight = corner_weight<T, D>(w, c);
          T* row = tab + (int64_t)grid_index<D>(g, c, res, size, hashed) * F;
          for (int f = 0; f < F; ++f) row[f] += weight * gyv[f];
        }
      }
    }
  });
}

template <typename T, int D, int F>
void backward_input_kernel(const T* x, const T* table, const T* grad_y, T* grad_x, int64_t n,
                           const HashGridLevels& L, bool smooth) {
  const int64_t out_stride = (int64_t)L.n_levels * F;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* xi = x + i * D;
      T gx[D];
      for (int d = 0; d < D; ++d) gx[d] = T(0);
      for (int l = 0; l < L.n_levels; ++l) {
        const T* tab = table + (int64_t)L.offset[l] * F;
        const T* gy = grad_y + i * out_stride + (int64_t)l * F;
        uint32_t g[D];
        T w[D], dw[D];
        grid_cell<T, D>(xi, L.scale[l], smooth, g, w, dw);
        for (uint32_t c = 0; c < (1u << D); ++c) {
          const T* row = tab + (int64_t)grid_index<D>(g, c, L.resolution[l], L.size[l], L.hashed[l]) * F;
          T dot = T(0);
          for (int f = 0; f < F; ++f) dot += gy[f] * row[f];
          for (int d = 0; d < D; ++d) gx[d] += corner_weight_grad<T, D>(w, c, d) * dw[d] * (T)L.scale[l] * dot;
        }
      }
      for (int d = 0; d < D; ++d) grad_x[i * D + d] = inside01(xi[d]) ? gx[d] : T(0);
    }
  });
}

// Instantiate the kernel for the runtime (dim, features) pair.
#define NA_DISPATCH_DF(dim, features, KERNEL, ...)                                               \
  [&] {                                                                                          \
    switch (dim * 16 + features) {                                                               \
      case 1 * 16 + 1: return KERNEL<T, 1, 1>(__VA_ARGS__);                                      \
      case 1 * 16 + 2: return KERNEL<T, 1, 2>(__VA_ARGS__);                                      \
      case 1 * 16 + 4: return KERNEL<T, 1, 4>(__VA_ARGS__);                                      \
      case 1 * 16 + 8: return KERNEL<T, 1, 8>(__VA_ARGS__);                                      \
      case 2 * 16 + 1: return KERNEL<T, 2, 1>(__VA_ARGS__);                                      \
      case 2 * 16 + 2: return KERNEL<T, 2, 2>(__VA_ARGS__);                                      \
      case 2 * 16 + 4: return KERNEL<T, 2, 4>(__VA_ARGS__);                                      \
      case 2 * 16 + 8: return KERNEL<T, 2, 8>(__VA_ARGS__);                                      \
      case 3 * 16 + 1: return KERNEL<T, 3, 1>(__VA_ARGS__);                                      \
      case 3 * 16 + 2: return KERNEL<T, 3, 2>(__VA_ARGS__);                                      \
      case 3 * 16 + 4: return KERNEL<T, 3, 4>(__VA_ARGS__);                                      \
      case 3 * 16 + 8: return KERNEL<T, 3, 8>(__VA_ARGS__);                                      \
      case 4 * 16 + 1: return KERNEL<T, 4, 1>(__VA_ARGS__);                                      \
      case 4 * 16 + 2: return KERNEL<T, 4, 2>(__VA_ARGS__);                                      \
      case 4 * 16 + 4: return KERNEL<T, 4, 4>(__VA_ARGS__);                                      \
      case 4 * 16 + 8: return KERNEL<T, 4, 8>(__VA_ARGS__);                                      \
      default:                                                                                   \
        throw std::invalid_argument("hashgrid: unsupported input_dim " + std::to_string(dim) +   \
                                    " / n_features_per_level " + std::to_string(features) +      \
                                    " (supported: input_dim 1-4, features 1, 2, 4, 8)");          \
    }                                                                                            \
  }()

}  // namespace

template <typename T>
void hashgrid_forward(const T* x, const T* table, T* y, int64_t n, int dim, int features,
                      const HashGridLevels& levels, bool smoothstep) {
  NA_DISPATCH_DF(dim, features, forward_kernel, x, table, y, n, levels, smoothstep);
}

template <typename T>
void hashgrid_backward_table(const T* x, const T* grad_y, T* grad_table, int64_t n, int dim, int features,
                             const HashGridLevels& levels, bool smoothstep) {
  NA_DISPATCH_DF(dim, features, backward_table_kernel, x, grad_y, grad_table, n, levels, smoothstep);
}

template <typename T>
void hashgrid_backward_input(const T* x, const T* table, const T* grad_y, T* grad_x, int64_t n, int dim,
                             int features, const HashGridLevels& levels, bool smoothstep) {
  NA_DISPATCH_DF(dim, features, backward_input_kernel, x, table, grad_y, grad_x, n, levels, smoothstep);
}

#define NA_INSTANTIATE(T)                                                                              \
  template void hashgrid_forward<T>(const T*, const T*, T*, int64_t, int, int, const HashGridLevels&, bool); \
  template void hashgrid_backward_table<T>(const T*, const T*, T*, int64_t, int, int, const HashGridLevels&, \
                                           bool);                                                      \
  template void hashgrid_backward_input<T>(const T*, const T*, const T*, T*, int64_t, int, int,        \
                                           const HashGridLevels&, bool);
NA_INSTANTIATE(float)
NA_INSTANTIATE(double)

}  // namespace cpu
}  // namespace nerf_app
