// Torch glue of volume_render: checks, allocation, CPU/CUDA dispatch.
#include "cpu/volume_render_cpu.h"
#include "glue.h"
#include "ops.h"

#ifdef NERF_APP_WITH_CUDA
#include "cuda/volume_render_cuda.h"
#endif

namespace nerf_app {
namespace {

// Shared checks of the packed samples: returns the device.
at::Device check_samples(const char* op, const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts,
                         const at::Tensor& t_ends, const at::Tensor& packed_info) {
  const at::Device device = check_same_device(op, {{"sigmas", &sigmas},
                                                   {"rgbs", &rgbs},
                                                   {"t_starts", &t_starts},
                                                   {"t_ends", &t_ends},
                                                   {"packed_info", &packed_info}});
  check_tensor(op, "sigmas", sigmas, at::kFloat, 1);
  check_tensor(op, "rgbs", rgbs, at::kFloat, 2, 3);
  check_tensor(op, "t_starts", t_starts, at::kFloat, 1);
  check_tensor(op, "t_ends", t_ends, at::kFloat, 1);
  check_tensor(op, "packed_info", packed_info, at::kLong, 2, 2);
  const int64_t s = sigmas.size(0);
  for (const auto& [name, t] : {NamedTensor{"rgbs", &rgbs}, {"t_starts", &t_starts}, {"t_ends", &t_ends}})
    check_rows(op, name, *t, s);
  return device;
}

}  // namespace

std::vector<at::Tensor> volume_render_forward(const at::Tensor& sigmas, const at::Tensor& rgbs,
                                              const at::Tensor& t_starts, const at::Tensor& t_ends,
                                              const at::Tensor& packed_info, double t_threshold) {
  const at::Device device = check_samples("volume_render", sigmas, rgbs, t_starts, t_ends, packed_info);
  const int64_t n_rays = packed_info.size(0);
  at::Tensor weights = at::empty_like(sigmas);
  at::Tensor color = at::empty({n_rays, 3}, sigmas.options());
  at::Tensor opacity = at::empty({n_rays}, sigmas.options()), depth = at::empty({n_rays}, sigmas.options());
  if (device.is_cuda()) {
    NA_ON_CUDA(device, cuda::volume_render_forward(
                           sigmas.data_ptr<float>(), rgbs.data_ptr<float>(), t_starts.data_ptr<float>(),
                           t_ends.data_ptr<float>(), packed_info.data_ptr<int64_t>(), (float)t_threshold,
                           weights.data_ptr<float>(), color.data_ptr<float>(), opacity.data_ptr<float>(),
                           depth.data_ptr<float>(), n_rays, current_stream()));
  } else {
    cpu::volume_render_forward(sigmas.data_ptr<float>(), rgbs.data_ptr<float>(), t_starts.data_ptr<float>(),
                               t_ends.data_ptr<float>(), packed_info.data_ptr<int64_t>(), (float)t_threshold,
                               weights.data_ptr<float>(), color.data_ptr<float>(), opacity.data_ptr<float>(),
                               depth.data_ptr<float>(), n_rays);
  }
  return {weights, color, opacity, depth};
}

std::vector<at::Tensor> volume_render_backward(const at::Tensor& sigmas, const at::Tensor& rgbs,
                                               const at::Tensor& t_starts, const at::Tensor& t_ends,
                                               const at::Tensor& packed_info, double t_threshold,
                                               const at::Tensor& weights, const at::Tensor& grad_color,
                                               const at::Tensor& grad_opacity, const at::Tensor& grad_depth) {
  constexpr const char* op = "volume_render backward";
  const at::Device device = check_samples(op, sigmas, rgbs, t_starts, t_ends, packed_info);
  check_same_device(op, {{"sigmas", &sigmas},
                         {"weights", &weights},
                         {"grad_color", &grad_color},
                         {"grad_opacity", &grad_opacity},
                         {"grad_depth", &grad_depth}});
  const int64_t n_rays = packed_info.size(0);
  check_tensor(op, "weights", weights, at::kFloat, 1);
  check_rows(op, "weights", weights, sigmas.size(0));
  check_tensor(op, "grad_color", grad_color, at::kFloat, 2, 3);
  check_tensor(op, "grad_opacity", grad_opacity, at::kFloat, 1);
  check_tensor(op, "grad_depth", grad_depth, at::kFloat, 1);
  for (const auto& [name, t] :
       {NamedTensor{"grad_color", &grad_color}, {"grad_opacity", &grad_opacity}, {"grad_depth", &grad_depth}})
    check_rows(op, name, *t, n_rays);
  at::Tensor grad_sigmas = at::zeros_like(sigmas), grad_rgbs = at::zeros_like(rgbs);
  if (device.is_cuda()) {
    NA_ON_CUDA(device, cuda::volume_render_backward(
                           sigmas.data_ptr<float>(), rgbs.data_ptr<float>(), t_starts.data_ptr<float>(),
                           t_ends.data_ptr<float>(), packed_info.data_ptr<int64_t>(), (float)t_threshold,
                           weights.data_ptr<float>(), grad_color.data_ptr<float>(), grad_opacity.data_ptr<float>(),
                           grad_depth.data_ptr<float>(), grad_sigmas.data_ptr<float>(), grad_rgbs.data_ptr<float>(),
                           n_rays, current_stream()));
  } else {
    cpu::volume_render_backward(sigmas.data_ptr<float>(), rgbs.data_ptr<float>(), t_starts.data_ptr<float>(),
                                t_ends.data_ptr<float>(), packed_info.data_ptr<int64_t>(), (float)t_threshold,
                                weights.data_ptr<float>(), grad_color.data_ptr<float>(), grad_opacity.data_ptr<float>(),
                                grad_depth.data_ptr<float>(), grad_sigmas.data_ptr<float>(),
                                grad_rgbs.data_ptr<float>(), n_rays);
  }
  return {grad_sigmas, grad_rgbs};
}

}  // namespace nerf_app
