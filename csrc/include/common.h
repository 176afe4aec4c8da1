// Definitions every kernel file shares, CPU and CUDA alike (no torch headers: nvcc compiles the CUDA
// launchers without torch). One host/device qualifier, exact-rounding arithmetic helpers, launch sizes.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NA_HD __host__ __device__ __forceinline__
#else
#define NA_HD inline
#endif

namespace nerf_app {

// a * b and a + b each rounded once, never fused into an FMA. nvcc contracts `a * b + c` into one
// FMA by default while the CPU build uses -ffp-contract=off; code whose float results decide control
// flow (ray marching: which cell, when to stop) uses these so every compiler and every kernel that
// inlines it computes bit-identical values. __fmul_rn / __fadd_rn are never contracted by nvcc.
NA_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
NA_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

NA_HD int64_t div_up(int64_t n, int64_t m) { return (n + m - 1) / m; }

}  // namespace nerf_app

#if defined(__CUDACC__)
#include <cuda_runtime.h>
namespace nerf_app {
namespace cuda {
// Launchers take the stream as void* so their headers need no CUDA or torch types.
inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }
inline unsigned grid_1d(int64_t n, int threads) { return (unsigned)div_up(n, threads); }
}  // namespace cuda
}  // namespace nerf_app
#endif
