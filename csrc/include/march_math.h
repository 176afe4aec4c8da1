// Occupancy-grid ray marching: the grid geometry, the step rule and the per-ray loop, shared verbatim
// by the CPU and CUDA kernels (one ray per call) and by both passes of march_rays (count, then fill).
// nerf_app/ops/_reference.py::march_rays is the readable twin; the float32 operations here run in the
// same order, each rounded once (mul_rn / add_rn, see common.h), so the two passes, the two devices and
// the reference take bit-identical steps: nvcc may not contract them into FMAs differently per kernel.
//
// Grid geometry: cascade k covers the cube of side 2^k centred on (0.5, 0.5, 0.5); each cascade has
// R^3 cells indexed x + R*(y + R*z); the occupancy bitfield stores cell i of cascade k at bit
// (k*R^3 + i) (byte (k*R^3 + i) / 8, bit (k*R^3 + i) % 8).
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace nerf_app {

// fmaxf / fminf with their NaN rule (a NaN operand yields the other one), written out: without
// -ffinite-math-only gcc calls libm's through the PLT for each, and the march calls them per step.
NA_HD float max_num(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fmaxf(a, b);
#else
  return a > b ? a : (b != b ? a : b);
#endif
}
NA_HD float min_num(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fminf(a, b);
#else
  return a < b ? a : (b != b ? a : b);
#endif
}

// Smallest cascade whose cube contains p (n_cascades if none).
NA_HD int cascade_of(const float* p, int n_cascades) {
  const float m = max_num(max_num(fabsf(p[0] - 0.5f), fabsf(p[1] - 0.5f)), fabsf(p[2] - 0.5f));
  int k = 0;
  float half = 0.5f;
  while (k < n_cascades && m > half) {
    ++k;
    half *= 2.0f;
  }
  return k;
}

// Cell coordinate along one axis in cascade k (scale 2^k): floor(((p - 0.5) / 2^k + 0.5) * R), clamped.
NA_HD int cell_coord(float p, float inv_scale, int res) {
  const float u = mul_rn(add_rn(mul_rn(p - 0.5f, inv_scale), 0.5f), (float)res);
  int c = (int)floorf(u);
  return c < 0 ? 0 : (c >= res ? res - 1 : c);
}

NA_HD bool grid_occupied(const uint8_t* bitfield, int k, int cx, int cy, int cz, int res) {
  const int64_t bit = (int64_t)k * res * res * res + cx + (int64_t)res * (cy + (int64_t)res * cz);
  return (bitfield[bit >> 3] >> (bit & 7)) & 1;
}

// Step length at distance t: constant dt_min inside, growing with t (cone) outside, at most dt_max.
NA_HD float march_dt(float t, float cone_angle, float dt_min, float dt_max) {
  const float dt = mul_rn(t, cone_angle);
  return dt < dt_min ? dt_min : (dt > dt_max ? dt_max : dt);
}

// 2^-k, exactly (k >= 0): what 1.0f / (float)(1 << k) gives, without a division.
NA_HD float inv_pow2(int k) {
  float v = 1.0f;
  for (int i = 0; i < k; ++i) v *= 0.5f;
  return v;
}

// x / res, bit for bit: as x * inv_res when res is a power of two (division by 2^n is exact scaling, so
// the product is the same float), else the division itself. inv_res: 1.0f / res.
NA_HD float div_res(float x, int res, float inv_res) {
  return (res & (res - 1)) == 0 ? mul_rn(x, inv_res) : x / (float)res;
}

// Distance along the ray to where it leaves cell (cx, cy, cz) of cascade k.
NA_HD float cell_exit_t(const float* o, const float* d, int cx, int cy, int cz, float scale, int res) {
  const int c[3] = {cx, cy, cz};
  const float inv_res = 1.0f / (float)res;
  float t = INFINITY;
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    const float edge = div_res((float)(c[a] + (d[a] > 0.0f ? 1 : 0)), res, inv_res);  // cell boundary in [0,1]
    const float world = add_rn(mul_rn(edge - 0.5f, scale), 0.5f);
    t = min_num(t, (world - o[a]) / d[a]);
  }
  return t;
}

// fl(a * b + c) with one rounding: an FMA where the target has one (CUDA; x86 with FMA). Elsewhere (a portable
// build) a two-rounding stand-in that walk_empty never calls: it checks NA_EXACT_FMA first.
#if defined(__CUDA_ARCH__)
#define NA_EXACT_FMA 1
NA_HD float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
#elif defined(__FMA__)
#define NA_EXACT_FMA 1
NA_HD float fma_rn(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
#else
#define NA_EXACT_FMA 0
NA_HD float fma_rn(float a, float b, float c) { return add_rn(mul_rn(a, b), c); }
#endif

// Whether x is a power of two (2^-126 .. 2^127), so that t * x is exact for every t march_ray sees.
NA_HD bool is_pow2(float x) {
  if (!(x >= 1.17549435e-38f && x <= 1.70141183e38f)) return false;
  int e = 0;
  const float m = frexpf(x, &e);
  return m == 0.5f;
}

// The walk through an empty cell: from t, whose step is `step` (= march_dt(t)), take whole steps until the
// next step's midpoint reaches t_exit or t reaches t_max; returns the new t and leaves its step in `step`.
// Exactly the steps of the plain loop (the #else branch), only with a shorter dependency chain per step where
// the step rule is the cone's: with cone a power of two, t * cone is exact, so t + march_dt(t) is
// fma(t, cone, t) and the midpoint t + march_dt(t) / 2 is fma(t, cone / 2, t), both rounded once like the
// sums they replace. A step whose rule is a clamp (dt_min or dt_max) takes the plain path.
NA_HD float walk_empty(float t, float& step, float t_exit, float t_max, float cone_angle, bool cone_pow2,
                       float dt_min, float dt_max) {
#if NA_EXACT_FMA
  if (cone_pow2) {
    const float half_cone = mul_rn(0.5f, cone_angle);
    for (;;) {
      // invariant: step == march_dt(t), and the step from t is taken
      if (step == mul_rn(t, cone_angle)) {  // the cone's rule at t: t + step in one rounding
        t = fma_rn(t, cone_angle, t);
      } else {
        t = add_rn(t, step);
      }
      const float tc = mul_rn(t, cone_angle);
      const bool cone_rule = !(tc < dt_min) && !(tc > dt_max);  // march_dt(t) == tc
      step = cone_rule ? tc : (tc < dt_min ? dt_min : dt_max);
      const float mid = cone_rule ? fma_rn(t, half_cone, t) : add_rn(t, mul_rn(0.5f, step));
      if (!(mid < t_exit && t < t_max)) return t;
    }
  }
#endif
  do {
    t = add_rn(t, step);
    step = march_dt(t, cone_angle, dt_min, dt_max);
  } while (add_rn(t, mul_rn(0.5f, step)) < t_exit && t < t_max);
  return t;
}

struct MarchRay {
  const float* o;
  const float* d;
  float t_min, t_max;
};

// Walks one ray through the cascaded grid; calls emit(j, t0, t1) for its j-th sample, one per step whose
// midpoint lies in an occupied cell. Inside cascade k the step is march_dt(t); an empty cell is skipped
// to where the ray leaves it (in whole steps, so samples stay on the same lattice as if the cell had
// been marched through). Returns the number of samples (at most max_samples).
template <typename Emit>
NA_HD int march_ray(const MarchRay& r, const uint8_t* bitfield, int n_cascades, int res, float dt_min, float dt_max,
                    float cone_angle, int max_samples, Emit&& emit) {
  int n = 0;
  float t = r.t_min;
  const bool cone_pow2 = is_pow2(cone_angle);
  while (t < r.t_max && n < max_samples) {
    const float dt = march_dt(t, cone_angle, dt_min, dt_max);
    const float mid = add_rn(t, mul_rn(0.5f, dt));
    float p[3];
    for (int a = 0; a < 3; ++a) p[a] = add_rn(r.o[a], mul_rn(mid, r.d[a]));
    const int k = cascade_of(p, n_cascades);
    if (k >= n_cascades) break;  // left the outermost cascade
    const float scale = (float)(1 << k), inv_scale = inv_pow2(k);
    const int cx = cell_coord(p[0], inv_scale, res), cy = cell_coord(p[1], inv_scale, res),
              cz = cell_coord(p[2], inv_scale, res);
    if (grid_occupied(bitfield, k, cx, cy, cz, res)) {
      emit(n, t, add_rn(t, dt));
      ++n;
      t = add_rn(t, dt);
    } else {
      const float t_exit = cell_exit_t(r.o, r.d, cx, cy, cz, scale, res);
      float step = dt;  // march_dt(t), carried from one step to the next instead of computed twice
      t = walk_empty(t, step, t_exit, r.t_max, cone_angle, cone_pow2, dt_min, dt_max);
    }
  }
  return n;
}

// The fill pass of one ray: writes its samples into the `cap` slots the count pass reserved for it at
// `base`. Writes never leave those slots, whatever the walk returns; should it return fewer samples than
// counted, the remaining slots become zero-length samples at the last t (weight exactly 0 in volume
// rendering), so no slot is left uninitialised. With the shared, non-contracted arithmetic above the
// two passes agree exactly, and this bound turns any future disagreement into harmless padding
// instead of an out-of-bounds write.
NA_HD int march_fill_ray(const MarchRay& r, const uint8_t* bitfield, int n_cascades, int res, float dt_min,
                         float dt_max, float cone_angle, int max_samples, int64_t ray, int64_t base, int64_t cap,
                         int64_t* ray_indices, float* t_starts, float* t_ends) {
  float last = r.t_min;
  const int n = march_ray(r, bitfield, n_cascades, res, dt_min, dt_max, cone_angle, max_samples,
                          [&](int j, float t0, float t1) {
                            if (j < cap) {
                              ray_indices[base + j] = ray;
                              t_starts[base + j] = t0;
                              t_ends[base + j] = t1;
                              last = t1;
                            }
                          });
  for (int64_t j = n; j < cap; ++j) {
    ray_indices[base + j] = ray;
    t_starts[base + j] = last;
    t_ends[base + j] = last;
  }
  return n;
}

}  // namespace nerf_app
