"""The ``audio`` mode end to end on a short synthetic int16 WAV: train -> eval (SNR, comparison PNG,
prediction WAV) -> render at another sample rate (same duration, decodes)."""
from __future__ import annotations

import json

import numpy as np
from scipy.io import wavfile

from nerf_app.cli import main
from nerf_app.inr.audio import load_wav

SMALL = ["--set", "model.width=48", "--set", "model.n_hidden_layers=2", "--set", "model.w0_initial=60",
         "--set", "optim.lr=0.001", "--set", "optim.lr_final=0.0002", "--set", "optim.batch_size=800",
         "--no-progress", "--threads", "1"]  # tiny tensors: one thread avoids OpenMP waits on a busy machine


def test_audio_train_eval_render(tmp_path):
    rate, n = 8000, 800                        # 0.1 s: two tones
    t = np.arange(n) / rate
    sig = 0.5 * np.sin(2 * np.pi * 150 * t) + 0.2 * np.sin(2 * np.pi * 420 * t)
    src = tmp_path / "tone.wav"
    wavfile.write(src, rate, (sig * 32767).astype(np.int16))
    r, a = load_wav(src)
    assert r == rate and a.shape == (n, 1) and np.abs(a[:, 0] - sig).max() < 1e-4
    run = tmp_path / "run"
    assert main(["train", str(src), "--max-steps", "80", "--out", str(run)] + SMALL) == 0
    assert main(["eval", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["mode"] == "audio" and m["samples"] == n and m["sample_rate"] == rate
    assert m["snr"] > 15, m
    assert (run / "audio_comparison.png").stat().st_size > 1000
    r2, pred = wavfile.read(run / "eval_prediction.wav")
    assert r2 == rate and pred.shape == (n,) and pred.dtype == np.float32
    assert main(["render", str(run), "--resolution", "16000"]) == 0
    r3, up = wavfile.read(run / "render_16000hz.wav")
    assert r3 == 16000 and len(up) == 2 * n                     # same duration
    assert np.abs(up[1::2] - pred).mean() < 0.05 * np.abs(pred).mean() + 0.02
