// Torch glue of ray_aabb: checks, allocation, CPU/CUDA dispatch.
#include "cpu/ray_aabb_cpu.h"
#include "glue.h"
#include "ops.h"

#ifdef NERF_APP_WITH_CUDA
#include "cuda/ray_aabb_cuda.h"
#endif

namespace nerf_app {

std::vector<at::Tensor> ray_aabb(const at::Tensor& origins, const at::Tensor& dirs, const std::vector<double>& lo,
                                 const std::vector<double>& hi) {
  constexpr const char* op = "ray_aabb";
  TORCH_CHECK(lo.size() == 3 && hi.size() == 3, op, ": lo and hi must have 3 entries (one per axis)");
  Aabb box;
  for (int a = 0; a < 3; ++a) {
    box.lo[a] = (float)lo[a];
    box.hi[a] = (float)hi[a];
  }
  const at::Device device = check_same_device(op, {{"origins", &origins}, {"dirs", &dirs}});
  check_tensor(op, "origins", origins, at::kFloat, 2, 3);
  check_tensor(op, "dirs", dirs, at::kFloat, 2, 3);
  const int64_t n = origins.size(0);
  check_rows(op, "dirs", dirs, n);
  at::Tensor t_near = at::empty({n}, origins.options()), t_far = at::empty({n}, origins.options());
  if (device.is_cuda()) {
    NA_ON_CUDA(device, cuda::ray_aabb(origins.data_ptr<float>(), dirs.data_ptr<float>(), box,
                                      t_near.data_ptr<float>(), t_far.data_ptr<float>(), n, current_stream()));
  } else {
    cpu::ray_aabb(origins.data_ptr<float>(), dirs.data_ptr<float>(), box, t_near.data_ptr<float>(),
                  t_far.data_ptr<float>(), n);
  }
  return {t_near, t_far};
}

}  // namespace nerf_app
