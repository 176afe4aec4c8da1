// Real spherical-harmonics basis of a unit direction, shared by the CPU and CUDA kernels of sh_encode
// (nerf_app/ops/_reference.py::sh_encode is the readable twin).
#pragma once

#include "common.h"

namespace nerf_app {

// Real SH basis of a unit direction, degree L (L*L outputs, L in 1..4), the usual sign convention
// (as in tiny-cuda-nn / Plenoxels). grad (optional) receives d out_i / d(x, y, z) as [L*L][3].
template <typename T>
NA_HD void sh_basis(T x, T y, T z, int degree, T* out, T (*grad)[3]) {
  const T xx = x * x, yy = y * y, zz = z * z;
  out[0] = T(0.28209479177387814);
  if (grad) { grad[0][0] = grad[0][1] = grad[0][2] = T(0); }
  if (degree <= 1) return;
  const T c1 = T(0.48860251190291987);
  out[1] = -c1 * y;
  out[2] = c1 * z;
  out[3] = -c1 * x;
  if (grad) {
    grad[1][0] = T(0); grad[1][1] = -c1; grad[1][2] = T(0);
    grad[2][0] = T(0); grad[2][1] = T(0); grad[2][2] = c1;
    grad[3][0] = -c1; grad[3][1] = T(0); grad[3][2] = T(0);
  }
  if (degree <= 2) return;
  const T c2a = T(1.0925484305920792), c2b = T(0.94617469575755997), c2c = T(0.31539156525251999),
          c2d = T(0.54627421529603959);
  out[4] = c2a * x * y;
  out[5] = -c2a * y * z;
  out[6] = c2b * zz - c2c;
  out[7] = -c2a * x * z;
  out[8] = c2d * (xx - yy);
  if (grad) {
    grad[4][0] = c2a * y; grad[4][1] = c2a * x; grad[4][2] = T(0);
    grad[5][0] = T(0); grad[5][1] = -c2a * z; grad[5][2] = -c2a * y;
    grad[6][0] = T(0); grad[6][1] = T(0); grad[6][2] = T(2) * c2b * z;
    grad[7][0] = -c2a * z; grad[7][1] = T(0); grad[7][2] = -c2a * x;
    grad[8][0] = T(2) * c2d * x; grad[8][1] = -T(2) * c2d * y; grad[8][2] = T(0);
  }
  if (degree <= 3) return;
  const T c3a = T(0.59004358992664352), c3b = T(2.8906114426405538), c3c = T(0.45704579946446572),
          c3d = T(0.3731763325901154), c3e = T(1.4453057213202769);
  out[9] = c3a * y * (T(3) * xx - yy) * T(-1);
  out[10] = c3b * x * y * z;
  out[11] = c3c * y * (T(1) - T(5) * zz);
  out[12] = c3d * z * (T(5) * zz - T(3));
  out[13] = c3c * x * (T(1) - T(5) * zz);
  out[14] = c3e * z * (xx - yy);
  out[15] = c3a * x * (T(3) * yy - xx);
  if (grad) {
    grad[9][0] = -c3a * T(6) * x * y; grad[9][1] = -c3a * (T(3) * xx - T(3) * yy); grad[9][2] = T(0);
    grad[10][0] = c3b * y * z; grad[10][1] = c3b * x * z; grad[10][2] = c3b * x * y;
    grad[11][0] = T(0); grad[11][1] = c3c * (T(1) - T(5) * zz); grad[11][2] = -c3c * T(10) * y * z;
    grad[12][0] = T(0); grad[12][1] = T(0); grad[12][2] = c3d * (T(15) * zz - T(3));
    grad[13][0] = c3c * (T(1) - T(5) * zz); grad[13][1] = T(0); grad[13][2] = -c3c * T(10) * x * z;
    grad[14][0] = T(2) * c3e * x * z; grad[14][1] = -T(2) * c3e * y * z; grad[14][2] = c3e * (xx - yy);
    grad[15][0] = c3a * (T(3) * yy - T(3) * xx); grad[15][1] = c3a * T(6) * x * y; grad[15][2] = T(0);
  }
}

}  // namespace nerf_app
