"""The ``audio`` mode end to end on a short synthetic int16 WAV: train -> eval (SNR, comparison PNG,
prediction WAV) -> render at another sample rate (same duration, decodes); target normalisation (outputs
in the source's units), the spectrogram error metric, the first layer's bandwidth in Hz and its
learning-rate scale."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from nerf_app.cli import main
from nerf_app.inr.audio import AudioTask, load_wav, spectrogram_error_db
from nerf_app.inr.config import AudioConfig

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


def _tones(rate, n, amp):
    t = np.arange(n) / rate
    return amp * (np.sin(2 * np.pi * 150 * t) + 0.4 * np.sin(2 * np.pi * 420 * t + 1.0))


@pytest.mark.parametrize("normalize", ["std", "none"])
def test_quiet_clip_output_in_source_units(tmp_path, normalize):
    """A quiet float clip (peak ~0.014): the network fits a / std with data.normalize=std and eval/render
    scale back, so the prediction WAV has the source's level; the spectrogram of the fit matches the
    source's (mean |dB| difference over the bins within 60 dB of the loudest)."""
    rate, n = 8000, 2000
    sig = _tones(rate, n, 0.01).astype(np.float32)
    src = tmp_path / "quiet.wav"
    wavfile.write(src, rate, sig)
    run = tmp_path / "run"
    assert main(["train", str(src), "--max-steps", "150", "--out", str(run), "--set", f"data.normalize={normalize}"]
                + SMALL + ["--set", "model.w0_initial=0", "--set", "model.w0_initial_hz=200"]) == 0
    assert main(["eval", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    expected_scale = float(np.std(sig.astype(np.float64))) if normalize == "std" else 1.0
    assert m["normalize_scale"] == pytest.approx(expected_scale, rel=1e-6)
    _, pred = wavfile.read(run / "eval_prediction.wav")
    if normalize == "std":                 # measured: 30.5 dB, 1.5 dB (none: 16.9 dB, 4.4 dB)
        assert m["snr"] > 20, m
        assert abs(pred.std() / sig.std() - 1) < 0.1            # source units, not a / std
        assert m["spectrogram_error_db"] < 4, m
        assert m["spectrogram_error_db"] == pytest.approx(spectrogram_error_db(sig, pred, rate), abs=1e-3)
    assert main(["render", str(run), "--resolution", "16000"]) == 0
    _, up = wavfile.read(run / "render_16000hz.wav")
    assert abs(np.abs(up[1::2]).mean() / np.abs(pred).mean() - 1) < 0.1


def test_spectrogram_error_db_separates():
    rate = 8000
    a = _tones(rate, 4000, 0.3)
    assert spectrogram_error_db(a, a, rate) == 0.0
    assert spectrogram_error_db(a, 1.01 * a, rate) == pytest.approx(20 * math.log10(1.01), abs=1e-6)
    rng = np.random.default_rng(0)
    t = np.arange(4000) / rate
    noisy = spectrogram_error_db(a, a + 0.03 * rng.standard_normal(len(a)), rate)      # -20 dB noise floor
    assert 2 < noisy < 10
    assert spectrogram_error_db(a, 0.3 * np.sin(2 * np.pi * 150 * t), rate) > 10 + noisy  # 420 Hz missing
    assert spectrogram_error_db(a, 0.3 * np.sin(2 * np.pi * 300 * t), rate) > 25        # wrong tone


def test_first_layer_bandwidth_and_lr_scale(tmp_path):
    rate, n = 8000, 4000                      # 0.5 s
    src = tmp_path / "c.wav"
    wavfile.write(src, rate, _tones(rate, n, 0.3).astype(np.float32))
    cfg = AudioConfig(input=str(src))
    cfg.model.width, cfg.model.n_hidden_layers, cfg.model.w0_initial_hz = 16, 2, 200.0
    cfg.optim.lr, cfg.optim.lr_final, cfg.optim.first_layer_lr_scale = 1e-3, 0.0, 0.05
    torch.manual_seed(0)
    task = AudioTask(cfg)
    task.build()
    assert task.w0_initial == pytest.approx(math.pi * 0.5 * 200.0)
    assert task.model.net.w0_initial == pytest.approx(task.w0_initial)
    first = task.model.net.layers[0]
    groups = {tuple(id(p) for p in g["params"]): g for g in task.optimizer.param_groups}
    g_first = groups[(id(first.weight), id(first.bias))]
    task.optimizer.zero_grad()
    task.train_step(0)
    assert g_first["lr"] == pytest.approx(5e-5)
    assert all(g["lr"] == pytest.approx(1e-3) for g in task.optimizer.param_groups if g is not g_first)
    assert sum(len(g["params"]) for g in task.optimizer.param_groups) == len(list(task.model.parameters()))
    cfg.model.w0_initial = 77.0                 # a positive w0_initial is used as given
    task.build()
    assert task.model.net.w0_initial == 77.0 and task.w0_initial == 77.0
