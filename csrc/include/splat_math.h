// Per-pixel maths of Gaussian-splat compositing, shared by the CPU kernel (and a future CUDA one).
// nerf_app/ops/_reference.py::splat_rasterize is the readable twin; constants must match it.
#pragma once

#include "common.h"

namespace nerf_app {

constexpr int kSplatTile = 16;                        // tile side in pixels
constexpr float kSplatAlphaMin = 1.0f / 255.0f;       // alpha below this: the splat is skipped at a pixel
constexpr float kSplatAlphaMax = 0.99f;               // alpha is clamped to this
constexpr float kSplatTMin = 1e-4f;                   // stop before the splat taking T below this

// Exponent -1/2 d^T conic d of pixel centre (px, py) against a splat at (mx, my); d = p - mean.
NA_HD float splat_power(const float* conic, float mx, float my, float px, float py, float& dx, float& dy) {
  dx = px - mx;
  dy = py - my;
  return -0.5f * (conic[0] * dx * dx + conic[2] * dy * dy) - conic[1] * dx * dy;
}

// alpha = min(0.99, o exp(power)); false when the splat is skipped at this pixel (power > 0 or alpha < 1/255).
// raw receives o exp(power) (the unclamped alpha), g exp(power).
NA_HD bool splat_alpha(float power, float opacity, float& alpha, float& raw, float& g) {
  if (power > 0.f) return false;
  g = expf(power);
  raw = opacity * g;
  alpha = raw < kSplatAlphaMax ? raw : kSplatAlphaMax;
  return alpha >= kSplatAlphaMin;
}

// Gradient of one composited sample: dL/dalpha given, through alpha = min(0.99, o g), g = exp(power),
// into the splat's mean, conic and opacity (added to gm[2], gq[3], go).
NA_HD void splat_sample_backward(float dl_dalpha, const float* conic, float dx, float dy, float raw, float g,
                                 float* gm, float* gq, float& go) {
  if (raw >= kSplatAlphaMax) return;   // clamped: alpha does not depend on the splat
  go += dl_dalpha * g;
  const float dp = dl_dalpha * raw;    // d alpha / d power = o g
  // power = -1/2 (a dx^2 + c dy^2) - b dx dy, dx = px - mx
  gm[0] += dp * (conic[0] * dx + conic[1] * dy);
  gm[1] += dp * (conic[1] * dx + conic[2] * dy);
  gq[0] += dp * (-0.5f * dx * dx);
  gq[1] += dp * (-dx * dy);
  gq[2] += dp * (-0.5f * dy * dy);
}

}  // namespace nerf_app

namespace nerf_app {

// The tiles [x0, x1) x [y0, y1) a splat at (mx, my) with cull radius r may touch (pixel centres at +0.5,
// so the box [m - r, m + r] is conservative by half a pixel). Empty when off the image.
NA_HD void splat_tile_rect(float mx, float my, int r, int tiles_x, int tiles_y, int& x0, int& x1, int& y0, int& y1) {
  const float big = 1e8f;  // keeps far-off splats' floor() inside int range
  float lx = (mx - r) / kSplatTile, hx = (mx + r) / kSplatTile;
  float ly = (my - r) / kSplatTile, hy = (my + r) / kSplatTile;
  lx = lx < -big ? -big : (lx > big ? big : lx);
  hx = hx < -big ? -big : (hx > big ? big : hx);
  ly = ly < -big ? -big : (ly > big ? big : ly);
  hy = hy < -big ? -big : (hy > big ? big : hy);
  x0 = (int)floorf(lx); x1 = (int)floorf(hx) + 1;
  y0 = (int)floorf(ly); y1 = (int)floorf(hy) + 1;
  x0 = x0 < 0 ? 0 : x0; y0 = y0 < 0 ? 0 : y0;
  x1 = x1 > tiles_x ? tiles_x : x1; y1 = y1 > tiles_y ? tiles_y : y1;
  if (x1 < x0) x1 = x0;
  if (y1 < y0) y1 = y0;
}

}  // namespace nerf_app
