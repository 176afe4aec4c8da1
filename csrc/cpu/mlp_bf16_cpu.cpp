// CPU fully fused MLP, inference in bf16: operands (x, weights, hidden activations) rounded to bf16
// (round to nearest even), products accumulated in fp32 by AVX-512 BF16's VDPBF16PS, which adds the
// products of 16 bf16 pairs into 16 fp32 lanes: twice the multiply-adds of an fp32 FMA per instruction,
// and half the bytes per activation. The output layer's result stays fp32.
//
// Same tiling as mlp_cpu.cpp: a tile of rows runs through every layer before the next one starts, its
// activations in a per-thread bf16 buffer. One register-blocked micro-kernel serves every layer:
//   C[MR x 16*NV] (fp32) = sum_p A(i, pair p) . B[p, 0:16*NV, pair]
// A is the bf16 activation tile, read as one 32-bit word (two consecutive columns) broadcast to all
// lanes; B is the weight matrix repacked once per call as [in/2][out_p][2] bf16, so that one 64-byte
// load gives 16 output columns' weights for the pair of inputs 2p, 2p+1.
//
// The build is -march=native, but a portable build (NERF_APP_PORTABLE=1) must compile this file and run
// on any x86-64: the kernel carries function-level target attributes and mlp_bf16_supported() checks the
// CPU at run time. Other architectures and compilers get a stub that reports no support.
#include "mlp_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 10)
#define NA_MLP_BF16 1
#include <immintrin.h>
#endif

namespace nerf_app {
namespace cpu {

#ifdef NA_MLP_BF16
namespace {

#define NA_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

constexpr int kLanes = 16;  // fp32 lanes of a zmm register = output columns per vector
constexpr int kMR = 6;      // rows per micro-kernel block: 6 x 4 accumulators + 4 B vectors + 1 broadcast
constexpr int kMaxNV = 4;   // column vectors per block (64 columns)
constexpr int kTile = 120;  // rows per tile (a multiple of kMR; 120 x 64 bf16 activations = 15 KiB)

inline float activate(int act, float z) {  // as mlp_cpu.cpp's (the output layer, in fp32)
  switch (act) {
    case kActRelu: return z > 0.f ? z : 0.f;
    case kActSigmoid: return 1.f / (1.f + std::exp(-z));
    case kActExp: return std::exp(z);
    default: return z;
  }
}

// fp32 -> bf16, round to nearest even (as VCVTNEPS2BF16 does; NaN stays NaN).
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

// Layer geometry: true widths d, the padded widths of activations (inputs: even; outputs of hidden
// layers: multiples of 16, which are also the next layer's inputs) and the packed bf16 weights.
struct NetBf16 {
  int L;
  std::vector<int> d, kp, np;             // kp[i]: padded input width of layer i; np[i]: padded output width
  std::vector<std::vector<uint16_t>> wp;  // wp[i]: [kp[i]/2][np[i]][2]

  NetBf16(const float* const* w, const MlpDims& s) : L(s.n_layers) {
    for (int i = 0; i <= L; ++i) d.push_back(i == 0 ? s.n_in : (i == L ? s.n_out : s.width));
    for (int i = 0; i < L; ++i) {
      np.push_back(round_up(d[i + 1], kLanes));
      kp.push_back(i == 0 ? round_up(d[0], 2) : np[i - 1]);
    }
    wp.resize(L);
    for (int i = 0; i < L; ++i) {
      const int in = d[i], out = d[i + 1];
      wp[i].assign((size_t)kp[i] * np[i], 0);
      for (int o = 0; o < out; ++o)
        for (int k = 0; k < in; ++k) wp[i][((size_t)(k / 2) * np[i] + o) * 2 + (k % 2)] = to_bf16(w[i][(size_t)o * in + k]);
    }
  }
  int max_width() const { return std::max(*std::max_element(kp.begin(), kp.end()), *std::max_element(np.begin(), np.end())); }
};

// One block: rows [0, MR) of A (bf16, row stride lda, K2 column pairs), columns [0, 16*NV) of B; the
// fp32 result goes through the epilogue: hidden layers apply `relu` and store bf16 into Cb, the output
// layer stores fp32 into Cf.
template <int MR, int NV>
NA_BF16_TARGET inline void block_bf16(int K2, const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb_pairs,
                                      bool relu, uint16_t* Cb, float* Cf, int64_t ldc) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int p = 0; p < K2; ++p) {
    __m512i b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512((const void*)(B + ((int64_t)p * ldb_pairs + v * kLanes) * 2));
    for (int i = 0; i < MR; ++i) {
      int32_t pair;
      std::memcpy(&pair, A + i * lda + 2 * p, sizeof pair);
      const __m512i a = _mm512_set1_epi32(pair);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)a, (__m512bh)b[v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      if (Cf) {
        _mm512_storeu_ps(Cf + i * ldc + v * kLanes, acc[i][v]);
      } else {
        const __m512 r = relu ? _mm512_max_ps(acc[i][v], _mm512_setzero_ps()) : acc[i][v];
        _mm256_storeu_si256((__m256i*)(Cb + i * ldc + v * kLanes), (__m256i)_mm512_cvtneps_pbh(r));
      }
    }
}

template <int NV>
NA_BF16_TARGET inline void block_rows_bf16(int mr, int K2, const uint16_t* A, int64_t lda, const uint16_t* B,
                                           int64_t ldb_pairs, bool relu, uint16_t* Cb, float* Cf, int64_t ldc) {
  switch (mr) {
    case 6: block_bf16<6, NV>(K2, A, lda, B, ldb_pairs, relu, Cb, Cf, ldc); break;
    case 5: block_bf16<5, NV>(K2, A, lda, B, ldb_pairs, relu, Cb, Cf, ldc); break;
    case 4: block_bf16<4, NV>(K2, A, lda, B, ldb_pairs, relu, Cb, Cf, ldc); break;
    case 3: block_bf16<3, NV>(K2, A, lda, B, ldb_pairs, relu, Cb, Cf, ldc); break;
    case 2: block_bf16<2, NV>(K2, A, lda, B, ldb_pairs, relu, Cb, Cf, ldc); break;
    default: block_bf16<1, NV>(K2, A, lda, B, ldb_pairs, relu, Cb, Cf, ldc); break;
  }
}

// C[M x N] = A[M x 2*K2] B, N a multiple of 16: 64-column panels, then one panel of the remaining 16-48.
NA_BF16_TARGET void gemm_bf16(int M, int N, int K2, const uint16_t* A, int64_t lda, const uint16_t* B, bool relu,
                              uint16_t* Cb, float* Cf, int64_t ldc) {
  for (int j0 = 0; j0 < N; j0 += kMaxNV * kLanes) {
    const int nv = std::min(kMaxNV, (N - j0) / kLanes);
    uint16_t* cb = Cb ? Cb + j0 : nullptr;
    float* cf = Cf ? Cf + j0 : nullptr;
    const uint16_t* b = B + (int64_t)j0 * 2;
    for (int i0 = 0; i0 < M; i0 += kMR) {
      const int mr = std::min(kMR, M - i0);
      const uint16_t* a = A + i0 * lda;
      uint16_t* cbi = cb ? cb + i0 * ldc : nullptr;
      float* cfi = cf ? cf + i0 * ldc : nullptr;
      switch (nv) {
        case 4: block_rows_bf16<4>(mr, K2, a, lda, b, N, relu, cbi, cfi, ldc); break;
        case 3: block_rows_bf16<3>(mr, K2, a, lda, b, N, relu, cbi, cfi, ldc); break;
        case 2: block_rows_bf16<2>(mr, K2, a, lda, b, N, relu, cbi, cfi, ldc); break;
        default: block_rows_bf16<1>(mr, K2, a, lda, b, N, relu, cbi, cfi, ldc); break;
      }
    }
  }
}

// x rows [m x n_in] fp32 -> bf16 [m x ldo], the columns n_in..ldo-1 zero.
NA_BF16_TARGET void convert_rows(const float* x, int m, int n_in, uint16_t* out, int ldo) {
  for (int r = 0; r < m; ++r) {
    for (int c = 0; c < ldo; c += kLanes) {
      const int left_in = std::max(0, std::min(kLanes, n_in - c)), left_out = std::min(kLanes, ldo - c);
      const __mmask16 load = (__mmask16)((1u << left_in) - 1u), store = (__mmask16)((1u << left_out) - 1u);
      const __m512 v = _mm512_maskz_loadu_ps(load, x + (int64_t)r * n_in + c);
      _mm256_mask_storeu_epi16(out + (int64_t)r * ldo + c, store, (__m256i)_mm512_cvtneps_pbh(v));
    }
  }
}

NA_BF16_TARGET void forward_bf16(const float* x, const float* const* weights, float* y, int64_t n, const MlpDims& s) {
  const NetBf16 net(weights, s);
  const int L = net.L, mw = net.max_width();
  const int64_t n_tiles = (n + kTile - 1) / kTile;
  at::parallel_for(0, n_tiles, 1, [&](int64_t t_begin, int64_t t_end) {
    std::vector<uint16_t> act(2 * (size_t)kTile * mw);  // ping-pong bf16 activations
    std::vector<float> out((size_t)kTile * net.np[L - 1]);
    uint16_t* buf[2] = {act.data(), act.data() + (size_t)kTile * mw};
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t r0 = t * kTile;
      const int m = (int)std::min<int64_t>(kTile, n - r0);
      convert_rows(x + r0 * s.n_in, m, s.n_in, buf[0], net.kp[0]);
      for (int i = 0; i < L; ++i) {
        const bool last = i == L - 1;
        gemm_bf16(m, net.np[i], net.kp[i] / 2, buf[i % 2], net.kp[i], net.wp[i].data(), s.act == kActRelu,
                  last ? nullptr : buf[(i + 1) % 2], last ? out.data() : nullptr, net.np[i]);
      }
      const int ldo = net.np[L - 1];
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < s.n_out; ++c) y[(r0 + r) * s.n_out + c] = activate(s.out_act, out[(size_t)r * ldo + c]);
    }
  });
}

}  // namespace

bool mlp_bf16_supported() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return ok;
}

void mlp_forward_bf16(const float* x, const float* const* weights, float* y, int64_t n, const MlpDims& s) {
  if (!mlp_bf16_supported()) throw std::runtime_error("mlp_forward_bf16: this CPU lacks avx512_bf16");
  if (mlp_amx_supported()) {  // the same arithmetic on the AMX unit (mlp_amx_cpu.cpp): 2.7-4x this kernel's rows/s here
    mlp_forward_amx(mlp_bf16_pack(weights, s), x, y, n);
    return;
  }
  forward_bf16(x, weights, y, n, s);
}

#else  // not x86-64 GCC/Clang: no bf16 kernel

bool mlp_bf16_supported() { return false; }

void mlp_forward_bf16(const float*, const float* const*, float*, int64_t, const MlpDims&) {
  throw std::runtime_error("mlp_forward_bf16: not compiled for this architecture");
}

#endif

}  // namespace cpu
}  // namespace nerf_app
