// The fused inference render of a NeRF on the CPU: each worker keeps a tile of live rays and, per round,
// marches them, encodes the samples, runs both MLPs and composites without returning to torch. The
// definition it must match is nerf_app/nerf/renderer.py::render_rays_early_stop composed of the ops (the
// reference twin); every per-sample body is the shared code of those ops: march_ray (march_math.h), the
// hash-grid and MLP kernels, sh_basis, render_ray_forward.
//
// Why: a frame through the composed ops spends most of its time between kernels (indexing the live rays,
// cat, index_add, allocating each round's [S, 32] features), and each stage streams its samples through
// memory once (docs/benchmarks.md, the roofline's per-stage table). Here a tile's samples stay in cache.
//
// Per ray the result does not depend on which worker took it, on the tile's other rays or on the thread
// count: a ray's rounds (round_samples, doubling to round_samples_max, resumed where the last stopped),
// its samples and its compositing order are its own, and the MLP and hash-grid kernels compute each row
// independently of the rows beside it.
#include "render_fused_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "fused_march.h"
#include "hashgrid_cpu.h"
#include "sh_math.h"
#include "volume_render_math.h"

namespace nerf_app {
namespace cpu {
namespace {

constexpr int kBatch = 4096;       // samples per worker and round at most (slots x round_samples_max): they stay in L2
                                   // (4096: 2.5 % faster than 2048 on a cup view with AMX MLPs; 8192 no faster)
constexpr int kMinSlots = 32;      // live rays per worker at least (a huge round_samples_max)
constexpr int64_t kBlock = 32;     // rays a worker takes from the shared queue at a time (load balance)
constexpr int kMaxSh = 16;         // degree 4

struct Slot {
  int64_t ray = -1;
  float t, trans, c[3], depth;
  int k;
  int64_t samples;
  int begin, count;
  float c_op, c_dep;  // this round's opacity and depth
  float sh[kMaxSh];
};

// A worker's per-round buffers, kept per thread from one call to the next (one call per frame: every view
// of an eval, every frame of a video): fresh buffers each call cost page faults (measured: ~4 % of a cup
// frame in the kernel's clear_page).
struct Scratch {
  std::vector<float> xu, t0, t1, feat, h, sigma, w, zeros, cin, rgb;
  std::vector<int> need_slot;
};

Scratch& thread_scratch() {
  static thread_local Scratch s;
  return s;
}

class Worker {
 public:
  Worker(const float* o, const float* d, const float* t_near, const float* t_far, const float* bg, int64_t bg_stride,
         const FusedField& f, const FusedMarch& m, float* color, float* depth, float* opacity, int64_t* n_samples,
         int64_t n, std::atomic<int64_t>* next)
      : o_(o), d_(d), t_near_(t_near), t_far_(t_far), bg_(bg), bg_stride_(bg_stride), f_(f), m_(m), color_(color),
        depth_(depth), opacity_(opacity), n_samples_(n_samples), n_(n), next_(next) {
    steps_ = FusedSteps{m.bitfield, m.n_cascades, m.resolution, m.dt_min, m.dt_max, m.cone_angle};
    const int k_max = std::max(std::max(1, m.round_samples), m.round_samples_max);
    k_max_ = k_max;
    n_slots_ = std::max(kMinSlots, kBatch / k_max);  // short rounds: more rays in flight, batches stay full
    cap_ = (int64_t)n_slots_ * k_max;
    enc_dim_ = f.levels.n_levels * f.features;
    geo_ = f.density.n_out;
    sh_dim_ = f.sh_degree * f.sh_degree;
    col_in_ = sh_dim_ + geo_;
    xu_.resize(cap_ * 3);
    t0_.resize(cap_);
    t1_.resize(cap_);
    feat_.resize(cap_ * enc_dim_);
    h_.resize(cap_ * geo_);
    sigma_.resize(cap_);
    w_.resize(cap_);
    zeros_.assign(cap_ * 3, 0.f);
    cin_.resize(cap_ * col_in_);
    rgb_.resize(cap_ * 3);
    need_slot_.resize(cap_);
  }

  void run() {
    std::vector<Slot> slots(n_slots_);
    while (true) {
      int live = 0;
      for (Slot& s : slots) {
        while (s.ray < 0 && take(s)) {
        }
        live += s.ray >= 0;
      }
      if (!live) return;
      march(slots);
      shade(slots);
    }
  }

 private:
  // The next ray of the queue into slot s; rays with an empty interval are written out at once. False when
  // the queue is empty.
  bool take(Slot& s) {
    if (pos_ >= end_) {
      pos_ = next_->fetch_add(kBlock);
      if (pos_ >= n_) return false;
      end_ = std::min(n_, pos_ + kBlock);
    }
    const int64_t r = pos_++;
    s.ray = r;
    s.t = t_near_[r];
    s.trans = 1.f;
    s.c[0] = s.c[1] = s.c[2] = 0.f;
    s.depth = 0.f;
    s.k = std::max(1, m_.round_samples);
    s.samples = 0;
    if (!(s.t < t_far_[r])) {  // render_rays_early_stop never marches it
      finish(s);
      return true;
    }
    const float* d = d_ + 3 * r;
    sh_basis<float>(d[0], d[1], d[2], f_.sh_degree, s.sh, nullptr);
    return true;
  }

  void finish(Slot& s) {
    const int64_t r = s.ray;
    const float* bg = bg_ + bg_stride_ * r;
    for (int c = 0; c < 3; ++c) color_[3 * r + c] = s.c[c] + s.trans * bg[c];
    depth_[r] = s.depth;
    opacity_[r] = 1.f - s.trans;
    n_samples_[r] = s.samples;
    s.ray = -1;
  }

  // Up to k samples per live ray, resumed at t (fused_march.h).
  void march(std::vector<Slot>& slots) {
    n_samp_ = march_slots(slots, o_, d_, t_far_, f_, steps_, xu_.data(), t0_.data(), t1_.data());
    for (Slot& s : slots)
      if (s.ray >= 0) s.samples += s.count;
  }

  void mlp(const float* x, const float* const* w, const MlpBf16Weights* amx, float* y, int64_t n,
           const MlpDims& dims) {
    if (amx)
      mlp_forward_amx(*amx, x, y, n);
    else if (f_.bf16)
      mlp_forward_bf16(x, w, y, n, dims);
    else
      mlp_forward(x, w, y, nullptr, n, dims);
  }

  void shade(std::vector<Slot>& slots) {
    const int S = n_samp_;
    if (S > 0) {
      hashgrid_forward<float>(xu_.data(), f_.table, feat_.data(), S, 3, f_.features, f_.levels, f_.smoothstep);
      mlp(feat_.data(), f_.density_w, f_.density_amx, h_.data(), S, f_.density);
      for (int i = 0; i < S; ++i) sigma_[i] = std::exp(h_[(int64_t)i * geo_] + f_.density_bias);
    }
    // densities -> weights per ray; the samples whose weight along the whole ray passes min_weight get colour
    int n_need = 0;
    for (Slot& s : slots) {
      if (s.ray < 0 || s.count == 0) continue;
      float unused[3], op, dep;
      render_ray_forward(sigma_.data(), zeros_.data(), t0_.data(), t1_.data(), s.begin, s.count, 0.f, w_.data(),
                         unused, &op, &dep);
      s.c_op = op;
      s.c_dep = dep;
      for (int i = s.begin; i < s.begin + s.count; ++i) {
        if (!(w_[i] * s.trans >= m_.min_weight)) continue;
        float* row = cin_.data() + (int64_t)n_need * col_in_;
        std::copy(s.sh, s.sh + sh_dim_, row);
        std::copy(h_.data() + (int64_t)i * geo_, h_.data() + (int64_t)(i + 1) * geo_, row + sh_dim_);
        need_slot_[n_need++] = i;
      }
    }
    if (n_need) mlp(cin_.data(), f_.color_w, f_.color_amx, rgb_.data(), n_need, f_.color);
    // composite each ray's round in sample order and chain it: C += T c, T *= 1 - opacity
    int j = 0;
    for (Slot& s : slots) {
      if (s.ray < 0) continue;
      if (s.count > 0) {
        float c[3] = {0.f, 0.f, 0.f};
        for (; j < n_need && need_slot_[j] < s.begin + s.count; ++j) {
          const float w = w_[need_slot_[j]];
          for (int a = 0; a < 3; ++a) c[a] += w * rgb_[3 * j + a];
        }
        const float tr = s.trans;
        for (int a = 0; a < 3; ++a) s.c[a] += tr * c[a];
        s.depth += tr * s.c_dep;
        s.trans = tr * (1.f - s.c_op);
      }
      const bool go_on = s.count >= s.k && (m_.t_threshold <= 0.f || s.trans > m_.t_threshold);
      if (!go_on) {
        finish(s);
      } else {
        s.k = std::min(2 * s.k, k_max_);
      }
    }
  }

  const float *o_, *d_, *t_near_, *t_far_, *bg_;
  int64_t bg_stride_;
  const FusedField& f_;
  const FusedMarch& m_;
  FusedSteps steps_;
  float *color_, *depth_, *opacity_;
  int64_t* n_samples_;
  int64_t n_;
  std::atomic<int64_t>* next_;
  int64_t pos_ = 0, end_ = 0;
  int64_t cap_;
  int k_max_, n_slots_;
  int enc_dim_, geo_, sh_dim_, col_in_;
  int n_samp_ = 0;
  Scratch& scratch_ = thread_scratch();  // this thread's (a worker runs on the thread that built it)
  std::vector<float>&xu_ = scratch_.xu, &t0_ = scratch_.t0, &t1_ = scratch_.t1, &feat_ = scratch_.feat, &h_ = scratch_.h,
      &sigma_ = scratch_.sigma, &w_ = scratch_.w, &zeros_ = scratch_.zeros, &cin_ = scratch_.cin, &rgb_ = scratch_.rgb;
  std::vector<int>& need_slot_ = scratch_.need_slot;
};

}  // namespace

void render_fused(const float* origins, const float* dirs, const float* t_near, const float* t_far,
                  const float* background, int64_t bg_stride, const FusedField& field, const FusedMarch& march,
                  float* color, float* depth, float* opacity, int64_t* n_samples, int64_t n) {
  std::atomic<int64_t> next{0};
  FusedField f = field;
  MlpBf16Weights density_amx, color_amx;
  if (f.bf16 && mlp_amx_supported()) {  // packed once here, shared read-only by the workers
    density_amx = mlp_bf16_pack(f.density_w, f.density);
    color_amx = mlp_bf16_pack(f.color_w, f.color);
    f.density_amx = &density_amx;
    f.color_amx = &color_amx;
  }
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (n + kBlock - 1) / kBlock));
  at::parallel_for(0, workers, 1, [&](int64_t b, int64_t e) {
    if (b >= e) return;
    Worker w(origins, dirs, t_near, t_far, background, bg_stride, f, march, color, depth, opacity, n_samples, n,
             &next);
    w.run();
  });
}

}  // namespace cpu
}  // namespace nerf_app
