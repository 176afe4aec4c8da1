// Torch glue of march_rays: checks, the count pass, one prefix sum, the bounded fill pass.
#include "cpu/march_cpu.h"
#include "glue.h"
#include "ops.h"

#ifdef NERF_APP_WITH_CUDA
#include "cuda/march_cuda.h"
#endif

namespace nerf_app {

std::vector<at::Tensor> march_rays(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_min,
                                   const at::Tensor& t_max, const at::Tensor& bitfield, int64_t n_cascades,
                                   int64_t resolution, double dt_min, double dt_max, double cone_angle,
                                   int64_t max_samples) {
  constexpr const char* op = "march_rays";
  const at::Device device = check_same_device(
      op, {{"origins", &origins}, {"dirs", &dirs}, {"t_min", &t_min}, {"t_max", &t_max}, {"bitfield", &bitfield}});
  check_tensor(op, "origins", origins, at::kFloat, 2, 3);
  check_tensor(op, "dirs", dirs, at::kFloat, 2, 3);
  check_tensor(op, "t_min", t_min, at::kFloat, 1);
  check_tensor(op, "t_max", t_max, at::kFloat, 1);
  check_tensor(op, "bitfield", bitfield, at::kByte, 1);
  const int64_t n = origins.size(0);
  for (const auto& [name, t] : {NamedTensor{"dirs", &dirs}, {"t_min", &t_min}, {"t_max", &t_max}})
    check_rows(op, name, *t, n);
  TORCH_CHECK(resolution > 0 && resolution % 8 == 0 && n_cascades >= 1 && n_cascades <= 16, op,
              ": resolution must be a positive multiple of 8 and n_cascades in 1..16");
  TORCH_CHECK(bitfield.numel() * 8 == n_cascades * resolution * resolution * resolution, op,
              ": bitfield size does not match n_cascades * resolution^3 bits");
  TORCH_CHECK(dt_min > 0 && dt_max >= dt_min && cone_angle >= 0 && max_samples > 0 && max_samples < (1 << 30), op,
              ": bad step parameters");
  const auto long_opts = origins.options().dtype(at::kLong);
  const MarchParams p{(int)n_cascades, (int)resolution, (float)dt_min, (float)dt_max, (float)cone_angle,
                      (int)max_samples};
  at::Tensor counts = at::empty({n}, long_opts);
  if (device.is_cuda()) {
    NA_ON_CUDA(device, cuda::march_count(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_min.data_ptr<float>(),
                                         t_max.data_ptr<float>(), bitfield.data_ptr<uint8_t>(), p,
                                         counts.data_ptr<int64_t>(), n, current_stream()));
  } else {
    cpu::march_count(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_min.data_ptr<float>(),
                     t_max.data_ptr<float>(), bitfield.data_ptr<uint8_t>(), p, counts.data_ptr<int64_t>(), n);
  }
  at::Tensor ends = at::cumsum(counts, 0);
  at::Tensor starts = ends - counts;
  // The one host synchronisation of the op: the output size.
  const int64_t total = n > 0 ? ends[n - 1].item<int64_t>() : 0;
  at::Tensor ray_indices = at::empty({total}, long_opts);
  at::Tensor t_starts = at::empty({total}, origins.options()), t_ends = at::empty({total}, origins.options());
  if (device.is_cuda()) {
    NA_ON_CUDA(device, cuda::march_fill(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_min.data_ptr<float>(),
                                        t_max.data_ptr<float>(), bitfield.data_ptr<uint8_t>(), p,
                                        starts.data_ptr<int64_t>(), counts.data_ptr<int64_t>(),
                                        ray_indices.data_ptr<int64_t>(), t_starts.data_ptr<float>(),
                                        t_ends.data_ptr<float>(), n, current_stream()));
  } else {
    cpu::march_fill(origins.data_ptr<float>(), dirs.data_ptr<float>(), t_min.data_ptr<float>(),
                    t_max.data_ptr<float>(), bitfield.data_ptr<uint8_t>(), p, starts.data_ptr<int64_t>(),
                    counts.data_ptr<int64_t>(), ray_indices.data_ptr<int64_t>(), t_starts.data_ptr<float>(),
                    t_ends.data_ptr<float>(), n);
  }
  return {at::stack({starts, counts}, 1).contiguous(), ray_indices, t_starts, t_ends};
}

}  // namespace nerf_app
