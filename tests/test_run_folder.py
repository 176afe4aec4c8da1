"""What the run folder guarantees (docs/run-folder.md): a failed command changes nothing that was there,
one trainer per run (an OS lock), checkpoints by time as well as steps, the newest *good* checkpoint by
its stored step, and every bad flag, checkpoint or path is one clear error - never a traceback."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nerf_app.cli import main
from nerf_app.errors import ConfigError, DatasetError, NerfAppError
from nerf_app.train.config import TrainSettings
from nerf_app.train.run import RunDir, RunLock
from nerf_app.train.trainer import Trainer
from test_train_framework import ToyTask, make_config

ROOT = Path(__file__).resolve().parents[1]
ALBERT = ROOT.parent / "shared" / "data" / "image" / "albert.png"
DEMO = ROOT / "data" / "demo"


def snapshot(folder: Path):
    """Every file under ``folder`` with its bytes' hash and mtime."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def cli(*argv, capsys=None):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: one usage line + exit 2
        rc = exc.code
    out = capsys.readouterr() if capsys else None
    return rc, (out.err if out else "")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny trained run of a real mode (image fitting of albert, 4 steps, small grid)."""
    run = tmp_path_factory.mktemp("runs") / "albert"
    rc = main(["train", str(ALBERT), "--out", str(run), "--max-steps", "4", "--no-progress",
               "--set", "model.log2_hashmap_size=14", "--set", "optim.batch_size=4096"])
    assert rc == 0
    return run


def fresh_copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


# ----------------------------------------------------------------------------------------------
# 1. a failed --resume changes nothing


@pytest.mark.parametrize("bad", ["model.log2_hashmap_size=13", "optim.lr=-1", "train.max_time=nan",
                                 "model.encoding=nope"])
def test_failed_resume_leaves_the_run_untouched(image_run, tmp_path, capsys, bad):
    run = fresh_copy(image_run, tmp_path)
    before = snapshot(run)
    rc, err = cli("train", "--resume", run, "--max-steps", "8", "--set", bad, capsys=capsys)
    assert rc == 2, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert snapshot(run) == before
    # and the run still evaluates and resumes
    assert cli("train", "--resume", run, "--max-steps", "6", "--no-progress", capsys=capsys)[0] == 0
    assert RunDir(run).load_checkpoint()["step"] == 6


def test_failed_fresh_train_creates_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    rc, err = cli("train", ALBERT, "--out", out, "--max-steps", "3", "--set", "optim.lr=-1", capsys=capsys)
    assert rc == 2 and "lr" in err
    assert not out.exists()


def test_unfinished_run_can_be_started_again(tmp_path, capsys):
    """A run killed before its first checkpoint leaves config + log only: the same command replaces it."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("mode: image\n")
    (out / "log.jsonl").write_text('{"step": 0, "event": "start"}\n{"step": 50, "loss": 1.0}\n')
    rc, err = cli("train", ALBERT, "--out", out, "--max-steps", "2", "--no-progress",
                  "--set", "model.log2_hashmap_size=14", capsys=capsys)
    assert rc == 0, err
    log = RunDir(out).read_log()
    assert log[0]["event"] == "start" and all(r.get("step", 0) <= 2 for r in log)
    # a trained run is never replaced
    rc, err = cli("train", ALBERT, "--out", out, "--max-steps", "2", capsys=capsys)
    assert rc == 2 and "--resume" in err


# ----------------------------------------------------------------------------------------------
# 2. one process per run folder


_HOLD = "import sys, time; from nerf_app.train.run import RunLock; RunLock(sys.argv[1], True, 'train').acquire(); " \
        "print('locked', flush=True); time.sleep(60)"


def test_second_process_is_refused_while_the_first_holds_the_run(image_run, tmp_path, capsys):
    run = fresh_copy(image_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run)
        for argv in (["train", "--resume", run, "--max-steps", "8"], ["eval", run], ["render", run, "--frames", "1"]):
            rc, err = cli(*argv, capsys=capsys)
            assert rc == 2 and "in use by another nerf-app process" in err and f"pid {holder.pid}" in err, err
        assert snapshot(run) == before
    finally:
        holder.kill()  # kill -9 releases the lock: the kernel drops it with the process
        holder.wait()
    assert cli("train", "--resume", run, "--max-steps", "5", "--no-progress", capsys=capsys)[0] == 0


def test_readers_share_and_block_a_trainer(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    code = "import sys, time; from nerf_app.train.run import RunLock; RunLock(sys.argv[1], False).acquire(); " \
           "print('locked', flush=True); time.sleep(60)"
    reader = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "locked"
        shared = RunLock(run, exclusive=False).acquire()  # a second reader is fine
        shared.release()
        with pytest.raises(NerfAppError, match="in use"):
            RunLock(run, exclusive=True).acquire()
    finally:
        reader.kill()
        reader.wait()
    RunLock(run, exclusive=True).acquire().release()


# ----------------------------------------------------------------------------------------------
# 3. checkpoints by wall time


def test_default_checkpoint_cadence_is_a_minute():
    assert 0 < TrainSettings().checkpoint_every_s <= 60


def test_time_checkpoint_comes_within_half_the_interval(tmp_path, monkeypatch):
    """With step checkpoints off, the first time-based checkpoint lands at half the interval.

    The trainer's clock is replaced by one that advances 0.125 s per reading, so every step takes exactly
    0.125 s of training time whatever the machine's load: half of a 2 s interval is reached at step 8 and
    the budget (1.5 s) at step 12. A checkpoint at the full interval would not come within the budget at
    all, one at the first step would be at step 1: both fail here."""
    import types
    from nerf_app.train import trainer as trainer_module
    ticks = {"n": 0}

    def fake_perf_counter():
        ticks["n"] += 1
        return ticks["n"] * 0.125
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=fake_perf_counter,
                                                                      time=time.time, sleep=time.sleep))
    cfg = make_config(**{"train.max_steps": 0, "train.max_time": 1.5, "train.checkpoint_every": 0,
                         "train.checkpoint_every_s": 2.0})
    run = tmp_path / "run"
    result = Trainer(ToyTask, cfg, run).fit()
    assert result.steps == 12 and result.elapsed == 1.5  # the fake clock is what the loop measured
    last = RunDir(run).checkpoint_path("last")
    assert last.is_file(), "no time-based checkpoint within the first 1.5 s of a 2 s interval"
    state = torch.load(last, weights_only=True)
    assert (state["step"], state["elapsed"]) == (8, 1.0)


# ----------------------------------------------------------------------------------------------
# 8. the newest checkpoint is the one with the highest step; a corrupt one is skipped


def _ckpt(step):
    return {"model": {"w": torch.ones(2) * step}, "optimizer": {}, "step": step, "elapsed": float(step),
            "rng": {}, "config": {"mode": "toy"}}


def test_newest_checkpoint_by_stored_step_not_file_time(tmp_path):
    run = RunDir(tmp_path / "r").create()
    run.save_checkpoint(_ckpt(10), "final")
    time.sleep(0.02)
    run.save_checkpoint(_ckpt(5), "last")       # newer file, older step
    assert run.latest_checkpoint() == run.checkpoint_path("final")
    assert run.load_checkpoint()["step"] == 10


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_corrupt_newest_checkpoint_falls_back(tmp_path, damage):
    run = RunDir(tmp_path / "r").create()
    run.save_checkpoint(_ckpt(5), "last")
    run.save_checkpoint(_ckpt(10), "final")
    p = run.checkpoint_path("final")
    data = p.read_bytes()
    p.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": os.urandom(len(data))}[damage])
    said = []
    state = run.load_checkpoint(log=said.append)
    assert state["step"] == 5
    assert said and "final.pt" in " ".join(said)


# ----------------------------------------------------------------------------------------------
# 6. foreign, crafted and mismatched checkpoints; bad flags


def test_checkpoint_of_another_mode_is_refused(image_run, tmp_path, capsys):
    run = fresh_copy(image_run, tmp_path)
    p = RunDir(run).latest_checkpoint()
    state = torch.load(p, weights_only=True)
    state["config"]["mode"] = "sdf"
    torch.save(state, p)
    rc, err = cli("eval", run, capsys=capsys)
    assert rc == 2 and "'sdf' run" in err


@pytest.mark.parametrize("key", ["optimizer", "rng", "step", "model", "elapsed"])
def test_checkpoint_missing_a_key_is_refused_by_name(image_run, tmp_path, capsys, key):
    run = fresh_copy(image_run, tmp_path)
    for p in RunDir(run).checkpoint_dir.glob("*.pt"):
        state = torch.load(p, weights_only=True)
        del state[key]
        torch.save(state, p)
    before = snapshot(run)
    rc, err = cli("train", "--resume", run, "--max-steps", "8", capsys=capsys)
    assert rc == 2 and "Traceback" not in err, err
    assert key in err or "no usable checkpoint" in err
    assert snapshot(run) == before


def test_non_finite_checkpoint_is_refused(image_run, tmp_path, capsys):
    run = fresh_copy(image_run, tmp_path)
    for p in RunDir(run).checkpoint_dir.glob("*.pt"):
        state = torch.load(p, weights_only=True)
        name = next(iter(state["model"]))
        state["model"][name] = state["model"][name] * float("nan")
        torch.save(state, p)
    rc, err = cli("train", "--resume", run, "--max-steps", "8", capsys=capsys)
    assert rc == 2 and "non-finite" in err


def test_shape_mismatch_is_one_error(image_run, tmp_path, capsys):
    run = fresh_copy(image_run, tmp_path)
    rc, err = cli("eval", run, "--set", "model.width=32", capsys=capsys)
    assert rc == 2 and "does not fit" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["train", "{albert}", "--max-time", "nan"], ["train", "{albert}", "--max-time", "inf"],
    ["train", "{albert}", "--max-time", "0"], ["train", "{albert}", "--max-steps", "-1"],
    ["train", "{albert}", "--threads", "-2"], ["train", "{albert}", "--set", "device=cuda:7"],
    ["train", "{albert}", "--set", "train.max_time=inf"], ["render", "{run}", "--frames", "0"],
    ["render", "{run}", "--fps", "0"], ["render", "{run}", "--resolution", "100000"],
    ["render", "{run}", "--resolution", "0"], ["export", "{run}", "--threshold", "abc"],
    ["export", "{run}", "--resolution", "100000"], ["eval", "{run}", "--limit", "0"],
])
def test_bad_flags_are_one_clear_error(image_run, tmp_path, capsys, argv):
    run = fresh_copy(image_run, tmp_path)
    before = snapshot(run)
    argv = [a.format(albert=ALBERT, run=run) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "new")]
    rc, err = cli(*argv, capsys=capsys)
    assert rc == 2, err
    assert "Traceback" not in err and "error" in err
    assert snapshot(run) == before
    assert not (tmp_path / "new").exists()


def test_eval_unknown_split_is_one_error(tmp_path, capsys):
    from nerf_app.data import load_scene
    scene = load_scene(DEMO, format="transforms")
    with pytest.raises(ConfigError, match="no split 'nope'"):
        scene.split_indices("nope")


# ----------------------------------------------------------------------------------------------
# 10. leftovers of a kill are cleaned; NaN stop message


def test_stale_temp_checkpoint_is_removed_on_resume(image_run, tmp_path, capsys):
    run = fresh_copy(image_run, tmp_path)
    stale = RunDir(run).checkpoint_dir / ".last.abc123.tmp.pt"
    stale.write_bytes(b"x" * 1000)
    assert cli("train", "--resume", run, "--max-steps", "5", "--no-progress", capsys=capsys)[0] == 0
    assert not stale.exists()


def test_disk_full_during_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = make_config(**{"train.max_steps": 20, "train.checkpoint_every": 5})
    run = RunDir(tmp_path / "r")
    calls = {"n": 0}
    real = os.fsync

    def full_disk(fd):
        # the disk fills while the second checkpoint's bytes are flushed (the checkpoint is serialised in
        # memory; the file write is where a full disk shows)
        if ".last." in os.readlink(f"/proc/self/fd/{fd}"):
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(28, "No space left on device")
        return real(fd)
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(NerfAppError, match="no space left on device"):
        Trainer(ToyTask, cfg, run.path).fit()
    monkeypatch.setattr(os, "fsync", real)
    assert calls["n"] == 2
    assert run.load_checkpoint()["step"] == 5
    assert not [p for p in run.checkpoint_dir.iterdir() if ".tmp" in p.name]


# ----------------------------------------------------------------------------------------------
# 4, 9. paths outside the scene folder; masks; crops


def _demo_copy(tmp_path) -> Path:
    scene = tmp_path / "scene"
    shutil.copytree(DEMO, scene)
    return scene


def test_symlinked_images_folder_is_refused(tmp_path):
    from nerf_app.data import load_scene
    scene = _demo_copy(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(scene / "images", elsewhere)
    (scene / "images").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DatasetError, match="outside the scene folder"):
        load_scene(scene, format="colmap")
    with pytest.raises(DatasetError, match="outside the scene folder"):
        load_scene(scene, format="transforms")


def test_extensionless_file_path_fallback_is_contained(tmp_path):
    import json
    from nerf_app.data import load_scene
    scene = _demo_copy(tmp_path)
    outside = tmp_path / "secret.png"
    meta = json.loads((scene / "transforms_train.json").read_text())
    first = meta["frames"][0]["file_path"]                     # images/r_001.png
    shutil.move(scene / first, outside)
    (scene / first).symlink_to(outside)                         # images/r_001.png -> outside
    meta["frames"][0]["file_path"] = first[:-4]                 # "images/r_001": found by the extension fallback
    (scene / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="outside the scene folder"):
        load_scene(scene, format="transforms")


def test_masks_outside_or_of_the_wrong_size_are_refused(tmp_path):
    import imageio.v3 as iio
    from nerf_app.data import load_scene
    scene = _demo_copy(tmp_path)
    names = load_scene(scene, format="colmap").names
    masks = scene / "masks"
    masks.mkdir()
    h, w = iio.imread(scene / "images" / names[0]).shape[:2]
    for n in names:
        iio.imwrite(masks / (n + ".png"), np.full((h, w), 255, np.uint8))
    assert load_scene(scene, format="colmap").images.mask(0).all()
    iio.imwrite(masks / (names[0] + ".png"), np.full((h // 2, w // 2), 255, np.uint8))  # same aspect, half size
    with pytest.raises(DatasetError, match="mask is"):
        load_scene(scene, format="colmap").images.mask(0)
    (masks / (names[1] + ".png")).unlink()
    outside = tmp_path / "m.png"
    iio.imwrite(outside, np.full((h, w), 255, np.uint8))
    (masks / (names[1] + ".png")).symlink_to(outside)
    with pytest.raises(DatasetError, match="outside the scene folder"):
        load_scene(scene, format="colmap")


def test_cropped_image_of_the_same_aspect_is_not_taken_for_a_downscale(tmp_path):
    import imageio.v3 as iio
    from nerf_app.data import load_scene
    scene = _demo_copy(tmp_path)
    name = load_scene(scene, format="colmap").names[0]
    img = iio.imread(scene / "images" / name)
    h, w = img.shape[:2]
    iio.imwrite(scene / "images" / name, img[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2])  # a centre crop
    with pytest.raises(DatasetError, match="images_2"):
        load_scene(scene, format="colmap")


def test_corrupt_held_out_image_is_found_before_training(tmp_path, capsys):
    """Header intact (the loader's size check passes), pixel data destroyed: `train` says so at once,
    before any run folder exists, instead of `eval` failing after the whole budget."""
    import json
    scene = _demo_copy(tmp_path)
    name = json.loads((scene / "transforms_test.json").read_text())["frames"][0]["file_path"]
    path = scene / name
    data = path.read_bytes()
    path.write_bytes(data[:64] + bytes(len(data) - 64))
    out = tmp_path / "run"
    rc, err = cli("train", scene, "--out", out, "--max-steps", "1", "--set", "data.format=transforms", capsys=capsys)
    assert rc == 2 and Path(name).name in err and "decode" in err, err
    assert not out.exists()


def test_a_file_holding_a_bare_tensor_is_not_a_checkpoint(tmp_path):
    # one line naming the file, and no torch indexing warning on the way (it used to index the tensor by "step")
    import warnings

    from nerf_app.errors import DatasetError
    from nerf_app.train.run import checkpoint_step
    path = tmp_path / "step_000010.pt"
    torch.save(torch.zeros(3, 4), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetError, match="not a nerf_app checkpoint: holds a Tensor"):
            checkpoint_step(path)
