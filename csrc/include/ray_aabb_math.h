// Ray / axis-aligned cube intersection, shared by the CPU and CUDA kernels of ray_aabb
// (nerf_app/ops/_reference.py::ray_aabb is the readable twin).
#pragma once

#include <cmath>

#include "common.h"

namespace nerf_app {

// The box [lo_0, hi_0] x [lo_1, hi_1] x [lo_2, hi_2].
struct Aabb {
  float lo[3], hi[3];
};

// Slab test. Returns the entry and exit distances along the whole line (t_near may be negative: the
// origin is inside or past the box; t_near > t_far: no hit). Axis-parallel rays work through IEEE
// infinities; fmin/fmax drop the NaN of 0 * inf so a ray lying in a slab plane counts as inside it.
NA_HD void ray_aabb(const float* o, const float* d, const Aabb& box, float& t_near, float& t_far) {
  t_near = -INFINITY;
  t_far = INFINITY;
#pragma unroll
  for (int a = 0; a < 3; ++a) {
    const float inv = 1.0f / d[a];
    const float t0 = (box.lo[a] - o[a]) * inv, t1 = (box.hi[a] - o[a]) * inv;
    t_near = fmaxf(t_near, fminf(t0, t1));
    t_far = fminf(t_far, fmaxf(t0, t1));
  }
}

}  // namespace nerf_app
