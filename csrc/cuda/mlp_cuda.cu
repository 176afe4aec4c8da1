// CUDA fully fused MLP on tensor cores (WMMA 16x16x16, fp16 inputs, fp32 accumulation).
//
// Forward and backward: one block of 4 warps owns kRows rows and runs every layer for them. Its
// activations live in two shared-memory half buffers (ping-pong: a layer reads one and writes the
// other); weights are read as WMMA fragments straight from global memory, where they stay L1/L2
// resident. Each 16x16 output tile is accumulated in fp32, staged through a per-warp fp32 scratch,
// and finished elementwise (activation, ReLU' mask, fp16 rounding) while it is written back.
//
// The training forward also saves the fp16 input and hidden activations; the backward saves every
// layer's pre-activation gradient G_i. Weight gradients dW_i = G_i^T H_i are then a reduction over
// rows: a split-K WMMA kernel writes one fp32 partial per chunk of rows and a second kernel sums the
// chunks in order (no atomics, so dW is reproducible too).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>

#include "common.h"
#include "mlp_common.h"
#include "mlp_cuda.h"

namespace nerf_app {
namespace cuda {
namespace {

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
#define NA_MLP_HAS_WMMA 1
using namespace nvcuda;
#endif

constexpr int kRows = 64;      // rows per block: 4 row tiles of 16
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kSkew = 8;       // halves of padding per smem row, against bank conflicts
constexpr int kChunkRows = 2048;  // rows per weight-gradient partial

// Padded layer widths and where each matrix starts in the packed half weights.
struct Geometry {
  int n_layers;
  int dp[kMlpMaxLayers + 1];        // widths padded to 16
  int64_t w_off[kMlpMaxLayers];     // offsets in w_half / in each chunk of `partial`
  int64_t g_off[kMlpMaxLayers];     // offsets of G_i in the gradient scratch
  int ld;                           // shared-memory row stride (halves)
};

Geometry geometry(const MlpCudaDims& d, int64_t n_pad) {
  Geometry g{};
  g.n_layers = d.n_layers;
  for (int i = 0; i <= d.n_layers; ++i)
    g.dp[i] = mlp_cuda_padded_dim(i == 0 ? d.n_in : (i == d.n_layers ? d.n_out : d.width));
  int64_t w = 0, gr = 0;
  int widest = 0;
  for (int i = 0; i < d.n_layers; ++i) {
    g.w_off[i] = w;
    g.g_off[i] = gr;
    w += (int64_t)g.dp[i + 1] * g.dp[i];
    gr += n_pad * g.dp[i + 1];
  }
  for (int i = 0; i <= d.n_layers; ++i) widest = std::max(widest, g.dp[i]);
  g.ld = widest + kSkew;
  return g;
}

size_t shared_bytes(const Geometry& g) {
  return 2 * (size_t)kRows * g.ld * sizeof(__half) + (size_t)kWarps * 256 * sizeof(float);
}

__device__ __forceinline__ float activate(int act, float v) {
  return act == kActRelu ? fmaxf(v, 0.f) : (act == kActSigmoid ? 1.f / (1.f + expf(-v)) : (act == kActExp ? expf(v) : v));
}

#ifdef NA_MLP_HAS_WMMA
// out tile (rows of the block) x (columns) = A [kRows x K] (smem, row-major, ld) . B [K x n_cols], where B
// is a weight matrix read from global memory: B_TRANSPOSED means B = W^T for W [n_cols, K] (forward),
// else B = W for W [K, n_cols] (backward). Each finished 16x16 tile goes through `finish(r, c, v)` with
// r the row in the block, c the column and v the fp32 value; lanes finish 8 elements each.
template <bool B_TRANSPOSED, typename Finish>
__device__ void layer(const __half* A, int ld, int K, int n_cols, const __half* W, float* stage, Finish finish) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int col_tiles = n_cols / 16;
  for (int t = warp; t < (kRows / 16) * col_tiles; t += kWarps) {
    const int rt = t / col_tiles, ct = t % col_tiles;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
    for (int k = 0; k < K; k += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
      wmma::load_matrix_sync(a, A + rt * 16 * ld + k, ld);
      if (B_TRANSPOSED) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
        wmma::load_matrix_sync(b, W + (int64_t)ct * 16 * K + k, K);  // B(k, c) = W[c, k]
        wmma::mma_sync(acc, a, b, acc);
      } else {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
        wmma::load_matrix_sync(b, W + (int64_t)k * n_cols + ct * 16, n_cols);  // B(k, c) = W[k, c]
        wmma::mma_sync(acc, a, b, acc);
      }
    }
    wmma::store_matrix_sync(stage, acc, 16, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane * 8; e < lane * 8 + 8; ++e) finish(rt * 16 + e / 16, ct * 16 + e % 16, stage[e]);
    __syncwarp();
  }
}
#endif

__global__ void forward_kernel(const float* __restrict__ x, const __half* __restrict__ w, float* __restrict__ y,
                               __half* __restrict__ x_save, __half* __restrict__ hidden, int64_t n, int64_t n_pad,
                               MlpCudaDims d, Geometry geo) {
#ifdef NA_MLP_HAS_WMMA
  extern __shared__ __align__(128) unsigned char smem[];
  __half* buf[2] = {reinterpret_cast<__half*>(smem), reinterpret_cast<__half*>(smem) + kRows * geo.ld};
  float* stage = reinterpret_cast<float*>(buf[1] + kRows * geo.ld) + (threadIdx.x / 32) * 256;
  const int64_t row0 = (int64_t)blockIdx.x * kRows;
  const int in_p = geo.dp[0], ld = geo.ld;
  for (int e = threadIdx.x; e < kRows * in_p; e += kThreads) {
    const int r = e / in_p, c = e % in_p;
    const int64_t row = row0 + r;
    const __half h = __float2half(row < n && c < d.n_in ? x[row * d.n_in + c] : 0.f);
    buf[0][r * ld + c] = h;
    if (x_save) x_save[row * in_p + c] = h;
  }
  __syncthreads();
  int cur = 0;
  for (int i = 0; i < geo.n_layers; ++i) {
    const int K = geo.dp[i], n_cols = geo.dp[i + 1];
    const __half* W = w + geo.w_off[i];
    __half* out = buf[cur ^ 1];
    if (i < geo.n_layers - 1) {
      __half* save = hidden ? hidden + ((int64_t)i * n_pad + row0) * n_cols : nullptr;
      layer<true>(buf[cur], ld, K, n_cols, W, stage, [&](int r, int c, float v) {
        const __half h = __float2half(activate(d.act, v));
        out[r * ld + c] = h;
        if (save) save[(int64_t)r * n_cols + c] = h;
      });
    } else {
      layer<true>(buf[cur], ld, K, n_cols, W, stage, [&](int r, int c, float v) {
        const int64_t row = row0 + r;
        if (row < n && c < d.n_out) y[row * d.n_out + c] = activate(d.out_act, v);
      });
    }
    __syncthreads();
    cur ^= 1;
  }
#endif
}

// amax_bits = max over every output element of |grad_y * a'(y)|, as the bits of a float: for
// non-negative floats the unsigned order of the bits is the numeric order, so atomicMax works on them.
__global__ void amax_kernel(const float* __restrict__ y, const float* __restrict__ grad_y, int64_t count,
                            int out_act, unsigned int* __restrict__ amax_bits) {
  float m = 0.f;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < count; k += (int64_t)gridDim.x * blockDim.x)
    m = fmaxf(m, fabsf(mlp_stored_grad(out_act, grad_y[k], y[k])));
  for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if (threadIdx.x % 32 == 0) atomicMax(amax_bits, __float_as_uint(m));
}

__global__ void backward_kernel(const __half* __restrict__ w, const __half* __restrict__ hidden,
                                const float* __restrict__ y, const float* __restrict__ grad_y,
                                const float* __restrict__ amax,
                                __half* __restrict__ g, float* __restrict__ grad_x, int64_t n, int64_t n_pad,
                                MlpCudaDims d, Geometry geo) {
#ifdef NA_MLP_HAS_WMMA
  extern __shared__ __align__(128) unsigned char smem[];
  __half* buf[2] = {reinterpret_cast<__half*>(smem), reinterpret_cast<__half*>(smem) + kRows * geo.ld};
  float* stage = reinterpret_cast<float*>(buf[1] + kRows * geo.ld) + (threadIdx.x / 32) * 256;
  const int64_t row0 = (int64_t)blockIdx.x * kRows;
  const int L = geo.n_layers, ld = geo.ld, out_p = geo.dp[L];
  const float scale = mlp_fp16_loss_scale(*amax);
  // G_{L-1} = scale * grad_y * a'(y); padded rows and columns are zero, so they add nothing below
  __half* g_last = g + geo.g_off[L - 1] + row0 * out_p;
  for (int e = threadIdx.x; e < kRows * out_p; e += kThreads) {
    const int r = e / out_p, c = e % out_p;
    const int64_t row = row0 + r;
    float v = 0.f;
    if (row < n && c < d.n_out) {
      const int64_t k = row * d.n_out + c;
      v = scale * mlp_stored_grad(d.out_act, grad_y[k], y[k]);
    }
    const __half h = __float2half(v);
    buf[0][r * ld + c] = h;
    g_last[(int64_t)r * out_p + c] = h;
  }
  __syncthreads();
  int cur = 0;
  for (int i = L - 1; i >= 1; --i) {
    // G_{i-1} = (G_i W_i) * a'(h_{i-1}), h_{i-1} the saved input of layer i
    const int K = geo.dp[i + 1], n_cols = geo.dp[i];
    const __half* h_in = hidden + ((int64_t)(i - 1) * n_pad + row0) * n_cols;
    __half* g_out = g + geo.g_off[i - 1] + row0 * n_cols;
    __half* out = buf[cur ^ 1];
    layer<false>(buf[cur], ld, K, n_cols, w + geo.w_off[i], stage, [&](int r, int c, float v) {
      if (d.act == kActRelu && !(__half2float(h_in[(int64_t)r * n_cols + c]) > 0.f)) v = 0.f;
      const __half h = __float2half(v);
      out[r * ld + c] = h;
      g_out[(int64_t)r * n_cols + c] = h;
    });
    __syncthreads();
    cur ^= 1;
  }
  if (grad_x) {
    const float inv = 1.f / scale;
    layer<false>(buf[cur], ld, geo.dp[1], geo.dp[0], w, stage, [&](int r, int c, float v) {
      const int64_t row = row0 + r;
      if (row < n && c < d.n_in) grad_x[row * d.n_in + c] = v * inv;
    });
  }
#endif
}

// partial[chunk] (+ layer offset) [M, K2] = G[rows of chunk, M]^T . H[rows of chunk, K2]; one warp per
// 16x16 output tile, accumulating over the chunk's rows in fp32.
__global__ void weight_grad_kernel(const __half* __restrict__ G, const __half* __restrict__ H, float* __restrict__ partial,
                                   int M, int K2, int64_t n_pad, int64_t chunk_stride) {
#ifdef NA_MLP_HAS_WMMA
  const int tile = blockIdx.y * kWarps + threadIdx.x / 32;
  const int k_tiles = K2 / 16;
  if (tile >= (M / 16) * k_tiles) return;
  const int tm = tile / k_tiles, tk = tile % k_tiles;
  const int64_t r_begin = (int64_t)blockIdx.x * kChunkRows;
  const int64_t r_end = r_begin + kChunkRows < n_pad ? r_begin + kChunkRows : n_pad;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.f);
  for (int64_t r = r_begin; r < r_end; r += 16) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::col_major> a;  // A(o, r) = G[r, o]
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;  // B(r, k) = H[r, k]
    wmma::load_matrix_sync(a, G + r * M + tm * 16, M);
    wmma::load_matrix_sync(b, H + r * K2 + tk * 16, K2);
    wmma::mma_sync(acc, a, b, acc);
  }
  wmma::store_matrix_sync(partial + blockIdx.x * chunk_stride + (int64_t)tm * 16 * K2 + tk * 16, acc, K2,
                          wmma::mem_row_major);
#endif
}

// grad_w[o, k] = inv_scale * sum over chunks, in chunk order, of partial[chunk][o, k] (padded [., K2]).
__global__ void reduce_kernel(const float* __restrict__ partial, int64_t chunk_stride, int n_chunks, int out, int in,
                              int K2, const float* __restrict__ amax, float* __restrict__ grad_w) {
  const int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (int64_t)out * in) return;
  const float inv_scale = 1.f / mlp_fp16_loss_scale(*amax);  // a power of two: exact
  const int o = (int)(e / in), k = (int)(e % in);
  float sum = 0.f;
  for (int c = 0; c < n_chunks; ++c) sum += partial[c * chunk_stride + (int64_t)o * K2 + k];
  grad_w[e] = sum * inv_scale;
}

}  // namespace

bool mlp_cuda_supported(const MlpCudaDims& d) {
  const bool width_ok = d.n_layers == 1 || d.width == 16 || d.width == 32 || d.width == 64 || d.width == 128;
  return width_ok && d.n_layers >= 1 && d.n_layers <= kMlpMaxLayers && d.n_in >= 1 && d.n_in <= 128 &&
         d.n_out >= 1 && d.n_out <= 128;
}

int64_t mlp_cuda_padded_rows(int64_t n) { return (n + kRows - 1) / kRows * kRows; }
int mlp_cuda_padded_dim(int v) { return round_up(v, 16); }

std::vector<int64_t> mlp_cuda_weight_offsets(const MlpCudaDims& d) {
  const Geometry g = geometry(d, 0);
  return std::vector<int64_t>(g.w_off, g.w_off + d.n_layers);
}

int64_t mlp_cuda_weight_elements(const MlpCudaDims& d) {
  const Geometry g = geometry(d, 0);
  return g.w_off[d.n_layers - 1] + (int64_t)g.dp[d.n_layers] * g.dp[d.n_layers - 1];
}

int64_t mlp_cuda_grad_elements(const MlpCudaDims& d, int64_t n_pad) {
  int64_t cols = 0;
  for (int i = 1; i <= d.n_layers; ++i)
    cols += mlp_cuda_padded_dim(i == d.n_layers ? d.n_out : d.width);
  return n_pad * cols;
}

int64_t mlp_cuda_weight_grad_chunks(int64_t n_pad) { return std::max<int64_t>(1, (n_pad + kChunkRows - 1) / kChunkRows); }

void mlp_forward(const float* x, const void* w_half, float* y, void* x_half, void* hidden, int64_t n,
                 const MlpCudaDims& d, void* stream) {
  if (n == 0) return;
  const int64_t n_pad = mlp_cuda_padded_rows(n);
  const Geometry geo = geometry(d, n_pad);
  forward_kernel<<<(unsigned)(n_pad / kRows), kThreads, shared_bytes(geo), as_stream(stream)>>>(
      x, static_cast<const __half*>(w_half), y, static_cast<__half*>(x_half), static_cast<__half*>(hidden), n, n_pad,
      d, geo);
}

void mlp_backward(const void* x_half, const void* w_half, const void* hidden, const float* y, const float* grad_y,
                  float* amax, void* g, float* partial, float* grad_x, float* const* grad_w, int64_t n,
                  const MlpCudaDims& d, void* stream) {
  const int64_t n_pad = mlp_cuda_padded_rows(n);
  const Geometry geo = geometry(d, n_pad);
  cudaStream_t s = as_stream(stream);
  const __half* w = static_cast<const __half*>(w_half);
  __half* gh = static_cast<__half*>(g);
  if (n > 0) {
    const int64_t count = n * d.n_out;
    const unsigned blocks = (unsigned)std::min<int64_t>(div_up(count, 256), 1024);
    amax_kernel<<<blocks, 256, 0, s>>>(y, grad_y, count, d.out_act, reinterpret_cast<unsigned int*>(amax));
    backward_kernel<<<(unsigned)(n_pad / kRows), kThreads, shared_bytes(geo), s>>>(
        w, static_cast<const __half*>(hidden), y, grad_y, amax, gh, grad_x, n, n_pad, d, geo);
  }
  const int64_t n_chunks = mlp_cuda_weight_grad_chunks(n_pad);
  const int64_t chunk_stride = mlp_cuda_weight_elements(d);
  for (int i = 0; i < d.n_layers; ++i) {
    const int M = geo.dp[i + 1], K2 = geo.dp[i];
    const __half* H = i == 0 ? static_cast<const __half*>(x_half)
                             : static_cast<const __half*>(hidden) + (int64_t)(i - 1) * n_pad * K2;
    float* part = partial + geo.w_off[i];
    if (n > 0) {
      const dim3 grid((unsigned)n_chunks, (unsigned)(((M / 16) * (K2 / 16) + kWarps - 1) / kWarps));
      weight_grad_kernel<<<grid, kThreads, 0, s>>>(gh + geo.g_off[i], H, part, M, K2, n_pad, chunk_stride);
    } else {
      cudaMemsetAsync(part, 0, sizeof(float) * M * K2, s);  // no rows: the gradient is zero
    }
    const int out = i == d.n_layers - 1 ? d.n_out : d.width, in = i == 0 ? d.n_in : d.width;
    const int64_t total = (int64_t)out * in;
    reduce_kernel<<<(unsigned)((total + 255) / 256), 256, 0, s>>>(part, chunk_stride, n > 0 ? (int)n_chunks : 1, out,
                                                                   in, K2, amax, grad_w[i]);
  }
}

}  // namespace cuda
}  // namespace nerf_app
