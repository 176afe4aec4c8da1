// The one registration point of nerf_app._C: every op's torch-facing function, plus build facts.
#include <torch/extension.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops.h"

namespace {

bool built_with_cuda() {
#ifdef NERF_APP_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int openmp_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;  // built without -fopenmp: kernels run on one thread
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "nerf_app compiled kernels (C++/OpenMP, and CUDA when built with it)";
  m.def("built_with_cuda", &built_with_cuda, "whether the CUDA kernels were compiled in");
  m.def("openmp_threads", &openmp_threads, "OpenMP threads the CPU kernels use (1 if built without OpenMP)");

  m.def("hashgrid_forward", &nerf_app::hashgrid_forward, "hash-grid encoding forward");
  m.def("hashgrid_backward_table", &nerf_app::hashgrid_backward_table, "hash-grid gradient to the table");
  m.def("hashgrid_backward_table_into", &nerf_app::hashgrid_backward_table_into,
        "hash-grid gradient to the table, written into / added to a given tensor (CPU)");
  m.def("hashgrid_backward_input", &nerf_app::hashgrid_backward_input, "hash-grid gradient to the inputs");

  m.def("mlp_forward", &nerf_app::mlp_forward, "fully fused MLP forward: [y, saved...]");
  m.def("mlp_backward", &nerf_app::mlp_backward, "fully fused MLP backward: [grad_x, grad_w...]");
  m.def("mlp_fp16_loss_scale", &nerf_app::mlp_fp16_loss_scale, "the CUDA backward's fp16 loss scale (tests)");
  m.def("mlp_forward_bf16", &nerf_app::mlp_forward_bf16, "fully fused MLP inference in bf16 (CPU, AVX-512 BF16)");
  m.def("mlp_bf16_supported", &nerf_app::mlp_bf16_supported, "whether this CPU runs mlp_forward_bf16");
  m.def("mlp_amx_supported", &nerf_app::mlp_amx_supported, "whether mlp_forward_bf16 runs on AMX tiles here");

  m.def("sh_encode_forward", &nerf_app::sh_encode_forward, "spherical-harmonics encoding of unit directions");
  m.def("sh_encode_backward", &nerf_app::sh_encode_backward, "spherical-harmonics gradient to the directions");
  m.def("ray_aabb", &nerf_app::ray_aabb, "ray / axis-aligned cube intersection: [t_near, t_far]");
  m.def("march_rays", &nerf_app::march_rays, "occupancy-grid ray marching to packed samples");
  m.def("render_fused", &nerf_app::render_fused, "fused NeRF inference render per ray tile (CPU)");
  m.def("march_compacted_fused", &nerf_app::march_compacted_fused, "training's compacted march, fused (CPU)");
  m.def("volume_render_forward", &nerf_app::volume_render_forward, "volume rendering of packed samples");
  m.def("volume_render_backward", &nerf_app::volume_render_backward,
        "volume rendering gradient to densities and colours");

  m.def("splat_rasterize_forward", &nerf_app::splat_rasterize_forward,
        "Gaussian-splat compositing in 16x16 tiles: [image, alpha, saved for backward...]");
  m.def("splat_rasterize_backward", &nerf_app::splat_rasterize_backward,
        "Gaussian-splat compositing gradient: [grad_mean2d, grad_conic, grad_color, grad_opacity]");
  m.def("splat_project_forward", &nerf_app::splat_project_forward,
        "Gaussian-splat projection: [mean2d, conic, color, opacity, depth, radius]");
  m.def("splat_project_backward", &nerf_app::splat_project_backward,
        "Gaussian-splat projection gradient: [means, log_scales, quats, opacity_logits, sh]");
}
