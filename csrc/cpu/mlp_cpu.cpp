// CPU fully fused MLP. Rows are processed in tiles of kTile; a tile runs through every layer (and,
// in the backward, every layer's dX and dW) before the next tile starts, so its activations stay in
// L1/L2 instead of streaming through memory once per layer as separate GEMM calls do.
//
// All products are one register-blocked micro-kernel: C[MR x 8*NV] = sum_p A(i, p) * B[p, 0:8*NV],
// with A read as broadcast scalars (any stride, any K) and B as rows of 8-float vectors. That shape
// serves all three products of a layer:
//   forward  H_out = H_in W^T   A = H_in  (row-major), B = W^T [in, out_p]
//   backward dH    = G W        A = G     (row-major), B = W   [out, in_p]
//   weights  dW   += G^T H_in   A = G^T   (strided),   B = H_in rows, summed over the tile's rows
// and the activation, its derivative mask and the dW accumulation are fused into the stores.
// Vector widths that B and C need are met by zero-padding columns to multiples of 8 internally.
#include "mlp_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__FMA__) || defined(__AVX__)
#include <immintrin.h>
#endif

namespace nerf_app {
namespace cpu {
namespace {

#if defined(__AVX512F__)
// 16 floats: one AVX-512 register (-march=native on a CPU with AVX-512: twice the FMA width of AVX2, and
// 32 registers). Each output is still one FMA chain over p in order, so results equal the 8-wide build's.
typedef float vf8 __attribute__((vector_size(64)));
typedef int vi8 __attribute__((vector_size(64)));
constexpr int kVec = 16;
constexpr int kMR = 6;      // micro-kernel rows: 6 x 4 accumulators + 4 B vectors + 1 broadcast
constexpr int kNV = 4;      // = 29 of the 32 AVX-512 registers
#else
// 8 floats: one AVX register with -march=native, two SSE registers (or scalar code) elsewhere.
typedef float vf8 __attribute__((vector_size(32)));
typedef int vi8 __attribute__((vector_size(32)));
constexpr int kVec = 8;
constexpr int kMR = 6;      // micro-kernel rows: 6 x 16 accumulators + 2 B vectors + 1 broadcast
constexpr int kNV = 2;      // = 15 of the 16 AVX registers
#endif
constexpr int kTile = 128;  // rows per tile: a [128 x 64] float activation block is 32 KiB (L1/L2);
                            // 128 measured ~7% faster than 64 (fewer per-tile dW partial updates)
constexpr int kMaxChunks = 64;  // weight-gradient partials: at most this many, independent of threads

inline vf8 vload(const float* p) {
  vf8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, vf8 v) { std::memcpy(p, &v, sizeof v); }
inline vf8 vbroadcast(const float* p) {
#if defined(__AVX512F__)
  return (vf8)_mm512_set1_ps(*p);
#elif defined(__AVX__)
  return (vf8)_mm256_broadcast_ss(p);  // one load uop; `vf8{} + s` would add a real (non-foldable) 0 + s
#else
  const float s = *p;
  return vf8{s, s, s, s, s, s, s, s};
#endif
}
inline vf8 vfma(vf8 a, vf8 b, vf8 c) {
#if defined(__AVX512F__)
  return (vf8)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__)
  return (vf8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return a * b + c;  // the build uses -ffp-contract=off, so this stays a separate multiply and add
#endif
}
inline vf8 vselect_positive(vf8 mask_src, vf8 v) {  // v where mask_src > 0, else 0
  const vi8 keep = mask_src > vf8{};
  return (vf8)((vi8)v & keep);
}

// acc[i][v] = sum_{p<K} A[i*as + p*ps] * B[p*ldb + 8v : +8]
template <int MR, int NV>
inline void micro_kernel(int K, const float* A, int64_t as, int64_t ps, const float* B, int64_t ldb,
                         vf8 (&acc)[kMR][kNV]) {
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = vf8{};
  for (int p = 0; p < K; ++p) {
    vf8 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = vload(B + p * ldb + v * kVec);
    for (int i = 0; i < MR; ++i) {
      const vf8 a = vbroadcast(A + i * as + p * ps);
      for (int v = 0; v < NV; ++v) acc[i][v] = vfma(a, b[v], acc[i][v]);
    }
  }
}

// What happens to a finished accumulator block (rows i0.., columns j0..) of C.
enum class Store { kPlain, kRelu, kMaskByPositive, kAccumulate };

struct Epilogue {
  float* C;
  int64_t ldc;
  const float* mask = nullptr;  // kMaskByPositive: keep C where mask > 0 (ReLU' from its output)
  int64_t ldm = 0;
};

template <Store MODE, int MR, int NV>
inline void store_block(const Epilogue& e, int i0, int j0, vf8 (&acc)[kMR][kNV]) {
  for (int i = 0; i < MR; ++i) {
    float* c = e.C + (i0 + i) * e.ldc + j0;
    for (int v = 0; v < NV; ++v) {
      vf8 r = acc[i][v];
      if (MODE == Store::kRelu) r = vselect_positive(r, r);
      if (MODE == Store::kMaskByPositive) r = vselect_positive(vload(e.mask + (i0 + i) * e.ldm + j0 + v * kVec), r);
      if (MODE == Store::kAccumulate) r = r + vload(c + v * kVec);
      vstore(c + v * kVec, r);
    }
  }
}

template <Store MODE, int MR, int NV>
inline void block(int K, const float* A, int64_t as, int64_t ps, const float* B, int64_t ldb, const Epilogue& e,
                  int i0, int j0) {
  vf8 acc[kMR][kNV];
  micro_kernel<MR, NV>(K, A + i0 * as, as, ps, B + j0, ldb, acc);
  store_block<MODE, MR, NV>(e, i0, j0, acc);
}

template <Store MODE, int NV>
inline void block_rows(int mr, int K, const float* A, int64_t as, int64_t ps, const float* B, int64_t ldb,
                       const Epilogue& e, int i0, int j0) {
  switch (mr) {
    case 6: block<MODE, 6, NV>(K, A, as, ps, B, ldb, e, i0, j0); break;
    case 5: block<MODE, 5, NV>(K, A, as, ps, B, ldb, e, i0, j0); break;
    case 4: block<MODE, 4, NV>(K, A, as, ps, B, ldb, e, i0, j0); break;
    case 3: block<MODE, 3, NV>(K, A, as, ps, B, ldb, e, i0, j0); break;
    case 2: block<MODE, 2, NV>(K, A, as, ps, B, ldb, e, i0, j0); break;
    default: block<MODE, 1, NV>(K, A, as, ps, B, ldb, e, i0, j0); break;
  }
}

// C[M x N] (N a multiple of 8) = sum_{p<K} A(i, p) B[p, :], finished by the epilogue MODE.
template <Store MODE>
void gemm_mode(int M, int N, int K, const float* A, int64_t as, int64_t ps, const float* B, int64_t ldb,
               const Epilogue& e) {
  // column panels outer: a K x 16 panel of B stays in L1 while the rows stream past it
  int j0 = 0;
  for (; j0 + kNV * kVec <= N; j0 += kNV * kVec)
    for (int i0 = 0; i0 < M; i0 += kMR) block_rows<MODE, kNV>(std::min(kMR, M - i0), K, A, as, ps, B, ldb, e, i0, j0);
  for (; j0 < N; j0 += kVec)  // the last < kNV vectors, one at a time
    for (int i0 = 0; i0 < M; i0 += kMR) block_rows<MODE, 1>(std::min(kMR, M - i0), K, A, as, ps, B, ldb, e, i0, j0);
}

void gemm(Store mode, int M, int N, int K, const float* A, int64_t as, int64_t ps, const float* B, int64_t ldb,
          const Epilogue& e) {
  switch (mode) {
    case Store::kRelu: gemm_mode<Store::kRelu>(M, N, K, A, as, ps, B, ldb, e); break;
    case Store::kMaskByPositive: gemm_mode<Store::kMaskByPositive>(M, N, K, A, as, ps, B, ldb, e); break;
    case Store::kAccumulate: gemm_mode<Store::kAccumulate>(M, N, K, A, as, ps, B, ldb, e); break;
    default: gemm_mode<Store::kPlain>(M, N, K, A, as, ps, B, ldb, e); break;
  }
}

// Per-call layer geometry and the weights repacked (zero-padded) in the two layouts B needs.
struct Net {
  int L;
  std::vector<int> d, dp;                  // true and padded (to 8) widths, L+1 entries
  std::vector<std::vector<float>> wt, wn;  // wt[i]: W_i^T [d_i, dp_{i+1}];  wn[i]: W_i [d_{i+1}, dp_i]

  Net(const float* const* w, const MlpDims& s, bool transposed, bool natural) : L(s.n_layers) {
    for (int i = 0; i <= L; ++i) {
      d.push_back(i == 0 ? s.n_in : (i == L ? s.n_out : s.width));
      dp.push_back(round_up(d.back(), kVec));
    }
    wt.resize(L);
    wn.resize(L);
    for (int i = 0; i < L; ++i) {
      const int out = d[i + 1], in = d[i];
      if (transposed) {
        wt[i].assign((size_t)in * dp[i + 1], 0.f);
        for (int o = 0; o < out; ++o)
          for (int k = 0; k < in; ++k) wt[i][(size_t)k * dp[i + 1] + o] = w[i][(size_t)o * in + k];
      }
      if (natural) {
        wn[i].assign((size_t)out * dp[i], 0.f);
        for (int o = 0; o < out; ++o)
          for (int k = 0; k < in; ++k) wn[i][(size_t)o * dp[i] + k] = w[i][(size_t)o * in + k];
      }
    }
  }
  int max_dp() const { return *std::max_element(dp.begin(), dp.end()); }
};

inline float activate(int act, float z) {
  switch (act) {
    case kActRelu: return z > 0.f ? z : 0.f;
    case kActSigmoid: return 1.f / (1.f + std::exp(-z));
    case kActExp: return std::exp(z);
    default: return z;
  }
}

}  // namespace

int mlp_cpu_hidden_width(int width) { return round_up(width, kVec); }

void mlp_forward(const float* x, const float* const* weights, float* y, float* hidden, int64_t n,
                 const MlpDims& s) {
  const Net net(weights, s, /*transposed=*/true, /*natural=*/false);
  const int L = net.L;
  const int64_t n_tiles = (n + kTile - 1) / kTile;
  at::parallel_for(0, n_tiles, 1, [&](int64_t t_begin, int64_t t_end) {
    // ping-pong tile buffers for layers that are not saved, and the padded output tile
    std::vector<float> buf(3 * (size_t)kTile * net.max_dp());
    float* local[2] = {buf.data(), buf.data() + (size_t)kTile * net.max_dp()};
    float* out_tile = buf.data() + 2 * (size_t)kTile * net.max_dp();
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t r0 = t * kTile;
      const int m = (int)std::min<int64_t>(kTile, n - r0);
      const float* in = x + r0 * s.n_in;
      int64_t ld_in = s.n_in;
      for (int i = 0; i < L; ++i) {
        const bool last = i == L - 1;
        float* out = last ? out_tile : (hidden ? hidden + ((int64_t)i * n + r0) * net.dp[i + 1] : local[i % 2]);
        const Store mode = (!last && s.act == kActRelu) ? Store::kRelu : Store::kPlain;
        gemm(mode, m, net.dp[i + 1], net.d[i], in, ld_in, 1, net.wt[i].data(), net.dp[i + 1],
             Epilogue{out, net.dp[i + 1]});
        in = out;
        ld_in = net.dp[i + 1];
      }
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < s.n_out; ++c)
          y[(r0 + r) * s.n_out + c] = activate(s.out_act, out_tile[(int64_t)r * net.dp[L] + c]);
    }
  });
}

void mlp_backward(const float* x, const float* const* weights, const float* hidden, const float* y,
                  const float* grad_y, float* grad_x, float* const* grad_weights, int64_t n, const MlpDims& s) {
  const Net net(weights, s, /*transposed=*/false, /*natural=*/true);
  const int L = net.L;
  // One padded [d_{i+1}, dp_i] block per layer, per chunk.
  std::vector<int64_t> w_off(L + 1, 0);
  for (int i = 0; i < L; ++i) w_off[i + 1] = w_off[i] + (int64_t)net.d[i + 1] * net.dp[i];
  const int64_t n_tiles = (n + kTile - 1) / kTile;
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(kMaxChunks, n_tiles));
  std::vector<float> partial((size_t)(n_chunks * w_off[L]), 0.f);
  const bool pad_x = s.n_in % kVec != 0;  // x rows must be 8-float aligned to serve as B of dW_0
  const int mdp = net.max_dp();

  at::parallel_for(0, n_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    std::vector<float> buf(3 * (size_t)kTile * mdp, 0.f);
    float* g = buf.data();                          // gradient wrt the current layer's pre-activation
    float* g_next = g + (size_t)kTile * mdp;        // ... of the layer below
    float* x_tile = g_next + (size_t)kTile * mdp;   // padded copy of x (or of grad_x) when n_in % 8
    for (int64_t c = c_begin; c < c_end; ++c) {
      float* dw = partial.data() + c * w_off[L];
      // chunk c owns tiles [c*T/C, (c+1)*T/C): balanced, and a function of N only
      for (int64_t t = c * n_tiles / n_chunks; t < (c + 1) * n_tiles / n_chunks; ++t) {
        const int64_t r0 = t * kTile;
        const int m = (int)std::min<int64_t>(kTile, n - r0);
        const int dpo = net.dp[L];
        for (int r = 0; r < m; ++r)
          for (int j = 0; j < dpo; ++j) {
            const int64_t k = (r0 + r) * s.n_out + j;
            g[r * dpo + j] = j < s.n_out ? grad_y[k] * activation_grad_from_output(s.out_act, y[k]) : 0.f;
          }
        for (int i = L - 1; i >= 0; --i) {
          const int out = net.d[i + 1], ldg = net.dp[i + 1], ldin = net.dp[i];
          const float* in;
          if (i > 0) {
            in = hidden + ((int64_t)(i - 1) * n + r0) * ldin;
          } else if (pad_x) {
            for (int r = 0; r < m; ++r)
              for (int k = 0; k < ldin; ++k) x_tile[r * ldin + k] = k < s.n_in ? x[(r0 + r) * s.n_in + k] : 0.f;
            in = x_tile;
          } else {
            in = x + r0 * s.n_in;
          }
          // dW_i[o, :] += sum_r g[r, o] in[r, :]   (rows of A = o, reduction over the tile's rows)
          gemm(Store::kAccumulate, out, ldin, m, g, 1, ldg, in, ldin, Epilogue{dw + w_off[i], ldin});
          if (i > 0) {
            // g_next = (g W_i) * a'(h_i), a' from the saved activation h_i = in
            const Store mode = s.act == kActRelu ? Store::kMaskByPositive : Store::kPlain;
            gemm(mode, m, ldin, out, g, ldg, 1, net.wn[i].data(), ldin, Epilogue{g_next, ldin, in, ldin});
            std::swap(g, g_next);
          } else if (grad_x) {
            float* dst = pad_x ? x_tile : grad_x + r0 * s.n_in;
            gemm(Store::kPlain, m, ldin, out, g, ldg, 1, net.wn[0].data(), ldin, Epilogue{dst, ldin});
            if (pad_x)
              for (int r = 0; r < m; ++r)
                std::memcpy(grad_x + (r0 + r) * s.n_in, x_tile + r * ldin, sizeof(float) * s.n_in);
          }
        }
      }
    }
  });

  // Reduce the chunk partials in chunk order (fixed, so the sums are reproducible).
  for (int i = 0; i < L; ++i) {
    const int out = net.d[i + 1], in = net.d[i], ldin = net.dp[i];
    at::parallel_for(0, out, 1, [&](int64_t o_begin, int64_t o_end) {
      for (int64_t o = o_begin; o < o_end; ++o) {
        float* dst = grad_weights[i] + o * in;
        for (int k = 0; k < in; ++k) dst[k] = 0.f;
        for (int64_t c = 0; c < n_chunks; ++c) {
          const float* src = partial.data() + c * w_off[L] + w_off[i] + o * ldin;
          for (int k = 0; k < in; ++k) dst[k] += src[k];
        }
      }
    });
  }
}

}  // namespace cpu
}  // namespace nerf_app
