// Torch glue of the NeRF rendering ops: checks, allocation, CPU/CUDA dispatch.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "cpu/render_cpu.h"
#include "ops.h"

#ifdef NERF_APP_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/render_cuda.h"
#endif

namespace nerf_app {
namespace {

void check_f32(const at::Tensor& t, const char* name, int64_t dim, int64_t last = -1) {
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions");
  if (last >= 0) TORCH_CHECK(t.size(-1) == last, name, " must have last dimension ", last);
}

void check_packed(const at::Tensor& packed) {
  TORCH_CHECK(packed.scalar_type() == at::kLong && packed.is_contiguous() && packed.dim() == 2 &&
                  packed.size(1) == 2,
              "packed_info must be a contiguous int64 [R, 2] tensor");
}

#ifdef NERF_APP_WITH_CUDA
void* stream() { return (void*)c10::cuda::getCurrentCUDAStream().stream(); }
void check_cuda_error(const char* what) {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA error: ", cudaGetErrorString(err));
}
#define NR_CUDA_OR_FAIL(...)                            \
  do {                                                  \
    const c10::cuda::CUDAGuard guard(device);           \
    __VA_ARGS__;                                        \
  } while (0)
#else
#define NR_CUDA_OR_FAIL(...) TORCH_CHECK(false, "nerf_app._C was built without CUDA kernels")
#endif

}  // namespace

at::Tensor sh_encode_forward(const at::Tensor& dirs, int64_t degree) {
  check_f32(dirs, "dirs", 2, 3);
  TORCH_CHECK(degree >= 1 && degree <= 4, "sh_encode: degree must be 1..4");
  at::Tensor out = at::empty({dirs.size(0), degree * degree}, dirs.options());
  if (dirs.is_cuda()) {
    const auto device = dirs.device();
    NR_CUDA_OR_FAIL(cuda::sh_encode_forward(dirs.data_ptr<float>(), out.data_ptr<float>(), dirs.size(0),
                                            (int)degree, stream());
                    check_cuda_error("sh_encode_forward"));
  } else {
    cpu::sh_encode_forward(dirs.data_ptr<float>(), out.data_ptr<float>(), dirs.size(0), (int)degree);
  }
  return out;
}

at::Tensor sh_encode_backward(const at::Tensor& dirs, const at::Tensor& grad_out, int64_t degree) {
  check_f32(dirs, "dirs", 2, 3);
  check_f32(grad_out, "grad_out", 2, degree * degree);
  TORCH_CHECK(degree >= 1 && degree <= 4, "sh_encode: degree must be 1..4");
  at::Tensor grad = at::empty_like(dirs);
  if (dirs.is_cuda()) {
    const auto device = dirs.device();
    NR_CUDA_OR_FAIL(cuda::sh_encode_backward(dirs.data_ptr<float>(), grad_out.data_ptr<float>(),
                                             grad.data_ptr<float>(), dirs.size(0), (int)degree, stream());
                    check_cuda_error("sh_encode_backward"));
  } else {
    cpu::sh_encode_backward(dirs.data_ptr<float>(), grad_out.data_ptr<float>(), grad.data_ptr<float>(),
                            dirs.size(0), (int)degree);
  }
  return grad;
}

std::vector<at::Tensor> ray_aabb(const at::Tensor& origins, const at::Tensor& dirs, double lo, double hi) {
  check_f32(origins, "origins", 2, 3);
  check_f32(dirs, "dirs", 2, 3);
  const int64_t n = origins.size(0);
  at::Tensor t_near = at::empty({n}, origins.options()), t_far = at::empty({n}, origins.options());
  if (origins.is_cuda()) {
    const auto device = origins.device();
    NR_CUDA_OR_FAIL(cuda::ray_box(origins.data_ptr<float>(), dirs.data_ptr<float>(), (float)lo, (float)hi,
                                  t_near.data_ptr<float>(), t_far.data_ptr<float>(), n, stream());
                    check_cuda_error("ray_aabb"));
  } else {
    cpu::ray_box(origins.data_ptr<float>(), dirs.data_ptr<float>(), (float)lo, (float)hi, t_near.data_ptr<float>(),
                 t_far.data_ptr<float>(), n);
  }
  return {t_near, t_far};
}

std::vector<at::Tensor> march_rays(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_min,
                                   const at::Tensor& t_max, const at::Tensor& bitfield, int64_t n_cascades,
                                   int64_t resolution, double dt_min, double dt_max, double cone_angle,
                                   int64_t max_samples) {
  check_f32(origins, "origins", 2, 3);
  check_f32(dirs, "dirs", 2, 3);
  check_f32(t_min, "t_min", 1);
  check_f32(t_max, "t_max", 1);
  TORCH_CHECK(bitfield.scalar_type() == at::kByte && bitfield.is_contiguous(), "bitfield must be contiguous uint8");
  TORCH_CHECK(resolution > 0 && resolution % 8 == 0 && n_cascades >= 1 && n_cascades <= 16,
              "march_rays: resolution must be a positive multiple of 8 and n_cascades in 1..16");
  TORCH_CHECK(bitfield.numel() * 8 == n_cascades * resolution * resolution * resolution,
              "march_rays: bitfield size does not match n_cascades * resolution^3 bits");
  TORCH_CHECK(dt_min > 0 && dt_max >= dt_min && cone_angle >= 0 && max_samples > 0, "march_rays: bad step parameters");
  const int64_t n = origins.size(0);
  const auto long_opts = origins.options().dtype(at::kLong);
  at::Tensor counts = at::empty({n}, long_opts);
  cpu::MarchParams p{(int)n_cascades, (int)resolution, (float)dt_min, (float)dt_max, (float)cone_angle,
                     (int)max_samples};
  const bool on_cuda = origins.is_cuda();
  if (on_cuda) {
    const auto device = origins.device();
    NR_CUDA_OR_FAIL(cuda::march_count(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_min.data_ptr<float>(),
                                      t_max.data_ptr<float>(), bitfield.data_ptr<uint8_t>(), p.n_cascades,
                                      p.resolution, p.dt_min, p.dt_max, p.cone_angle, p.max_samples,
                                      counts.data_ptr<int64_t>(), n, stream());
                    check_cuda_error("march_rays (count)"));
  } else {
    cpu::march_count(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_min.data_ptr<float>(),
                     t_max.data_ptr<float>(), bitfield.data_ptr<uint8_t>(), p, counts.data_ptr<int64_t>(), n);
  }
  at::Tensor ends = at::cumsum(counts, 0);
  at::Tensor starts = ends - counts;
  const int64_t total = n > 0 ? ends[n - 1].item<int64_t>() : 0;
  at::Tensor ray_indices = at::empty({total}, long_opts);
  at::Tensor t_starts = at::empty({total}, origins.options()), t_ends = at::empty({total}, origins.options());
  if (on_cuda) {
    const auto device = origins.device();
    NR_CUDA_OR_FAIL(cuda::march_fill(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_min.data_ptr<float>(),
                                     t_max.data_ptr<float>(), bitfield.data_ptr<uint8_t>(), p.n_cascades,
                                     p.resolution, p.dt_min, p.dt_max, p.cone_angle, p.max_samples,
                                     starts.data_ptr<int64_t>(), ray_indices.data_ptr<int64_t>(),
                                     t_starts.data_ptr<float>(), t_ends.data_ptr<float>(), n, stream());
                    check_cuda_error("march_rays (fill)"));
  } else {
    cpu::march_fill(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_min.data_ptr<float>(),
                    t_max.data_ptr<float>(), bitfield.data_ptr<uint8_t>(), p, starts.data_ptr<int64_t>(),
                    ray_indices.data_ptr<int64_t>(), t_starts.data_ptr<float>(), t_ends.data_ptr<float>(), n);
  }
  return {at::stack({starts, counts}, 1).contiguous(), ray_indices, t_starts, t_ends};
}

std::vector<at::Tensor> render_forward(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts,
                                       const at::Tensor& t_ends, const at::Tensor& packed_info, double t_threshold) {
  check_f32(sigmas, "sigmas", 1);
  check_f32(rgbs, "rgbs", 2, 3);
  check_f32(t_starts, "t_starts", 1);
  check_f32(t_ends, "t_ends", 1);
  check_packed(packed_info);
  const int64_t n_rays = packed_info.size(0);
  at::Tensor weights = at::empty_like(sigmas);
  at::Tensor color = at::empty({n_rays, 3}, sigmas.options());
  at::Tensor opacity = at::empty({n_rays}, sigmas.options()), depth = at::empty({n_rays}, sigmas.options());
  if (sigmas.is_cuda()) {
    const auto device = sigmas.device();
    NR_CUDA_OR_FAIL(cuda::render_forward(sigmas.data_ptr<float>(), rgbs.data_ptr<float>(), t_starts.data_ptr<float>(),
                                         t_ends.data_ptr<float>(), packed_info.data_ptr<int64_t>(),
                                         (float)t_threshold, weights.data_ptr<float>(), color.data_ptr<float>(),
                                         opacity.data_ptr<float>(), depth.data_ptr<float>(), n_rays, stream());
                    check_cuda_error("render_forward"));
  } else {
    cpu::render_forward(sigmas.data_ptr<float>(), rgbs.data_ptr<float>(), t_starts.data_ptr<float>(),
                        t_ends.data_ptr<float>(), packed_info.data_ptr<int64_t>(), (float)t_threshold,
                        weights.data_ptr<float>(), color.data_ptr<float>(), opacity.data_ptr<float>(),
                        depth.data_ptr<float>(), n_rays);
  }
  return {weights, color, opacity, depth};
}

std::vector<at::Tensor> render_backward(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t_starts,
                                        const at::Tensor& t_ends, const at::Tensor& packed_info, double t_threshold,
                                        const at::Tensor& weights, const at::Tensor& grad_color,
                                        const at::Tensor& grad_opacity, const at::Tensor& grad_depth) {
  check_f32(sigmas, "sigmas", 1);
  check_f32(rgbs, "rgbs", 2, 3);
  check_f32(weights, "weights", 1);
  check_f32(grad_color, "grad_color", 2, 3);
  check_f32(grad_opacity, "grad_opacity", 1);
  check_f32(grad_depth, "grad_depth", 1);
  check_packed(packed_info);
  const int64_t n_rays = packed_info.size(0);
  at::Tensor grad_sigmas = at::zeros_like(sigmas), grad_rgbs = at::zeros_like(rgbs);
  if (sigmas.is_cuda()) {
    const auto device = sigmas.device();
    NR_CUDA_OR_FAIL(cuda::render_backward(sigmas.data_ptr<float>(), rgbs.data_ptr<float>(),
                                          t_starts.data_ptr<float>(), t_ends.data_ptr<float>(),
                                          packed_info.data_ptr<int64_t>(), (float)t_threshold,
                                          weights.data_ptr<float>(), grad_color.data_ptr<float>(),
                                          grad_opacity.data_ptr<float>(), grad_depth.data_ptr<float>(),
                                          grad_sigmas.data_ptr<float>(), grad_rgbs.data_ptr<float>(), n_rays,
                                          stream());
                    check_cuda_error("render_backward"));
  } else {
    cpu::render_backward(sigmas.data_ptr<float>(), rgbs.data_ptr<float>(), t_starts.data_ptr<float>(),
                         t_ends.data_ptr<float>(), packed_info.data_ptr<int64_t>(), (float)t_threshold,
                         weights.data_ptr<float>(), grad_color.data_ptr<float>(), grad_opacity.data_ptr<float>(),
                         grad_depth.data_ptr<float>(), grad_sigmas.data_ptr<float>(), grad_rgbs.data_ptr<float>(),
                         n_rays);
  }
  return {grad_sigmas, grad_rgbs};
}

}  // namespace nerf_app
