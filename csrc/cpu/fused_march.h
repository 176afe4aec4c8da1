#pragma once

#include <cstdint>
#include <vector>

#include "march_math.h"
#include "render_fused_cpu.h"

namespace nerf_app {
namespace cpu {

// The grid and step rule a fused worker marches with (nerf_app/nerf/renderer.py::MarchSettings).
struct FusedSteps {
  const uint8_t* bitfield;
  int n_cascades, resolution;
  float dt_min, dt_max, cone_angle;
};

// One round of renderer.py::_next_round for a fused worker's slots: up to s.k samples per live slot (ray >= 0),
// resumed at s.t; their intervals into t0/t1 and their midpoints into xu, in the field's hash-grid unit cube
// (render_rays' x = o + mid d, then NerfField._unit: the same operations in the same order). Sets each live
// slot's begin and count and advances its t (to t_far when it marched nothing). Returns the round's samples.
// Slot: any struct with int64_t ray, float t, int k, begin, count (the render's and the compaction's).
template <typename Slot>
int march_slots(std::vector<Slot>& slots, const float* origins, const float* dirs, const float* t_far,
                const FusedField& f, const FusedSteps& m, float* xu, float* t0, float* t1) {
  int S = 0;
  const float lo = f.bound_lo, ext = f.extent;
  for (Slot& s : slots) {
    if (s.ray < 0) continue;
    const int64_t r = s.ray;
    const float* o = origins + 3 * r;
    const float* d = dirs + 3 * r;
    const MarchRay ray{o, d, s.t, t_far[r]};
    s.begin = S;
    s.count = march_ray(ray, m.bitfield, m.n_cascades, m.resolution, m.dt_min, m.dt_max, m.cone_angle, s.k,
                        [&](int j, float a, float b) {
                          const int i = s.begin + j;
                          t0[i] = a;
                          t1[i] = b;
                          const float mid = 0.5f * (a + b);
                          for (int c = 0; c < 3; ++c) xu[3 * i + c] = (o[c] + mid * d[c] - lo) / ext;
                        });
    S += s.count;
    s.t = s.count > 0 ? t1[s.begin + s.count - 1] : t_far[r];
  }
  return S;
}

}  // namespace cpu
}  // namespace nerf_app
