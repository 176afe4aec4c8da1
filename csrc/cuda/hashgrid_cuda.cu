// CUDA hash-grid kernels. One thread per (point, level) for the forward pass and the table gradient
// (level-minor, so outputs coalesce);
// one thread per point for the input gradient. The table gradient is accumulated with float atomics
// into a float32 buffer for every table type (the glue casts it to fp16 for fp16 tables, as
// tiny-cuda-nn does): a coarse vertex receives thousands of adds, and fp16 accumulation of them lost
// 5-7 %. Atomics add in an order-dependent way, so unlike the CPU kernel the CUDA table gradient is not
// bit-reproducible.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common.h"
#include "hashgrid_cuda.h"

namespace nerf_app {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

// Thread t handles point t / n_levels at level t % n_levels: consecutive threads write consecutive F-wide
// pieces of y's [N, n_levels * F] rows, so the stores (and the table gradient's grad_y reads) coalesce.
// A warp then spans several levels, so the layout is staged in shared memory (a warp reading different
// entries of a kernel parameter would serialise on the constant cache).
struct PointLevel {
  int64_t i;
  int l;
};

__device__ __forceinline__ bool point_level(int64_t n, const HashGridLevels& L, HashGridLevels& staged,
                                            PointLevel& pl) {
  if (threadIdx.x == 0) staged = L;
  __syncthreads();
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  pl.i = t / L.n_levels;
  pl.l = (int)(t - pl.i * L.n_levels);
  return pl.i < n;
}

template <typename TT, int D, int F>
__global__ void forward_kernel(const float* __restrict__ x, const TT* __restrict__ table, float* __restrict__ y,
                               int64_t n, HashGridLevels levels, bool smooth) {
  __shared__ HashGridLevels L;
  PointLevel pl;
  if (!point_level(n, levels, L, pl)) return;
  const int64_t i = pl.i;
  const int l = pl.l;
  uint32_t g[D];
  float w[D], dw[D];
  grid_cell<float, D>(x + i * D, L.scale[l], smooth, g, w, dw);
  const TT* tab = table + (int64_t)L.offset[l] * F;
  float acc[F];
#pragma unroll
  for (int f = 0; f < F; ++f) acc[f] = 0.f;
#pragma unroll
  for (uint32_t c = 0; c < (1u << D); ++c) {
    const float weight = corner_weight<float, D>(w, c);
    const TT* row = tab + (int64_t)grid_index<D>(g, c, L.resolution[l], L.size[l], L.hashed[l]) * F;
#pragma unroll
    for (int f = 0; f < F; ++f) acc[f] += weight * to_float(row[f]);
  }
  float* out = y + i * (int64_t)L.n_levels * F + (int64_t)l * F;
#pragma unroll
  for (int f = 0; f < F; ++f) out[f] = acc[f];
}

template <int F>
__device__ __forceinline__ void add_row(float* row, const float* v, float weight) {
#pragma unroll
  for (int f = 0; f < F; ++f) atomicAdd(row + f, weight * v[f]);
}

template <int D, int F>
__global__ void backward_table_kernel(const float* __restrict__ x, const float* __restrict__ grad_y,
                                      float* __restrict__ grad_table, int64_t n, HashGridLevels levels, bool smooth) {
  __shared__ HashGridLevels L;
  PointLevel pl;
  if (!point_level(n, levels, L, pl)) return;
  const int64_t i = pl.i;
  const int l = pl.l;
  const float* gy = grad_y + i * (int64_t)L.n_levels * F + (int64_t)l * F;
  float v[F];
  bool any = false;
#pragma unroll
  for (int f = 0; f < F; ++f) { v[f] = gy[f]; any |= v[f] != 0.f; }
  if (!any) return;
  uint32_t g[D];
  float w[D], dw[D];
  grid_cell<float, D>(x + i * D, L.scale[l], smooth, g, w, dw);
  float* tab = grad_table + (int64_t)L.offset[l] * F;
#pragma unroll
  for (uint32_t c = 0; c < (1u << D); ++c) {
    const float weight = corner_weight<float, D>(w, c);
    add_row<F>(tab + (int64_t)grid_index<D>(g, c, L.resolution[l], L.size[l], L.hashed[l]) * F, v, weight);
  }
}

template <typename TT, int D, int F>
__global__ void backward_input_kernel(const float* __restrict__ x, const TT* __restrict__ table,
                                      const float* __restrict__ grad_y, float* __restrict__ grad_x, int64_t n,
                                      HashGridLevels L, bool smooth) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float* xi = x + i * D;
  float gx[D];
#pragma unroll
  for (int d = 0; d < D; ++d) gx[d] = 0.f;
  for (int l = 0; l < L.n_levels; ++l) {
    const TT* tab = table + (int64_t)L.offset[l] * F;
    const float* gy = grad_y + i * (int64_t)L.n_levels * F + (int64_t)l * F;
    uint32_t g[D];
    float w[D], dw[D];
    grid_cell<float, D>(xi, L.scale[l], smooth, g, w, dw);
#pragma unroll
    for (uint32_t c = 0; c < (1u << D); ++c) {
      const TT* row = tab + (int64_t)grid_index<D>(g, c, L.resolution[l], L.size[l], L.hashed[l]) * F;
      float dot = 0.f;
#pragma unroll
      for (int f = 0; f < F; ++f) dot += gy[f] * to_float(row[f]);
#pragma unroll
      for (int d = 0; d < D; ++d) gx[d] += corner_weight_grad<float, D>(w, c, d) * dw[d] * L.scale[l] * dot;
    }
  }
#pragma unroll
  for (int d = 0; d < D; ++d) grad_x[i * D + d] = inside01(xi[d]) ? gx[d] : 0.f;
}

inline unsigned blocks_for(int64_t n) { return grid_1d(n, kThreads); }

// Expands STMT with compile-time D and F for the runtime (dim, features) pair (C++17: no template lambdas).
#define NA_DISPATCH_DF(dim, features, ...)                                                      \
  switch ((dim) * 16 + (features)) {                                                             \
    case 1 * 16 + 1: { constexpr int D = 1, F = 1; __VA_ARGS__; } break;                                \
    case 1 * 16 + 2: { constexpr int D = 1, F = 2; __VA_ARGS__; } break;                                \
    case 1 * 16 + 4: { constexpr int D = 1, F = 4; __VA_ARGS__; } break;                                \
    case 1 * 16 + 8: { constexpr int D = 1, F = 8; __VA_ARGS__; } break;                                \
    case 2 * 16 + 1: { constexpr int D = 2, F = 1; __VA_ARGS__; } break;                                \
    case 2 * 16 + 2: { constexpr int D = 2, F = 2; __VA_ARGS__; } break;                                \
    case 2 * 16 + 4: { constexpr int D = 2, F = 4; __VA_ARGS__; } break;                                \
    case 2 * 16 + 8: { constexpr int D = 2, F = 8; __VA_ARGS__; } break;                                \
    case 3 * 16 + 1: { constexpr int D = 3, F = 1; __VA_ARGS__; } break;                                \
    case 3 * 16 + 2: { constexpr int D = 3, F = 2; __VA_ARGS__; } break;                                \
    case 3 * 16 + 4: { constexpr int D = 3, F = 4; __VA_ARGS__; } break;                                \
    case 3 * 16 + 8: { constexpr int D = 3, F = 8; __VA_ARGS__; } break;                                \
    case 4 * 16 + 1: { constexpr int D = 4, F = 1; __VA_ARGS__; } break;                                \
    case 4 * 16 + 2: { constexpr int D = 4, F = 2; __VA_ARGS__; } break;                                \
    case 4 * 16 + 4: { constexpr int D = 4, F = 4; __VA_ARGS__; } break;                                \
    case 4 * 16 + 8: { constexpr int D = 4, F = 8; __VA_ARGS__; } break;                                \
    default:                                                                                     \
      throw std::invalid_argument("hashgrid: unsupported input_dim " + std::to_string(dim) +     \
                                  " / n_features_per_level " + std::to_string(features));        \
  }

template <typename TT, int D, int F>
void launch_forward(const float* x, const void* table, float* y, int64_t n, const HashGridLevels& L, bool smooth,
                    cudaStream_t s) {
  forward_kernel<TT, D, F><<<blocks_for(n * L.n_levels), kThreads, 0, s>>>(
      x, static_cast<const TT*>(table), y, n, L, smooth);
}

template <int D, int F>
void launch_backward_table(const float* x, const float* grad_y, float* grad_table, int64_t n,
                           const HashGridLevels& L, bool smooth, cudaStream_t s) {
  backward_table_kernel<D, F><<<blocks_for(n * L.n_levels), kThreads, 0, s>>>(x, grad_y, grad_table, n, L, smooth);
}

template <typename TT, int D, int F>
void launch_backward_input(const float* x, const void* table, const float* grad_y, float* grad_x, int64_t n,
                           const HashGridLevels& L, bool smooth, cudaStream_t s) {
  backward_input_kernel<TT, D, F><<<blocks_for(n), kThreads, 0, s>>>(x, static_cast<const TT*>(table), grad_y,
                                                                     grad_x, n, L, smooth);
}

}  // namespace

void hashgrid_forward(const float* x, const void* table, bool half_table, float* y, int64_t n, int dim,
                      int features, const HashGridLevels& levels, bool smoothstep, void* stream) {
  if (n == 0) return;
  cudaStream_t s = as_stream(stream);
  NA_DISPATCH_DF(dim, features,
                 half_table ? launch_forward<__half, D, F>(x, table, y, n, levels, smoothstep, s)
                            : launch_forward<float, D, F>(x, table, y, n, levels, smoothstep, s));
}

void hashgrid_backward_table(const float* x, const float* grad_y, float* grad_table, int64_t n, int dim,
                             int features, const HashGridLevels& levels, bool smoothstep, void* stream) {
  if (n == 0) return;
  cudaStream_t s = as_stream(stream);
  NA_DISPATCH_DF(dim, features, launch_backward_table<D, F>(x, grad_y, grad_table, n, levels, smoothstep, s));
}

void hashgrid_backward_input(const float* x, const void* table, bool half_table, const float* grad_y,
                             float* grad_x, int64_t n, int dim, int features, const HashGridLevels& levels,
                             bool smoothstep, void* stream) {
  if (n == 0) return;
  cudaStream_t s = as_stream(stream);
  NA_DISPATCH_DF(dim, features,
                 half_table ? launch_backward_input<__half, D, F>(x, table, grad_y, grad_x, n, levels, smoothstep, s)
                            : launch_backward_input<float, D, F>(x, table, grad_y, grad_x, n, levels, smoothstep, s));
}

}  // namespace cuda
}  // namespace nerf_app
