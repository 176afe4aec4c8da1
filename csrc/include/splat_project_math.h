// Per-splat maths of the splat projection (3D Gaussian -> screen-space mean, conic, colour, opacity, cull
// radius) and its gradient, shared by the CPU kernel (and a future CUDA one).
// nerf_app/ops/_reference.py::splat_project is the readable twin: every step below is one of its lines, in
// its order of operations where that decides a rounding; constants must match it.
#pragma once

#include <cmath>

#include "common.h"
#include "sh_math.h"

namespace nerf_app {

constexpr float kSplatDilation = 0.3f;            // px^2 added to the 2D covariance's diagonal
constexpr float kSplatOpacityMin = 1.0f / 255.0f;  // opacity below this: not drawn (radius 0)

// One camera, in the form every splat needs: world -> camera rotation and translation (OpenCV axes),
// the camera centre, pinhole intrinsics, the clamp limits of x/z and y/z for the Jacobian, the image size.
struct SplatProjCamera {
  float R[9], t[3], pos[3];
  float fx, fy, cx, cy;
  float lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos;
  int width, height;
  float near;
};

// Rotation matrix (row-major) of the unit quaternion q / |q| (w, x, y, z).
NA_HD void splat_quat_rotmat(const float* qn, float* Rq) {
  const float w = qn[0], x = qn[1], y = qn[2], z = qn[3];
  Rq[0] = 1.f - 2.f * (y * y + z * z); Rq[1] = 2.f * (x * y - w * z); Rq[2] = 2.f * (x * z + w * y);
  Rq[3] = 2.f * (x * y + w * z); Rq[4] = 1.f - 2.f * (x * x + z * z); Rq[5] = 2.f * (y * z - w * x);
  Rq[6] = 2.f * (x * z - w * y); Rq[7] = 2.f * (y * z + w * x); Rq[8] = 1.f - 2.f * (x * x + y * y);
}

// Intermediate values of one splat's projection that its backward pass needs again.
struct SplatProjState {
  float pc[3], zs, ux, uy, tx, ty;
  bool in_front, in_x, in_y, ok;
  float qn[4], qnorm, Rq[9], s[3], A[6], M[9], T[6];
  float a, b, c, det_s;
  float dir[3], vnorm;
  float pre[3];   // colour before the clamp at zero
};

// Forward of splat i: mean [3], log_scale [3], quat [4], opacity logit, sh [K][3] (degree^2 used).
// Writes mean2d [2], conic [3], color [3], opacity, depth and the cull radius (0: not drawn).
NA_HD void splat_project_one(const SplatProjCamera& cam, const float* mean, const float* log_scale,
                             const float* quat, float opacity_logit, const float* sh, int degree,
                             float* mean2d, float* conic, float* color, float& opacity, float& depth,
                             int32_t& radius, SplatProjState& st) {
  const float* R = cam.R;
  for (int i = 0; i < 3; ++i)
    st.pc[i] = (R[3 * i] * mean[0] + R[3 * i + 1] * mean[1] + R[3 * i + 2] * mean[2]) + cam.t[i];
  const float x = st.pc[0], y = st.pc[1], z = st.pc[2];
  st.in_front = z > cam.near;
  const float zs = st.in_front ? z : 1.f;
  st.zs = zs;
  st.ux = x / zs;
  st.uy = y / zs;
  st.in_x = st.ux >= -cam.lim_x_neg && st.ux <= cam.lim_x_pos;
  st.in_y = st.uy >= -cam.lim_y_neg && st.uy <= cam.lim_y_pos;
  st.tx = zs * fminf(fmaxf(st.ux, -cam.lim_x_neg), cam.lim_x_pos);
  st.ty = zs * fminf(fmaxf(st.uy, -cam.lim_y_neg), cam.lim_y_pos);
  const float J00 = cam.fx / zs, J02 = -cam.fx * st.tx / (zs * zs);
  const float J11 = cam.fy / zs, J12 = -cam.fy * st.ty / (zs * zs);
  // M = R_q S: the quaternion normalised, the scales exponentiated
  st.qnorm = sqrtf(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
  for (int k = 0; k < 4; ++k) st.qn[k] = quat[k] / st.qnorm;
  splat_quat_rotmat(st.qn, st.Rq);
  for (int k = 0; k < 3; ++k) st.s[k] = expf(log_scale[k]);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) st.M[3 * i + j] = st.Rq[3 * i + j] * st.s[j];
  // A = J W (2x3; J's zero entries left out), T = A M, cov = T T^T
  for (int j = 0; j < 3; ++j) {
    st.A[j] = J00 * R[j] + J02 * R[6 + j];
    st.A[3 + j] = J11 * R[3 + j] + J12 * R[6 + j];
  }
  for (int r = 0; r < 2; ++r)
    for (int j = 0; j < 3; ++j)
      st.T[3 * r + j] = st.A[3 * r] * st.M[j] + st.A[3 * r + 1] * st.M[3 + j] + st.A[3 * r + 2] * st.M[6 + j];
  const float c00 = st.T[0] * st.T[0] + st.T[1] * st.T[1] + st.T[2] * st.T[2];
  const float c01 = st.T[0] * st.T[3] + st.T[1] * st.T[4] + st.T[2] * st.T[5];
  const float c11 = st.T[3] * st.T[3] + st.T[4] * st.T[4] + st.T[5] * st.T[5];
  st.a = c00 + kSplatDilation;
  st.b = c01;
  st.c = c11 + kSplatDilation;
  const float det = st.a * st.c - st.b * st.b;
  st.ok = st.in_front && det > 0.f;
  st.det_s = st.ok ? det : 1.f;
  conic[0] = st.c / st.det_s;
  conic[1] = -st.b / st.det_s;
  conic[2] = st.a / st.det_s;
  mean2d[0] = cam.fx * x / zs + cam.cx;
  mean2d[1] = cam.fy * y / zs + cam.cy;
  opacity = 1.f / (1.f + expf(-opacity_logit));
  depth = st.in_front ? z : 0.f;
  // the cull radius: where alpha can reach 1/255, plus a pixel for rounding
  const float mid = 0.5f * (st.a + st.c);
  const float lam = mid + sqrtf(fmaxf(mid * mid - det, 0.f));
  const float reach = sqrtf(2.f * logf(fmaxf(opacity * 255.f, 1.f)));
  const float r = ceilf(reach * sqrtf(fmaxf(lam, 0.f))) + 1.f;
  const bool drawn = st.ok && opacity >= kSplatOpacityMin && std::isfinite(r) && std::isfinite(mean2d[0]) &&
                     std::isfinite(mean2d[1]);
  const float rmax = (float)(4 * (cam.width > cam.height ? cam.width : cam.height));
  radius = drawn ? (int32_t)(r < rmax ? r : rmax) : 0;
  // colour: SH at the direction from the camera centre, + 0.5, clamped at zero
  float v[3];
  for (int k = 0; k < 3; ++k) v[k] = mean[k] - cam.pos[k];
  st.vnorm = sqrtf(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
  const float vn = fmaxf(st.vnorm, 1e-12f);
  for (int k = 0; k < 3; ++k) st.dir[k] = v[k] / vn;
  float basis[16];
  sh_basis<float>(st.dir[0], st.dir[1], st.dir[2], degree, basis, nullptr);
  for (int ch = 0; ch < 3; ++ch) {
    float acc = 0.f;
    for (int k = 0; k < degree * degree; ++k) acc += basis[k] * sh[3 * k + ch];
    st.pre[ch] = acc + 0.5f;
    color[ch] = fmaxf(st.pre[ch], 0.f);
  }
}

// Backward of splat i given the gradients of its mean2d, conic, color, opacity and depth; writes the
// gradients of mean, log_scale, quat, opacity logit and the first degree^2 rows of sh (the rest are left as
// they are: zero). The same branches as the twin's torch.where / clamp (gradient where the clamp's input
// lies inside its closed range, none through a culled splat's placeholder denominators).
NA_HD void splat_project_one_backward(const SplatProjCamera& cam, const float* sh, int degree, float opacity,
                                      const SplatProjState& st, const float* g_mean2d, const float* g_conic,
                                      const float* g_color, float g_opacity, float g_depth, float* g_mean,
                                      float* g_log_scale, float* g_quat, float& g_logit, float* g_sh) {
  const float* R = cam.R;
  const float x = st.pc[0], y = st.pc[1], zs = st.zs;
  float g_pc[3] = {0.f, 0.f, 0.f}, g_zs = 0.f;
  // mean2d = f x / zs + c
  g_pc[0] += g_mean2d[0] * cam.fx / zs;
  g_pc[1] += g_mean2d[1] * cam.fy / zs;
  g_zs -= (g_mean2d[0] * cam.fx * x + g_mean2d[1] * cam.fy * y) / (zs * zs);
  // conic = (c, -b, a) / det_s, det_s = det where ok
  const float ds = st.det_s;
  float g_a = g_conic[2] / ds, g_b = -g_conic[1] / ds, g_c = g_conic[0] / ds;
  if (st.ok) {
    const float g_det = -(g_conic[0] * st.c - g_conic[1] * st.b + g_conic[2] * st.a) / (ds * ds);
    g_a += g_det * st.c;
    g_c += g_det * st.a;
    g_b -= 2.f * st.b * g_det;
  }
  // cov = T T^T (a from cov00, b from cov01, c from cov11): dT = [[2 ga, gb], [gb, 2 gc]] T
  float g_T[6];
  for (int j = 0; j < 3; ++j) {
    g_T[j] = 2.f * g_a * st.T[j] + g_b * st.T[3 + j];
    g_T[3 + j] = g_b * st.T[j] + 2.f * g_c * st.T[3 + j];
  }
  // T = A M: dA = dT M^T, dM = A^T dT
  float g_A[6], g_M[9];
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < 3; ++k)
      g_A[3 * r + k] = g_T[3 * r] * st.M[3 * k] + g_T[3 * r + 1] * st.M[3 * k + 1] + g_T[3 * r + 2] * st.M[3 * k + 2];
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 3; ++j) g_M[3 * k + j] = st.A[k] * g_T[j] + st.A[3 + k] * g_T[3 + j];
  // A = J W: the four non-zero entries of J
  const float g_J00 = g_A[0] * R[0] + g_A[1] * R[1] + g_A[2] * R[2];
  const float g_J02 = g_A[0] * R[6] + g_A[1] * R[7] + g_A[2] * R[8];
  const float g_J11 = g_A[3] * R[3] + g_A[4] * R[4] + g_A[5] * R[5];
  const float g_J12 = g_A[3] * R[6] + g_A[4] * R[7] + g_A[5] * R[8];
  const float zs2 = zs * zs, zs3 = zs2 * zs;
  g_zs += -g_J00 * cam.fx / zs2 - g_J11 * cam.fy / zs2 + 2.f * g_J02 * cam.fx * st.tx / zs3 +
          2.f * g_J12 * cam.fy * st.ty / zs3;
  const float g_tx = -g_J02 * cam.fx / zs2, g_ty = -g_J12 * cam.fy / zs2;
  // t = zs clamp(u, lo, hi), u = p / zs
  g_zs += g_tx * (st.tx / zs) + g_ty * (st.ty / zs);
  if (st.in_x) { const float gu = g_tx * zs; g_pc[0] += gu / zs; g_zs -= gu * x / zs2; }
  if (st.in_y) { const float gu = g_ty * zs; g_pc[1] += gu / zs; g_zs -= gu * y / zs2; }
  if (st.in_front) g_pc[2] += g_zs + g_depth;
  // pc = W mean + t
  for (int k = 0; k < 3; ++k) g_mean[k] = R[k] * g_pc[0] + R[3 + k] * g_pc[1] + R[6 + k] * g_pc[2];
  // M = R_q S
  float g_Rq[9];
  for (int j = 0; j < 3; ++j) {
    float gs = 0.f;
    for (int i = 0; i < 3; ++i) { g_Rq[3 * i + j] = g_M[3 * i + j] * st.s[j]; gs += g_M[3 * i + j] * st.Rq[3 * i + j]; }
    g_log_scale[j] = gs * st.s[j];
  }
  // R_q of the normalised quaternion, then the normalisation
  const float w = st.qn[0], qx = st.qn[1], qy = st.qn[2], qz = st.qn[3];
  float g_qn[4];
  g_qn[0] = 2.f * (-qz * g_Rq[1] + qy * g_Rq[2] + qz * g_Rq[3] - qx * g_Rq[5] - qy * g_Rq[6] + qx * g_Rq[7]);
  g_qn[1] = 2.f * (qy * g_Rq[1] + qz * g_Rq[2] + qy * g_Rq[3] - 2.f * qx * g_Rq[4] - w * g_Rq[5] + qz * g_Rq[6] +
                   w * g_Rq[7] - 2.f * qx * g_Rq[8]);
  g_qn[2] = 2.f * (-2.f * qy * g_Rq[0] + qx * g_Rq[1] + w * g_Rq[2] + qx * g_Rq[3] + qz * g_Rq[5] - w * g_Rq[6] +
                   qz * g_Rq[7] - 2.f * qy * g_Rq[8]);
  g_qn[3] = 2.f * (-2.f * qz * g_Rq[0] - w * g_Rq[1] + qx * g_Rq[2] + w * g_Rq[3] - 2.f * qz * g_Rq[4] +
                   qy * g_Rq[5] + qx * g_Rq[6] + qy * g_Rq[7]);
  const float dot = st.qn[0] * g_qn[0] + st.qn[1] * g_qn[1] + st.qn[2] * g_qn[2] + st.qn[3] * g_qn[3];
  for (int k = 0; k < 4; ++k) g_quat[k] = (g_qn[k] - st.qn[k] * dot) / st.qnorm;
  // opacity = sigmoid(logit)
  g_logit = g_opacity * opacity * (1.f - opacity);
  // colour = max(sum_k Y_k(dir) sh_k + 0.5, 0)
  float basis[16], dbasis[16][3];
  sh_basis<float>(st.dir[0], st.dir[1], st.dir[2], degree, basis, dbasis);
  float g_pre[3];
  for (int ch = 0; ch < 3; ++ch) g_pre[ch] = st.pre[ch] >= 0.f ? g_color[ch] : 0.f;
  float g_dir[3] = {0.f, 0.f, 0.f};
  for (int k = 0; k < degree * degree; ++k) {
    float gb = 0.f;
    for (int ch = 0; ch < 3; ++ch) {
      g_sh[3 * k + ch] = basis[k] * g_pre[ch];
      gb += sh[3 * k + ch] * g_pre[ch];
    }
    for (int d = 0; d < 3; ++d) g_dir[d] += gb * dbasis[k][d];
  }
  // dir = v / max(|v|, 1e-12), v = mean - camera centre
  if (st.vnorm > 1e-12f) {
    const float dd = st.dir[0] * g_dir[0] + st.dir[1] * g_dir[1] + st.dir[2] * g_dir[2];
    for (int k = 0; k < 3; ++k) g_mean[k] += (g_dir[k] - st.dir[k] * dd) / st.vnorm;
  } else {
    for (int k = 0; k < 3; ++k) g_mean[k] += g_dir[k] / 1e-12f;
  }
}

}  // namespace nerf_app
