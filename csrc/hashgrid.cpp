// Torch glue of the hash-grid op: checks, allocation, and dispatch to the CPU or CUDA launcher.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "cpu/hashgrid_cpu.h"
#include "glue.h"
#include "ops.h"

#ifdef NERF_APP_WITH_CUDA
#include "cuda/hashgrid_cuda.h"
#endif

namespace nerf_app {
HashGridLevels make_levels(int dim, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                           const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                           int64_t table_rows) {
  const size_t n = offsets.size();
  TORCH_CHECK(n >= 1 && n <= (size_t)kHashGridMaxLevels, "hashgrid: 1 to ", kHashGridMaxLevels,
              " levels supported, got ", n);
  TORCH_CHECK(sizes.size() == n && resolutions.size() == n && scales.size() == n,
              "hashgrid: level arrays differ in length");
  HashGridLevels L{};
  L.n_levels = (int)n;
  for (size_t l = 0; l < n; ++l) {
    TORCH_CHECK(sizes[l] > 0 && offsets[l] >= 0 && offsets[l] + sizes[l] <= table_rows,
                "hashgrid: level ", l, " lies outside the table");
    TORCH_CHECK(resolutions[l] >= 2 && resolutions[l] < (int64_t(1) << 31), "hashgrid: bad resolution");
    uint64_t volume = 1;  // res^D, saturating
    for (int d = 0; d < dim; ++d)
      volume = volume > (uint64_t(1) << 40) ? volume : volume * (uint64_t)resolutions[l];
    L.offset[l] = (uint32_t)offsets[l];
    L.size[l] = (uint32_t)sizes[l];
    L.resolution[l] = (uint32_t)resolutions[l];
    L.scale[l] = (float)scales[l];
    L.hashed[l] = volume > (uint64_t)sizes[l];
    TORCH_CHECK(!L.hashed[l] || (sizes[l] & (sizes[l] - 1)) == 0, "hashgrid: hashed level ", l,
                " must have a power-of-two size");
  }
  return L;
}

namespace {

// x and table (and grad_y when given) on one CPU/CUDA device, with the dtypes that device's kernels read.
void check_inputs(const at::Tensor& x, const at::Tensor& table, const at::Tensor* grad_y = nullptr) {
  if (grad_y)
    check_same_device("hashgrid", {{"x", &x}, {"table", &table}, {"grad_y", grad_y}});
  else
    check_same_device("hashgrid", {{"x", &x}, {"table", &table}});
  TORCH_CHECK(x.dim() == 2 && x.size(1) >= 1 && x.size(1) <= 4, "hashgrid: x must be [N, D] with D in 1..4");
  TORCH_CHECK(table.dim() == 2, "hashgrid: table must be [rows, F]");
  TORCH_CHECK(x.is_contiguous() && table.is_contiguous(), "hashgrid: x and table must be contiguous");
  if (grad_y) {
    TORCH_CHECK(grad_y->is_contiguous() && grad_y->dim() == 2 && grad_y->size(0) == x.size(0),
                "hashgrid: grad_y must be contiguous [N, n_levels*F]");
    TORCH_CHECK(grad_y->scalar_type() == (x.is_cuda() ? at::kFloat : x.scalar_type()),
                "hashgrid: grad_y must have x's dtype");
  }
  if (x.is_cuda()) {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "hashgrid (cuda): x must be float32");
    TORCH_CHECK(table.scalar_type() == at::kFloat || table.scalar_type() == at::kHalf,
                "hashgrid (cuda): table must be float32 or float16");
  } else {
    TORCH_CHECK(x.scalar_type() == table.scalar_type() &&
                    (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
                "hashgrid (cpu): x and table must both be float32 or both float64");
  }
}


}  // namespace

at::Tensor hashgrid_forward(const at::Tensor& x, const at::Tensor& table, const std::vector<int64_t>& offsets,
                            const std::vector<int64_t>& sizes, const std::vector<int64_t>& resolutions,
                            const std::vector<double>& scales, bool smoothstep) {
  check_inputs(x, table);
  const int dim = (int)x.size(1), features = (int)table.size(1);
  const int64_t n = x.size(0);
  const HashGridLevels L = make_levels(dim, offsets, sizes, resolutions, scales, table.size(0));
  if (x.is_cuda()) {
#ifdef NERF_APP_WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty({n, (int64_t)L.n_levels * features}, x.options());
    cuda::hashgrid_forward(x.data_ptr<float>(), table.data_ptr(), table.scalar_type() == at::kHalf,
                           y.data_ptr<float>(), n, dim, features, L, smoothstep, current_stream());
    NA_CHECK_LAUNCH();
    return y;
#else
    TORCH_CHECK(false, "hashgrid: nerf_app._C was built without CUDA kernels");
#endif
  }
  at::Tensor y = at::empty({n, (int64_t)L.n_levels * features}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hashgrid_forward", [&] {
    cpu::hashgrid_forward<scalar_t>(x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), n,
                                    dim, features, L, smoothstep);
  });
  return y;
}

namespace {

// The CPU table gradient into grad_table (written, or with accumulate added to).
void backward_table_cpu(const at::Tensor& x, const at::Tensor& grad_y, const at::Tensor& grad_table,
                        const HashGridLevels& L, bool smoothstep, bool accumulate) {
  // The CPU kernel writes every row (each level zeroes its own rows), so the levels must tile the table.
  int64_t expected_offset = 0;
  for (int l = 0; l < L.n_levels; ++l) {
    TORCH_CHECK(L.offset[l] == expected_offset, "hashgrid: levels must be stacked contiguously in the table");
    expected_offset += L.size[l];
  }
  TORCH_CHECK(expected_offset == grad_table.size(0), "hashgrid: the levels must cover the whole table");
  const int dim = (int)x.size(1), features = (int)grad_table.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hashgrid_backward_table", [&] {
    cpu::hashgrid_backward_table<scalar_t>(x.data_ptr<scalar_t>(), grad_y.data_ptr<scalar_t>(),
                                           grad_table.data_ptr<scalar_t>(), x.size(0), dim, features, L, smoothstep,
                                           accumulate);
  });
}

}  // namespace

at::Tensor hashgrid_backward_table(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grad_y,
                                   const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                                   const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                                   bool smoothstep) {
  check_inputs(x, table, &grad_y);
  const int dim = (int)x.size(1), features = (int)table.size(1);
  const int64_t n = x.size(0);
  const HashGridLevels L = make_levels(dim, offsets, sizes, resolutions, scales, table.size(0));
  TORCH_CHECK(grad_y.is_contiguous() && grad_y.size(0) == n && grad_y.size(1) == (int64_t)L.n_levels * features,
              "hashgrid: grad_y must be contiguous [N, n_levels*F]");
  if (x.is_cuda()) {
#ifdef NERF_APP_WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    // Accumulated with float atomics in float32 for every table type, then cast (see hashgrid_cuda.cu).
    at::Tensor grad_table = at::zeros(table.sizes(), table.options().dtype(at::kFloat));
    cuda::hashgrid_backward_table(x.data_ptr<float>(), grad_y.data_ptr<float>(), grad_table.data_ptr<float>(), n,
                                  dim, features, L, smoothstep, current_stream());
    NA_CHECK_LAUNCH();
    return table.scalar_type() == at::kFloat ? grad_table : grad_table.to(table.scalar_type());
#else
    TORCH_CHECK(false, "hashgrid: nerf_app._C was built without CUDA kernels");
#endif
  }
  at::Tensor grad_table = at::empty_like(table);
  backward_table_cpu(x, grad_y, grad_table, L, smoothstep, false);
  return grad_table;
}

void hashgrid_backward_table_into(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grad_y,
                                  const at::Tensor& out, bool accumulate, const std::vector<int64_t>& offsets,
                                  const std::vector<int64_t>& sizes, const std::vector<int64_t>& resolutions,
                                  const std::vector<double>& scales, bool smoothstep) {
  check_inputs(x, table, &grad_y);
  TORCH_CHECK(x.is_cpu(), "hashgrid_backward_table_into: CPU tensors only");
  TORCH_CHECK(out.device() == table.device() && out.scalar_type() == table.scalar_type() && out.is_contiguous() &&
                  out.sizes() == table.sizes(),
              "hashgrid_backward_table_into: out must be a contiguous tensor like the table");
  const int dim = (int)x.size(1), features = (int)table.size(1);
  const HashGridLevels L = make_levels(dim, offsets, sizes, resolutions, scales, table.size(0));
  TORCH_CHECK(grad_y.is_contiguous() && grad_y.size(0) == x.size(0) && grad_y.size(1) == (int64_t)L.n_levels * features,
              "hashgrid: grad_y must be contiguous [N, n_levels*F]");
  backward_table_cpu(x, grad_y, out, L, smoothstep, accumulate);
}

at::Tensor hashgrid_backward_input(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grad_y,
                                   const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                                   const std::vector<int64_t>& resolutions, const std::vector<double>& scales,
                                   bool smoothstep) {
  check_inputs(x, table, &grad_y);
  const int dim = (int)x.size(1), features = (int)table.size(1);
  const int64_t n = x.size(0);
  const HashGridLevels L = make_levels(dim, offsets, sizes, resolutions, scales, table.size(0));
  TORCH_CHECK(grad_y.is_contiguous() && grad_y.size(0) == n && grad_y.size(1) == (int64_t)L.n_levels * features,
              "hashgrid: grad_y must be contiguous [N, n_levels*F]");
  at::Tensor grad_x = at::empty_like(x);
  if (x.is_cuda()) {
#ifdef NERF_APP_WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    cuda::hashgrid_backward_input(x.data_ptr<float>(), table.data_ptr(), table.scalar_type() == at::kHalf,
                                  grad_y.data_ptr<float>(), grad_x.data_ptr<float>(), n, dim, features, L,
                                  smoothstep, current_stream());
    NA_CHECK_LAUNCH();
    return grad_x;
#else
    TORCH_CHECK(false, "hashgrid: nerf_app._C was built without CUDA kernels");
#endif
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hashgrid_backward_input", [&] {
    cpu::hashgrid_backward_input<scalar_t>(x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                           grad_y.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), n, dim,
                                           features, L, smoothstep);
  });
  return grad_x;
}

}  // namespace nerf_app
