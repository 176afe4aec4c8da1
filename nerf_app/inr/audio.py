"""The ``audio`` mode: fit ``f: [0,1] -> amplitude`` to one WAV file (mono or multichannel).

Data: ``a`` ``[N, C]`` float32 (int PCM is scaled to [-1, 1); float WAVs are kept as stored), sample
``i`` at time ``t_i = (i + 0.5) / N`` (the network sees ``2 t - 1``; SIREN by default). With
``data.normalize=std`` the network fits ``a / s`` (``s`` = the clip's std) and every output
(eval, render) is scaled back by ``s``, so WAVs and metrics are in the source's units.
Loss: MSE over ``optim.batch_size`` random samples per step (seeded global RNG); the log's ``snr`` is
that batch's SNR in dB. SIREN's first layer gets ``optim.lr * optim.first_layer_lr_scale`` and,
unless ``model.w0_initial > 0``, its ``w0_initial`` from ``model.w0_initial_hz``
(see :class:`~nerf_app.inr.config.AudioModelSettings`).
Eval (``RUN/metrics.json``): ``snr = 10 log10(sum a^2 / sum (a - f)^2)`` and
``psnr = 10 log10(R^2 / mse)`` with ``R = max(a) - min(a)``, ``spectrogram_error_db`` (mean dB
difference of the spectrograms, :func:`spectrogram_error_db`); also writes ``RUN/eval_prediction.wav``
and ``RUN/audio_comparison.png`` (waveforms, a zoomed 20 ms window, source/fit spectrograms).
Render: a float32 WAV of the same duration at any rate (``render.sample_rate`` or ``--resolution N``)
to ``RUN/render_<rate>hz.wav``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ..errors import ConfigError, DatasetError, NerfAppError
from ..metrics import psnr_from_mse
from ..results import atomic_write, write_figure
from ..train.task import Task
from .config import AudioConfig
from .field import InrField


def load_wav(path):
    """``(rate, float32 [N, C])``; int PCM scaled by its full range, float kept."""
    from scipy.io import wavfile
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "audio file not found")
    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError) as e:
        raise DatasetError(path, f"cannot read WAV: {e}") from None
    if data.dtype == np.uint8:
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype.kind == "i":
        data = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    data = np.asarray(data, np.float32)
    if data.ndim == 1:
        data = data[:, None]
    if len(data) < 2:
        raise DatasetError(path, "fewer than 2 samples")
    return int(rate), np.ascontiguousarray(data)


def write_wav(path: Path, rate: int, data: np.ndarray) -> None:
    from scipy.io import wavfile
    samples = np.asarray(data[:, 0] if data.shape[1] == 1 else data, np.float32)
    atomic_write(path, lambda tmp: wavfile.write(tmp, rate, samples))


class AudioTask(Task):
    config_class = AudioConfig
    description = "1D audio: time -> amplitude"

    def build(self) -> None:
        cfg = self.config
        if cfg.data.normalize not in ("std", "none"):
            raise ConfigError(f"data.normalize must be std or none, got {cfg.data.normalize!r}")
        self.rate, a = load_wav(cfg.input)
        self.audio = torch.from_numpy(a)
        self.N, self.C = a.shape
        std = float(np.std(a, dtype=np.float64))
        self.scale = std if cfg.data.normalize == "std" and std > 0 else 1.0
        self.target = self.audio / self.scale
        model_cfg = cfg.model
        if cfg.model.w0_initial <= 0:
            # first-layer frequencies U(-1,1) * w0 rad per unit of 2t-1, i.e. up to w0 / (pi * T) Hz
            if cfg.model.w0_initial_hz <= 0 and cfg.model.network == "siren":
                raise ConfigError("model.w0_initial or model.w0_initial_hz must be positive")
            w0 = math.pi * (self.N / self.rate) * cfg.model.w0_initial_hz
            model_cfg = dataclasses.replace(cfg.model, w0_initial=w0)
        self.w0_initial = model_cfg.w0_initial
        self.model = InrField(1, self.C, model_cfg, self.N, cfg.seed, cfg.backend).to(self.device)
        params = list(self.model.parameters())
        first = list(self.model.net.layers[0].parameters()) if cfg.model.network == "siren" else []
        ids = {id(p) for p in first}
        groups = [{"params": [p for p in params if id(p) not in ids], "lr_scale": 1.0}]
        if first:
            groups.append({"params": first, "lr_scale": cfg.optim.first_layer_lr_scale})
        self.optimizer = torch.optim.Adam(groups, lr=cfg.optim.lr, eps=cfg.optim.eps)

    def train_step(self, step: int) -> Dict[str, Any]:
        lr = self.decayed_lr(self.config.optim.lr, self.config.optim.lr_final)
        self.set_lr(lr)
        idx = torch.randint(0, self.N, (min(self.config.optim.batch_size, self.N),))
        t = ((idx.float() + 0.5) / self.N)[:, None]
        y = self.target[idx].to(self.device)
        err = ((self.model(t.to(self.device)) - y) ** 2).sum()
        mse = err / y.numel()
        mse.backward()
        with torch.no_grad():
            snr = 10 * torch.log10((y.double() ** 2).sum() / err.double().clamp_min(1e-30))
        return {"loss": mse, "snr": snr, "lr": lr}

    @torch.no_grad()
    def predict(self, n: int) -> np.ndarray:
        """The model at ``n`` evenly spaced sample centres over the clip: ``[n, C]``."""
        t = ((torch.arange(n, dtype=torch.float64) + 0.5) / n).float()[:, None]
        c = self.config.eval.chunk
        out = torch.cat([self.model(t[s:s + c].to(self.device)).cpu() for s in range(0, n, c)])
        return (out * self.scale).numpy()

    def evaluate(self, run_dir: Path, **_) -> Dict[str, Any]:
        from ..train.run import RunDir

        t0 = time.perf_counter()
        run_dir = Path(run_dir)
        gt = self.audio.numpy()
        pred = self.predict(self.N)
        err = float(np.sum((pred - gt) ** 2))
        mse = err / gt.size
        snr = 10 * math.log10(float(np.sum(gt.astype(np.float64) ** 2)) / max(err, 1e-30))
        rng = float(gt.max() - gt.min()) or 1.0
        psnr = psnr_from_mse(mse, rng)
        spec_err = float(np.mean([spectrogram_error_db(gt[:, c], pred[:, c], self.rate) for c in range(self.C)]))
        write_wav(run_dir / "eval_prediction.wav", self.rate, pred)
        plot = comparison_plot(run_dir / "audio_comparison.png", gt[:, 0], pred[:, 0], self.rate)
        log = RunDir(run_dir).read_log()
        rec = [r for r in log if "loss" in r]
        return {"mode": "audio", "input": self.config.input, "snr": round(snr, 3), "psnr": round(psnr, 3),
                "spectrogram_error_db": round(spec_err, 3),
                "mse": mse, "samples": self.N, "channels": self.C, "sample_rate": self.rate,
                "encoding": self.config.model.encoding, "network": self.config.model.network,
                "parameters": int(sum(p.numel() for p in self.model.parameters())),
                "w0_initial": self.w0_initial, "normalize_scale": self.scale,
                "steps": rec[-1]["step"] if rec else 0, "train_seconds": rec[-1]["time"] if rec else 0.0,
                "comparison": str(plot), "eval_seconds": round(time.perf_counter() - t0, 2)}

    def render(self, run_dir: Path, resolution=None, out=None, **_) -> Dict[str, Any]:
        rate = int(resolution) if resolution else (self.config.render.sample_rate or self.rate)
        if rate < 1:
            raise NerfAppError(f"sample rate must be positive, got {rate}")
        n = max(1, round(self.N * rate / self.rate))          # same duration
        target = Path(out) if out else Path(run_dir) / f"render_{rate}hz.wav"
        write_wav(target, rate, self.predict(n))
        return {"wav": str(target), "sample_rate": rate, "samples": n, "seconds": round(n / rate, 4)}


def spectrogram_error_db(gt: np.ndarray, pred: np.ndarray, rate: int, floor_db: float = 60.0) -> float:
    """Mean ``|dB(pred) - dB(gt)|`` over the source's spectrogram bins within ``floor_db`` of its loudest
    bin (the spectrograms of the comparison plot: Hann windows of 1024 samples). 0 = same spectrogram;
    a fit missing a component, or with noise near the level of the source's weaker bins, raises it
    (bins more than ``floor_db`` below the source's loudest are not counted)."""
    from scipy.signal import spectrogram

    n = min(1024, len(gt))
    S = [10 * np.log10(spectrogram(np.asarray(x, np.float64), fs=rate, nperseg=n)[2] + 1e-20) for x in (gt, pred)]
    mask = S[0] > S[0].max() - floor_db
    return float(np.abs(S[1] - S[0])[mask].mean())


def comparison_plot(path: Path, gt: np.ndarray, pred: np.ndarray, rate: int) -> Path:
    """Waveforms (whole clip and a 20 ms window) and log-magnitude spectrograms of source and fit."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import spectrogram

    t = np.arange(len(gt)) / rate
    fig, ax = plt.subplots(2, 2, figsize=(12, 6))
    ax[0, 0].plot(t, gt, lw=0.3, label="source")
    ax[0, 0].plot(t, pred, lw=0.3, alpha=0.7, label="fit")
    ax[0, 0].set(title="waveform", xlabel="s")
    ax[0, 0].legend(loc="upper right")
    mid, w = len(gt) // 2, max(2, int(0.02 * rate))
    sl = slice(mid, mid + w)
    ax[0, 1].plot(t[sl], gt[sl], label="source")
    ax[0, 1].plot(t[sl], pred[sl], "--", label="fit")
    ax[0, 1].set(title="20 ms window", xlabel="s")
    for k, (sig, name) in enumerate([(gt, "source"), (pred, "fit")]):
        f, tt, S = spectrogram(sig, fs=rate, nperseg=min(1024, len(sig)))
        ax[1, k].pcolormesh(tt, f, 10 * np.log10(S + 1e-12), shading="auto", vmin=-120, vmax=-20)
        ax[1, k].set(title=f"spectrogram ({name}, dB)", xlabel="s", ylabel="Hz")
    fig.tight_layout()
    write_figure(path, fig, dpi=80)
    return path
