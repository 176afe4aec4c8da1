// The splat rasteriser's per-pixel loops on one 16-lane AVX-512 vector per tile row (splat_rows.h), compiled
// for AVX-512 whatever the build targets; splat_cpu.cpp calls them only on a CPU that has it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "splat_math.h"
#include "splat_tiles.h"

#ifdef NA_SPLAT_X86_SIMD
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f")

#include "simd_exp.h"

namespace nerf_app {
namespace cpu {
namespace {

struct Avx512 {
  using F = __m512;
  using M = __mmask16;
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F iota(float x) {
    return _mm512_add_ps(_mm512_set1_ps(x), _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
  }
  static M first(int n) { return (M)((1u << n) - 1u); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F exp(F x) { return exp512(x); }
  static M le(M m, F a, F b) { return _mm512_mask_cmp_ps_mask(m, a, b, _CMP_LE_OQ); }
  static M ge(M m, F a, F b) { return _mm512_mask_cmp_ps_mask(m, a, b, _CMP_GE_OQ); }
  static M lt(M m, F a, F b) { return _mm512_mask_cmp_ps_mask(m, a, b, _CMP_LT_OQ); }
  static M gt(M m, F a, F b) { return _mm512_mask_cmp_ps_mask(m, a, b, _CMP_GT_OQ); }
  static bool any(M m) { return m != 0; }
  static M andnot(M m, M s) { return (M)(m & ~s); }
  static F mask_add(F a, M m, F b) { return _mm512_mask_add_ps(a, m, a, b); }
  static F blend(F a, M m, F b) { return _mm512_mask_mov_ps(a, m, b); }
  static F mask_mul(F a, M m, F b) { return _mm512_mask_mul_ps(a, m, a, b); }
  static float reduce(M m, F v) { return _mm512_mask_reduce_add_ps(m, v); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
};

}  // namespace
}  // namespace cpu
}  // namespace nerf_app

#include "splat_rows.h"

namespace nerf_app {
namespace cpu {

void splat_forward_tile_avx512(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                               const float* background, float* out_color, float* out_alpha, int32_t* last) {
  forward_tile<Avx512>(s, count, X0, Y0, width, height, background, out_color, out_alpha, last);
}

void splat_backward_tile_avx512(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                                const float* out_color, const int32_t* last, const float* grad_image, float* slot) {
  backward_tile<Avx512>(s, count, X0, Y0, width, height, out_color, last, grad_image, slot);
}

}  // namespace cpu
}  // namespace nerf_app

#pragma GCC pop_options
#endif  // NA_SPLAT_X86_SIMD
