// e^x on 16 fp32 lanes (AVX-512), shared by the CPU kernels that need a vector exp: the AMX MLP's output
// activations (mlp_amx_cpu.cpp) and the splat rasteriser's per-pixel alpha (splat_cpu.cpp).
//
// Why not libm: expf is scalar; GCC vectorises it only under -ffast-math, which the extension does not use
// (its twins are compared to the last few ulp). This is within ~2 ulp of expf over the range below.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 11)
#define NA_HAVE_EXP512 1
#include <immintrin.h>

namespace nerf_app {
namespace cpu {

// x = n ln2 + r (Cody-Waite, |r| <= ln2/2), e^r by a degree-6 polynomial (Cephes' expf coefficients), times
// 2^n. x is clamped to where expf is finite and normal: e^-87.3 is already far below every threshold the
// callers compare against (alpha 1/255; sigmoid of |z| > 87 is 0 or 1 in fp32 either way).
// The target attribute lets a portable build compile it; callers must carry avx512f themselves.
__attribute__((target("avx512f"))) inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

}  // namespace cpu
}  // namespace nerf_app
#endif
