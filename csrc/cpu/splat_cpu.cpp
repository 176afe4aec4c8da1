// CPU kernels of splat_rasterize: binning into 16x16 tiles (serial, deterministic), then one tile per
// task (at::parallel_for) for the forward and the backward pass.
#include "splat_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "splat_math.h"
#include "splat_tiles.h"

// The per-pixel loops below are the scalar reference; where the CPU has AVX2 (+FMA) or AVX-512 a tile row's 16
// pixels run as vectors instead (splat_rows.h, chosen at run time by splat_simd()).

namespace nerf_app {
namespace cpu {

namespace {

int tiles_along(int pixels) { return (int)div_up(pixels, kSplatTile); }

// Sort key of a float that orders like < (for non-NaN; -0 and +0 as equal): flip the sign bit of positive
// numbers, every bit of negative ones.
inline uint32_t float_order_key(float f) {
  if (f == 0.f) f = 0.f;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

}  // namespace

SplatSimd splat_simd() {
#ifdef NA_SPLAT_X86_SIMD
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f");
#else
  const bool avx2 = false, avx512 = false;
#endif
  const char* env = std::getenv("NERF_APP_SPLAT_SIMD");
  const std::string want = env ? env : "auto";
  if (want.empty() || want == "auto") return avx512 ? SplatSimd::kAvx512 : avx2 ? SplatSimd::kAvx2 : SplatSimd::kScalar;
  if (want == "scalar") return SplatSimd::kScalar;
  if (want == "avx2" && avx2) return SplatSimd::kAvx2;
  if (want == "avx512" && avx512) return SplatSimd::kAvx512;
  if (want == "avx2" || want == "avx512")
    throw std::runtime_error("NERF_APP_SPLAT_SIMD=" + want + ": this CPU (or this build) has no " + want +
                             " loop; use auto or scalar");
  throw std::runtime_error("NERF_APP_SPLAT_SIMD=" + want + ": unknown (auto | scalar | avx2 | avx512)");
}

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
  const SplatSimd simd = splat_simd();   // before the threads: it may throw
  at::parallel_for(0, (int64_t)tx * ty, 1, [&](int64_t tb, int64_t te) {
    TileSplats s;
    for (int64_t t = tb; t < te; ++t) {
      const int64_t first = tile_offsets[t], count = tile_offsets[t + 1] - first;
      s.load(mean2d, conic, color, opacity, isect_gid + first, count);
      const int X0 = (int)(t % tx) * kSplatTile, Y0 = (int)(t / tx) * kSplatTile;
#ifdef NA_SPLAT_X86_SIMD
      if (simd != SplatSimd::kScalar && splat_simd_fits(count)) {
        (simd == SplatSimd::kAvx512 ? splat_forward_tile_avx512 : splat_forward_tile_avx2)(
            s, count, X0, Y0, width, height, background, out_color, out_alpha, last);
        continue;
      }
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
  const SplatSimd simd = splat_simd();
  at::parallel_for(0, (int64_t)tx * ty, 1, [&](int64_t tb, int64_t te) {
    TileSplats s;
    for (int64_t t = tb; t < te; ++t) {
      const int64_t first = tile_offsets[t], count = tile_offsets[t + 1] - first;
      float* slot = slots + first * kSlot;
      std::fill(slot, slot + count * kSlot, 0.f);
      s.load(mean2d, conic, color, opacity, isect_gid + first, count);
      const int X0 = (int)(t % tx) * kSplatTile, Y0 = (int)(t / tx) * kSplatTile;
#ifdef NA_SPLAT_X86_SIMD
      if (simd != SplatSimd::kScalar && splat_simd_fits(count)) {
        (simd == SplatSimd::kAvx512 ? splat_backward_tile_avx512 : splat_backward_tile_avx2)(
            s, count, X0, Y0, width, height, out_color, last, grad_image, slot);
        continue;
      }
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
