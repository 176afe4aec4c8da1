// Torch glue of sh_encode: checks, allocation, CPU/CUDA dispatch.
#include "cpu/sh_cpu.h"
#include "glue.h"
#include "ops.h"

#ifdef NERF_APP_WITH_CUDA
#include "cuda/sh_cuda.h"
#endif

namespace nerf_app {

at::Tensor sh_encode_forward(const at::Tensor& dirs, int64_t degree) {
  constexpr const char* op = "sh_encode";
  const at::Device device = check_same_device(op, {{"dirs", &dirs}});
  check_tensor(op, "dirs", dirs, at::kFloat, 2, 3);
  TORCH_CHECK(degree >= 1 && degree <= 4, op, ": degree must be 1..4");
  at::Tensor out = at::empty({dirs.size(0), degree * degree}, dirs.options());
  if (device.is_cuda()) {
    NA_ON_CUDA(device, cuda::sh_encode_forward(dirs.data_ptr<float>(), out.data_ptr<float>(), dirs.size(0),
                                               (int)degree, current_stream()));
  } else {
    cpu::sh_encode_forward(dirs.data_ptr<float>(), out.data_ptr<float>(), dirs.size(0), (int)degree);
  }
  return out;
}

at::Tensor sh_encode_backward(const at::Tensor& dirs, const at::Tensor& grad_out, int64_t degree) {
  constexpr const char* op = "sh_encode backward";
  const at::Device device = check_same_device(op, {{"dirs", &dirs}, {"grad_out", &grad_out}});
  TORCH_CHECK(degree >= 1 && degree <= 4, op, ": degree must be 1..4");
  check_tensor(op, "dirs", dirs, at::kFloat, 2, 3);
  check_tensor(op, "grad_out", grad_out, at::kFloat, 2, degree * degree);
  check_rows(op, "grad_out", grad_out, dirs.size(0));
  at::Tensor grad = at::empty_like(dirs);
  if (device.is_cuda()) {
    NA_ON_CUDA(device, cuda::sh_encode_backward(dirs.data_ptr<float>(), grad_out.data_ptr<float>(),
                                                grad.data_ptr<float>(), dirs.size(0), (int)degree, current_stream()));
  } else {
    cpu::sh_encode_backward(dirs.data_ptr<float>(), grad_out.data_ptr<float>(), grad.data_ptr<float>(),
                            dirs.size(0), (int)degree);
  }
  return grad;
}

}  // namespace nerf_app
