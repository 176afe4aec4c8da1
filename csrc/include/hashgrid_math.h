// Multiresolution hash encoding: the per-point math shared by the CPU and CUDA kernels.
//
// Semantics follow tiny-cuda-nn's GridEncoding (see DESIGN.md and nerf_app/ops/_reference.py, which
// is the readable definition these functions must agree with):
//   level l: scale_l = base * b^l - 1, res_l = ceil(scale_l) + 1,
//            size_l  = min(next_multiple(res_l^D, 8), T), hashed iff res_l^D > size_l
//   pos = x * scale_l + 0.5,  g = floor(pos),  f = pos - g
//   corner c in {0,1}^D: index = dense (sum (g+c)_d res^d) or hash (xor (g+c)_d * prime_d), mod size_l
//   weight = prod_d (c_d ? s(f_d) : 1 - s(f_d)),  s = identity or smoothstep.
// Deliberate difference from tiny-cuda-nn: x is clamped to [0, 1] (NaN -> 0) before use, so an
// out-of-range point never indexes outside its level; its input gradient is zero there.
#pragma once

#include <cstdint>

#include "common.h"

namespace nerf_app {

constexpr int kHashGridMaxLevels = 32;

// Per-level layout of the table, built once per call on the host and passed by value.
struct HashGridLevels {
  int n_levels;
  uint32_t offset[kHashGridMaxLevels];      // first table row of the level
  uint32_t size[kHashGridMaxLevels];        // rows of the level (a multiple of 8, at most T)
  uint32_t resolution[kHashGridMaxLevels];  // grid vertices per axis
  float scale[kHashGridMaxLevels];          // base * b^l - 1, as float like tiny-cuda-nn
  uint8_t hashed[kHashGridMaxLevels];       // res^D > size: use the coherent prime hash
};

// tiny-cuda-nn's coherent primes; the first is 1 so neighbouring x-cells stay neighbours in memory.
NA_HD uint32_t hash_prime(int d) {
  return d == 0 ? 1u : (d == 1 ? 2654435761u : (d == 2 ? 805459861u : 3674653429u));
}

// Table row of `corner` (bit d set: upper vertex along axis d) of the cell whose lower vertex is g.
template <int D>
NA_HD uint32_t grid_index(const uint32_t* g, uint32_t corner, uint32_t res, uint32_t size, bool hashed) {
  if (hashed) {
    uint32_t h = 0;
#pragma unroll
    for (int d = 0; d < D; ++d) h ^= (g[d] + ((corner >> d) & 1u)) * hash_prime(d);
    return h & (size - 1u);  // hashed levels have size == T, a power of two
  }
  uint32_t index = 0, stride = 1;
#pragma unroll
  for (int d = 0; d < D; ++d) {
    index += (g[d] + ((corner >> d) & 1u)) * stride;
    stride *= res;
  }
  // Only the top vertex of a cell touching x == 1 can pass the end (as in tiny-cuda-nn): wrap it.
  return index < size ? index : index % size;
}

// Clamp to [0, 1]; NaN maps to 0 (comparisons with NaN are false).
template <typename T>
NA_HD T clamp01(T x) {
  return x > T(0) ? (x < T(1) ? x : T(1)) : T(0);
}

template <typename T>
NA_HD bool inside01(T x) {
  return x >= T(0) && x <= T(1);
}

// pos = x * scale + 0.5 rounded once (a fused multiply-add). On the GPU that is the fma instruction:
// fp64 runs at 1/32-1/64 of the fp32 rate on consumer cards. The CPU keeps the double form (the float
// product is exact in double, and x86 double is fast): it equals fmaf except where the double sum
// itself rounds (x * scale < 2^-7, i.e. pos just above 0.5), a last-bit difference of the weight that
// the CUDA tests' tolerances cover; the CPU and the reference stay bit-identical.
NA_HD float grid_pos(float x, float scale) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(x, scale, 0.5f);
#else
  return (float)((double)x * (double)scale + 0.5);
#endif
}
NA_HD double grid_pos(double x, float scale) { return x * (double)scale + 0.5; }

// Interpolation weight s(f) of the upper vertex and its derivative ds/df.
template <typename T>
NA_HD void interp_weight(T f, bool smoothstep, T& w, T& dw) {
  if (smoothstep) {
    w = f * f * (T(3) - T(2) * f);
    dw = T(6) * f * (T(1) - f);
  } else {
    w = f;
    dw = T(1);
  }
}

// Lower vertex, upper-vertex weights and their derivatives for one point at one level.
template <typename T, int D>
NA_HD void grid_cell(const T* x, float scale, bool smoothstep, uint32_t* g, T* w, T* dw) {
#pragma unroll
  for (int d = 0; d < D; ++d) {
    T pos = grid_pos(clamp01(x[d]), scale);
    g[d] = (uint32_t)(int32_t)pos;  // pos >= 0.5 after clamping, so truncation is floor
    interp_weight<T>(pos - (T)g[d], smoothstep, w[d], dw[d]);
  }
}

// Weight of a corner: prod_d (c_d ? w_d : 1 - w_d), multiplied in axis order (the reference does the same).
template <typename T, int D>
NA_HD T corner_weight(const T* w, uint32_t corner) {
  T weight = T(1);
#pragma unroll
  for (int d = 0; d < D; ++d) weight *= ((corner >> d) & 1u) ? w[d] : T(1) - w[d];
  return weight;
}

// d weight / d w_axis for a corner.
template <typename T, int D>
NA_HD T corner_weight_grad(const T* w, uint32_t corner, int axis) {
  T weight = T(1);
#pragma unroll
  for (int d = 0; d < D; ++d) {
    const bool up = (corner >> d) & 1u;
    if (d == axis) weight *= up ? T(1) : T(-1);
    else weight *= up ? w[d] : T(1) - w[d];
  }
  return weight;
}

}  // namespace nerf_app
