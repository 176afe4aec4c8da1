// CPU kernels of sh_encode: one direction per iteration (csrc/include/sh_math.h holds the math).
#include "sh_cpu.h"

#include <ATen/Parallel.h>

#include "sh_math.h"

namespace nerf_app {
namespace cpu {

void sh_encode_forward(const float* dirs, float* out, int64_t n, int degree) {
  const int k = degree * degree;
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      sh_basis<float>(dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2], degree, out + i * k, nullptr);
  });
}

void sh_encode_backward(const float* dirs, const float* grad_out, float* grad_dirs, int64_t n, int degree) {
  const int k = degree * degree;
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    float basis[16], grad[16][3];
    for (int64_t i = b; i < e; ++i) {
      sh_basis<float>(dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2], degree, basis, grad);
      float g[3] = {0.f, 0.f, 0.f};
      for (int j = 0; j < k; ++j)
        for (int a = 0; a < 3; ++a) g[a] += grad_out[i * k + j] * grad[j][a];
      for (int a = 0; a < 3; ++a) grad_dirs[3 * i + a] = g[a];
    }
  });
}

}  // namespace cpu
}  // namespace nerf_app
