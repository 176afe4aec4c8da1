"""Roofline of this CPU: its own peaks, then every NeRF kernel and a whole render / training step against them.

    python benchmarks/roofline.py RUN [--view N] [--reps 3] [--train-steps 6] [--quick]

RUN is a trained nerf run folder (its model, occupancy grid and scene are used; nothing in it is written).
One JSON line per measurement, every number the median of repetitions. Times are CPU times (a thread's for the
peak kernels, the process's divided by its threads for the NeRF kernels and stages): on a shared box the wall
clock measures the scheduler, CPU time what the code costs (``ROOFLINE_CLOCK=wall`` for wall-clock kernels;
whole renders and steps print both). Each line carries the 1-minute load average. In order:

1. **Peaks** (benchmarks/roofline_kernels.cpp, compiled with g++ -O3 -march=native into a temporary folder, run
   through ctypes on 1 thread and on every core at once): fp32 FMA at 256 and 512 bits, AVX-512 BF16 dot
   products (VDPBF16PS), and memory bandwidth as a STREAM triad (a = b + s c, 12 bytes per element) over
   arrays far larger than the caches (and one that fits L2).
2. **Kernels** on RUN's own field and grid, synthetic inputs of render size, all threads: hash-grid forward
   and backward (table gradient), the density and colour MLPs forward (fp32 and bf16) and backward, marching
   (one 16-sample round of 2^16 of the view's rays), volume rendering of those samples. Achieved FLOP/s and
   bytes/s from the analytic counts below, against the peaks (share of the fp32 or bf16 peak, share of the
   DRAM triad, and of the roofline bound min(peak, intensity x bandwidth)).
3. **A whole render** of held-out view N at full size, fp32 and bf16 MLP inference alternating (same process,
   same rays; the PSNR of each against the photo), and **training steps** (the run's own step, Adam included,
   never a grid-update step), each with a per-stage time table: the wrapped ops' own time and the rest
   ("python/torch glue": indexing, concatenation, index_add, allocation, the autograd engine's bookkeeping).

Counts per item (F features per level, L levels, D = 3; MLP dims d_0..d_L; transcendentals count as 1):
  hash grid forward  flops = L (6 + 8 (2 + 2F))        bytes = 12 + L 8 F s_t + 4 L F   (s_t: table entry bytes)
  hash grid backward flops = L (6 + 8 (2 + 2F))        bytes = 12 + 4 L F + L 8 F 2 s_t (read + write of 8 corners)
  MLP forward        flops = 2 sum d_i d_{i+1}         bytes = 4 (d_0 + d_L)            (weights stay in cache)
  MLP backward       flops = 4 sum d_i d_{i+1}         bytes = 4 (2 d_0 + (L-1) w + 2 d_L)
  march (per sample) flops ~ 20                        bytes = 16 (ray index int64, t_start, t_end)
  volume render      flops ~ 16 per sample             bytes = 36 per sample (sigma, rgb, t0, t1, ray, weight)
"Bytes" are the bytes a kernel must move at least; the hash grid's random corners touch a 64-byte line each
in the hashed levels, so its real traffic is up to 8x its count (reported as line_bytes_per_s).
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine, precision  # noqa: E402

HERE = Path(__file__).resolve().parent
PEAK_SOURCE = HERE / "roofline_kernels.cpp"


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ---- 1. peaks -------------------------------------------------------------------------------------------

def build_peaks():
    """Compile roofline_kernels.cpp once per source version into a temporary folder -> ctypes library, or None."""
    src = PEAK_SOURCE.read_bytes()
    out = Path(tempfile.gettempdir()) / f"nerf_app_roofline_{hashlib.sha1(src).hexdigest()[:12]}" / "peaks.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.so")
        done = subprocess.run(["g++", "-O3", "-march=native", "-shared", "-fPIC", str(PEAK_SOURCE), "-o", str(tmp)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            emit({"bench": "roofline", "error": "could not compile the peak kernels", "stderr": done.stderr[-500:]})
            return None
        os.replace(tmp, out)
    lib = ctypes.CDLL(str(out))
    for name in ("peak_fma256", "peak_fma512", "peak_dpbf16"):
        getattr(lib, name).restype = ctypes.c_double
        getattr(lib, name).argtypes = [ctypes.c_int64]
    lib.triad.restype = ctypes.c_double
    lib.triad.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                          ctypes.c_int]
    return lib


def on_threads(n_threads: int, fn, *args_per_thread) -> tuple:
    """Run ``fn(*args_per_thread[k])`` on n_threads threads at once -> (wall seconds, [CPU seconds per thread]).

    The CPU time of each thread (time.thread_time) excludes the time the scheduler gave to other processes:
    on a shared box the rate per CPU-second is the machine's, the wall-clock rate is only the share it got."""
    cpu = [0.0] * n_threads

    def run(k):
        start = time.thread_time()
        fn(*args_per_thread[k])
        cpu[k] = time.thread_time() - start

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_threads)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, cpu


def measure_peaks(lib, reps: int, cores: int) -> dict:
    peaks = {}
    flops_per_iter = {"peak_fma256": 2 * 8 * 16, "peak_fma512": 2 * 16 * 16, "peak_dpbf16": 2 * 32 * 16}
    label = {"peak_fma256": "fp32_fma_256", "peak_fma512": "fp32_fma_512", "peak_dpbf16": "bf16_dot_512"}
    for name, per in flops_per_iter.items():
        fn = getattr(lib, name)
        if fn(1) < 0:
            emit({"bench": "roofline", "peak": label[name], "error": "not supported by this CPU/compiler"})
            continue
        iters = 2_000_000
        while True:   # about 0.1 s per call
            t = time.perf_counter()
            fn(iters)
            if time.perf_counter() - t > 0.05:
                break
            iters *= 2
        for n_threads in sorted({1, cores}):
            runs = [on_threads(n_threads, fn, *[(iters,)] * n_threads) for _ in range(reps)]
            wall = n_threads * iters * per / statistics.median(w for w, _ in runs)
            rate = sum(iters * per / statistics.median(c[k] for _, c in runs) for k in range(n_threads))
            peaks[(label[name], n_threads)] = rate
            emit({"bench": "roofline", "peak": label[name], "threads": n_threads, "gflops": round(rate / 1e9, 2),
                  "gflops_wall": round(wall / 1e9, 2), "reps": reps, "load_avg_1m": load()})
    for what, n in (("dram", 1 << 25), ("l2", 1 << 14)):   # 3 x 128 MiB, 3 x 64 KiB per thread
        arrays = [np.ones(n * cores, np.float32) for _ in range(3)]
        inner = 1 if what == "dram" else max(1, (1 << 25) // n)
        ptr = [a.ctypes.data for a in arrays]
        for n_threads in sorted({1, cores}):
            chunk = n * cores // n_threads if what == "dram" else n
            args = [(ptr[0], ptr[1], ptr[2], k * chunk, (k + 1) * chunk, inner) for k in range(n_threads)]
            on_threads(n_threads, lib.triad, *args)  # first touch
            runs = [on_threads(n_threads, lib.triad, *args) for _ in range(reps)]
            wall = n_threads * chunk * 12 * inner / statistics.median(w for w, _ in runs)
            bw = sum(chunk * 12 * inner / statistics.median(c[k] for _, c in runs) for k in range(n_threads))
            peaks[(f"triad_{what}", n_threads)] = bw
            emit({"bench": "roofline", "peak": f"triad_{what}", "threads": n_threads, "gb_per_s": round(bw / 1e9, 2),
                  "gb_per_s_wall": round(wall / 1e9, 2), "bytes_per_thread": 12 * chunk, "reps": reps,
                  "load_avg_1m": load()})
        del arrays
    return peaks


# ---- analytic counts ------------------------------------------------------------------------------------

def mlp_dims(net) -> list:
    return [w.shape[1] for w in net.weights] + [net.weights[-1].shape[0]]


def mlp_flops(net, backward=False) -> int:
    d = mlp_dims(net)
    return (4 if backward else 2) * sum(d[i] * d[i + 1] for i in range(len(d) - 1))


def mlp_bytes(net, backward=False) -> int:
    d = mlp_dims(net)
    if not backward:
        return 4 * (d[0] + d[-1])
    return 4 * (2 * d[0] + (len(d) - 2) * net.width + 2 * d[-1])


def grid_counts(enc, backward=False):
    """(flops, bytes, line bytes) per point; line bytes: a 64-byte line per corner in the hashed levels."""
    lay = enc.layout
    L, F, s_t = lay.n_levels, lay.n_features, enc.table.element_size()
    rw = 2 if backward else 1
    flops = L * (6 + 8 * (2 + 2 * F))
    nbytes = 12 + 4 * L * F + L * 8 * F * s_t * rw
    lines = 12 + 4 * L * F + sum((8 * 64 if hashed else 8 * F * s_t) * rw for hashed in lay.hashed)
    return flops, nbytes, lines


MARCH_FLOPS, MARCH_BYTES = 20, 16
RENDER_FLOPS, RENDER_BYTES = 16, 36


def rates(seconds: float, items: int, flops_per: float, bytes_per: float, peaks: dict, cores: int,
          peak_key: str = "fp32_fma_512") -> dict:
    flops, nbytes = items * flops_per / seconds, items * bytes_per / seconds
    peak = peaks.get((peak_key, cores), float("nan"))
    bw = peaks.get(("triad_dram", cores), float("nan"))
    bound = min(peak, flops_per / max(bytes_per, 1e-9) * bw)
    return {"gflops": round(flops / 1e9, 3), "gbytes_per_s": round(nbytes / 1e9, 3),
            "flop_per_byte": round(flops_per / max(bytes_per, 1e-9), 2),
            "share_of_peak": round(flops / peak, 4), "peak": peak_key,
            "share_of_dram_bw": round(nbytes / bw, 4), "share_of_roofline_bound": round(flops / bound, 4)}


def clock() -> float:
    """CPU seconds of the process (all its threads), or wall seconds with ROOFLINE_CLOCK=wall."""
    return time.perf_counter() if os.environ.get("ROOFLINE_CLOCK") == "wall" else time.process_time()


def median_time(fn, reps: int, warmup: int = 1) -> float:
    """Median seconds of ``fn``: CPU seconds of the process divided by the threads it ran on (time.process_time:
    on a shared box the wall clock counts other processes' slices, CPU time does not), or wall seconds when
    ``ROOFLINE_CLOCK=wall``."""
    wall = os.environ.get("ROOFLINE_CLOCK") == "wall"
    threads = torch.get_num_threads()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter() if wall else time.process_time()
        fn()
        times.append((time.perf_counter() - t) if wall else (time.process_time() - t) / threads)
    return statistics.median(times)




# ---- 2. kernels -----------------------------------------------------------------------------------------

def measure_kernels(task, peaks: dict, reps: int, cores: int, quick: bool) -> None:
    from nerf_app.nerf.renderer import _interval
    from nerf_app.ops.march import march_rays
    from nerf_app.ops.mlp import inference_precision
    from nerf_app.ops.volume_render import volume_render

    field, grid, march = task.model.field, task.model.grid, task.march
    gen = torch.Generator().manual_seed(0)
    n = 1 << (16 if quick else 18)
    base = {"bench": "roofline", "threads": torch.get_num_threads()}

    enc = field.encoding
    x = torch.rand(n, 3, generator=gen)
    grad = torch.randn(n, enc.n_output_dims, generator=gen)

    def grid_fwd():
        with torch.no_grad():
            enc(x)

    def grid_fwd_bwd():
        enc.table.grad = None
        enc(x).backward(grad)

    t_f = median_time(grid_fwd, reps)
    t_fb = median_time(grid_fwd_bwd, reps)
    for name, seconds, backward in (("hashgrid_forward", t_f, False),
                                    ("hashgrid_backward", max(t_fb - t_f, 1e-9), True)):
        fl, by, lines = grid_counts(enc, backward)
        emit({**base, "kernel": name, "items": n, "median_s": round(seconds, 5),
              "mitems_per_s": round(n / seconds / 1e6, 3),
              **rates(seconds, n, fl, by, peaks, cores), "line_bytes_per_s_g": round(n * lines / seconds / 1e9, 2),
              "load_avg_1m": load()})

    for label, net in (("mlp_density", field.density_net), ("mlp_color", field.color_net)):
        h = torch.randn(n, net.n_input, generator=gen)
        gy = torch.randn(n, net.n_output, generator=gen)
        hg = h.clone().requires_grad_(True)

        def fwd():
            with torch.no_grad(), inference_precision():
                net(h)

        def fwd_bwd():
            net.zero_grad(set_to_none=True)
            hg.grad = None
            net(hg).backward(gy)

        times = {}
        for prec in ("fp32", "auto"):   # alternating would be fairer, but these are seconds apart
            with precision(prec):
                times[prec] = median_time(fwd, reps)
        with precision("fp32"):
            t_fb = median_time(fwd_bwd, reps)
        from nerf_app.ops.mlp import inference_dtype
        bf16 = inference_dtype(torch.device("cpu")) == "bf16"
        rows = [(f"{label}_forward_fp32", times["fp32"], False, "fp32_fma_512")]
        if bf16:
            rows.append((f"{label}_forward_bf16", times["auto"], False, "bf16_dot_512"))
        rows.append((f"{label}_backward_fp32", max(t_fb - times["fp32"], 1e-9), True, "fp32_fma_512"))
        for name, seconds, backward, peak_key in rows:
            emit({**base, "kernel": name, "network": "->".join(map(str, mlp_dims(net))), "items": n,
                  "median_s": round(seconds, 5), "mitems_per_s": round(n / seconds / 1e6, 3),
                  **rates(seconds, n, mlp_flops(net, backward), mlp_bytes(net, backward), peaks, cores, peak_key),
                  "load_avg_1m": load()})

    # march: one 16-sample round of 2^16 rays of the view (as the renderer's rounds), then compositing
    o, d = task.view_rays(int(task.scene.split_indices("test")[0]))
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    pick = torch.randperm(o.shape[0], generator=gen)[:1 << 16]
    o, d = o[pick].contiguous(), d[pick].contiguous()
    t0, t1 = _interval(o, d, grid, march, "auto")
    holder = {}

    def do_march():
        holder["s"] = march_rays(o, d, t0, t1, grid.bitfield, grid.n_cascades, grid.resolution, march.dt_min(),
                                 march.dt_max(grid), march.cone_angle, 16)

    seconds = median_time(do_march, reps)
    s = holder["s"]
    emit({**base, "kernel": "march", "rays": o.shape[0], "items": s.n_samples, "median_s": round(seconds, 5),
          "mitems_per_s": round(s.n_samples / seconds / 1e6, 3),
          **rates(seconds, s.n_samples, MARCH_FLOPS, MARCH_BYTES, peaks, cores), "load_avg_1m": load()})
    sigma = torch.rand(s.n_samples, generator=gen) * 10
    rgb = torch.rand(s.n_samples, 3, generator=gen)
    seconds = median_time(lambda: volume_render(sigma, rgb, s, 0.0), reps)
    emit({**base, "kernel": "volume_render", "items": s.n_samples, "median_s": round(seconds, 5),
          "mitems_per_s": round(s.n_samples / seconds / 1e6, 3),
          **rates(seconds, s.n_samples, RENDER_FLOPS, RENDER_BYTES, peaks, cores), "load_avg_1m": load()})


# ---- 3. stages of a render and of a training step ---------------------------------------------------------

class Stages:
    """Wall time and item counts of wrapped callables (patched in place; restored by :meth:`restore`)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.items = defaultdict(int)
        self.flops = defaultdict(float)
        self._undo = []

    def reset(self):
        self.seconds.clear()
        self.items.clear()
        self.flops.clear()

    def patch(self, owner, attr, name, items=None, flops_per=0.0, split_grad=False):
        original = getattr(owner, attr)
        is_static = isinstance(owner, type) and isinstance(owner.__dict__.get(attr), staticmethod)

        def wrapped(*args, **kwargs):
            label = name
            if split_grad and not torch.is_grad_enabled():
                label = name + " (no grad)"
            start = clock()
            out = original(*args, **kwargs)
            self.seconds[label] += clock() - start
            k = items(args, out) if items else 0
            self.items[label] += k
            self.flops[label] += k * (flops_per(args) if callable(flops_per) else flops_per)
            return out

        own = attr in vars(owner)   # a module's function, a class's method: put back; else an instance override
        self._undo.append((owner, attr, vars(owner).get(attr) if own else None, own))
        setattr(owner, attr, staticmethod(wrapped) if is_static else wrapped)
        return self

    def restore(self):
        for owner, attr, raw, own in reversed(self._undo):
            if own:
                setattr(owner, attr, raw)
            else:
                delattr(owner, attr)   # the instance attribute that shadowed the class's method
        self._undo.clear()

    nested = ("hash grid backward", "MLP backward (both nets)", "volume render backward")  # inside autograd's

    def table(self, total: float) -> list:
        rows = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        out = [{"stage": k, "cpu_s": round(v, 4), "share": round(v / total, 4), "items": self.items[k],
                "gflops_per_core": round(self.flops[k] / max(v, 1e-12) / 1e9, 3)} for k, v in rows]
        glue = total - sum(v for k, v in self.seconds.items() if k not in self.nested)
        out.append({"stage": "python/torch glue (the rest)", "cpu_s": round(glue, 4), "share": round(glue / total, 4)})
        return out


def instrument(task, stages: Stages, training: bool) -> None:
    import nerf_app.nerf.field as field_mod
    import nerf_app.nerf.renderer as renderer
    from nerf_app.ops import hashgrid as hg_op
    from nerf_app.ops import mlp as mlp_op
    from nerf_app.ops import render_fused as rf_op
    from nerf_app.ops import volume_render as vr_op

    field = task.model.field
    rows = lambda args, out: int(args[0].shape[0])  # noqa: E731
    enc_fl = grid_counts(field.encoding)[0]
    stages.patch(renderer, "march_rays", "march", lambda a, out: out.n_samples, MARCH_FLOPS)
    stages.patch(renderer, "volume_render", "volume render", rows, RENDER_FLOPS)
    stages.patch(renderer, "ray_aabb", "ray/box")
    # a render on a CPU is one fused C++ call (nerf_app/ops/render_fused.py): its stages are inside it
    stages.patch(rf_op, "render_rays_fused", "fused render pass (march, hash grid, MLPs, composite)",
                 lambda a, out: int(out[3].sum()))
    stages.patch(field_mod, "sh_encode", "SH encoding", rows)
    stages.patch(field.encoding, "forward", "hash grid forward", rows, enc_fl, split_grad=training)
    stages.patch(field.density_net, "forward", "MLP density forward", rows, mlp_flops(field.density_net),
                 split_grad=training)
    stages.patch(field.color_net, "forward", "MLP colour forward", rows, mlp_flops(field.color_net),
                 split_grad=training)
    if training:
        stages.patch(renderer, "compact_samples", "compact (no grad)")
        # on a CPU the compaction is one fused C++ call (nerf_app/ops/compact_fused.py): march, hash grid and
        # density MLP without gradients are inside it; items = samples marched
        stages.patch(renderer, "march_compacted_fused", "fused compaction (march, hash grid, density MLP, keep)",
                     lambda a, out: int(out[1]))
        stages.patch(hg_op._HashGridCachedFunction, "backward", "hash grid backward")
        stages.patch(task.sampler, "sample", "sample rays")
        stages.patch(hg_op._HashGridFunction, "backward", "hash grid backward")
        stages.patch(mlp_op._FusedMLPFunction, "backward", "MLP backward (both nets)")
        stages.patch(vr_op._RenderFunction, "backward", "volume render backward")
        stages.patch(task.optimizer, "step", "optimizer step")
        stages.patch(torch.autograd, "backward", "autograd backward, all of it (contains the *backward rows)")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * math.log10(max(float(np.mean((a - b) ** 2)), 1e-12)))


def measure_render(task, view: int, reps: int, peaks: dict, cores: int, step: int = 1) -> None:
    from nerf_app.nerf.evaluate import eval_background

    bg = eval_background(task.config)
    gt = task.scene.images.rgb(view, background=np.array(bg, np.float32))[::step, ::step, :3].astype(np.float32)
    stages = Stages()
    instrument(task, stages, training=False)
    try:
        results = {p: [] for p in ("fp32", "auto")}
        cpu_s = {p: [] for p in ("fp32", "auto")}
        images = {}
        tables = {}
        for r in range(reps + 1):   # the first pair warms up
            for prec in ("fp32", "auto"):
                stages.reset()
                stats = {}
                with precision(prec):
                    start, start_cpu = time.perf_counter(), clock()
                    rgb, _, _ = task.render_view(view, bg, stats=stats, step=step)
                    seconds, cpu = time.perf_counter() - start, clock() - start_cpu
                if r:
                    results[prec].append(seconds)
                    cpu_s[prec].append(cpu)
                    images[prec] = rgb
                    tables[prec] = (cpu, stages.table(cpu), dict(stats), sum(stages.flops.values()))
    finally:
        stages.restore()
    from nerf_app.ops.mlp import inference_dtype
    with precision("auto"):
        auto = inference_dtype(torch.device("cpu"))
    H, W = gt.shape[:2]
    med = {p: statistics.median(v) for p, v in results.items()}
    med_cpu = {p: statistics.median(v) for p, v in cpu_s.items()}
    threads = torch.get_num_threads()
    for prec in ("fp32", "auto"):
        seconds, table, stats, flops = tables[prec]
        seconds /= threads   # CPU seconds of the process -> seconds of a machine with its cores to itself
        label = "fp32" if prec == "fp32" else auto
        emit({"bench": "roofline", "render": f"{W}x{H}", "view": task.scene.names[view], "mlp_precision": label,
              "median_wall_s": round(med[prec], 3), "all_wall_s": [round(v, 3) for v in results[prec]],
              "median_cpu_s": round(med_cpu[prec], 3), "all_cpu_s": [round(v, 3) for v in cpu_s[prec]],
              "samples_per_ray": round(stats["samples"] / stats["rays"], 2),
              "msamples_per_cpu_s": round(stats["samples"] / med_cpu[prec] / 1e6, 3),
              "psnr": round(psnr(images[prec], gt), 4),
              "counted_gflops": round(flops / seconds / 1e9, 3),
              "share_of_fp32_peak": round(flops / seconds / peaks.get(("fp32_fma_512", cores), float("nan")), 4),
              "load_avg_1m": load()})
        for row in table:
            emit({"bench": "roofline", "render_stage": row.pop("stage"), "mlp_precision": label, **row})
    emit({"bench": "roofline", "render": f"{W}x{H}", "speedup_bf16_over_fp32_wall": round(med["fp32"] / med["auto"], 3),
          "speedup_bf16_over_fp32_cpu": round(med_cpu["fp32"] / med_cpu["auto"], 3),
          "psnr_diff_db": round(psnr(images["auto"], gt) - psnr(images["fp32"], gt), 4),
          "max_abs_pixel_diff": float(np.abs(images["auto"] - images["fp32"]).max())})


def measure_training(task, steps: int) -> None:
    stages = Stages()
    instrument(task, stages, training=True)
    n_rays = int(task.n_rays)
    times, tables = [], []
    try:
        for i in range(steps + 1):
            stages.reset()
            task.n_rays = n_rays
            task.optimizer.zero_grad(set_to_none=True)
            start, start_cpu = time.perf_counter(), clock()
            out = task.train_step(1 + 2 * i)   # odd steps: never an occupancy-grid update
            task.optimizer.step()
            seconds, cpu = time.perf_counter() - start, clock() - start_cpu
            if i:
                times.append(seconds)
                tables.append((cpu, stages.table(cpu), out))
    finally:
        stages.restore()
    med = statistics.median(times)
    med_cpu = statistics.median(t[0] for t in tables)
    seconds, table, out = min(tables, key=lambda t: abs(t[0] - med_cpu))   # the step closest to the median
    emit({"bench": "roofline", "train_step": "median", "rays": n_rays, "median_wall_s": round(med, 4),
          "all_wall_s": [round(v, 4) for v in times], "median_cpu_s": round(med_cpu, 4),
          "all_cpu_s": [round(t[0], 4) for t in tables], "samples_per_ray": round(out["samples_per_ray"], 2),
          "marched_per_ray": round(out["marched_per_ray"], 2), "rays_per_cpu_s": round(n_rays / med_cpu),
          "load_avg_1m": load()})
    for row in table:
        emit({"bench": "roofline", "train_stage": row.pop("stage"), "step_cpu_s": round(seconds, 4), **row})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained nerf run folder (read only)")
    parser.add_argument("--view", type=int, default=None, help="scene image index (default: the first test view)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: smaller kernel inputs, the view at every 4th pixel")
    parser.add_argument("--skip", nargs="*", default=[], choices=("peaks", "kernels", "render", "train"))
    args = parser.parse_args()
    start = time.perf_counter()
    cores = os.cpu_count() or 1
    emit({"bench": "roofline", "run": args.run, "load_avg_1m": load(), **machine()})
    peaks = {}
    if "peaks" not in args.skip:
        lib = build_peaks()
        if lib is not None:
            peaks = measure_peaks(lib, max(3, args.reps), cores)

    if {"kernels", "render", "train"} <= set(args.skip):
        emit({"bench": "roofline", "total_s": round(time.perf_counter() - start, 1), "load_avg_1m": load()})
        return
    from nerf_app.train.modes import open_run
    task, _, _ = open_run(args.run, lock=False)
    torch.manual_seed(0)
    if "kernels" not in args.skip:
        measure_kernels(task, peaks, max(3, args.reps), cores, args.quick)
    if "render" not in args.skip:
        view = args.view if args.view is not None else int(task.scene.split_indices("test")[0])
        measure_render(task, view, args.reps, peaks, cores, 4 if args.quick else 1)
    if "train" not in args.skip:
        task.budget_fraction = 0.5
        measure_training(task, args.train_steps)
    emit({"bench": "roofline", "total_s": round(time.perf_counter() - start, 1), "load_avg_1m": load()})


if __name__ == "__main__":
    main()
