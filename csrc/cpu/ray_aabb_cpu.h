// CPU kernel of ray_aabb on raw pointers: origins, dirs [R,3] -> t_near, t_far [R] against an axis-aligned box.
#pragma once

#include <cstdint>

#include "ray_aabb_math.h"  // Aabb

namespace nerf_app {
namespace cpu {

void ray_aabb(const float* origins, const float* dirs, const Aabb& box, float* t_near, float* t_far, int64_t n);

}  // namespace cpu
}  // namespace nerf_app
