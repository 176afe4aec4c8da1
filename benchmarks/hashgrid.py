"""Hash-grid throughput per backend, and the ratio to the torch reference, in one run.

Configuration (issue 2): 2^18 points in 3D, L=16, F=2, T=2^19, base 16, per-level scale 1.3819.
Prints one JSON line per measurement: backend, pass (forward / forward+backward, the backward giving
the table gradient as in training; forward+backward+input also gives d/dx), M points/s, ratio to torch.

    python benchmarks/hashgrid.py [--device cpu|cuda] [--points 262144] [--reps 7]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine, median_seconds  # noqa: E402

from nerf_app import backend  # noqa: E402
from nerf_app.encodings import HashGrid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--points", type=int, default=1 << 18)
    parser.add_argument("--reps", type=int, default=7, help="repetitions for compiled backends (median)")
    parser.add_argument("--torch-reps", type=int, default=3, help="repetitions for the slow reference")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    enc = HashGrid(input_dim=3, n_levels=16, n_features_per_level=2, log2_hashmap_size=19, base_resolution=16,
                   per_level_scale=1.3819, dtype=getattr(torch, args.dtype)).to(device)
    x = torch.rand(args.points, 3, device=device)
    x_grad = x.clone().requires_grad_(True)
    grad_y = torch.randn(args.points, enc.n_output_dims, device=device)
    native = "cuda" if device.type == "cuda" else "cpp"
    backends = ["torch"] + ([native] if (backend.has_cuda_kernels() if native == "cuda" else backend.has_cpp()) else [])
    base = {"bench": "hashgrid", "device": device.type, "points": args.points, "table_dtype": args.dtype,
            "config": "D3 L16 F2 T2^19 base16 b1.3819", **machine()}

    def forward():
        with torch.no_grad():
            enc(x)

    def forward_backward():
        enc.table.grad = None
        enc(x).backward(grad_y)

    def forward_backward_input():
        enc.table.grad = None
        x_grad.grad = None
        enc(x_grad).backward(grad_y)

    passes = (("forward", forward), ("forward+backward", forward_backward),
              ("forward+backward+input", forward_backward_input))
    reference = {}
    for name in backends:
        enc.backend = name
        reps = args.torch_reps if name == "torch" else args.reps
        for pass_name, fn in passes:
            seconds = median_seconds(fn, device, reps)
            mps = args.points / seconds / 1e6
            if name == "torch":
                reference[pass_name] = mps
            emit({**base, "backend": name, "pass": pass_name, "reps": reps, "median_s": round(seconds, 5),
                  "mpoints_per_s": round(mps, 4), "ratio_to_torch": round(mps / reference[pass_name], 2)})


if __name__ == "__main__":
    main()
