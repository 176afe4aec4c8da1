"""FusedMLP throughput per backend, and the ratio to the torch reference, in one run.

Configuration (issue 7): 2^18 rows, n_input 32 -> width (32, 64, 128) x 2 hidden layers -> n_output 16, ReLU.
Passes: ``forward`` (inference, no autograd) and ``forward+backward`` (training: gradients to the input
and every weight, as when an encoding feeds the MLP). Backends are measured interleaved (torch, then the
compiled one, repetition by repetition) so that load from other processes hits both alike; each number
is the median of the repetitions. One JSON line per measurement, with the machine.

    python benchmarks/mlp.py [--device cpu|cuda] [--rows 262144] [--reps 7] [--widths 32 64 128]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from nerf_app import backend
from nerf_app.networks import FusedMLP


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _machine() -> dict:
    report = backend.build_report()
    return {"cpu_count": os.cpu_count(), "torch_threads": report["cpu_threads"], "gpu": report["gpu"],
            "cpu": platform.processor() or platform.machine(), "torch": report["torch"],
            "load_avg_1m": round(os.getloadavg()[0], 2), "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, default=1 << 18)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--n-input", type=int, default=32)
    parser.add_argument("--n-output", type=int, default=16)
    parser.add_argument("--hidden-layers", type=int, default=2)
    args = parser.parse_args()

    device = torch.device(args.device)
    native = "cuda" if device.type == "cuda" else "cpp"
    available = backend.has_cuda_kernels() if native == "cuda" else backend.has_cpp()
    backends = ["torch"] + ([native] if available else [])
    machine = _machine()
    for width in args.widths:
        torch.manual_seed(0)
        net = FusedMLP(args.n_input, args.n_output, width, args.hidden_layers).to(device)
        x = torch.randn(args.rows, args.n_input, device=device)
        x_grad = x.clone().requires_grad_(True)
        grad_y = torch.randn(args.rows, args.n_output, device=device)

        def forward():
            with torch.no_grad():
                net(x)

        def forward_backward():
            net.zero_grad(set_to_none=True)
            x_grad.grad = None
            net(x_grad).backward(grad_y)

        for pass_name, fn in (("forward", forward), ("forward+backward", forward_backward)):
            times = {name: [] for name in backends}
            for name in backends:  # warm-up (first-call allocations, lazy extension load, CUDA context)
                net.backend = name
                fn()
            for _ in range(args.reps):
                for name in backends:
                    net.backend = name
                    _sync(device)
                    start = time.perf_counter()
                    fn()
                    _sync(device)
                    times[name].append(time.perf_counter() - start)
            ref_rate = args.rows / statistics.median(times["torch"])
            for name in backends:
                seconds = statistics.median(times[name])
                rate = args.rows / seconds
                print(json.dumps({
                    "bench": "mlp", "device": device.type, "backend": name, "pass": pass_name, "rows": args.rows,
                    "network": f"{args.n_input}->{width}x{args.hidden_layers}->{args.n_output} relu",
                    "reps": args.reps, "median_s": round(seconds, 5), "mrows_per_s": round(rate / 1e6, 4),
                    "ratio_to_torch": round(rate / ref_rate, 2), **machine}), flush=True)


if __name__ == "__main__":
    main()
