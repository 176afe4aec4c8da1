// CPU hash-grid kernels. Work is split with at::parallel_for (OpenMP): forward and input gradient over
// blocks of points (each block walks level by level, so one level's table stays hot in cache), table
// gradient over levels (one owner per level: no atomics, deterministic order).
#include "hashgrid_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

namespace nerf_app {
namespace cpu {
namespace {

constexpr int64_t kGrain = 2048;  // points per task: enough work to amortise scheduling
constexpr int kLanes = 16;        // points handled together: the per-point math is written lane-wise
                                  // so the compiler vectorises it, and the batch's table misses overlap

// Table rows idx[c][j] and weights wt[c][j] of all 2^D corners c of the cells of a batch of points j
// at one level. Same arithmetic as grid_index/corner_weight in hashgrid_math.h (weights multiplied in
// axis order), laid out structure-of-arrays so each loop over j is one SIMD loop.
template <typename T, int D, bool HASHED, bool SMOOTH>
inline void batch_corners(const T (&xs)[D][kLanes], float scale, uint32_t res, uint32_t size,
                          uint32_t (&idx)[1 << D][kLanes], T (&wt)[1 << D][kLanes]) {
  uint32_t term0[D][kLanes], term1[D][kLanes];
  T wlo[D][kLanes], whi[D][kLanes];
  uint32_t top = 0;
  uint32_t stride = 1;
  for (int d = 0; d < D; ++d) {
    const uint32_t mul = HASHED ? hash_prime(d) : stride;
    for (int j = 0; j < kLanes; ++j) {
      const T pos = grid_pos(clamp01(xs[d][j]), scale);
      const uint32_t g = (uint32_t)(int32_t)pos;  // pos >= 0.5: truncation is floor
      const T f = pos - (T)g;
      const T w = SMOOTH ? f * f * (T(3) - T(2) * f) : f;
      wlo[d][j] = T(1) - w;
      whi[d][j] = w;
      term0[d][j] = g * mul;
      term1[d][j] = (g + 1u) * mul;
      top |= (uint32_t)(g + 1u >= res);
    }
    stride *= res;
  }
  for (int c = 0; c < (1 << D); ++c) {
    for (int j = 0; j < kLanes; ++j) {
      uint32_t index = (c & 1) ? term1[0][j] : term0[0][j];
      T weight = (c & 1) ? whi[0][j] : wlo[0][j];
      for (int d = 1; d < D; ++d) {
        const bool up = (c >> d) & 1;
        const uint32_t t = up ? term1[d][j] : term0[d][j];
        index = HASHED ? (index ^ t) : (index + t);
        weight = weight * (up ? whi[d][j] : wlo[d][j]);
      }
      idx[c][j] = HASHED ? (index & (size - 1u)) : index;
      wt[c][j] = weight;
    }
  }
  // A dense index passes the level's end only through a vertex at coordinate res (x near 1): wrap it
  // as tiny-cuda-nn does. Rare, so it is kept off the vector path.
  if (!HASHED && top) {
    for (int c = 0; c < (1 << D); ++c)
      for (int j = 0; j < kLanes; ++j) idx[c][j] = idx[c][j] < size ? idx[c][j] : idx[c][j] % size;
  }
}

// Loads the batch's coordinates axis-major; lanes past the end get x = 0 (a valid point, never used).
template <typename T, int D>
inline void load_batch(const T* x, int64_t b0, int nb, T (&xs)[D][kLanes]) {
  for (int j = 0; j < kLanes; ++j)
    for (int d = 0; d < D; ++d) xs[d][j] = j < nb ? x[(b0 + j) * D + d] : T(0);
}

template <typename T, int D, int F, bool HASHED, bool SMOOTH>
void forward_level(const T* x, const T* tab, T* y, int64_t begin, int64_t end, int64_t out_stride, float scale,
                   uint32_t res, uint32_t size) {
  constexpr int C = 1 << D;
  T xs[D][kLanes];
  uint32_t idx[2][C][kLanes];
  T wt[2][C][kLanes];
  // Software pipeline: the corners of batch k+1 are computed and their rows prefetched before batch k
  // is gathered, so table misses (the finest levels are far larger than the caches) overlap with work.
  auto prepare = [&](int64_t b0, int buf) {
    load_batch<T, D>(x, b0, (int)std::min<int64_t>(kLanes, end - b0), xs);
    batch_corners<T, D, HASHED, SMOOTH>(xs, scale, res, size, idx[buf], wt[buf]);
    if (HASHED)
      for (int c = 0; c < C; ++c)
        for (int j = 0; j < kLanes; ++j) __builtin_prefetch(tab + (int64_t)idx[buf][c][j] * F);
  };
  int buf = 0;
  if (begin < end) prepare(begin, buf);
  for (int64_t b0 = begin; b0 < end; b0 += kLanes) {
    if (b0 + kLanes < end) prepare(b0 + kLanes, buf ^ 1);
    const int nb = (int)std::min<int64_t>(kLanes, end - b0);
    // Weighted sums, corners in order (the reference sums in the same order).
    for (int j = 0; j < nb; ++j) {
      T acc[F];
      for (int f = 0; f < F; ++f) acc[f] = T(0);
      for (int c = 0; c < C; ++c) {
        const T* row = tab + (int64_t)idx[buf][c][j] * F;
        for (int f = 0; f < F; ++f) acc[f] += wt[buf][c][j] * row[f];
      }
      T* out = y + (b0 + j) * out_stride;
      for (int f = 0; f < F; ++f) out[f] = acc[f];
    }
    buf ^= 1;
  }
}

template <typename T, int D, int F, bool HASHED>
void forward_level(bool smooth, const T* x, const T* tab, T* y, int64_t begin, int64_t end, int64_t out_stride,
                   float scale, uint32_t res, uint32_t size) {
  if (smooth) forward_level<T, D, F, HASHED, true>(x, tab, y, begin, end, out_stride, scale, res, size);
  else forward_level<T, D, F, HASHED, false>(x, tab, y, begin, end, out_stride, scale, res, size);
}

template <typename T, int D, int F>
void forward_kernel(const T* x, const T* table, T* y, int64_t n, const HashGridLevels& L, bool smooth) {
  const int64_t out_stride = (int64_t)L.n_levels * F;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int l = 0; l < L.n_levels; ++l) {
      const T* tab = table + (int64_t)L.offset[l] * F;
      T* out = y + (int64_t)l * F;
      if (L.hashed[l])
        forward_level<T, D, F, true>(smooth, x, tab, out, begin, end, out_stride, L.scale[l], L.resolution[l],
                                     L.size[l]);
      else
        forward_level<T, D, F, false>(smooth, x, tab, out, begin, end, out_stride, L.scale[l], L.resolution[l],
                                      L.size[l]);
    }
  });
}

template <typename T, int D, int F, bool HASHED, bool SMOOTH>
void backward_level(const T* x, const T* grad_y, T* tab, int64_t n, int64_t out_stride, float scale, uint32_t res,
                    uint32_t size) {
  constexpr int C = 1 << D;
  T xs[D][kLanes];
  uint32_t idx[2][C][kLanes];
  T wt[2][C][kLanes];
  // Same software pipeline as the forward pass (prefetch for write).
  auto prepare = [&](int64_t b0, int buf) {
    load_batch<T, D>(x, b0, (int)std::min<int64_t>(kLanes, n - b0), xs);
    batch_corners<T, D, HASHED, SMOOTH>(xs, scale, res, size, idx[buf], wt[buf]);
    if (HASHED)
      for (int c = 0; c < C; ++c)
        for (int j = 0; j < kLanes; ++j) __builtin_prefetch(tab + (int64_t)idx[buf][c][j] * F, 1);
  };
  int buf = 0;
  if (n > 0) prepare(0, buf);
  for (int64_t b0 = 0; b0 < n; b0 += kLanes) {
    if (b0 + kLanes < n) prepare(b0 + kLanes, buf ^ 1);
    const int nb = (int)std::min<int64_t>(kLanes, n - b0);
    // Points in order, corners in order: the same sum on every run.
    for (int j = 0; j < nb; ++j) {
      const T* gy = grad_y + (b0 + j) * out_stride;
      for (int c = 0; c < C; ++c) {
        T* row = tab + (int64_t)idx[buf][c][j] * F;
        for (int f = 0; f < F; ++f) row[f] += wt[buf][c][j] * gy[f];
      }
    }
    buf ^= 1;
  }
}

template <typename T, int D, int F, bool HASHED>
void backward_level(bool smooth, const T* x, const T* grad_y, T* tab, int64_t n, int64_t out_stride, float scale,
                    uint32_t res, uint32_t size) {
  if (smooth) backward_level<T, D, F, HASHED, true>(x, grad_y, tab, n, out_stride, scale, res, size);
  else backward_level<T, D, F, HASHED, false>(x, grad_y, tab, n, out_stride, scale, res, size);
}

template <typename T, int D, int F>
void backward_table_kernel(const T* x, const T* grad_y, T* grad_table, int64_t n, const HashGridLevels& L,
                           bool smooth, bool accumulate) {
  const int64_t out_stride = (int64_t)L.n_levels * F;
  // Threads take whole levels from a shared counter, finest (most cache-missing) first, so uneven
  // levels still balance; a level's sum is always done by one thread in point order.
  std::atomic<int> next{0};
  const int n_tasks = std::min<int>(L.n_levels, std::max(1, at::get_num_threads()));
  at::parallel_for(0, n_tasks, 1, [&](int64_t, int64_t) {
    for (int k = next.fetch_add(1); k < L.n_levels; k = next.fetch_add(1)) {
      const int l = L.n_levels - 1 - k;
      T* tab = grad_table + (int64_t)L.offset[l] * F;
      // Zeroed here rather than by the caller: one pass fewer over the table, and the freshly
      // written level is cache-warm for the scatter that follows.
      if (!accumulate) std::fill(tab, tab + (int64_t)L.size[l] * F, T(0));
      const T* gy = grad_y + (int64_t)l * F;
      if (L.hashed[l])
        backward_level<T, D, F, true>(smooth, x, gy, tab, n, out_stride, L.scale[l], L.resolution[l], L.size[l]);
      else
        backward_level<T, D, F, false>(smooth, x, gy, tab, n, out_stride, L.scale[l], L.resolution[l], L.size[l]);
    }
  });
}

template <typename T, int D, int F, bool HASHED, bool SMOOTH>
void backward_input_level(const T (&xs)[D][kLanes], const T* tab, const T* grad_y, int64_t b0, int nb,
                          int64_t out_stride, float scale, uint32_t res, uint32_t size, T (&gx)[D][kLanes]) {
  constexpr int C = 1 << D;
  uint32_t term0[D][kLanes], term1[D][kLanes];
  T wlo[D][kLanes], whi[D][kLanes], dwds[D][kLanes];
  uint32_t top = 0, stride = 1;
  for (int d = 0; d < D; ++d) {
    const uint32_t mul = HASHED ? hash_prime(d) : stride;
    for (int j = 0; j < kLanes; ++j) {
      const T pos = grid_pos(clamp01(xs[d][j]), scale);
      const uint32_t g = (uint32_t)(int32_t)pos;
      const T f = pos - (T)g;
      const T w = SMOOTH ? f * f * (T(3) - T(2) * f) : f;
      wlo[d][j] = T(1) - w;
      whi[d][j] = w;
      dwds[d][j] = (SMOOTH ? T(6) * f * (T(1) - f) : T(1)) * (T)scale;  // d w / d x
      term0[d][j] = g * mul;
      term1[d][j] = (g + 1u) * mul;
      top |= (uint32_t)(g + 1u >= res);
    }
    stride *= res;
  }
  T gys[F][kLanes];
  for (int j = 0; j < kLanes; ++j)
    for (int f = 0; f < F; ++f) gys[f][j] = j < nb ? grad_y[(b0 + j) * out_stride + f] : T(0);
  for (int c = 0; c < C; ++c) {
    uint32_t idx[kLanes];
    for (int j = 0; j < kLanes; ++j) {
      uint32_t index = (c & 1) ? term1[0][j] : term0[0][j];
      for (int d = 1; d < D; ++d) {
        const uint32_t t = ((c >> d) & 1) ? term1[d][j] : term0[d][j];
        index = HASHED ? (index ^ t) : (index + t);
      }
      idx[j] = HASHED ? (index & (size - 1u)) : (top && index >= size ? index % size : index);
    }
    T dot[kLanes];
    for (int j = 0; j < nb; ++j) {
      const T* row = tab + (int64_t)idx[j] * F;
      T acc = T(0);
      for (int f = 0; f < F; ++f) acc += gys[f][j] * row[f];
      dot[j] = acc;
    }
    for (int j = nb; j < kLanes; ++j) dot[j] = T(0);
    // d weight_c / d x_d = (c_d ? 1 : -1) * prod_{e != d} w_e(c) * dw_d/dx_d
    for (int d = 0; d < D; ++d) {
      for (int j = 0; j < kLanes; ++j) {
        T partial = ((c >> d) & 1) ? dwds[d][j] : -dwds[d][j];
        for (int e = 0; e < D; ++e)
          if (e != d) partial *= ((c >> e) & 1) ? whi[e][j] : wlo[e][j];
        gx[d][j] += partial * dot[j];
      }
    }
  }
}

template <typename T, int D, int F>
void backward_input_kernel(const T* x, const T* table, const T* grad_y, T* grad_x, int64_t n,
                           const HashGridLevels& L, bool smooth) {
  const int64_t out_stride = (int64_t)L.n_levels * F;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    T xs[D][kLanes], gx[D][kLanes];
    for (int64_t b0 = begin; b0 < end; b0 += kLanes) {
      const int nb = (int)std::min<int64_t>(kLanes, end - b0);
      load_batch<T, D>(x, b0, nb, xs);
      for (int d = 0; d < D; ++d)
        for (int j = 0; j < kLanes; ++j) gx[d][j] = T(0);
      for (int l = 0; l < L.n_levels; ++l) {
        const T* tab = table + (int64_t)L.offset[l] * F;
        const T* gy = grad_y + (int64_t)l * F;
        const float s = L.scale[l];
        const uint32_t r = L.resolution[l], sz = L.size[l];
        if (L.hashed[l]) {
          if (smooth) backward_input_level<T, D, F, true, true>(xs, tab, gy, b0, nb, out_stride, s, r, sz, gx);
          else backward_input_level<T, D, F, true, false>(xs, tab, gy, b0, nb, out_stride, s, r, sz, gx);
        } else {
          if (smooth) backward_input_level<T, D, F, false, true>(xs, tab, gy, b0, nb, out_stride, s, r, sz, gx);
          else backward_input_level<T, D, F, false, false>(xs, tab, gy, b0, nb, out_stride, s, r, sz, gx);
        }
      }
      for (int j = 0; j < nb; ++j)
        for (int d = 0; d < D; ++d) grad_x[(b0 + j) * D + d] = inside01(xs[d][j]) ? gx[d][j] : T(0);
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
                             const HashGridLevels& levels, bool smoothstep, bool accumulate) {
  NA_DISPATCH_DF(dim, features, backward_table_kernel, x, grad_y, grad_table, n, levels, smoothstep, accumulate);
}

template <typename T>
void hashgrid_backward_input(const T* x, const T* table, const T* grad_y, T* grad_x, int64_t n, int dim,
                             int features, const HashGridLevels& levels, bool smoothstep) {
  NA_DISPATCH_DF(dim, features, backward_input_kernel, x, table, grad_y, grad_x, n, levels, smoothstep);
}

#define NA_INSTANTIATE(T)                                                                              \
  template void hashgrid_forward<T>(const T*, const T*, T*, int64_t, int, int, const HashGridLevels&, bool); \
  template void hashgrid_backward_table<T>(const T*, const T*, T*, int64_t, int, int, const HashGridLevels&, \
                                           bool, bool);                                                \
  template void hashgrid_backward_input<T>(const T*, const T*, const T*, T*, int64_t, int, int,        \
                                           const HashGridLevels&, bool);
NA_INSTANTIATE(float)
NA_INSTANTIATE(double)

}  // namespace cpu
}  // namespace nerf_app
