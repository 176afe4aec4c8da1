// What the splat rasteriser's per-pixel loops share across its translation units: one tile's splats, and the
// vector versions of those loops (splat_simd_avx2.cpp, splat_simd_avx512.cpp), chosen at run time.
//
// Why separate translation units chosen at run time, not -march: a build for one machine used to get the
// vector loop only where it targeted AVX-512, so an AVX2-only laptop (most of them) ran the scalar loop,
// ~5x slower. Each vector TU is compiled for its own ISA (#pragma GCC target) and used only where the CPU
// has it; everything here is included before those pragmas, so no code shared between TUs needs more
// than the build's own ISA.
#pragma once

#include <cstdint>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 11)
#define NA_SPLAT_X86_SIMD 1
#endif

namespace nerf_app {
namespace cpu {

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

// The per-pixel loop of a rasterisation: the scalar one (the reference of the other two), 16 pixels of a
// tile row as two 8-lane AVX2 vectors, or as one 16-lane AVX-512 vector.
enum class SplatSimd { kScalar, kAvx2, kAvx512 };

// The best loop this CPU runs, unless NERF_APP_SPLAT_SIMD (auto | scalar | avx2 | avx512) asks for one;
// asking for one the CPU lacks, or an unknown name, throws std::runtime_error naming the variable.
SplatSimd splat_simd();

// Whether a vector loop can take a tile of `count` splats: its lanes count splats in fp32, exact below 2^24.
inline bool splat_simd_fits(int64_t count) { return count < (int64_t(1) << 24); }

#ifdef NA_SPLAT_X86_SIMD
// One tile's forward / backward (the scalar loops' contract, see splat_cpu.h), per ISA.
void splat_forward_tile_avx2(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                             const float* background, float* out_color, float* out_alpha, int32_t* last);
void splat_backward_tile_avx2(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                              const float* out_color, const int32_t* last, const float* grad_image, float* slot);
void splat_forward_tile_avx512(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                               const float* background, float* out_color, float* out_alpha, int32_t* last);
void splat_backward_tile_avx512(const TileSplats& s, int64_t count, int X0, int Y0, int width, int height,
                                const float* out_color, const int32_t* last, const float* grad_image, float* slot);
#endif

}  // namespace cpu
}  // namespace nerf_app
