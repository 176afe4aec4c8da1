// CPU kernels of splat_rasterize on raw pointers (csrc/include/splat_math.h holds the per-pixel maths).
// Splats: mean2d [N,2], conic [N,3], color [N,3], opacity [N], depth [N], radius [N] (0: not drawn).
// Bins: every (tile, splat) pair the splat's box touches, grouped by tile (row-major 16x16 tiles), in
// increasing depth within a tile (ties: lower index first); entry_of lists each splat's entries, splat by splat.
#pragma once

#include <cstdint>

namespace nerf_app {
namespace cpu {

// counts[i]: the number of tiles splat i touches.
void splat_tile_counts(const float* mean2d, const int32_t* radius, int64_t n, int width, int height, int64_t* counts);

// gauss_offsets [N+1]: prefix sums of counts. Fills tile_offsets [n_tiles+1], isect_gid [M], entry_of [M].
void splat_bin(const float* mean2d, const int32_t* radius, const float* depth, int64_t n, int width, int height,
               const int64_t* gauss_offsets, int64_t* tile_offsets, int32_t* isect_gid, int64_t* entry_of);

// out_color [H,W,3], out_alpha [H,W], last [H,W]: one past the last splat (position in the tile's list) that
// a pixel composited.
void splat_rasterize_forward(const float* mean2d, const float* conic, const float* color, const float* opacity,
                             int width, int height, const float* background, const int64_t* tile_offsets,
                             const int32_t* isect_gid, float* out_color, float* out_alpha, int32_t* last);

// grad_image [H,W,3] -> gradients of mean2d, conic, color, opacity (overwritten). slots [M*9] is scratch:
// each tile adds its pixels into its own entries, then each splat sums its entries in tile order, so the
// result does not depend on the thread count or schedule.
void splat_rasterize_backward(const float* mean2d, const float* conic, const float* color, const float* opacity,
                              int64_t n, int width, int height, const float* background,
                              const int64_t* tile_offsets, const int32_t* isect_gid, const int64_t* gauss_offsets,
                              const int64_t* entry_of, const float* out_color, const int32_t* last,
                              const float* grad_image, float* slots, float* grad_mean2d, float* grad_conic,
                              float* grad_color, float* grad_opacity);

}  // namespace cpu
}  // namespace nerf_app
