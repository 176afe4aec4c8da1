// CPU kernels of march_rays on raw pointers (two passes, like the CUDA ones; csrc/include/march_math.h).
#pragma once

#include <cstdint>

namespace nerf_app {

struct MarchParams {
  int n_cascades;
  int resolution;
  float dt_min, dt_max, cone_angle;
  int max_samples;  // per ray
};

namespace cpu {

// Pass 1: samples per ray -> counts [R].
void march_count(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                 const uint8_t* bitfield, const MarchParams& p, int64_t* counts, int64_t n_rays);
// Pass 2: ray r writes exactly counts[r] samples at starts[r] (the exclusive prefix sum of counts).
void march_fill(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                const uint8_t* bitfield, const MarchParams& p, const int64_t* starts, const int64_t* counts,
                int64_t* ray_indices, float* t_starts, float* t_ends, int64_t n_rays);

}  // namespace cpu
}  // namespace nerf_app
