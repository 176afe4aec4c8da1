// Torch glue of splat_rasterize: checks, binning, allocation, CPU dispatch. There is no CUDA kernel yet:
// CUDA tensors are refused with one clear error (docs/gpu-status.md).
#include "cpu/splat_cpu.h"
#include "glue.h"
#include "splat_math.h"
#include "ops.h"

namespace nerf_app {

namespace {

void check_splats(const char* op, const at::Tensor& mean2d, const at::Tensor& conic, const at::Tensor& color,
                  const at::Tensor& opacity, const at::Tensor& background) {
  const at::Device device = check_same_device(
      op, {{"mean2d", &mean2d}, {"conic", &conic}, {"color", &color}, {"opacity", &opacity},
           {"background", &background}});
  TORCH_CHECK(device.is_cpu(), op, ": there is no CUDA splat rasteriser yet (docs/gpu-status.md); "
              "use CPU tensors or the torch backend");
  check_tensor(op, "mean2d", mean2d, at::kFloat, 2, 2);
  const int64_t n = mean2d.size(0);
  check_tensor(op, "conic", conic, at::kFloat, 2, 3);
  check_rows(op, "conic", conic, n);
  check_tensor(op, "color", color, at::kFloat, 2, 3);
  check_rows(op, "color", color, n);
  check_tensor(op, "opacity", opacity, at::kFloat, 1);
  check_rows(op, "opacity", opacity, n);
  check_tensor(op, "background", background, at::kFloat, 1, 3);
  TORCH_CHECK(n < (int64_t(1) << 31), op, ": at most 2^31 - 1 splats");
}

}  // namespace

std::vector<at::Tensor> splat_rasterize_forward(const at::Tensor& mean2d, const at::Tensor& conic,
                                                const at::Tensor& color, const at::Tensor& opacity,
                                                const at::Tensor& depth, const at::Tensor& radius, int64_t width,
                                                int64_t height, const at::Tensor& background) {
  constexpr const char* op = "splat_rasterize";
  check_splats(op, mean2d, conic, color, opacity, background);
  const int64_t n = mean2d.size(0);
  check_same_device(op, {{"mean2d", &mean2d}, {"depth", &depth}, {"radius", &radius}});
  check_tensor(op, "depth", depth, at::kFloat, 1);
  check_rows(op, "depth", depth, n);
  check_tensor(op, "radius", radius, at::kInt, 1);
  check_rows(op, "radius", radius, n);
  TORCH_CHECK(width >= 1 && height >= 1 && width <= 65536 && height <= 65536, op,
              ": image size must be 1..65536 pixels a side, got ", width, "x", height);
  const int W = (int)width, H = (int)height;
  const int64_t n_tiles = div_up(W, kSplatTile) * div_up(H, kSplatTile);
  const auto i64 = mean2d.options().dtype(at::kLong);
  at::Tensor counts = at::empty({n}, i64);
  cpu::splat_tile_counts(mean2d.data_ptr<float>(), radius.data_ptr<int32_t>(), n, W, H, counts.data_ptr<int64_t>());
  at::Tensor gauss_offsets = at::zeros({n + 1}, i64);
  if (n) gauss_offsets.narrow(0, 1, n).copy_(counts.cumsum(0));
  const int64_t m = gauss_offsets[n].item<int64_t>();
  at::Tensor tile_offsets = at::empty({n_tiles + 1}, i64);
  at::Tensor isect_gid = at::empty({m}, mean2d.options().dtype(at::kInt));
  at::Tensor entry_of = at::empty({m}, i64);
  cpu::splat_bin(mean2d.data_ptr<float>(), radius.data_ptr<int32_t>(), depth.data_ptr<float>(), n, W, H,
                 gauss_offsets.data_ptr<int64_t>(), tile_offsets.data_ptr<int64_t>(), isect_gid.data_ptr<int32_t>(),
                 entry_of.data_ptr<int64_t>());
  at::Tensor image = at::empty({height, width, 3}, mean2d.options());
  at::Tensor alpha = at::empty({height, width}, mean2d.options());
  at::Tensor last = at::empty({height, width}, mean2d.options().dtype(at::kInt));
  cpu::splat_rasterize_forward(mean2d.data_ptr<float>(), conic.data_ptr<float>(), color.data_ptr<float>(),
                               opacity.data_ptr<float>(), W, H, background.data_ptr<float>(),
                               tile_offsets.data_ptr<int64_t>(), isect_gid.data_ptr<int32_t>(),
                               image.data_ptr<float>(), alpha.data_ptr<float>(), last.data_ptr<int32_t>());
  return {image, alpha, tile_offsets, isect_gid, gauss_offsets, entry_of, last};
}

std::vector<at::Tensor> splat_rasterize_backward(const at::Tensor& mean2d, const at::Tensor& conic,
                                                 const at::Tensor& color, const at::Tensor& opacity,
                                                 const at::Tensor& background, const at::Tensor& image,
                                                 const at::Tensor& tile_offsets, const at::Tensor& isect_gid,
                                                 const at::Tensor& gauss_offsets, const at::Tensor& entry_of,
                                                 const at::Tensor& last, const at::Tensor& grad_image) {
  constexpr const char* op = "splat_rasterize backward";
  check_splats(op, mean2d, conic, color, opacity, background);
  const int64_t n = mean2d.size(0);
  check_same_device(op, {{"mean2d", &mean2d}, {"image", &image}, {"tile_offsets", &tile_offsets},
                         {"isect_gid", &isect_gid}, {"gauss_offsets", &gauss_offsets}, {"entry_of", &entry_of},
                         {"last", &last}, {"grad_image", &grad_image}});
  check_tensor(op, "image", image, at::kFloat, 3, 3);
  const int64_t H = image.size(0), W = image.size(1);
  check_tensor(op, "grad_image", grad_image, at::kFloat, 3, 3);
  TORCH_CHECK(grad_image.size(0) == H && grad_image.size(1) == W, op, ": grad_image must be ", H, "x", W, "x3");
  check_tensor(op, "last", last, at::kInt, 2);
  TORCH_CHECK(last.size(0) == H && last.size(1) == W, op, ": last must be ", H, "x", W);
  check_tensor(op, "tile_offsets", tile_offsets, at::kLong, 1);
  TORCH_CHECK(tile_offsets.size(0) == div_up(W, kSplatTile) * div_up(H, kSplatTile) + 1, op,
              ": tile_offsets does not match the image size");
  check_tensor(op, "gauss_offsets", gauss_offsets, at::kLong, 1);
  check_rows(op, "gauss_offsets", gauss_offsets, n + 1);
  check_tensor(op, "isect_gid", isect_gid, at::kInt, 1);
  check_tensor(op, "entry_of", entry_of, at::kLong, 1);
  const int64_t m = isect_gid.size(0);
  check_rows(op, "entry_of", entry_of, m);
  TORCH_CHECK(tile_offsets[-1].item<int64_t>() == m && gauss_offsets[n].item<int64_t>() == m, op,
              ": the bins do not match (pass the forward's saved tensors back unchanged)");
  at::Tensor slots = at::empty({m * 9}, mean2d.options());
  at::Tensor g_mean = at::empty_like(mean2d), g_conic = at::empty_like(conic), g_color = at::empty_like(color),
             g_opacity = at::empty_like(opacity);
  cpu::splat_rasterize_backward(mean2d.data_ptr<float>(), conic.data_ptr<float>(), color.data_ptr<float>(),
                                opacity.data_ptr<float>(), n, (int)W, (int)H, background.data_ptr<float>(),
                                tile_offsets.data_ptr<int64_t>(), isect_gid.data_ptr<int32_t>(),
                                gauss_offsets.data_ptr<int64_t>(), entry_of.data_ptr<int64_t>(),
                                image.data_ptr<float>(), last.data_ptr<int32_t>(), grad_image.data_ptr<float>(),
                                slots.data_ptr<float>(), g_mean.data_ptr<float>(), g_conic.data_ptr<float>(),
                                g_color.data_ptr<float>(), g_opacity.data_ptr<float>());
  return {g_mean, g_conic, g_color, g_opacity};
}

}  // namespace nerf_app
