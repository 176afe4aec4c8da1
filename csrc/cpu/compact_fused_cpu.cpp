// Training's compacted march on the CPU in one pass per tile of rays: each worker keeps a tile of live
// rays and, per round, marches them, encodes the samples, runs the density MLP and keeps the samples a
// compositing pass can still weigh — without returning to torch between the stages. The definition it
// must match is nerf_app/nerf/renderer.py::march_compacted composed of the ops (the reference twin); the
// per-sample bodies are those ops' shared code: march_ray (march_math.h), the hash-grid and MLP kernels.
//
// Why: in a training step the composed march_compacted took ~40 % of the wall time (lego, 2 cores): each
// round marches twice (count, then fill), indexes the live rays, allocates its samples' features and
// compacts through a dozen torch ops, partly on one thread. It also hands back the kept samples' hash-grid
// features, so the step's differentiable pass does not encode them a second time (ops/hashgrid.py's
// hashgrid_encode_cached).
//
// Per ray the result does not depend on which worker took it, on the tile's other rays or on the thread
// count: its rounds, samples and sums are its own, and the kernels compute each row on its own.
#include "compact_fused_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "fused_march.h"
#include "hashgrid_cpu.h"

namespace nerf_app {
namespace cpu {
namespace {

constexpr int kBatch = 4096;    // samples per worker and round at most: they stay in L2
constexpr int kMinSlots = 32;   // live rays per worker at least
constexpr int64_t kBlock = 32;  // rays a worker takes from the shared queue at a time

struct Slot {
  int64_t ray = -1;
  float t;
  int k;
  int64_t marched, kept;
  double depth;  // optical depth crossed so far (float64, as compact_samples)
  int begin, count;
};

class Worker {
 public:
  Worker(const float* o, const float* d, const float* t_near, const float* t_far, const FusedField& f,
         const CompactMarch& m, int64_t* kept, int64_t* marched, int64_t n, std::atomic<int64_t>* next,
         CompactedPart* out)
      : o_(o), d_(d), t_near_(t_near), t_far_(t_far), f_(f), m_(m), kept_(kept), marched_(marched), n_(n),
        next_(next), out_(out) {
    steps_ = FusedSteps{m.bitfield, m.n_cascades, m.resolution, m.dt_min, m.dt_max, m.cone_angle};
    k_first_ = std::max(1, m.k_first);
    k_max_ = std::max(k_first_, m.k_max);
    n_slots_ = std::max(kMinSlots, kBatch / k_max_);
    const int64_t cap = (int64_t)n_slots_ * k_max_;
    enc_dim_ = f.levels.n_levels * f.features;
    geo_ = f.density.n_out;
    xu_.resize(cap * 3);
    t0_.resize(cap);
    t1_.resize(cap);
    feat_.resize(cap * enc_dim_);
    h_.resize(cap * geo_);
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
      compact(slots);
    }
  }

 private:
  bool take(Slot& s) {
    if (pos_ >= end_) {
      pos_ = next_->fetch_add(kBlock);
      if (pos_ >= n_) return false;
      end_ = std::min(n_, pos_ + kBlock);
    }
    const int64_t r = pos_++;
    s.ray = r;
    s.t = t_near_[r];
    s.k = k_first_;
    s.marched = s.kept = 0;
    s.depth = 0.0;
    if (!(s.t < t_far_[r])) finish(s);  // march_in_rounds never marches it
    return true;
  }

  void finish(Slot& s) {
    kept_[s.ray] = s.kept;
    marched_[s.ray] = s.marched;
    s.ray = -1;
  }

  // Up to k samples per live ray, resumed at t (fused_march.h).
  void march(std::vector<Slot>& slots) {
    n_samp_ = march_slots(slots, o_, d_, t_far_, f_, steps_, xu_.data(), t0_.data(), t1_.data());
    for (Slot& s : slots)
      if (s.ray >= 0) s.marched += s.count;
  }

  // Densities of the round's samples, then per ray compact_samples' rule: keep a sample unless the optical
  // depth before it exceeds the limit (written "not beyond", so a non-finite density keeps its samples).
  void compact(std::vector<Slot>& slots) {
    const int S = n_samp_;
    if (S > 0) {
      hashgrid_forward<float>(xu_.data(), f_.table, feat_.data(), S, 3, f_.features, f_.levels, f_.smoothstep);
      mlp_forward(feat_.data(), f_.density_w, h_.data(), nullptr, S, f_.density);
    }
    for (Slot& s : slots) {
      if (s.ray < 0) continue;
      // the sums in compact_samples' order: excl = (the round's running sum) + depth0, and the ray's depth
      // grows by each sample in turn (index_add onto depth0)
      const double depth0 = s.depth;
      double run = 0.0;
      for (int i = s.begin; i < s.begin + s.count; ++i) {
        const float sigma = std::exp(h_[(int64_t)i * geo_] + f_.density_bias);
        double tau = (double)sigma * (double)(t1_[i] - t0_[i]);
        tau = tau < 0.0 ? 0.0 : tau;  // clamp(min=0); a NaN stays NaN
        if (!(run + depth0 > m_.limit)) {
          out_->ray.push_back(s.ray);
          out_->t0.push_back(t0_[i]);
          out_->t1.push_back(t1_[i]);
          const float* row = feat_.data() + (int64_t)i * enc_dim_;
          out_->feat.insert(out_->feat.end(), row, row + enc_dim_);
          ++s.kept;
        }
        run += tau;
        s.depth += tau;
      }
      const bool go_on = s.count >= s.k && !(s.depth > m_.limit) && s.marched < m_.max_samples;
      if (!go_on) {
        finish(s);
      } else {
        s.k = std::min(2 * s.k, k_max_);
      }
    }
  }

  const float *o_, *d_, *t_near_, *t_far_;
  const FusedField& f_;
  const CompactMarch& m_;
  FusedSteps steps_;
  int64_t *kept_, *marched_;
  int64_t n_;
  std::atomic<int64_t>* next_;
  CompactedPart* out_;
  int64_t pos_ = 0, end_ = 0;
  int k_first_, k_max_, n_slots_;
  int enc_dim_, geo_;
  int n_samp_ = 0;
  std::vector<float> xu_, t0_, t1_, feat_, h_;
};

}  // namespace

std::vector<CompactedPart> march_compacted_fused(const float* origins, const float* dirs, const float* t_near,
                                                 const float* t_far, const FusedField& f, const CompactMarch& m,
                                                 int64_t* kept, int64_t* marched, int64_t n) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (n + kBlock - 1) / kBlock));
  std::vector<CompactedPart> parts(workers);
  at::parallel_for(0, workers, 1, [&](int64_t b, int64_t e) {
    for (int64_t w = b; w < e; ++w) {
      Worker worker(origins, dirs, t_near, t_far, f, m, kept, marched, n, &next, &parts[w]);
      worker.run();
    }
  });
  return parts;
}

void compacted_write(const std::vector<CompactedPart>& parts, const int64_t* offsets, int enc_dim, int64_t n,
                     int64_t* ray_indices, float* t_starts, float* t_ends, float* features) {
  std::vector<int64_t> cursor(offsets, offsets + n);  // each ray's next slot; a ray's samples are in one part
  at::parallel_for(0, (int64_t)parts.size(), 1, [&](int64_t b, int64_t e) {
    for (int64_t w = b; w < e; ++w) {
      const CompactedPart& p = parts[w];
      for (size_t i = 0; i < p.ray.size(); ++i) {
        const int64_t j = cursor[p.ray[i]]++;
        ray_indices[j] = p.ray[i];
        t_starts[j] = p.t0[i];
        t_ends[j] = p.t1[i];
        std::copy(p.feat.data() + i * enc_dim, p.feat.data() + (i + 1) * enc_dim, features + j * enc_dim);
      }
    }
  });
}

}  // namespace cpu
}  // namespace nerf_app
