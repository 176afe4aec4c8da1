"""The generic training framework: configs, run folder, checkpoints, resume, NaN guard."""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from nerf_app.errors import ConfigError, NerfAppError
from nerf_app.train.config import BaseConfig, apply_overrides, load_config, read_yaml
from nerf_app.train.run import RunDir, load_checkpoint
from nerf_app.train.task import Task
from nerf_app.train.trainer import Trainer


@dataclass
class ToyModel:
    width: int = 16
    lr: float = 1e-2
    nan_at: list = field(default_factory=list)   # steps whose loss is made NaN (NaN-guard test)
    interrupt_at: int = -1                       # raise KeyboardInterrupt at this step (kill test)


@dataclass
class ToyConfig(BaseConfig):
    model: ToyModel = field(default_factory=ToyModel)


class ToyTask(Task):
    """Fit y = sin(3x) with a tiny MLP on batches drawn from all three global RNGs."""
    config_class = ToyConfig

    def build(self):
        w = self.config.model.width
        self.model = torch.nn.Sequential(torch.nn.Linear(1, w), torch.nn.Tanh(), torch.nn.Linear(w, 1))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.model.lr)
        # a sampler-like generator the task owns (as the nerf ray sampler does): its state is task state
        self.sampler = torch.Generator().manual_seed(1234)

    def train_step(self, step):
        if step == self.config.model.interrupt_at:
            raise KeyboardInterrupt
        x = torch.rand(64, 1) * 2 - 1 + float(np.random.randn()) * 1e-3 + random.random() * 1e-3
        x = x + torch.rand(64, 1, generator=self.sampler) * 1e-3
        loss = ((self.model(x) - torch.sin(3 * x)) ** 2).mean()
        if step in self.config.model.nan_at:
            loss = loss * float("nan")
        loss.backward()
        return {"loss": loss, "x_mean": x.mean()}

    def extra_state(self):
        return {"sampler": self.sampler.get_state()}

    def load_extra_state(self, state):
        self.sampler.set_state(state["sampler"])

    def evaluate(self, run_dir, **opts):
        return {"ok": 1}


def make_config(**sets):
    cfg = ToyConfig(mode="toy", input="none")
    cfg.train.progress = False
    cfg.train.log_every = 5
    apply_overrides(cfg, [f"{k}={v}" for k, v in sets.items()])
    return cfg


def params(task):
    return [p.detach().clone() for p in task.model.parameters()]


def test_config_overrides_types_and_errors(tmp_path):
    cfg = make_config()
    apply_overrides(cfg, ["train.max_steps=123", "model.lr=3e-4", "train.progress=false", "seed=7",
                          "model.nan_at=[1,2]", "train.max_time=1.5"])
    assert cfg.train.max_steps == 123 and isinstance(cfg.train.max_steps, int)
    assert cfg.model.lr == pytest.approx(3e-4) and cfg.seed == 7 and cfg.model.nan_at == [1, 2]
    assert cfg.train.max_time == 1.5
    with pytest.raises(ConfigError, match="unknown config key 'train.max_stepz'"):
        apply_overrides(cfg, ["train.max_stepz=1"])
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(cfg, ["train.max_steps=ten"])
    with pytest.raises(ConfigError, match="expected true/false"):
        apply_overrides(cfg, ["train.progress=maybe"])
    with pytest.raises(ConfigError, match="is a section"):
        apply_overrides(cfg, ["train=3"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(cfg, ["seed"])
    # YAML file layered over defaults, then --set; an unknown key in the file names the file
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  max_steps: 50\nmodel:\n  width: 8\n")
    cfg = load_config(ToyConfig, "toy", str(f), ["model.width=4"])
    assert (cfg.train.max_steps, cfg.model.width, cfg.mode) == (50, 4, "toy")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depth: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(ToyConfig, "toy", str(bad))


def test_run_folder_checkpoint_and_log(tmp_path):
    cfg = make_config(**{"train.max_steps": 12, "train.checkpoint_every": 5})
    result = Trainer(ToyTask, cfg, tmp_path / "run").fit()
    run = RunDir(tmp_path / "run")
    assert result.steps == 12 and result.final_checkpoint == run.checkpoint_path("final")
    assert read_yaml(run.config_path)["model"]["width"] == 16
    state = load_checkpoint(run.checkpoint_path("final"))  # weights_only=True inside
    assert state["step"] == 12 and set(state) >= {"model", "optimizer", "rng", "config", "task", "elapsed"}
    assert load_checkpoint(run.checkpoint_path("last"))["step"] == 10
    torch.load(run.checkpoint_path("last"), weights_only=True)
    # no temp files left behind
    assert sorted(p.name for p in run.checkpoint_dir.iterdir()) == ["final.pt", "last.pt"]
    log = [json.loads(l) for l in run.log_path.read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == [5, 10, 12] and all({"time", "wall", "loss", "x_mean"} <= set(r) for r in log if "loss" in r)


def final_state_differences(run_a, run_b):
    """Keys of the final checkpoints that differ: model, optimizer, step, every RNG state and the task's
    state are compared bit for bit (only ``elapsed``, wall time, may differ)."""
    from test_fuzz_kill import differences
    a = load_checkpoint(RunDir(run_a).checkpoint_path("final"))
    b = load_checkpoint(RunDir(run_b).checkpoint_path("final"))
    assert {"model", "optimizer", "rng", "step", "task"} <= set(a) and a["task"] and a["optimizer"]["state"]
    return differences(a, b)


def test_resume_after_kill_is_bit_identical(tmp_path):
    full = Trainer(ToyTask, make_config(**{"train.max_steps": 20, "train.checkpoint_every": 5}), tmp_path / "a")
    full.fit()
    # the same run killed at step 13 (after the checkpoint at 10) ...
    killed = make_config(**{"train.max_steps": 20, "train.checkpoint_every": 5, "model.interrupt_at": 13})
    with pytest.raises(KeyboardInterrupt):
        Trainer(ToyTask, killed, tmp_path / "b").fit()
    assert load_checkpoint(RunDir(tmp_path / "b").checkpoint_path("last"))["step"] == 10
    # ... and resumed (with the interruption switched off) ends with the same bits
    resumed_cfg = make_config(**{"train.max_steps": 20, "train.checkpoint_every": 5})
    resumed = Trainer(ToyTask, resumed_cfg, tmp_path / "b")
    result = resumed.fit(resume=True)
    assert result.steps == 20
    for p, q in zip(params(full.task), params(resumed.task)):
        assert torch.equal(p, q)
    assert final_state_differences(tmp_path / "a", tmp_path / "b") == []
    # the log of the resumed run has each step once
    steps = [json.loads(l)["step"] for l in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == [0, 5, 10, 15, 20]


def test_nan_guard_skips_and_stops_keeping_last_good_checkpoint(tmp_path, capsys):
    # isolated NaN steps are skipped and training finishes
    cfg = make_config(**{"train.max_steps": 10, "model.nan_at": "[3,7]"})
    tr = Trainer(ToyTask, cfg, tmp_path / "skip")
    tr.fit()
    assert all(torch.isfinite(p).all() for p in params(tr.task))
    assert "step 4: non-finite loss" in capsys.readouterr().err
    # NaN from step 6 on: stops after nan_patience=3 steps, last good checkpoint (step 5) intact
    cfg = make_config(**{"train.max_steps": 30, "train.checkpoint_every": 5, "train.nan_patience": 3,
                         "model.nan_at": str(list(range(6, 30)))})
    with pytest.raises(NerfAppError, match="3 non-finite steps in a row"):
        Trainer(ToyTask, cfg, tmp_path / "stop").fit()
    run = RunDir(tmp_path / "stop")
    state = load_checkpoint(run.checkpoint_path("last"))
    assert state["step"] == 5 and not run.checkpoint_path("final").exists()
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_modes_registry_and_placeholder(tmp_path, monkeypatch):
    from nerf_app.train import modes
    from nerf_app.train.modes import detect_mode, get_task_class

    assert detect_mode("x/armadillo.obj") == "sdf"
    assert detect_mode(str(tmp_path)) == "nerf"
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    (meshes / "a.obj").write_text("v 0 0 0\n")
    assert detect_mode(str(meshes)) == "sdf"          # a folder of meshes: the latent sdf
    (meshes / "transforms.json").write_text("{}")
    assert detect_mode(str(meshes)) == "nerf"         # a capture that also carries a mesh
    # a reserved mode name without a task yet says so clearly
    monkeypatch.setitem(modes.MODES, "audio", None)
    with pytest.raises(NerfAppError, match="audio mode is not available yet"):
        get_task_class("audio")
    with pytest.raises(ConfigError, match="unknown mode"):
        get_task_class("sound")


def test_all_finite_guard_is_exact():
    # The per-step NaN guard takes a fast path through each tensor's sum; it must still be exact:
    # finite tensors whose sum overflows pass, a single NaN or inf anywhere fails.
    from nerf_app.train.trainer import _all_finite
    big = torch.full((1000,), 3e38)
    assert not torch.isfinite(big.sum())
    assert _all_finite([torch.zeros(3), big])
    for bad in (float("nan"), float("inf"), -float("inf")):
        t = torch.randn(100_003)
        t[77_777] = bad
        assert not _all_finite([torch.ones(5), t])
    assert _all_finite([])


# ----------------------------------------------------------------------------------------------
# real SIGKILLs of a training process: before the first checkpoint and in the middle of a checkpoint write

_TRAIN_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
import torch
from nerf_app.train import run as run_module
from nerf_app.train.trainer import Trainer
from test_train_framework import ToyTask, make_config
slow_write_at = int(sys.argv[2])
if slow_write_at >= 0:   # the checkpoint of this step is written slowly: half the bytes, then a pause
    # (checkpoints are serialised in memory, then written through write_bytes' atomic temp file)
    real_save, real_write, current = run_module.torch.save, run_module.write_bytes, {{}}
    def recording_save(state, f, *a, **k):
        current["step"] = state.get("step")
        return real_save(state, f, *a, **k)
    def slow_write(path, data):
        if current.get("step") != slow_write_at:
            return real_write(path, data)
        def write(tmp):
            with open(tmp, "wb") as fh:
                fh.write(bytes(data[: len(data) // 2]))
                fh.flush()
            print("WRITING", flush=True)
            time.sleep(60)
        run_module.atomic_write(path, write)
    run_module.torch.save = recording_save
    run_module.write_bytes = slow_write
cfg = make_config(**{{"train.max_steps": 20, "train.checkpoint_every": 5, "train.log_every": 1}})
Trainer(ToyTask, cfg, sys.argv[1]).fit(resume=sys.argv[3] == "resume")
"""


def _train_process(run, slow_write_at=-1, resume=False):
    import subprocess
    import sys
    from pathlib import Path
    tests = str(Path(__file__).resolve().parent)
    script = _TRAIN_SCRIPT.format(tests=tests)
    return subprocess.Popen([sys.executable, "-c", script, str(run), str(slow_write_at),
                             "resume" if resume else "fresh"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=str(Path(tests).parent))


def _kill(proc):
    import os
    import signal
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_during_a_checkpoint_write_and_before_the_first_checkpoint(tmp_path):
    reference = tmp_path / "reference"
    Trainer(ToyTask, make_config(**{"train.max_steps": 20, "train.checkpoint_every": 5, "train.log_every": 1}),
            reference).fit()

    run = tmp_path / "killed"
    # 1. killed before its first checkpoint (here: while the step-5 checkpoint is being written, nothing
    #    is complete yet): no checkpoint, and the same fresh command simply runs again
    proc = _train_process(run, slow_write_at=5)
    assert proc.stdout.readline().strip() == "WRITING"
    temps = [p for p in (run / "checkpoints").iterdir() if ".tmp" in p.name]
    _kill(proc)
    assert temps and not (run / "checkpoints" / "last.pt").exists()   # half a file, under a temp name only
    # 2. the same command again; killed in the middle of writing the step-15 checkpoint
    proc = _train_process(run, slow_write_at=15)
    assert proc.stdout.readline().strip() == "WRITING"
    _kill(proc)
    last = load_checkpoint(RunDir(run).checkpoint_path("last"))        # the step-10 one, whole
    assert last["step"] == 10
    assert any(".tmp" in p.name for p in (run / "checkpoints").iterdir())
    # 3. resumed: the half-written temp file is removed, and the run ends bit-identical
    proc = _train_process(run, resume=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["final.pt", "last.pt"]
    assert final_state_differences(reference, run) == []
    steps = [json.loads(l)["step"] for l in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(0, 21)), steps


def test_optional_abilities_are_declared_on_task(tmp_path):
    """A mode without per-camera near planes, colour maps or latent codes gets the Task defaults (callers call
    them instead of probing with hasattr): None, None, and fit_latent's one error naming the mode."""
    task = ToyTask(make_config())
    assert task.near_for_poses(np.eye(4)[None], 100.0, 100.0, 64, 48) is None
    assert task.eval_color_transform(None) is None and task.eval_color_transform(3) is None
    with pytest.raises(NerfAppError, match="mode 'toy' has no latent codes"):
        task.fit_latent(tmp_path, tmp_path / "shape.obj")
    assert task.image_near(0) is None and task.pose_correction(0) is None and task.scene is None
    assert task.hide_unseen() == {"mode": "keep"} and task.view_background() is None


def test_no_caller_probes_a_task_with_hasattr():
    """Every ability a caller uses is declared on Task (above): grep the package for ``hasattr(task, ...)``
    and ``hasattr(self.task, ...)`` (export, the viewer, eval and render took to probing again once)."""
    import re
    pattern = re.compile(r"hasattr\(\s*(self\.)?task\b")
    found = [f"{p.relative_to(REPO_ROOT)}:{i}" for p in sorted((REPO_ROOT / "nerf_app").rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == [], found


def test_trainer_step_is_the_loop_s_step(tmp_path):
    """Trainer.step (what fit runs each iteration) applies a finite step and drops a non-finite one."""
    trainer = Trainer(ToyTask, make_config(**{"model.nan_at": "[1]", "train.max_steps": 0}), tmp_path / "run")
    trainer.task = task = ToyTask(trainer.config)
    task.build()
    before = params(task)
    out, loss, ok = trainer.step(0)
    assert ok and math.isfinite(loss) and not all(torch.equal(a, b) for a, b in zip(before, params(task)))
    after_good = params(task)
    out, loss, ok = trainer.step(1)   # nan_at: the loss is NaN
    assert not ok and all(torch.equal(a, b) for a, b in zip(after_good, params(task)))
    assert all(p.grad is None for p in task.model.parameters())
