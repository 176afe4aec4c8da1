// CUDA launchers of march_rays on raw pointers (no torch headers; stream as void*). Semantics as in
// cpu/march_cpu.h: the count pass, then a fill pass bounded by the counts.
#pragma once

#include <cstdint>

#include "../cpu/march_cpu.h"  // MarchParams (plain struct, no torch)

namespace nerf_app {
namespace cuda {

void march_count(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                 const uint8_t* bitfield, const MarchParams& p, int64_t* counts, int64_t n_rays, void* stream);
void march_fill(const float* origins, const float* dirs, const float* t_min, const float* t_max,
                const uint8_t* bitfield, const MarchParams& p, const int64_t* starts, const int64_t* counts,
                int64_t* ray_indices, float* t_starts, float* t_ends, int64_t n_rays, void* stream);

}  // namespace cuda
}  // namespace nerf_app
