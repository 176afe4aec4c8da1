// CPU kernels of splat_rasterize: binning into 16x16 tiles (serial, deterministic), then one tile per
// task (at::parallel_for) for the forward and the backward pass.
#include "splat_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "splat_math.h"

// The per-pixel loops run 16 pixels (one tile row) per AVX-512 vector where the build targets it
// (-march=native on an AVX-512 machine); elsewhere the scalar loops below. The two compute the same
// compositing rule; the vector one's exp is exp512 (within ~2 ulp of expf), and its gradients are summed
// over a row's lanes before they reach a splat's slot, so its last bits differ from the scalar path's.
#include "simd_exp.h"
#if defined(__AVX512F__) && defined(NA_HAVE_EXP512)
#define NA_SPLAT_AVX512 1
#endif

namespace nerf_app {
namespace cpu {

namespace {

int tiles_along(int pixels) { return (int)div_up(pixels, kSplatTile); }

// One tile's splats gathered next to each other (the per-pixel loop reads them many times).
struct TileSplats {
  std::vector<float> m, q, c, o;
  void load(const float* mean2d, const float* conic, const float* color, const float* opacity, const int32_t* gid,
            int64_t count) {
    m.resize(2 * count); q.resize(3 * count); c.resize(3 * count); o.resize(count);
    for (int64_t k = 0; k < count; ++k) {
      const int64_t g = gid[k];
      m[2 * k] = mean2d[2 * g]; m[2 * k + 1] = mean2d[2 * g + 1];
      for (int j = 0; j < 3; ++j) { q[3 * k + j] = conic[3 * g + j]; c[3 * k + j] = color[3 * g + j]; }
      o[k] = opacity[g];
    }
  }
};

// Sort key of a float that orders like < (for non-NaN; -0 and +0 as equal): flip the sign bit of positive
// numbers, every bit of negative ones.
inline uint32_t float_order_key(float f) {
  if (f == 0.f) f = 0.f;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}


#ifdef NA_SPLAT_AVX512
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

// The 16 lanes of a tile row that starts at pixel column X0: their pixel centres, and which lie in the image.
struct RowLanes {
  int nx;
  __mmask16 valid;
  __m512 px;
  RowLanes(int X0, int width)
      : nx(std::min(kSplatTile, width - X0)), valid((__mmask16)((1u << nx) - 1u)),
        px(_mm512_add_ps(_mm512_add_ps(_mm512_set1_ps((float)X0),
                                       _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)),
                         _mm512_set1_ps(0.5f))) {}
};

// Splat k's exponent at the row's pixel centres, the scalar rule's operations in its order:
// -0.5 (a dx dx + c dy dy) - b dx dy; dx = px - mx is handed back.
inline __m512 row_power(const TileSplats& s, int64_t k, __m512 px, float dy, __m512& dx) {
  const float* q = &s.q[3 * k];
  dx = _mm512_sub_ps(px, _mm512_set1_ps(s.m[2 * k]));
  const __m512 ady = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(q[0]), dx), dx);
  const __m512 sum = _mm512_add_ps(ady, _mm512_set1_ps(q[2] * dy * dy));
  return _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5f), sum),
                       _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(q[1]), dx), _mm512_set1_ps(dy)));
}

// One tile's forward, 16 pixels of a row per vector (lanes beyond the image are masked off).
void forward_tile_avx512(const TileSplats& s, const RowSkip& rs, int64_t count, int X0, int Y0, int width,
                         int height, const float* background, float* out_color, float* out_alpha, int32_t* last) {
  const RowLanes row(X0, width);
  const int nx = row.nx;
  const __m512 one = _mm512_set1_ps(1.f), zero = _mm512_setzero_ps();
  const __m512 amax = _mm512_set1_ps(kSplatAlphaMax), amin = _mm512_set1_ps(kSplatAlphaMin);
  const __m512 tmin = _mm512_set1_ps(kSplatTMin);
  for (int y = Y0; y < std::min(Y0 + kSplatTile, height); ++y) {
    const float py = y + 0.5f;
    __m512 T = one, C0 = zero, C1 = zero, C2 = zero;
    __m512i end = _mm512_setzero_si512();
    __mmask16 active = row.valid;
    for (int64_t k = 0; k < count && active; ++k) {
      const float dy = py - s.m[2 * k + 1];
      if (rs.skip(k, dy, s.q[3 * k + 2])) continue;
      __m512 dx;
      const __m512 power = row_power(s, k, row.px, dy, dx);
      __mmask16 m = _mm512_mask_cmp_ps_mask(active, power, zero, _CMP_LE_OQ);
      if (!m) continue;
      const __m512 alpha = _mm512_min_ps(_mm512_mul_ps(_mm512_set1_ps(s.o[k]), exp512(power)), amax);
      m = _mm512_mask_cmp_ps_mask(m, alpha, amin, _CMP_GE_OQ);
      if (!m) continue;
      const __m512 next = _mm512_mul_ps(T, _mm512_sub_ps(one, alpha));
      const __mmask16 stop = _mm512_mask_cmp_ps_mask(m, next, tmin, _CMP_LT_OQ);
      active &= (__mmask16)~stop;
      m &= (__mmask16)~stop;
      const __m512 w = _mm512_mul_ps(alpha, T);
      const float* c = &s.c[3 * k];
      C0 = _mm512_mask_add_ps(C0, m, C0, _mm512_mul_ps(w, _mm512_set1_ps(c[0])));
      C1 = _mm512_mask_add_ps(C1, m, C1, _mm512_mul_ps(w, _mm512_set1_ps(c[1])));
      C2 = _mm512_mask_add_ps(C2, m, C2, _mm512_mul_ps(w, _mm512_set1_ps(c[2])));
      T = _mm512_mask_mov_ps(T, m, next);
      end = _mm512_mask_set1_epi32(end, m, (int32_t)(k + 1));
    }
    alignas(64) float c0[16], c1[16], c2[16], tt[16];
    alignas(64) int32_t ee[16];
    _mm512_store_ps(c0, C0); _mm512_store_ps(c1, C1); _mm512_store_ps(c2, C2); _mm512_store_ps(tt, T);
    _mm512_store_si512((__m512i*)ee, end);
    for (int i = 0; i < nx; ++i) {
      const int64_t p = (int64_t)y * width + X0 + i;
      out_color[3 * p] = c0[i] + tt[i] * background[0];
      out_color[3 * p + 1] = c1[i] + tt[i] * background[1];
      out_color[3 * p + 2] = c2[i] + tt[i] * background[2];
      out_alpha[p] = 1.f - tt[i];
      last[p] = ee[i];
    }
  }
}

// One tile's backward, 16 pixels of a row per vector; each splat's per-pixel terms are summed over the
// row's lanes (a fixed order) and added to its slot row by row.
void backward_tile_avx512(const TileSplats& s, const RowSkip& rs, int X0, int Y0, int width, int height,
                          const float* out_color, const int32_t* last, const float* grad_image, float* slot) {
  constexpr int kSlot = 9;
  const RowLanes row(X0, width);
  const int nx = row.nx;
  const __m512 one = _mm512_set1_ps(1.f), half = _mm512_set1_ps(-0.5f), zero = _mm512_setzero_ps();
  const __m512 amax = _mm512_set1_ps(kSplatAlphaMax), amin = _mm512_set1_ps(kSplatAlphaMin);
  for (int y = Y0; y < std::min(Y0 + kSplatTile, height); ++y) {
    alignas(64) float g0[16] = {0}, g1[16] = {0}, g2[16] = {0}, f0[16] = {0}, f1[16] = {0}, f2[16] = {0};
    alignas(64) int32_t ll[16] = {0};
    int32_t kmax = 0;
    for (int i = 0; i < nx; ++i) {
      const int64_t p = (int64_t)y * width + X0 + i;
      g0[i] = grad_image[3 * p]; g1[i] = grad_image[3 * p + 1]; g2[i] = grad_image[3 * p + 2];
      f0[i] = out_color[3 * p]; f1[i] = out_color[3 * p + 1]; f2[i] = out_color[3 * p + 2];
      ll[i] = last[p];
      kmax = std::max(kmax, ll[i]);
    }
    const __m512 dC0 = _mm512_load_ps(g0), dC1 = _mm512_load_ps(g1), dC2 = _mm512_load_ps(g2);
    const __m512 Cf0 = _mm512_load_ps(f0), Cf1 = _mm512_load_ps(f1), Cf2 = _mm512_load_ps(f2);
    const __m512i lastv = _mm512_load_si512((const __m512i*)ll);
    const float py = y + 0.5f;
    __m512 T = one, a0 = zero, a1 = zero, a2 = zero;
    for (int32_t k = 0; k < kmax; ++k) {
      const float* q = &s.q[3 * k];
      const float dy = py - s.m[2 * k + 1];
      if (rs.skip(k, dy, q[2])) continue;
      // lanes that composited splat k in the forward pass: k < last, and the same tests as there
      __mmask16 m = _mm512_mask_cmpgt_epi32_mask(row.valid, lastv, _mm512_set1_epi32(k));
      __m512 dx;
      const __m512 power = row_power(s, k, row.px, dy, dx);
      m = _mm512_mask_cmp_ps_mask(m, power, zero, _CMP_LE_OQ);
      if (!m) continue;
      const __m512 g = exp512(power);
      const __m512 raw = _mm512_mul_ps(_mm512_set1_ps(s.o[k]), g);
      const __m512 alpha = _mm512_min_ps(raw, amax);
      m = _mm512_mask_cmp_ps_mask(m, alpha, amin, _CMP_GE_OQ);
      if (!m) continue;
      const __m512 w = _mm512_mul_ps(alpha, T);
      const float* c = &s.c[3 * k];
      const __m512 c0 = _mm512_set1_ps(c[0]), c1 = _mm512_set1_ps(c[1]), c2 = _mm512_set1_ps(c[2]);
      const __m512 wc0 = _mm512_mul_ps(w, c0), wc1 = _mm512_mul_ps(w, c1), wc2 = _mm512_mul_ps(w, c2);
      float* e = slot + (int64_t)k * kSlot;
      e[6] += _mm512_mask_reduce_add_ps(m, _mm512_mul_ps(w, dC0));
      e[7] += _mm512_mask_reduce_add_ps(m, _mm512_mul_ps(w, dC1));
      e[8] += _mm512_mask_reduce_add_ps(m, _mm512_mul_ps(w, dC2));
      // the colour behind the splat: final colour minus what was composited up to and including it
      const __m512 inv = _mm512_div_ps(one, _mm512_sub_ps(one, alpha));
      const __m512 b0 = _mm512_sub_ps(_mm512_sub_ps(Cf0, a0), wc0);
      const __m512 b1 = _mm512_sub_ps(_mm512_sub_ps(Cf1, a1), wc1);
      const __m512 b2 = _mm512_sub_ps(_mm512_sub_ps(Cf2, a2), wc2);
      __m512 dl = _mm512_mul_ps(dC0, _mm512_sub_ps(_mm512_mul_ps(c0, T), _mm512_mul_ps(b0, inv)));
      dl = _mm512_add_ps(dl, _mm512_mul_ps(dC1, _mm512_sub_ps(_mm512_mul_ps(c1, T), _mm512_mul_ps(b1, inv))));
      dl = _mm512_add_ps(dl, _mm512_mul_ps(dC2, _mm512_sub_ps(_mm512_mul_ps(c2, T), _mm512_mul_ps(b2, inv))));
      a0 = _mm512_mask_add_ps(a0, m, a0, wc0);
      a1 = _mm512_mask_add_ps(a1, m, a1, wc1);
      a2 = _mm512_mask_add_ps(a2, m, a2, wc2);
      T = _mm512_mask_mul_ps(T, m, T, _mm512_sub_ps(one, alpha));
      // through alpha = min(0.99, o g): nothing where the clamp holds (splat_sample_backward)
      const __mmask16 mg = _mm512_mask_cmp_ps_mask(m, raw, amax, _CMP_LT_OQ);
      if (!mg) continue;
      const __m512 dp = _mm512_mul_ps(dl, raw);
      const __m512 vdy = _mm512_set1_ps(dy);
      e[5] += _mm512_mask_reduce_add_ps(mg, _mm512_mul_ps(dl, g));
      e[0] += _mm512_mask_reduce_add_ps(mg, _mm512_mul_ps(dp, _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(q[0]), dx),
                                                                             _mm512_set1_ps(q[1] * dy))));
      e[1] += _mm512_mask_reduce_add_ps(mg, _mm512_mul_ps(dp, _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(q[1]), dx),
                                                                             _mm512_set1_ps(q[2] * dy))));
      e[2] += _mm512_mask_reduce_add_ps(mg, _mm512_mul_ps(dp, _mm512_mul_ps(_mm512_mul_ps(half, dx), dx)));
      e[3] += _mm512_mask_reduce_add_ps(mg, _mm512_mul_ps(dp, _mm512_mul_ps(_mm512_sub_ps(zero, dx), vdy)));
      e[4] += _mm512_mask_reduce_add_ps(mg, _mm512_mul_ps(dp, _mm512_set1_ps(-0.5f * dy * dy)));
    }
  }
}
#endif  // NA_SPLAT_AVX512

}  // namespace

void splat_tile_counts(const float* mean2d, const int32_t* radius, int64_t n, int width, int height, int64_t* counts) {
  const int tx = tiles_along(width), ty = tiles_along(height);
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      counts[i] = 0;
      if (radius[i] <= 0) continue;
      int x0, x1, y0, y1;
      splat_tile_rect(mean2d[2 * i], mean2d[2 * i + 1], radius[i], tx, ty, x0, x1, y0, y1);
      counts[i] = (int64_t)(x1 - x0) * (y1 - y0);
    }
  });
}

void splat_bin(const float* mean2d, const int32_t* radius, const float* depth, int64_t n, int width, int height,
               const int64_t* gauss_offsets, int64_t* tile_offsets, int32_t* isect_gid, int64_t* entry_of) {
  const int tx = tiles_along(width), ty = tiles_along(height);
  const int64_t n_tiles = (int64_t)tx * ty;
  // splats that touch a tile, by depth then index: a counting sort by tile in this order leaves every
  // tile's list sorted by depth
  // (depth key, index) in one 64-bit integer: sorting integers is about twice as fast as sorting indices
  // through a comparison of their depths
  std::vector<uint64_t> keyed;
  keyed.reserve(n);
  for (int64_t i = 0; i < n; ++i)
    if (gauss_offsets[i + 1] > gauss_offsets[i]) keyed.push_back(((uint64_t)float_order_key(depth[i]) << 32) | (uint32_t)i);
  std::sort(keyed.begin(), keyed.end());
  std::vector<int32_t> order(keyed.size());
  for (size_t k = 0; k < keyed.size(); ++k) order[k] = (int32_t)(uint32_t)keyed[k];
  std::vector<uint64_t>().swap(keyed);
  std::vector<int64_t> count(n_tiles + 1, 0);
  for (int32_t g : order) {
    int x0, x1, y0, y1;
    splat_tile_rect(mean2d[2 * g], mean2d[2 * g + 1], radius[g], tx, ty, x0, x1, y0, y1);
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) ++count[(int64_t)y * tx + x];
  }
  tile_offsets[0] = 0;
  for (int64_t t = 0; t < n_tiles; ++t) tile_offsets[t + 1] = tile_offsets[t] + count[t];
  std::vector<int64_t> cursor(tile_offsets, tile_offsets + n_tiles);
  for (int32_t g : order) {
    int x0, x1, y0, y1;
    splat_tile_rect(mean2d[2 * g], mean2d[2 * g + 1], radius[g], tx, ty, x0, x1, y0, y1);
    int64_t j = gauss_offsets[g];
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) {
        const int64_t pos = cursor[(int64_t)y * tx + x]++;
        isect_gid[pos] = g;
        entry_of[j++] = pos;
      }
  }
}

void splat_rasterize_forward(const float* mean2d, const float* conic, const float* color, const float* opacity,
                             int width, int height, const float* background, const int64_t* tile_offsets,
                             const int32_t* isect_gid, float* out_color, float* out_alpha, int32_t* last) {
  const int tx = tiles_along(width), ty = tiles_along(height);
  at::parallel_for(0, (int64_t)tx * ty, 1, [&](int64_t tb, int64_t te) {
    TileSplats s;
#ifdef NA_SPLAT_AVX512
    RowSkip rs;
#endif
    for (int64_t t = tb; t < te; ++t) {
      const int64_t first = tile_offsets[t], count = tile_offsets[t + 1] - first;
      s.load(mean2d, conic, color, opacity, isect_gid + first, count);
      const int X0 = (int)(t % tx) * kSplatTile, Y0 = (int)(t / tx) * kSplatTile;
#ifdef NA_SPLAT_AVX512
      rs.load(s, count);
      forward_tile_avx512(s, rs, count, X0, Y0, width, height, background, out_color, out_alpha, last);
      continue;
#endif
      for (int y = Y0; y < std::min(Y0 + kSplatTile, height); ++y)
        for (int x = X0; x < std::min(X0 + kSplatTile, width); ++x) {
          const float px = x + 0.5f, py = y + 0.5f;
          float T = 1.f, C[3] = {0.f, 0.f, 0.f};
          int32_t end = 0;
          for (int64_t k = 0; k < count; ++k) {
            float dx, dy, alpha, raw, g;
            const float power = splat_power(&s.q[3 * k], s.m[2 * k], s.m[2 * k + 1], px, py, dx, dy);
            if (!splat_alpha(power, s.o[k], alpha, raw, g)) continue;
            const float next = T * (1.f - alpha);
            if (next < kSplatTMin) break;
            const float w = alpha * T;
            for (int j = 0; j < 3; ++j) C[j] += w * s.c[3 * k + j];
            T = next;
            end = (int32_t)(k + 1);
          }
          const int64_t p = (int64_t)y * width + x;
          for (int j = 0; j < 3; ++j) out_color[3 * p + j] = C[j] + T * background[j];
          out_alpha[p] = 1.f - T;
          last[p] = end;
        }
    }
  });
}

void splat_rasterize_backward(const float* mean2d, const float* conic, const float* color, const float* opacity,
                              int64_t n, int width, int height, const float* background,
                              const int64_t* tile_offsets, const int32_t* isect_gid, const int64_t* gauss_offsets,
                              const int64_t* entry_of, const float* out_color, const int32_t* last,
                              const float* grad_image, float* slots, float* grad_mean2d, float* grad_conic,
                              float* grad_color, float* grad_opacity) {
  constexpr int kSlot = 9;  // per entry: mean2d 2, conic 3, opacity 1, color 3
  const int tx = tiles_along(width), ty = tiles_along(height);
  at::parallel_for(0, (int64_t)tx * ty, 1, [&](int64_t tb, int64_t te) {
    TileSplats s;
#ifdef NA_SPLAT_AVX512
    RowSkip rs;
#endif
    for (int64_t t = tb; t < te; ++t) {
      const int64_t first = tile_offsets[t], count = tile_offsets[t + 1] - first;
      float* slot = slots + first * kSlot;
      std::fill(slot, slot + count * kSlot, 0.f);
      s.load(mean2d, conic, color, opacity, isect_gid + first, count);
      const int X0 = (int)(t % tx) * kSplatTile, Y0 = (int)(t / tx) * kSplatTile;
#ifdef NA_SPLAT_AVX512
      rs.load(s, count);
      backward_tile_avx512(s, rs, X0, Y0, width, height, out_color, last, grad_image, slot);
      continue;
#endif
      for (int y = Y0; y < std::min(Y0 + kSplatTile, height); ++y)
        for (int x = X0; x < std::min(X0 + kSplatTile, width); ++x) {
          const int64_t p = (int64_t)y * width + x;
          const float px = x + 0.5f, py = y + 0.5f;
          const float dC[3] = {grad_image[3 * p], grad_image[3 * p + 1], grad_image[3 * p + 2]};
          const float Cf[3] = {out_color[3 * p], out_color[3 * p + 1], out_color[3 * p + 2]};
          float T = 1.f, acc[3] = {0.f, 0.f, 0.f};
          // forward order (the transmittance recomputed exactly as the forward pass did); the colour
          // behind a splat is the final colour minus what was composited up to and including it
          for (int64_t k = 0; k < last[p]; ++k) {
            float dx, dy, alpha, raw, g;
            const float* q = &s.q[3 * k];
            const float power = splat_power(q, s.m[2 * k], s.m[2 * k + 1], px, py, dx, dy);
            if (!splat_alpha(power, s.o[k], alpha, raw, g)) continue;
            const float w = alpha * T;
            const float* c = &s.c[3 * k];
            float* e = slot + k * kSlot;
            float dl_dalpha = 0.f;
            for (int j = 0; j < 3; ++j) {
              e[6 + j] += w * dC[j];
              const float behind = Cf[j] - acc[j] - w * c[j];
              dl_dalpha += dC[j] * (c[j] * T - behind / (1.f - alpha));
              acc[j] += w * c[j];
            }
            splat_sample_backward(dl_dalpha, q, dx, dy, raw, g, e, e + 2, e[5]);
            T *= 1.f - alpha;
          }
        }
    }
  });
  at::parallel_for(0, n, 1024, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float sum[kSlot] = {0.f};
      for (int64_t j = gauss_offsets[i]; j < gauss_offsets[i + 1]; ++j) {
        const float* v = slots + entry_of[j] * kSlot;
        for (int a = 0; a < kSlot; ++a) sum[a] += v[a];
      }
      grad_mean2d[2 * i] = sum[0]; grad_mean2d[2 * i + 1] = sum[1];
      for (int a = 0; a < 3; ++a) { grad_conic[3 * i + a] = sum[2 + a]; grad_color[3 * i + a] = sum[6 + a]; }
      grad_opacity[i] = sum[5];
    }
  });
}

}  // namespace cpu
}  // namespace nerf_app
