// CPU fully fused MLP, inference in bf16 on AMX tiles (Intel Advanced Matrix Extensions): the same
// arithmetic as mlp_bf16_cpu.cpp (operands rounded to bf16, round to nearest even; products of bf16 pairs
// accumulated in fp32; hidden activations rounded to bf16 again; the output layer's result in fp32), done
// by TDPBF16PS, which multiplies a 16 x 32 bf16 tile by a 32 x 16 one into a 16 x 16 fp32 tile: 8192
// multiply-adds per instruction, against 256 for an fp32 AVX-512 FMA pair.
//
// Why: measured on this box (docs/benchmarks.md, issue 28), AVX-512 BF16's dot product runs at half the
// fp32 FMA rate, so the VDPBF16PS kernel never beat the fp32 one; the AMX unit is the one with a real bf16
// advantage. The per-row order of the fp32 additions differs from the VDPBF16PS kernel only inside each pair
// of products (AMX adds the even product first), so the two agree to fp32 rounding, not bit for bit.
//
// Layout: a block of 16 rows runs through every layer before the next block starts. Activations are bf16
// rows of kp[i] columns (a multiple of 32: one A tile per 32 columns); weights are packed once per pack
// as [kp/2][np][2] bf16 (one B tile: 16 input pairs x 16 output columns, 64 bytes a row); each layer's fp32
// result goes through a [16][np] buffer where the epilogue (activation, rounding to bf16) runs in AVX-512.
// Rows of a block beyond the batch are zero and never written out; each row's result depends on that row
// only, so a batch's rows come out the same however the batch is cut.
//
// Tiles: 0-3 accumulators (up to 64 output columns at a time), 4 the activations, 5-7 the weights.
// AMX state is per thread: each thread loads the tile configuration at the start of its share and
// releases the tiles at its end. The OS must grant the tile data (Linux: arch_prctl ARCH_REQ_XCOMP_PERM),
// which mlp_amx_supported() asks for once. Like the VDPBF16PS kernel, this one carries function-level target
// attributes, so a portable build compiles it and the CPU is asked at run time.
#include "mlp_cpu.h"
#include "simd_exp.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 11)
#define NA_MLP_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace nerf_app {
namespace cpu {

namespace {

constexpr int kRows = 16;   // rows of every tile
constexpr int kKCols = 32;  // bf16 columns of an activation tile (64 bytes)
constexpr int kNCols = 16;  // fp32 columns of an accumulator tile (64 bytes)

// fp32 -> bf16, round to nearest even (as VCVTNEPS2BF16; NaN stays NaN). Packing runs once per pack.
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

}  // namespace

MlpBf16Weights mlp_bf16_pack(const float* const* w, const MlpDims& s) {
  MlpBf16Weights net;
  net.dims = s;
  const int L = s.n_layers;
  std::vector<int> d;
  for (int i = 0; i <= L; ++i) d.push_back(i == 0 ? s.n_in : (i == L ? s.n_out : s.width));
  for (int i = 0; i < L; ++i) {
    net.np.push_back(round_up(d[i + 1], kNCols));
    net.kp.push_back(round_up(i == 0 ? d[0] : net.np[i - 1], kKCols));
  }
  net.w.resize(L);
  for (int i = 0; i < L; ++i) {
    const int in = d[i], out = d[i + 1], np = net.np[i];
    net.w[i].assign((size_t)net.kp[i] * np, 0);
    for (int o = 0; o < out; ++o)
      for (int k = 0; k < in; ++k) net.w[i][((size_t)(k / 2) * np + o) * 2 + (k % 2)] = to_bf16(w[i][(size_t)o * in + k]);
  }
  return net;
}

#ifdef NA_MLP_AMX
namespace {

#define NA_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

NA_AMX_TARGET void load_tile_config() {
  TileConfig c;
  std::memset(&c, 0, sizeof c);
  c.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    c.rows[t] = kRows;
    c.colsb[t] = 64;
  }
  _tile_loadconfig(&c);
}

// Rows [0, m) of x (fp32, n_in columns) -> a [16][ld] bf16; columns n_in..ld-1 and rows m..15 zero.
NA_AMX_TARGET void load_rows(const float* x, int m, int n_in, uint16_t* a, int ld) {
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < ld; c += 16) {
      const int left = r < m ? std::max(0, std::min(16, n_in - c)) : 0;
      const __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << left) - 1u), x + (int64_t)r * n_in + c);
      _mm256_storeu_si256((__m256i*)(a + (int64_t)r * ld + c), (__m256i)_mm512_cvtneps_pbh(v));
    }
  }
}

// One layer for a block of 16 rows: cf [16][np] (fp32) = a [16][kp] (bf16) . w.
NA_AMX_TARGET void layer_tiles(const uint16_t* a, int kp, const uint16_t* w, int np, float* cf) {
  const int kb_n = kp / kKCols, nb_n = np / kNCols;
  const int ldb = np * 4;  // bytes of one B row: one input pair, np columns x 2 bf16
  for (int nb0 = 0; nb0 < nb_n; nb0 += 4) {
    const int nc = std::min(4, nb_n - nb0);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int kb = 0; kb < kb_n; ++kb) {
      _tile_loadd(4, a + kb * kKCols, kp * 2);
      const uint16_t* b = w + ((int64_t)kb * 16 * np + nb0 * kNCols) * 2;  // 16 pairs per A tile
      _tile_loadd(5, b, ldb);
      _tile_dpbf16ps(0, 4, 5);
      if (nc > 1) {
        _tile_loadd(6, b + 2 * kNCols, ldb);
        _tile_dpbf16ps(1, 4, 6);
      }
      if (nc > 2) {
        _tile_loadd(7, b + 4 * kNCols, ldb);
        _tile_dpbf16ps(2, 4, 7);
      }
      if (nc > 3) {
        _tile_loadd(5, b + 6 * kNCols, ldb);
        _tile_dpbf16ps(3, 4, 5);
      }
    }
    float* c = cf + nb0 * kNCols;
    _tile_stored(0, c, ldb);
    if (nc > 1) _tile_stored(1, c + kNCols, ldb);
    if (nc > 2) _tile_stored(2, c + 2 * kNCols, ldb);
    if (nc > 3) _tile_stored(3, c + 3 * kNCols, ldb);
  }
}

// A hidden layer's epilogue: cf [16][np] -> activation -> bf16 into a [16][ld] (ld >= np; the rest zero).
NA_AMX_TARGET void hidden_out(const float* cf, int np, bool relu, uint16_t* a, int ld) {
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < ld; c += 16) {
      __m512 v = c < np ? _mm512_loadu_ps(cf + (int64_t)r * np + c) : _mm512_setzero_ps();
      if (relu) v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ), v);  // z > 0 ? z : 0
      _mm256_storeu_si256((__m256i*)(a + (int64_t)r * ld + c), (__m256i)_mm512_cvtneps_pbh(v));
    }
  }
}

// exp512 (simd_exp.h): e^x for 16 lanes within ~2 ulp of expf.

// The output layer's epilogue: rows [0, m) of cf [16][np] -> activation (fp32) -> y [m][n_out], in AVX-512:
// column c of the 16 rows is gathered into one vector and scattered to its rows of y (the NeRF's colour
// network has 3 output columns). Sigmoid and exp through exp512, not libm's expf: within a few fp32 ulp,
// far inside the bf16 error of the layers before.
NA_AMX_TARGET void output_rows(const float* cf, int np, int m, int n_out, int act, float* y) {
  const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i from = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(np));
  const __m512i to = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(n_out));
  const __mmask16 rows = (__mmask16)((1u << m) - 1u);
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  for (int c = 0; c < n_out; ++c) {
    __m512 v = _mm512_i32gather_ps(from, cf + c, 4);
    switch (act) {
      case kActRelu: v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ), v); break;
      case kActSigmoid: v = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(zero, v)))); break;
      case kActExp: v = exp512(v); break;
      default: break;
    }
    _mm512_mask_i32scatter_ps(y + c, rows, to, v, 4);
  }
}

struct Buffers {
  std::vector<uint16_t> a[2];
  std::vector<float> cf;
  explicit Buffers(const MlpBf16Weights& net) {
    const int kmax = *std::max_element(net.kp.begin(), net.kp.end());
    const int nmax = *std::max_element(net.np.begin(), net.np.end());
    a[0].assign((size_t)kRows * kmax, 0);
    a[1].assign((size_t)kRows * kmax, 0);
    cf.assign((size_t)kRows * nmax, 0.f);
  }
};

// Rows [0, m) (m <= 16) of x through every layer into y.
NA_AMX_TARGET void block16(const MlpBf16Weights& net, const float* x, int m, float* y, Buffers& b) {
  const MlpDims& s = net.dims;
  const int L = s.n_layers;
  load_rows(x, m, s.n_in, b.a[0].data(), net.kp[0]);
  for (int i = 0; i < L; ++i) {
    layer_tiles(b.a[i % 2].data(), net.kp[i], net.w[i].data(), net.np[i], b.cf.data());
    if (i + 1 < L) {
      hidden_out(b.cf.data(), net.np[i], s.act == kActRelu, b.a[(i + 1) % 2].data(), net.kp[i + 1]);
    } else {
      output_rows(b.cf.data(), net.np[i], m, s.n_out, s.out_act, y);
    }
  }
}

NA_AMX_TARGET void forward_rows(const MlpBf16Weights& net, const float* x, float* y, int64_t begin, int64_t end) {
  Buffers b(net);
  load_tile_config();
  const MlpDims& s = net.dims;
  for (int64_t r0 = begin; r0 < end; r0 += kRows) {
    const int m = (int)std::min<int64_t>(kRows, end - r0);
    block16(net, x + r0 * s.n_in, m, y + r0 * s.n_out, b);
  }
  _tile_release();
}

// NERF_APP_MLP_AMX=0 takes the VDPBF16PS kernel instead (tests compare the two; a benchmark may too).
bool amx_disabled_by_env() {
  const char* v = std::getenv("NERF_APP_MLP_AMX");
  if (!v) return false;
  const std::string s(v);
  return s == "0" || s == "off" || s == "no" || s == "false";
}

bool amx_hardware_ready() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE: XGETBV usable
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!(d & (1u << 24)) || !(d & (1u << 22))) return false;  // AMX-TILE, AMX-BF16
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return false;  // the OS saves XTILECFG and XTILEDATA
  // Linux hands out the (8 KiB) tile data state only on request, once per process.
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

bool mlp_amx_supported() {
  static const bool ok = mlp_bf16_supported() && amx_hardware_ready();
  return ok && !amx_disabled_by_env();
}

void mlp_forward_amx(const MlpBf16Weights& net, const float* x, float* y, int64_t n) {
  if (!mlp_amx_supported()) throw std::runtime_error("mlp_forward_amx: this CPU or OS has no AMX-BF16 tiles");
  // Shares of whole 16-row blocks; a share of a few blocks already amortises the tile configuration.
  const int64_t blocks = (n + kRows - 1) / kRows;
  at::parallel_for(0, blocks, 8, [&](int64_t b0, int64_t b1) {
    forward_rows(net, x, y, b0 * kRows, std::min(n, b1 * kRows));
  });
}

#else  // not x86-64 Linux with GCC >= 11 / Clang: no AMX kernel

bool mlp_amx_supported() { return false; }

void mlp_forward_amx(const MlpBf16Weights&, const float*, float*, int64_t) {
  throw std::runtime_error("mlp_forward_amx: not compiled for this platform");
}

#endif

}  // namespace cpu
}  // namespace nerf_app
