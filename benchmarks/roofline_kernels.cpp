// The machine's own peaks for benchmarks/roofline.py: chains of independent vector multiply-adds (fp32 FMA
// at 256 and 512 bits, AVX-512 BF16 dot products) and a STREAM-style triad. Compiled by roofline.py with
// g++ -O3 -march=native into a temporary folder and called through ctypes (one call per thread; ctypes
// releases the GIL, so N Python threads run N cores). Kernels the compiler cannot target return -1.
//
// Each FMA kernel keeps kChains accumulators: an FMA has ~4 cycles of latency and up to 2 issue per cycle,
// so 8 independent chains are needed to fill the pipes; 16 leave margin. Every chain is x = x * m + a with
// m = 1 - 2^-24 and a small a, which stays finite and normal for any iteration count (no denormal stalls);
// the sum is returned so nothing can be optimised away.
#include <immintrin.h>

#include <cstdint>

namespace {
constexpr int kChains = 16;
}

extern "C" {

// 2 * 8 * kChains flops per iteration
double peak_fma256(int64_t iters) {
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm256_set1_ps(1.0f + k);
  const __m256 m = _mm256_set1_ps(0.99999994f), a = _mm256_set1_ps(1e-3f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int k = 0; k < kChains; ++k) acc[k] = _mm256_fmadd_ps(acc[k], m, a);
  __m256 s = acc[0];
  for (int k = 1; k < kChains; ++k) s = _mm256_add_ps(s, acc[k]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
#else
  (void)iters;
  return -1.0;
#endif
}

// 2 * 16 * kChains flops per iteration
double peak_fma512(int64_t iters) {
#if defined(__AVX512F__)
  __m512 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm512_set1_ps(1.0f + k);
  const __m512 m = _mm512_set1_ps(0.99999994f), a = _mm512_set1_ps(1e-3f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_fmadd_ps(acc[k], m, a);
  __m512 s = acc[0];
  for (int k = 1; k < kChains; ++k) s = _mm512_add_ps(s, acc[k]);
  return _mm512_reduce_add_ps(s);
#else
  (void)iters;
  return -1.0;
#endif
}

// VDPBF16PS: 16 lanes x 2 bf16 products added into fp32 = 2 * 32 * kChains flops per iteration
double peak_dpbf16(int64_t iters) {
#if defined(__AVX512BF16__)
  __m512 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm512_set1_ps(1.0f + k);
  // bf16 pairs (1e-3, 1e-3): each instruction adds 2e-6 per lane
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_dpbf16_ps(acc[k], a, a);
  __m512 s = acc[0];
  for (int k = 1; k < kChains; ++k) s = _mm512_add_ps(s, acc[k]);
  return _mm512_reduce_add_ps(s);
#else
  (void)iters;
  return -1.0;
#endif
}

// STREAM triad a = b + s c over [begin, end), reps times: 12 bytes per element moved (STREAM's count:
// two reads and one write, no write-allocate traffic counted)
double triad(float* a, const float* b, const float* c, int64_t begin, int64_t end, int reps) {
  const float s = 3.0f;
  for (int r = 0; r < reps; ++r)
    for (int64_t i = begin; i < end; ++i) a[i] = b[i] + s * c[i];
  return a[begin];
}

}  // extern "C"
