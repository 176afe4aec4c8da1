// CUDA launcher of ray_aabb on raw pointers (no torch headers; stream as void*). Shapes as in cpu/ray_aabb_cpu.h.
#pragma once

#include <cstdint>

#include "ray_aabb_math.h"  // Aabb

namespace nerf_app {
namespace cuda {

void ray_aabb(const float* origins, const float* dirs, const Aabb& box, float* t_near, float* t_far, int64_t n,
              void* stream);

}  // namespace cuda
}  // namespace nerf_app
