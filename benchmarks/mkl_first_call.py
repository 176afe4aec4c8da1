"""How often a fresh process's first multi-threaded MKL vector-math call computes a wrong share (issue 31).

Each trial is a new Python process (MKL's one-time set-up happens once per process, so a trial cannot be
repeated inside one): it sets 2 threads, calls ``torch.exp`` on 32,768 seeded floats (torch splits the
call across both threads), and compares the result with the same call made again. Variants alternate,
one process each, so load affects both alike:

- ``torch``: imports torch only (what nerf_app did before ``nerf_app/mkl_first_call.py``);
- ``nerf_app``: imports ``nerf_app.backend`` first, which does the set-up on one thread.

Prints one JSON line per variant: processes, how many computed a wrong share, the largest relative
error of a wrong share, and the per-process wall time. Usage:
``python benchmarks/mkl_first_call.py --trials 250``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import sys
if sys.argv[1] == "nerf_app":
    import nerf_app.backend
import torch
torch.set_num_threads(2)
x = torch.randn(32768, generator=torch.Generator().manual_seed(0)) * 3
first = torch.exp(x)       # this process's first call big enough to be split across threads
again = torch.exp(x)
bad = first != again
rel = ((first.double() - again.double()).abs() / again.double()).max().item()
print(int(bad.sum()), rel)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="processes per variant")
    args = ap.parse_args()
    variants = ("torch", "nerf_app")
    stats = {v: {"odd": 0, "max_rel_error": 0.0, "seconds": []} for v in variants}
    for _ in range(args.trials):
        for v in variants:
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, v], capture_output=True, text=True, check=True)
            stats[v]["seconds"].append(time.perf_counter() - t0)
            n_bad, rel = out.stdout.split()
            if int(n_bad):
                stats[v]["odd"] += 1
                stats[v]["max_rel_error"] = max(stats[v]["max_rel_error"], float(rel))
    for v in variants:
        s = sorted(stats[v]["seconds"])
        print(json.dumps({"bench": "mkl_first_call", "variant": v, "processes": args.trials,
                          "wrong_first_call": stats[v]["odd"], "max_rel_error": stats[v]["max_rel_error"],
                          "median_process_s": round(s[len(s) // 2], 3)}))


if __name__ == "__main__":
    main()
