// The splat rasteriser's per-pixel loops on two 8-lane AVX2 vectors per tile row (splat_rows.h), compiled
// for AVX2 + FMA whatever the build targets; splat_cpu.cpp calls them only on a CPU that has both. Masks are
// vectors of all-ones lanes (AVX2 has no mask registers); masked-out lanes are zeroed before a sum.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "splat_math.h"
#include "splat_tiles.h"

#ifdef NA_SPLAT_X86_SIMD
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "simd_exp.h"

namespace nerf_app {
namespace cpu {
namespace {

struct Avx2 {
  struct F { __m256 lo, hi; };
  using M = F;   // lanes of all ones (true) or all zeros (false)
  static F set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static F iota(float x) {
    const __m256 b = _mm256_set1_ps(x);
    return {_mm256_add_ps(b, _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7)),
            _mm256_add_ps(b, _mm256_setr_ps(8, 9, 10, 11, 12, 13, 14, 15))};
  }
  static M first(int n) {
    const __m256 v = _mm256_set1_ps((float)n);
    return {_mm256_cmp_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), v, _CMP_LT_OQ),
            _mm256_cmp_ps(_mm256_setr_ps(8, 9, 10, 11, 12, 13, 14, 15), v, _CMP_LT_OQ)};
  }
  static F add(F a, F b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
  static F sub(F a, F b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
  static F mul(F a, F b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
  static F div(F a, F b) { return {_mm256_div_ps(a.lo, b.lo), _mm256_div_ps(a.hi, b.hi)}; }
  static F min(F a, F b) { return {_mm256_min_ps(a.lo, b.lo), _mm256_min_ps(a.hi, b.hi)}; }
  static F exp(F x) { return {exp256(x.lo), exp256(x.hi)}; }
  static M cmp_and(M m, __m256 lo, __m256 hi) { return {_mm256_and_ps(m.lo, lo), _mm256_and_ps(m.hi, hi)}; }
  static M le(M m, F a, F b) { return cmp_and(m, _mm256_cmp_ps(a.lo, b.lo, _CMP_LE_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_LE_OQ)); }
  static M ge(M m, F a, F b) { return cmp_and(m, _mm256_cmp_ps(a.lo, b.lo, _CMP_GE_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_GE_OQ)); }
  static M lt(M m, F a, F b) { return cmp_and(m, _mm256_cmp_ps(a.lo, b.lo, _CMP_LT_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_LT_OQ)); }
  static M gt(M m, F a, F b) { return cmp_and(m, _mm256_cmp_ps(a.lo, b.lo, _CMP_GT_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_GT_OQ)); }
  static bool any(M m) { return _mm256_movemask_ps(_mm256_or_ps(m.lo, m.hi)) != 0; }
  static M andnot(M m, M s) { return {_mm256_andnot_ps(s.lo, m.lo), _mm256_andnot_ps(s.hi, m.hi)}; }
  static F blend(F a, M m, F b) { return {_mm256_blendv_ps(a.lo, b.lo, m.lo), _mm256_blendv_ps(a.hi, b.hi, m.hi)}; }
  static F mask_add(F a, M m, F b) { return blend(a, m, add(a, b)); }
  static F mask_mul(F a, M m, F b) { return blend(a, m, mul(a, b)); }
  static float reduce(M m, F v) {
    // lanes i and i + 8 first, then 4, 2, 1 apart: one fixed order
    __m256 x = _mm256_add_ps(_mm256_and_ps(v.lo, m.lo), _mm256_and_ps(v.hi, m.hi));
    __m128 y = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    y = _mm_add_ps(y, _mm_movehl_ps(y, y));
    y = _mm_add_ss(y, _mm_movehdup_ps(y));
    return _mm_cvtss_f32(y);
  }
  static F load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v.lo); _mm256_storeu_ps(p + 8, v.hi); }
};

}  // namespace
}  // namespace cpu
}  // namespace nerf_app

#include "splat_rows.h"

namespace nerf_app {
namespace cpu {

void splat_forward_tile_avx2(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                             const float* background, float* out_color, float* out_alpha, int32_t* last) {
  forward_tile<Avx2>(s, count, X0, Y0, width, height, background, out_color, out_alpha, last);
}

void splat_backward_tile_avx2(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                              const float* out_color, const int32_t* last, const float* grad_image, float* slot) {
  backward_tile<Avx2>(s, count, X0, Y0, width, height, out_color, last, grad_image, slot);
}

}  // namespace cpu
}  // namespace nerf_app

#pragma GCC pop_options
#endif  // NA_SPLAT_X86_SIMD
