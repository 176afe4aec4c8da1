// The rasteriser's per-pixel loops over one tile, 16 pixels (a tile row) at a time, written once for any
// vector backend V (splat_simd_avx2.cpp, splat_simd_avx512.cpp define one and include this after their
// `#pragma GCC target`). They compute the scalar loops' compositing rule (splat_cpu.cpp) with the same
// operations in the same order; the exp is exp512/exp256 (within ~2 ulp of expf), and a splat's gradient
// terms are summed over a row's lanes in a fixed order before they reach its slot, so the last bits differ
// from the scalar loop's, and between the two backends, but never between runs or thread counts.
//
// Everything is in an anonymous namespace: each including TU compiles its own copy for its own ISA, and no
// copy can be picked by the linker for another TU.
//
// V provides: F (16 fp32 lanes), M (16 lane mask); set1, iota (x + lane), first (lanes < n), add, sub, mul,
// min, div, exp; le/ge/lt/gt(m, a, b) = m & (a op b); any, andnot(m, s) = m & ~s; mask_add(a, m, b) = m ? a + b
// : a; blend(a, m, b) = m ? b : a; mask_mul(a, m, b) = m ? a * b : a; reduce(m, v) = the sum of v over m;
// load/store of 16 floats.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "splat_math.h"
#include "splat_tiles.h"

namespace nerf_app {
namespace cpu {
namespace {

// Row skipping: along a pixel row at vertical offset dy from a splat's centre, the exponent
// -1/2 d^T conic d is at most -ky dy^2 with ky = det / (2 a) (its maximum over dx, for a positive definite
// conic). A row where o exp(-ky dy^2) < 1/255 cannot composite the splat at any pixel, so it is skipped
// without the vector work. The test keeps a margin for the rounding of the per-pixel exponent (which
// cancels terms of size ~c dy^2). ky = 0 (a conic that is not positive definite) never skips; a splat whose
// opacity is below 1/255 is skipped everywhere (alpha <= opacity).
struct RowSkip {
  std::vector<float> ky, lim;
  void load(const TileSplats& s, int64_t count) {
    ky.resize(count); lim.resize(count);
    for (int64_t k = 0; k < count; ++k) {
      const double a = s.q[3 * k], b = s.q[3 * k + 1], c = s.q[3 * k + 2];
      const double det = a * c - b * b;   // exact products of floats in double
      ky[k] = (a > 0 && det > 0 && std::isfinite(det / a)) ? (float)(0.5 * det / a) : 0.f;
      const float o = s.o[k];
      lim[k] = o * 255.f > 1.f ? std::log(o * 255.f) : -1.f;   // -1: never reaches 1/255
    }
  }
  bool skip(int64_t k, float dy, float c) const {
    if (lim[k] < 0.f) return true;
    const float dy2 = dy * dy;
    return ky[k] * dy2 > lim[k] + 1e-3f + 1e-5f * std::fabs(c) * dy2;
  }
};

// Splat k's exponent at the row's pixel centres, the scalar rule's operations in its order:
// -0.5 (a dx dx + c dy dy) - b dx dy; dx = px - mx is handed back.
template <class V>
inline typename V::F row_power(const TileSplats& s, int64_t k, typename V::F px, float dy, typename V::F& dx) {
  const float* q = &s.q[3 * k];
  dx = V::sub(px, V::set1(s.m[2 * k]));
  const typename V::F ady = V::mul(V::mul(V::set1(q[0]), dx), dx);
  const typename V::F sum = V::add(ady, V::set1(q[2] * dy * dy));
  return V::sub(V::mul(V::set1(-0.5f), sum), V::mul(V::mul(V::set1(q[1]), dx), V::set1(dy)));
}

// One tile's forward (lanes beyond the image are masked off). `end` counts splats in fp32 lanes: exact
// while count < 2^24 (splat_simd_fits).
template <class V>
void forward_rows(const TileSplats& s, const RowSkip& rs, int64_t count, int X0, int Y0, int width, int height,
                  const float* background, float* out_color, float* out_alpha, int32_t* last) {
  using F = typename V::F;
  using M = typename V::M;
  const int nx = std::min(kSplatTile, width - X0);
  const M valid = V::first(nx);
  const F px = V::add(V::iota((float)X0), V::set1(0.5f));
  const F one = V::set1(1.f), zero = V::set1(0.f);
  const F amax = V::set1(kSplatAlphaMax), amin = V::set1(kSplatAlphaMin), tmin = V::set1(kSplatTMin);
  for (int y = Y0; y < std::min(Y0 + kSplatTile, height); ++y) {
    const float py = y + 0.5f;
    F T = one, C0 = zero, C1 = zero, C2 = zero, end = zero;
    M active = valid;
    for (int64_t k = 0; k < count && V::any(active); ++k) {
      const float dy = py - s.m[2 * k + 1];
      if (rs.skip(k, dy, s.q[3 * k + 2])) continue;
      F dx;
      const F power = row_power<V>(s, k, px, dy, dx);
      M m = V::le(active, power, zero);
      if (!V::any(m)) continue;
      const F alpha = V::min(V::mul(V::set1(s.o[k]), V::exp(power)), amax);
      m = V::ge(m, alpha, amin);
      if (!V::any(m)) continue;
      const F next = V::mul(T, V::sub(one, alpha));
      const M stop = V::lt(m, next, tmin);
      active = V::andnot(active, stop);
      m = V::andnot(m, stop);
      const F w = V::mul(alpha, T);
      const float* c = &s.c[3 * k];
      C0 = V::mask_add(C0, m, V::mul(w, V::set1(c[0])));
      C1 = V::mask_add(C1, m, V::mul(w, V::set1(c[1])));
      C2 = V::mask_add(C2, m, V::mul(w, V::set1(c[2])));
      T = V::blend(T, m, next);
      end = V::blend(end, m, V::set1((float)(k + 1)));
    }
    float c0[16], c1[16], c2[16], tt[16], ee[16];
    V::store(c0, C0); V::store(c1, C1); V::store(c2, C2); V::store(tt, T); V::store(ee, end);
    for (int i = 0; i < nx; ++i) {
      const int64_t p = (int64_t)y * width + X0 + i;
      out_color[3 * p] = c0[i] + tt[i] * background[0];
      out_color[3 * p + 1] = c1[i] + tt[i] * background[1];
      out_color[3 * p + 2] = c2[i] + tt[i] * background[2];
      out_alpha[p] = 1.f - tt[i];
      last[p] = (int32_t)ee[i];
    }
  }
}

// One tile's backward; each splat's per-pixel terms are summed over the row's lanes (a fixed order) and
// added to its slot row by row.
template <class V>
void backward_rows(const TileSplats& s, const RowSkip& rs, int X0, int Y0, int width, int height,
                   const float* out_color, const int32_t* last, const float* grad_image, float* slot) {
  using F = typename V::F;
  using M = typename V::M;
  constexpr int kSlot = 9;
  const int nx = std::min(kSplatTile, width - X0);
  const M valid = V::first(nx);
  const F px = V::add(V::iota((float)X0), V::set1(0.5f));
  const F one = V::set1(1.f), half = V::set1(-0.5f), zero = V::set1(0.f);
  const F amax = V::set1(kSplatAlphaMax), amin = V::set1(kSplatAlphaMin);
  for (int y = Y0; y < std::min(Y0 + kSplatTile, height); ++y) {
    float g0[16] = {0}, g1[16] = {0}, g2[16] = {0}, f0[16] = {0}, f1[16] = {0}, f2[16] = {0}, ll[16] = {0};
    int32_t kmax = 0;
    for (int i = 0; i < nx; ++i) {
      const int64_t p = (int64_t)y * width + X0 + i;
      g0[i] = grad_image[3 * p]; g1[i] = grad_image[3 * p + 1]; g2[i] = grad_image[3 * p + 2];
      f0[i] = out_color[3 * p]; f1[i] = out_color[3 * p + 1]; f2[i] = out_color[3 * p + 2];
      ll[i] = (float)last[p];
      kmax = std::max(kmax, last[p]);
    }
    const F dC0 = V::load(g0), dC1 = V::load(g1), dC2 = V::load(g2);
    const F Cf0 = V::load(f0), Cf1 = V::load(f1), Cf2 = V::load(f2);
    const F lastv = V::load(ll);
    const float py = y + 0.5f;
    F T = one, a0 = zero, a1 = zero, a2 = zero;
    for (int32_t k = 0; k < kmax; ++k) {
      const float* q = &s.q[3 * k];
      const float dy = py - s.m[2 * k + 1];
      if (rs.skip(k, dy, q[2])) continue;
      // lanes that composited splat k in the forward pass: k < last, and the same tests as there
      M m = V::gt(valid, lastv, V::set1((float)k));
      F dx;
      const F power = row_power<V>(s, k, px, dy, dx);
      m = V::le(m, power, zero);
      if (!V::any(m)) continue;
      const F g = V::exp(power);
      const F raw = V::mul(V::set1(s.o[k]), g);
      const F alpha = V::min(raw, amax);
      m = V::ge(m, alpha, amin);
      if (!V::any(m)) continue;
      const F w = V::mul(alpha, T);
      const float* c = &s.c[3 * k];
      const F c0 = V::set1(c[0]), c1 = V::set1(c[1]), c2 = V::set1(c[2]);
      const F wc0 = V::mul(w, c0), wc1 = V::mul(w, c1), wc2 = V::mul(w, c2);
      float* e = slot + (int64_t)k * kSlot;
      e[6] += V::reduce(m, V::mul(w, dC0));
      e[7] += V::reduce(m, V::mul(w, dC1));
      e[8] += V::reduce(m, V::mul(w, dC2));
      // the colour behind the splat: final colour minus what was composited up to and including it
      const F inv = V::div(one, V::sub(one, alpha));
      const F b0 = V::sub(V::sub(Cf0, a0), wc0);
      const F b1 = V::sub(V::sub(Cf1, a1), wc1);
      const F b2 = V::sub(V::sub(Cf2, a2), wc2);
      F dl = V::mul(dC0, V::sub(V::mul(c0, T), V::mul(b0, inv)));
      dl = V::add(dl, V::mul(dC1, V::sub(V::mul(c1, T), V::mul(b1, inv))));
      dl = V::add(dl, V::mul(dC2, V::sub(V::mul(c2, T), V::mul(b2, inv))));
      a0 = V::mask_add(a0, m, wc0);
      a1 = V::mask_add(a1, m, wc1);
      a2 = V::mask_add(a2, m, wc2);
      T = V::mask_mul(T, m, V::sub(one, alpha));
      // through alpha = min(0.99, o g): nothing where the clamp holds (splat_sample_backward)
      const M mg = V::lt(m, raw, amax);
      if (!V::any(mg)) continue;
      const F dp = V::mul(dl, raw);
      const F vdy = V::set1(dy);
      e[5] += V::reduce(mg, V::mul(dl, g));
      e[0] += V::reduce(mg, V::mul(dp, V::add(V::mul(V::set1(q[0]), dx), V::set1(q[1] * dy))));
      e[1] += V::reduce(mg, V::mul(dp, V::add(V::mul(V::set1(q[1]), dx), V::set1(q[2] * dy))));
      e[2] += V::reduce(mg, V::mul(dp, V::mul(V::mul(half, dx), dx)));
      e[3] += V::reduce(mg, V::mul(dp, V::mul(V::sub(zero, dx), vdy)));
      e[4] += V::reduce(mg, V::mul(dp, V::set1(-0.5f * dy * dy)));
    }
  }
}

// The two entry points each vector TU exports, around the loops above.
template <class V>
void forward_tile(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                  const float* background, float* out_color, float* out_alpha, int32_t* last) {
  thread_local RowSkip rs;
  rs.load(s, count);
  forward_rows<V>(s, rs, count, X0, Y0, width, height, background, out_color, out_alpha, last);
}

template <class V>
void backward_tile(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                   const float* out_color, const int32_t* last, const float* grad_image, float* slot) {
  thread_local RowSkip rs;
  rs.load(s, count);
  backward_rows<V>(s, rs, X0, Y0, width, height, out_color, last, grad_image, slot);
}

}  // namespace
}  // namespace cpu
}  // namespace nerf_app
