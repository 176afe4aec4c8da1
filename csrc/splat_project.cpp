// Torch glue of splat_project: checks, the camera's per-call constants, allocation, CPU dispatch. There is no
// CUDA kernel yet: CUDA tensors are refused with one clear error (docs/gpu-status.md).
#include "cpu/splat_project_cpu.h"
#include "glue.h"
#include "ops.h"

namespace nerf_app {

namespace {

struct ProjInputs {
  int64_t n, k;
};

ProjInputs check_project(const char* op, const at::Tensor& means, const at::Tensor& log_scales,
                         const at::Tensor& quats, const at::Tensor& opacity_logits, const at::Tensor& sh,
                         const at::Tensor& w2c, const at::Tensor& cam_pos, int64_t degree) {
  const at::Device device = check_same_device(
      op, {{"means", &means}, {"log_scales", &log_scales}, {"quats", &quats}, {"opacity_logits", &opacity_logits},
           {"sh", &sh}, {"w2c", &w2c}, {"cam_pos", &cam_pos}});
  TORCH_CHECK(device.is_cpu(), op, ": there is no CUDA splat projection yet (docs/gpu-status.md); "
              "use CPU tensors or the torch backend");
  check_tensor(op, "means", means, at::kFloat, 2, 3);
  const int64_t n = means.size(0);
  check_tensor(op, "log_scales", log_scales, at::kFloat, 2, 3);
  check_rows(op, "log_scales", log_scales, n);
  check_tensor(op, "quats", quats, at::kFloat, 2, 4);
  check_rows(op, "quats", quats, n);
  check_tensor(op, "opacity_logits", opacity_logits, at::kFloat, 1);
  check_rows(op, "opacity_logits", opacity_logits, n);
  check_tensor(op, "sh", sh, at::kFloat, 3, 3);
  check_rows(op, "sh", sh, n);
  check_tensor(op, "w2c", w2c, at::kFloat, 2, 4);
  TORCH_CHECK(w2c.size(0) >= 3, op, ": w2c must be 3x4 or 4x4");
  check_tensor(op, "cam_pos", cam_pos, at::kFloat, 1, 3);
  TORCH_CHECK(degree >= 1 && degree <= 4 && degree * degree <= sh.size(1), op, ": degree ", degree,
              " needs 1..4 and at least degree^2 SH rows, got ", sh.size(1));
  return {n, sh.size(1)};
}

SplatProjCamera make_camera(const at::Tensor& w2c, const at::Tensor& cam_pos, const std::vector<double>& intr,
                            int64_t width, int64_t height) {
  TORCH_CHECK(intr.size() == 9, "splat_project: intrinsics must be [fx, fy, cx, cy, lim_x_neg, lim_x_pos, "
              "lim_y_neg, lim_y_pos, near]");
  TORCH_CHECK(width >= 1 && height >= 1 && width <= 65536 && height <= 65536,
              "splat_project: image size must be 1..65536 pixels a side");
  SplatProjCamera cam;
  const float* m = w2c.data_ptr<float>();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) cam.R[3 * i + j] = m[4 * i + j];
    cam.t[i] = m[4 * i + 3];
    cam.pos[i] = cam_pos.data_ptr<float>()[i];
  }
  cam.fx = (float)intr[0]; cam.fy = (float)intr[1]; cam.cx = (float)intr[2]; cam.cy = (float)intr[3];
  cam.lim_x_neg = (float)intr[4]; cam.lim_x_pos = (float)intr[5];
  cam.lim_y_neg = (float)intr[6]; cam.lim_y_pos = (float)intr[7];
  cam.near = (float)intr[8];
  cam.width = (int)width; cam.height = (int)height;
  return cam;
}

}  // namespace

std::vector<at::Tensor> splat_project_forward(const at::Tensor& means, const at::Tensor& log_scales,
                                              const at::Tensor& quats, const at::Tensor& opacity_logits,
                                              const at::Tensor& sh, const at::Tensor& w2c, const at::Tensor& cam_pos,
                                              const std::vector<double>& intrinsics, int64_t width, int64_t height,
                                              int64_t degree) {
  constexpr const char* op = "splat_project";
  const ProjInputs in = check_project(op, means, log_scales, quats, opacity_logits, sh, w2c, cam_pos, degree);
  const SplatProjCamera cam = make_camera(w2c, cam_pos, intrinsics, width, height);
  const auto f = means.options();
  at::Tensor mean2d = at::empty({in.n, 2}, f), conic = at::empty({in.n, 3}, f), color = at::empty({in.n, 3}, f);
  at::Tensor opacity = at::empty({in.n}, f), depth = at::empty({in.n}, f);
  at::Tensor radius = at::empty({in.n}, f.dtype(at::kInt));
  cpu::splat_project_forward(cam, means.data_ptr<float>(), log_scales.data_ptr<float>(), quats.data_ptr<float>(),
                             opacity_logits.data_ptr<float>(), sh.data_ptr<float>(), in.n, in.k, (int)degree,
                             mean2d.data_ptr<float>(), conic.data_ptr<float>(), color.data_ptr<float>(),
                             opacity.data_ptr<float>(), depth.data_ptr<float>(), radius.data_ptr<int32_t>());
  return {mean2d, conic, color, opacity, depth, radius};
}

std::vector<at::Tensor> splat_project_backward(const at::Tensor& means, const at::Tensor& log_scales,
                                               const at::Tensor& quats, const at::Tensor& opacity_logits,
                                               const at::Tensor& sh, const at::Tensor& w2c, const at::Tensor& cam_pos,
                                               const std::vector<double>& intrinsics, int64_t width, int64_t height,
                                               int64_t degree, const at::Tensor& g_mean2d, const at::Tensor& g_conic,
                                               const at::Tensor& g_color, const at::Tensor& g_opacity,
                                               const at::Tensor& g_depth) {
  constexpr const char* op = "splat_project backward";
  const ProjInputs in = check_project(op, means, log_scales, quats, opacity_logits, sh, w2c, cam_pos, degree);
  const SplatProjCamera cam = make_camera(w2c, cam_pos, intrinsics, width, height);
  check_same_device(op, {{"means", &means}, {"g_mean2d", &g_mean2d}, {"g_conic", &g_conic}, {"g_color", &g_color},
                         {"g_opacity", &g_opacity}, {"g_depth", &g_depth}});
  check_tensor(op, "g_mean2d", g_mean2d, at::kFloat, 2, 2);
  check_rows(op, "g_mean2d", g_mean2d, in.n);
  check_tensor(op, "g_conic", g_conic, at::kFloat, 2, 3);
  check_rows(op, "g_conic", g_conic, in.n);
  check_tensor(op, "g_color", g_color, at::kFloat, 2, 3);
  check_rows(op, "g_color", g_color, in.n);
  check_tensor(op, "g_opacity", g_opacity, at::kFloat, 1);
  check_rows(op, "g_opacity", g_opacity, in.n);
  check_tensor(op, "g_depth", g_depth, at::kFloat, 1);
  check_rows(op, "g_depth", g_depth, in.n);
  at::Tensor g_means = at::empty_like(means), g_log_scales = at::empty_like(log_scales);
  at::Tensor g_quats = at::empty_like(quats), g_logits = at::empty_like(opacity_logits);
  at::Tensor g_sh = at::zeros_like(sh);
  cpu::splat_project_backward(cam, means.data_ptr<float>(), log_scales.data_ptr<float>(), quats.data_ptr<float>(),
                              opacity_logits.data_ptr<float>(), sh.data_ptr<float>(), in.n, in.k, (int)degree,
                              g_mean2d.data_ptr<float>(), g_conic.data_ptr<float>(), g_color.data_ptr<float>(),
                              g_opacity.data_ptr<float>(), g_depth.data_ptr<float>(), g_means.data_ptr<float>(),
                              g_log_scales.data_ptr<float>(), g_quats.data_ptr<float>(), g_logits.data_ptr<float>(),
                              g_sh.data_ptr<float>());
  return {g_means, g_log_scales, g_quats, g_logits, g_sh};
}

}  // namespace nerf_app
