// CUDA launchers of sh_encode on raw pointers (no torch headers; stream as void*). Shapes as in cpu/sh_cpu.h.
#pragma once

#include <cstdint>

namespace nerf_app {
namespace cuda {

void sh_encode_forward(const float* dirs, float* out, int64_t n, int degree, void* stream);
void sh_encode_backward(const float* dirs, const float* grad_out, float* grad_dirs, int64_t n, int degree,
                        void* stream);

}  // namespace cuda
}  // namespace nerf_app
