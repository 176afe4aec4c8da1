// CPU kernels of sh_encode on raw pointers: dirs [N,3] -> out [N, degree^2]; backward: grad_out -> grad_dirs [N,3].
#pragma once

#include <cstdint>

namespace nerf_app {
namespace cpu {

void sh_encode_forward(const float* dirs, float* out, int64_t n, int degree);
void sh_encode_backward(const float* dirs, const float* grad_out, float* grad_dirs, int64_t n, int degree);

}  // namespace cpu
}  // namespace nerf_app
