// Helpers of the torch glue files (csrc/<op>.cpp): argument checks and the CUDA context of a call.
// Every entry point checks that all its tensors live on one CPU or CUDA device with the dtype, rank
// and contiguity its kernels read: a mismatch (say a CUDA bitfield handed to the CPU loop, or a
// meta tensor) must be a Python exception, never a kernel reading another device's pointer.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <utility>

#ifdef NERF_APP_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace nerf_app {

using NamedTensor = std::pair<const char*, const at::Tensor*>;

// All tensors on the first one's device, which must be a CPU or CUDA device. Returns that device.
inline at::Device check_same_device(const char* op, std::initializer_list<NamedTensor> tensors) {
  const at::Device device = tensors.begin()->second->device();
  TORCH_CHECK(device.is_cpu() || device.is_cuda(), op, ": ", tensors.begin()->first, " is on ", device,
              "; the kernels run on CPU or CUDA tensors only");
  for (const auto& [name, t] : tensors)
    TORCH_CHECK(t->device() == device, op, ": ", name, " is on ", t->device(), " but ", tensors.begin()->first,
                " is on ", device, " (move all inputs to one device)");
  return device;
}

// dtype, rank, contiguity and (last >= 0) the size of the last dimension.
inline void check_tensor(const char* op, const char* name, const at::Tensor& t, at::ScalarType dtype, int64_t dim,
                         int64_t last = -1) {
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " must have ", dim, " dimensions, got ", t.dim());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
  if (last >= 0) TORCH_CHECK(t.size(-1) == last, op, ": ", name, " must have last dimension ", last);
}

inline void check_rows(const char* op, const char* name, const at::Tensor& t, int64_t rows) {
  TORCH_CHECK(t.size(0) == rows, op, ": ", name, " has ", t.size(0), " rows, expected ", rows);
}

#ifdef NERF_APP_WITH_CUDA
inline void* current_stream() { return (void*)c10::cuda::getCurrentCUDAStream().stream(); }
// The one way launch errors are reported: torch's check of cudaGetLastError (a c10::Error naming the
// call site), right after the launcher returns.
#define NA_CHECK_LAUNCH() C10_CUDA_KERNEL_LAUNCH_CHECK()
#endif

// Runs the CUDA branch under a guard for `device`, or fails loudly in a build without CUDA kernels.
#ifdef NERF_APP_WITH_CUDA
#define NA_ON_CUDA(device, ...)                   \
  do {                                            \
    const c10::cuda::CUDAGuard na_guard(device);  \
    __VA_ARGS__;                                  \
    NA_CHECK_LAUNCH();                            \
  } while (0)
#else
#define NA_ON_CUDA(device, ...) \
  TORCH_CHECK(false, "nerf_app._C was built without CUDA kernels (rebuild with a CUDA torch and nvcc)")
#endif

// ---- checks other ops' glue reuses (csrc/render_fused.cpp calls the hash-grid and MLP kernels) ----
}  // namespace nerf_app

#include "cpu/mlp_cpu.h"
#include "hashgrid_math.h"

namespace nerf_app {
// The checked level layout of a hash-grid table (csrc/hashgrid.cpp).
HashGridLevels make_levels(int dim, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                           const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                           int64_t table_rows);
// The checked shapes of an MLP's weights for inputs of width n_in on like's device (csrc/mlp.cpp).
cpu::MlpDims check_mlp_weights(const char* op, const at::Tensor& like, int64_t n_in,
                               const std::vector<at::Tensor>& weights, int64_t act, int64_t out_act);

}  // namespace nerf_app
