"""The INR zoo on this machine: quality against wall time for each encoding x network, at one parameter budget.

    python benchmarks/inr_zoo.py [--seconds 60] [--params 200000] [--signals albert,bach] [--out DIR]

Signals: ``albert`` (1024^2 grey image, PSNR) and ``bach`` (308k-sample clip, SNR) from ../shared/data.
Rows (the seed papers' contenders): ``relu`` plain ReLU MLP on raw coordinates, ``positional`` NeRF's
frequency encoding + ReLU MLP, ``fourier`` Gaussian Fourier features (Tancik et al.) + ReLU MLP, ``siren``
sine layers on raw coordinates, ``hashgrid`` multiresolution hash grid + small ReLU MLP. Every row is sized
to ``--params`` trainable parameters (the MLP width, or for the hash grid the table size, is searched for
the closest count) and trains for the same ``--seconds`` of wall time through its mode's own training step
(random batches, Adam, the lr decaying over the budget); the quality is measured at fixed points of that
time, with the evaluation itself kept off the clock. One JSON line per row (its whole curve), then
``inr_zoo.png`` (quality vs time per signal) in ``--out``.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, machine  # noqa: E402

from nerf_app.train.config import load_config  # noqa: E402
from nerf_app.train.modes import get_task_class  # noqa: E402
from nerf_app.train.trainer import seed_everything  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SIGNALS = {"albert": ("image", DATA / "image" / "albert.png"), "bach": ("audio", DATA / "audio" / "gt_bach.wav")}

# Per row: model settings and learning rate (each from its paper's setup: hash grid 1e-2 as Instant-NGP,
# SIREN 1e-4, ReLU/positional/Fourier 1e-3 as Tancik et al.). Frequencies are per signal: Fourier
# features need sigma near the signal's bandwidth in cycles per unit (Tancik et al. use 10 for 512^2
# images; a 7 s clip at 44.1 kHz needs thousands: sigma 3000 ~ 430 Hz), positional encoding needs 2^L
# near the sample count.
ROWS = {
    "relu":       dict(encoding="identity", network="mlp", lr=1e-3, lr_final=1e-4, depth=3),
    "positional": dict(encoding="positional", network="mlp", lr=1e-3, lr_final=1e-4, depth=3),
    "fourier":    dict(encoding="fourier", network="mlp", lr=1e-3, lr_final=1e-4, depth=3),
    "siren":      dict(encoding="identity", network="siren", lr=1e-4, lr_final=2e-5, depth=3),
    "hashgrid":   dict(encoding="hashgrid", network="mlp", lr=1e-2, lr_final=1e-3, depth=2, width=64),
}
PER_SIGNAL = {
    "albert": {"n_frequencies": 10, "fourier_sigma": 10.0, "w0_initial": 30.0, "finest_resolution": 0},
    # SIREN on Bach: w0_initial 0 = the audio preset's range in Hz (see configs/audio.yaml)
    "bach": {"n_frequencies": 16, "fourier_sigma": 3000.0, "w0_initial": 0.0, "finest_resolution": 0},
}
# Rows that keep their mode preset's schedule (the audio preset is tuned for SIREN on Bach).
PRESET_LR = {("bach", "siren")}
# Pixels per step for albert (the image preset's 65536 leaves a 200k-parameter MLP ~40 steps a minute
# on two cores); Bach keeps the audio preset's batch.
BATCH = {"albert": ["optim.batch_size=16384"], "bach": []}


def build_task(signal: str, row: str, params: int, seed: int):
    """The row's task sized to ~``params`` trainable parameters (returns the task and its count)."""
    mode, path = SIGNALS[signal]
    spec = ROWS[row]
    base = [f"input={path}", f"seed={seed}", f"model.encoding={spec['encoding']}", f"model.network={spec['network']}",
            f"model.n_hidden_layers={spec['depth']}"]
    if (signal, row) not in PRESET_LR:
        base += [f"optim.lr={spec['lr']}", f"optim.lr_final={spec['lr_final']}"]
    base += [f"model.{k}={v}" for k, v in PER_SIGNAL[signal].items()] + BATCH[signal]
    cls = get_task_class(mode)

    def make(extra):
        cfg = load_config(cls.config_class, mode, overrides=base + extra)
        cfg.train.progress = False
        seed_everything(seed)
        task = cls(cfg)
        task.build()
        return task, sum(p.numel() for p in task.model.parameters())

    if row == "hashgrid":   # the table carries the parameters: pick its size
        options = [[f"model.width={spec['width']}", f"model.log2_hashmap_size={t}"] for t in range(10, 21)]
    else:                   # the MLP's width carries them
        options = [[f"model.width={w}"] for w in range(16, 1025, 16)]
    best = None
    for extra in options:
        cfg = load_config(cls.config_class, mode, overrides=base + extra)
        n = count_params(cls, cfg)
        if best is None or abs(n - params) < abs(best[1] - params):
            best = (extra, n)
    return make(best[0])


def count_params(cls, cfg) -> int:
    # the modes load their signal in build(); counting needs only the model, built for the signal's size
    from nerf_app.inr.field import InrField
    d_in, res = {"image": (2, 1024), "audio": (1, 308207)}[cfg.mode]
    model = InrField(d_in, 1, cfg.model, res, cfg.seed, "torch")
    return sum(p.numel() for p in model.parameters())


def quality(task, signal: str) -> float:
    """albert: PSNR (dB) of the full image; bach: SNR (dB) of the whole clip."""
    if signal == "albert":
        pred = np.clip(task.predict(task.W, task.H), 0.0, 1.0)
        mse = float(np.mean((pred - task.image.numpy()) ** 2))
        return 10 * math.log10(1.0 / max(mse, 1e-20))
    gt = task.audio.numpy().astype(np.float64)
    err = float(np.sum((task.predict(task.N) - gt) ** 2))
    return 10 * math.log10(float(np.sum(gt ** 2)) / max(err, 1e-30))


def run_row(signal: str, row: str, params: int, seconds: float, n_points: int, seed: int) -> dict:
    task, n = build_task(signal, row, params, seed)
    checkpoints = [seconds * (i + 1) / n_points for i in range(n_points)]
    curve, step, elapsed = [], 0, 0.0
    while checkpoints:
        t0 = time.perf_counter()
        task.budget_fraction = elapsed / seconds
        task.optimizer.zero_grad(set_to_none=True)
        task.train_step(step)
        task.optimizer.step()
        step += 1
        elapsed += time.perf_counter() - t0
        if elapsed >= checkpoints[0]:
            checkpoints.pop(0)
            curve.append({"seconds": round(elapsed, 2), "steps": step, "db": round(quality(task, signal), 3)})
    m = task.config.model
    return {"signal": signal, "row": row, "encoding": m.encoding, "network": m.network, "parameters": int(n),
            "width": m.width, "hidden_layers": m.n_hidden_layers,
            "log2_hashmap_size": m.log2_hashmap_size if m.encoding == "hashgrid" else None,
            "metric": "psnr" if signal == "albert" else "snr", "final_db": curve[-1]["db"], "curve": curve}


def plot(results, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    signals = list(dict.fromkeys(r["signal"] for r in results))
    fig, axes = plt.subplots(1, len(signals), figsize=(6 * len(signals), 4.5), squeeze=False)
    for ax, signal in zip(axes[0], signals):
        for r in (r for r in results if r["signal"] == signal):
            ax.plot([p["seconds"] for p in r["curve"]], [p["db"] for p in r["curve"]], "o-",
                    label=f"{r['row']} ({r['parameters'] / 1e3:.0f}k)")
        metric = "PSNR" if signal == "albert" else "SNR"
        ax.set(title=f"{signal}: {metric} vs training time", xlabel="wall time (s)", ylabel=f"{metric} (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", default="albert,bach")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seconds", type=float, default=60.0, help="training wall time per row")
    parser.add_argument("--points", type=int, default=6, help="quality measurements along the time budget")
    parser.add_argument("--params", type=int, default=200_000, help="trainable parameters per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = {"bench": "inr_zoo", "seconds_per_row": args.seconds, "params_budget": args.params, **machine(),
            "load_avg_1min": os.getloadavg()[0]}
    results = []
    for signal in args.signals.split(","):
        for row in args.rows.split(","):
            r = run_row(signal, row, args.params, args.seconds, args.points, args.seed)
            results.append(r)
            emit({**base, **r, "load_avg_1min_after": os.getloadavg()[0]})
    plot(results, out / "inr_zoo.png")
    print(f"plot: {out / 'inr_zoo.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
