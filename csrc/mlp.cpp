// Torch glue of the fully fused MLP: checks, allocation, and dispatch to the CPU or CUDA launcher.
//
// forward returns {y, saved...} and backward takes those saved tensors back, so each device keeps
// what its backward needs without Python knowing the layout:
//   cpu : saved = {hidden [L-1, N, width_p] float32}          (empty [0] when not training)
//   cuda: saved = {x_half [N_pad, in_p], hidden [L-1, N_pad, width] half, weights_half}
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cpu/mlp_cpu.h"
#include "glue.h"
#include "ops.h"

#ifdef NERF_APP_WITH_CUDA
#include "cuda/mlp_cuda.h"
#endif

namespace nerf_app {
namespace {

cpu::MlpDims check_network(const at::Tensor& x, const std::vector<at::Tensor>& weights, int64_t act,
                           int64_t out_act) {
  check_same_device("mlp", {{"x", &x}});
  check_tensor("mlp", "x", x, at::kFloat, 2);
  TORCH_CHECK(x.size(1) >= 1, "mlp: x must be [N, n_in] with n_in >= 1");
  return check_mlp_weights("mlp", x, x.size(1), weights, act, out_act);
}

}  // namespace

cpu::MlpDims check_mlp_weights(const char* op, const at::Tensor& like, int64_t n_in,
                               const std::vector<at::Tensor>& weights, int64_t act, int64_t out_act) {
  const int L = (int)weights.size();
  TORCH_CHECK(L >= 1 && L <= kMlpMaxLayers, op, ": 1 to ", kMlpMaxLayers, " weight matrices supported, got ", L);
  TORCH_CHECK(act == kActNone || act == kActRelu, op, ": hidden activation must be none or relu");
  TORCH_CHECK(out_act >= kActNone && out_act <= kActExp, op, ": bad output activation code ", out_act);
  int64_t prev = n_in;
  for (int i = 0; i < L; ++i) {
    const at::Tensor& w = weights[i];
    TORCH_CHECK(w.dim() == 2 && w.size(1) == prev, op, ": weights[", i, "] must be [out, ", prev, "]");
    check_same_device(op, {{"x", &like}, {"a weight matrix", &w}});
    check_tensor(op, "weights", w, at::kFloat, 2);
    TORCH_CHECK(i == L - 1 || i == 0 || w.size(0) == weights[0].size(0), op, ": hidden layers must share one width");
    prev = w.size(0);
  }
  cpu::MlpDims s;
  s.n_in = (int)n_in;
  s.width = (int)weights[0].size(0);
  s.n_out = (int)weights[L - 1].size(0);
  s.n_layers = L;
  s.act = (int)act;
  s.out_act = (int)out_act;
  if (L == 1) s.width = s.n_out;  // no hidden layer: the width is unused
  return s;
}

namespace {

// Large per-call CPU buffers (saved activations, y, grad_x) come from a small cache of recently freed
// blocks. Fresh memory costs a page fault per page on first touch, and glibc hands big blocks back to
// the OS on free, so every training step would fault its 100+ MiB in again: on the 2-core VMs this was
// as slow as the fused forward itself (and very noisy). Reused blocks are already mapped. The cache
// holds at most kCacheBlocks blocks and kCacheBytes in all (like torch's CUDA caching allocator, memory
// stays with the process); new blocks also ask for transparent huge pages (fewer faults, advisory).
constexpr size_t kCacheBytes = size_t(1) << 30;
constexpr size_t kCacheBlocks = 8;
constexpr size_t kCacheMinBytes = size_t(1) << 20;  // smaller buffers: the torch allocator is fine

// A new block gets a quarter more than asked for, in whole 2 MiB pages: a training step's row count moves by a
// few per cent from step to step, and a block cut to the last step's size never fits a larger next one. Each
// miss was a fresh block whose huge pages the kernel had to find and zero on first touch: the colour MLP's
// forward took 60 ms instead of 5 ms on about half of a lego run's steps.
size_t block_bytes(size_t bytes) {
  constexpr size_t kPage = size_t(2) << 20;
  return (bytes + bytes / 4 + kPage - 1) / kPage * kPage;
}

class BlockCache {
 public:
  // A block of at least `bytes`; `held` receives its real size, which give_back must be handed.
  void* take(size_t bytes, size_t& held) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      size_t best = blocks_.size();
      for (size_t i = 0; i < blocks_.size(); ++i)  // smallest block that fits without wasting half of it
        if (blocks_[i].second >= bytes && blocks_[i].second <= 2 * bytes &&
            (best == blocks_.size() || blocks_[i].second < blocks_[best].second))
          best = i;
      if (best < blocks_.size()) {
        void* p = blocks_[best].first;
        held = blocks_[best].second;
        held_ -= blocks_[best].second;
        blocks_.erase(blocks_.begin() + best);
        return p;
      }
    }
    void* p = nullptr;
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t size = block_bytes(bytes);
    if (posix_memalign(&p, kHuge, size) != 0) return nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, size, MADV_HUGEPAGE);  // advisory: failure only means ordinary pages
#endif
    held = size;
    return p;
  }
  void give_back(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!blocks_.empty() && (blocks_.size() >= kCacheBlocks || held_ + bytes > kCacheBytes)) {
      std::free(blocks_.front().first);  // oldest first
      held_ -= blocks_.front().second;
      blocks_.erase(blocks_.begin());
    }
    if (bytes > kCacheBytes) {
      std::free(p);
      return;
    }
    blocks_.emplace_back(p, bytes);
    held_ += bytes;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<void*, size_t>> blocks_;
  size_t held_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();  // never destroyed: tensors may outlive static teardown
  return *cache;
}

at::Tensor empty_cpu(at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (const int64_t v : sizes) numel *= v;
  const size_t bytes = (size_t)numel * sizeof(float);
  if (bytes >= kCacheMinBytes) {
    size_t held = 0;
    if (void* p = block_cache().take(bytes, held))
      return at::from_blob(p, sizes, [held](void* q) { block_cache().give_back(q, held); },
                           options.dtype(at::kFloat));
  }
  return at::empty(sizes, options.dtype(at::kFloat));
}

std::vector<const float*> pointers(const std::vector<at::Tensor>& ts) {
  std::vector<const float*> p;
  for (const auto& t : ts) p.push_back(t.data_ptr<float>());
  return p;
}

#ifdef NERF_APP_WITH_CUDA
cuda::MlpCudaDims cuda_dims(const cpu::MlpDims& s) {
  return cuda::MlpCudaDims{s.n_in, s.width, s.n_out, s.n_layers, s.act, s.out_act};
}

std::vector<at::Tensor> forward_cuda(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                     const cpu::MlpDims& s, bool training) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cuda::MlpCudaDims cd = cuda_dims(s);
  TORCH_CHECK(cuda::mlp_cuda_supported(cd), "mlp (cuda): unsupported shape (width must be 16/32/64/128, "
              "n_in and n_out at most 128)");
  const int64_t n = x.size(0);
  const int64_t n_pad = cuda::mlp_cuda_padded_rows(n);
  auto half = x.options().dtype(at::kHalf);
  // All matrices, zero-padded to multiples of 16 and converted to half, packed one after another.
  at::Tensor w_half = at::zeros({cuda::mlp_cuda_weight_elements(cd)}, half);
  std::vector<int64_t> offsets = cuda::mlp_cuda_weight_offsets(cd);
  for (int i = 0; i < s.n_layers; ++i) {
    const int64_t out = weights[i].size(0), in = weights[i].size(1);
    const int64_t in_p = cuda::mlp_cuda_padded_dim(in);
    w_half.narrow(0, offsets[i], cuda::mlp_cuda_padded_dim(out) * in_p)
        .view({-1, in_p})
        .narrow(0, 0, out)
        .narrow(1, 0, in)
        .copy_(weights[i]);
  }
  at::Tensor y = at::empty({n, (int64_t)s.n_out}, x.options());
  at::Tensor x_half, hidden;
  if (training) {
    x_half = at::empty({n_pad, (int64_t)cuda::mlp_cuda_padded_dim(s.n_in)}, half);
    hidden = at::empty({std::max(s.n_layers - 1, 0), n_pad, (int64_t)s.width}, half);
  }
  cuda::mlp_forward(x.data_ptr<float>(), w_half.data_ptr<at::Half>(), y.data_ptr<float>(),
                    training ? x_half.data_ptr<at::Half>() : nullptr, training ? hidden.data_ptr<at::Half>() : nullptr,
                    n, cd, current_stream());
  NA_CHECK_LAUNCH();
  if (!training) return {y};
  return {y, x_half, hidden, w_half};
}

std::vector<at::Tensor> backward_cuda(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                      const std::vector<at::Tensor>& saved, const at::Tensor& y,
                                      const at::Tensor& grad_y, const cpu::MlpDims& s, bool need_grad_x) {
  const c10::cuda::CUDAGuard guard(x.device());
  TORCH_CHECK(saved.size() == 3, "mlp (cuda) backward: expected the 3 tensors saved by a training forward");
  for (const auto& t : saved) {
    check_same_device("mlp backward", {{"x", &x}, {"a saved tensor", &t}});
    TORCH_CHECK(t.scalar_type() == at::kHalf && t.is_contiguous(), "mlp (cuda) backward: saved tensors must be "
                "the contiguous half tensors of a training forward");
  }
  const cuda::MlpCudaDims cd = cuda_dims(s);
  const int64_t n = x.size(0);
  const int64_t n_pad = cuda::mlp_cuda_padded_rows(n);
  TORCH_CHECK(saved[0].numel() == n_pad * cuda::mlp_cuda_padded_dim(s.n_in) &&
                  saved[1].numel() == std::max(s.n_layers - 1, 0) * n_pad * (int64_t)s.width &&
                  saved[2].numel() == cuda::mlp_cuda_weight_elements(cd),
              "mlp (cuda) backward: saved tensors do not match the network");
  // fp16 loss scale: sized on the device from max |grad_y * a'(y)| (no host sync; mlp_common.h).
  at::Tensor amax = at::zeros({1}, x.options());
  at::Tensor g = at::empty({cuda::mlp_cuda_grad_elements(cd, n_pad)}, x.options().dtype(at::kHalf));
  at::Tensor grad_x = need_grad_x ? at::empty_like(x) : at::Tensor();
  const int64_t n_chunks = cuda::mlp_cuda_weight_grad_chunks(n_pad);
  at::Tensor partial = at::empty({n_chunks * cuda::mlp_cuda_weight_elements(cd)}, x.options());
  std::vector<at::Tensor> grad_w;
  std::vector<float*> grad_w_ptr;
  for (const auto& w : weights) {
    grad_w.push_back(at::empty_like(w));
    grad_w_ptr.push_back(grad_w.back().data_ptr<float>());
  }
  cuda::mlp_backward(saved[0].data_ptr<at::Half>(), saved[2].data_ptr<at::Half>(), saved[1].data_ptr<at::Half>(),
                     y.data_ptr<float>(), grad_y.data_ptr<float>(), amax.data_ptr<float>(), g.data_ptr<at::Half>(),
                     partial.data_ptr<float>(), need_grad_x ? grad_x.data_ptr<float>() : nullptr, grad_w_ptr.data(), n,
                     cd, current_stream());
  NA_CHECK_LAUNCH();
  std::vector<at::Tensor> result{grad_x};
  for (auto& t : grad_w) result.push_back(t);
  return result;
}
#endif

}  // namespace

std::vector<at::Tensor> mlp_forward(const at::Tensor& x, const std::vector<at::Tensor>& weights, int64_t act,
                                    int64_t out_act, bool training) {
  const cpu::MlpDims s = check_network(x, weights, act, out_act);
  if (x.is_cuda()) {
#ifdef NERF_APP_WITH_CUDA
    return forward_cuda(x, weights, s, training);
#else
    TORCH_CHECK(false, "mlp: nerf_app._C was built without CUDA kernels");
#endif
  }
  const int64_t n = x.size(0);
  at::Tensor y = empty_cpu({n, (int64_t)s.n_out}, x.options());
  at::Tensor hidden = empty_cpu({training ? std::max(s.n_layers - 1, 0) : 0, n,
                                 (int64_t)cpu::mlp_cpu_hidden_width(s.width)}, x.options());
  const std::vector<const float*> w = pointers(weights);
  cpu::mlp_forward(x.data_ptr<float>(), w.data(), y.data_ptr<float>(),
                   training && s.n_layers > 1 ? hidden.data_ptr<float>() : nullptr, n, s);
  return {y, hidden};
}

std::vector<at::Tensor> mlp_backward(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                     const std::vector<at::Tensor>& saved, const at::Tensor& y,
                                     const at::Tensor& grad_y, int64_t act, int64_t out_act, bool need_grad_x) {
  const cpu::MlpDims s = check_network(x, weights, act, out_act);
  const int64_t n = x.size(0);
  check_same_device("mlp backward", {{"x", &x}, {"y", &y}, {"grad_y", &grad_y}});
  check_tensor("mlp backward", "y", y, at::kFloat, 2, s.n_out);
  check_tensor("mlp backward", "grad_y", grad_y, at::kFloat, 2, s.n_out);
  check_rows("mlp backward", "y", y, n);
  check_rows("mlp backward", "grad_y", grad_y, n);
  if (x.is_cuda()) {
#ifdef NERF_APP_WITH_CUDA
    return backward_cuda(x, weights, saved, y, grad_y, s, need_grad_x);
#else
    TORCH_CHECK(false, "mlp: nerf_app._C was built without CUDA kernels");
#endif
  }
  TORCH_CHECK(saved.size() == 1, "mlp (cpu) backward: expected the hidden activations of a training forward");
  const at::Tensor& hidden = saved[0];
  check_same_device("mlp backward", {{"x", &x}, {"the saved hidden activations", &hidden}});
  TORCH_CHECK(hidden.scalar_type() == at::kFloat, "mlp (cpu) backward: saved hidden activations must be float32");
  TORCH_CHECK(hidden.is_contiguous() && hidden.dim() == 3 && hidden.size(0) == s.n_layers - 1 &&
                  (s.n_layers == 1 || (hidden.size(1) == n && hidden.size(2) == cpu::mlp_cpu_hidden_width(s.width))),
              "mlp (cpu) backward: saved hidden activations do not match the network");
  at::Tensor grad_x = need_grad_x ? empty_cpu(x.sizes(), x.options()) : at::Tensor();
  std::vector<at::Tensor> result{grad_x};
  std::vector<float*> gw;
  for (const auto& w : weights) {
    result.push_back(at::empty_like(w));
    gw.push_back(result.back().data_ptr<float>());
  }
  const std::vector<const float*> w = pointers(weights);
  cpu::mlp_backward(x.data_ptr<float>(), w.data(), s.n_layers > 1 ? hidden.data_ptr<float>() : nullptr,
                    y.data_ptr<float>(), grad_y.data_ptr<float>(), need_grad_x ? grad_x.data_ptr<float>() : nullptr,
                    gw.data(), n, s);
  return result;
}

at::Tensor mlp_forward_bf16(const at::Tensor& x, const std::vector<at::Tensor>& weights, int64_t act,
                            int64_t out_act) {
  const cpu::MlpDims s = check_network(x, weights, act, out_act);
  TORCH_CHECK(x.device().is_cpu(), "mlp_forward_bf16: CPU tensors only");
  TORCH_CHECK(cpu::mlp_bf16_supported(), "mlp_forward_bf16: this CPU lacks AVX-512 BF16 (use mlp_forward)");
  at::Tensor y = empty_cpu({x.size(0), (int64_t)s.n_out}, x.options());
  const std::vector<const float*> w = pointers(weights);
  cpu::mlp_forward_bf16(x.data_ptr<float>(), w.data(), y.data_ptr<float>(), x.size(0), s);
  return y;
}

bool mlp_bf16_supported() { return cpu::mlp_bf16_supported(); }
bool mlp_amx_supported() { return cpu::mlp_amx_supported(); }

double mlp_fp16_loss_scale(const at::Tensor& y, const at::Tensor& grad_y, int64_t out_act) {
  check_tensor("mlp_fp16_loss_scale", "y", y, at::kFloat, 2);
  check_tensor("mlp_fp16_loss_scale", "grad_y", grad_y, at::kFloat, 2);
  TORCH_CHECK(y.device().is_cpu() && grad_y.device().is_cpu() && y.sizes() == grad_y.sizes(),
              "mlp_fp16_loss_scale: y and grad_y must be CPU tensors of one shape");
  const float* py = y.data_ptr<float>();
  const float* pg = grad_y.data_ptr<float>();
  float amax = 0.f;
  for (int64_t k = 0; k < y.numel(); ++k) amax = std::max(amax, std::fabs(mlp_stored_grad((int)out_act, pg[k], py[k])));
  return mlp_fp16_loss_scale(amax);
}

}  // namespace nerf_app
