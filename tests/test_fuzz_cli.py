"""Chaos through the CLI, in-process (``nerf_app.cli.main``): every verb's numeric flags with 0, -1, nan,
inf, huge and non-numbers; ``--set``/``--config`` with wrong types, another mode's config and YAML junk; a
trained run's ``config.yaml`` and checkpoints damaged (missing/extra keys, wrong shapes, non-finite tensors,
truncation, bit flips, malicious pickles, another mode's checkpoint).

Every case must end in exit 0 or exit 2 with ONE line ``nerf-app VERB: error: ...`` (argparse's usage +
error line is also exit 2): any other exception is a traceback, and so is a traceback printed anywhere
(a background thread, C code) by a command that exits 0. A command that fails must leave the run
folder exactly as it was (files, sizes, mtimes, SHA-256) and a failed fresh ``train`` must create nothing;
no pickle may execute code. Each case runs in a child process confined by the kernel to its own case
folder (which holds its inputs: the image, the run, the config) and the installation (fuzz_confine.py):
any other open is refused and counted, whatever library makes it; the child is killed on time.
``NERF_APP_FUZZ_FULL=1`` runs the full counts.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pickle
import random
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nerf_app.cli import main

from fuzz_support import Tally, cases, judge, runner, snapshot, snapshot_diff

TALLY = Tally()
SMALL = ["--set", "model.log2_hashmap_size=10", "--set", "model.n_levels=4", "--set", "optim.batch_size=256",
         "--set", "model.width=16", "--no-progress", "--threads", "1"]
CASE_SECONDS = 60.0  # killed after this: a command with --max-time 3 needs headroom on a loaded box
BAD_NUMBERS = ["0", "-1", "nan", "inf", "-inf", "1e309", "99999999999999999999", "abc", "", "1.5", "0x10",
               "-0", "1e-9", "2147483648", "NaN", "1_000"]


def _run_cli(argv, family, repro, case, run_dir=None, fresh_out=None, cwd=None):
    """One CLI call in a child confined to ``case`` (its folder: inputs and outputs); classifies it and
    checks the run folder / fresh output folder."""
    before = snapshot(run_dir) if run_dir is not None else None
    report = runner().run("fuzz_cases:cli_case", [case], {"argv": [str(a) for a in argv]}, timeout=CASE_SECONDS,
                          cwd=cwd)
    res = judge(report, TALLY, family, repro)
    rc = res["rc"] if res else "traceback"
    text = res["stderr"] if res else ""
    outcome = "ok" if rc == 0 else "errors"
    if rc == 2:
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("usage:") and not ln.startswith(" ")
                 and not ln.startswith("[") and "warning" not in ln.lower()]
        errors = [ln for ln in lines if ": error:" in ln]
        if len(errors) != 1 or "Traceback" in text:
            TALLY.fail(family, "tracebacks", f"{repro}: exit 2 without exactly one error line: {text[-800:]!r}")
    elif rc not in (0, "traceback"):
        TALLY.fail(family, "tracebacks", f"{repro}: exit code {rc}: {text[-500:]!r}")
    TALLY.case(family, outcome)
    if rc != 0 and run_dir is not None:
        diff = snapshot_diff(before, snapshot(run_dir))
        if diff:
            TALLY.fail(family, "damaged_run_folders", f"{repro}: {diff[:8]}")
    if rc != 0 and fresh_out is not None and fresh_out.exists() and any(fresh_out.iterdir()):
        TALLY.fail(family, "damaged_run_folders", f"{repro}: a failed fresh train left "
                   f"{sorted(p.name for p in fresh_out.iterdir())}")
    return rc


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny image (24x16) and a trained image-mode run of it (3 steps, checkpoints last + final)."""
    import cv2
    root = tmp_path_factory.mktemp("cli_fuzz")
    img = (np.random.default_rng(0).random((16, 24, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(root / "tiny.png"), img)
    run = root / "pristine"
    assert main(["train", str(root / "tiny.png"), "--out", str(run), "--max-steps", "3",
                 "--set", "train.checkpoint_every=2", *SMALL]) == 0
    assert (run / "checkpoints" / "final.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    (root / "empty").mkdir()
    return root


def _case_folder(base: Path, k: int, with_run: bool = True) -> Path:
    """A fresh folder for case ``k`` holding everything the case may read: the image, an empty folder, a
    copy of the trained run (``run/``). The case's child may open nothing else (but the installation)."""
    case = base / f"case{k % 2}"
    if case.exists():
        shutil.rmtree(case)
    case.mkdir()
    shutil.copy(base / "tiny.png", case / "tiny.png")
    (case / "empty").mkdir()
    if with_run:
        _copy_run(base, case)
    return case


def _copy_run(base: Path, case: Path) -> None:
    """``case/run``: a copy of the trained run whose config names the case's own copy of the image (the
    run's config records the image it was trained on: outside the case folder, the child may not read it)."""
    shutil.copytree(base / "pristine", case / "run")
    cfg = case / "run" / "config.yaml"
    cfg.write_text(cfg.read_text().replace(str(base / "tiny.png"), str(case / "tiny.png")))


# ------------------------------------------------------------------------------------------- flags

def _flag_cases(base: Path):
    """(verb, flag, needs_run, argv builder) for every numeric flag of every verb."""
    img = str(base / "tiny.png")
    out = []
    def train_fresh(flag, extra):
        return lambda v, run, new: ["train", img, "--out", new, flag, v, *extra, *SMALL]
    out += [("train", "--max-time", False, train_fresh("--max-time", ["--max-steps", "2"])),
            ("train", "--max-steps", False, train_fresh("--max-steps", ["--max-time", "3"])),
            ("train", "--seed", False, train_fresh("--seed", ["--max-steps", "2"])),
            ("train", "--threads", False, train_fresh("--threads", ["--max-steps", "2"])),
            ("train", "--viewer-port", False, train_fresh("--viewer-port", ["--max-steps", "2"]))]
    out += [("train-resume", f, True, (lambda f, extra: lambda v, run, new: ["train", "--resume", run, f, v, *extra,
                                                                           "--no-progress"])(f, e))
            for f, e in (("--max-steps", ["--max-time", "3"]), ("--max-time", ["--max-steps", "5"]),
                         ("--seed", ["--max-steps", "5"]), ("--threads", ["--max-steps", "5"]))]
    out += [("eval", "--limit", True, lambda v, run, new: ["eval", run, "--limit", v])]
    out += [("render", f, True, (lambda f: lambda v, run, new: ["render", run, f, v, "--frames", "2", "--resolution", "8"]
                                 if f != "--frames" else ["render", run, f, v, "--resolution", "8"])(f))
            for f in ("--frames", "--fps")]
    out += [("render", "--resolution", True, lambda v, run, new: ["render", run, "--resolution", v])]
    out += [("export", f, True, (lambda f: lambda v, run, new: ["export", run, f, v])(f))
            for f in ("--resolution", "--threshold", "--chunks", "--min-component", "--steps")]
    out += [("fit-latent", "--steps", True, lambda v, run, new: ["fit-latent", run, img, "--steps", v])]
    out += [("view", f, True, (lambda f: lambda v, run, new: ["view", run, "--host", "127.0.0.1", "--port", "0", f, v,
                                                             "--exit-after", "0.05"])(f))
            for f in ("--preview-height", "--max-height")]
    out += [("view", "--port", True, lambda v, run, new: ["view", run, "--host", "127.0.0.1", "--port", v,
                                                          "--exit-after", "0.05"])]
    out += [("process", f, False, (lambda f: lambda v, run, new: ["process", str(base / "empty"), "--out", new, f, v,
                                                                  "--no-progress"])(f))
            for f in ("--frames", "--max-size", "--max-features", "--min-registered", "--threads", "--seed")]
    out += [("demo", f, False, (lambda f: lambda v, run, new: ["demo", "--out", new, "--scene", str(base / "empty"), f, v])(f))
            for f in ("--max-time", "--frames", "--mesh-resolution")]
    return out


def test_fuzz_cli_flags(base):
    family = "cli-flags"
    flags = _flag_cases(base)
    product = [(f, v) for f in flags for v in BAD_NUMBERS]
    rng = random.Random(0)
    n = cases(70, len(product))
    chosen = product if n >= len(product) else rng.sample(product, n)
    for k, ((verb, flag, needs_run, build), value) in enumerate(chosen):
        if verb == "view" and flag == "--port" and value in ("0", "-0"):
            continue
        case = _case_folder(base, k, with_run=needs_run)
        verb, flag, needs_run, build = _flag_cases(case)[flags.index((verb, flag, needs_run, build))]
        run = case / "run" if needs_run else None
        new = case / "new"
        argv = build(value, str(run) if run else "", str(new))
        _run_cli(argv, family, f"nerf-app {' '.join(map(str, argv))}", case, run_dir=run,
                 fresh_out=new if verb in ("train", "demo", "process") else None)
    TALLY.emit()
    assert TALLY.bad(family) == 0, TALLY.report(family)


# ------------------------------------------------------------------------------------------- config

def _config_keys():
    from nerf_app.train.modes import get_task_class
    cfg = get_task_class("image").config_class()
    keys = []
    def walk(obj, prefix):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
            else:
                keys.append(f"{prefix}{f.name}")
    walk(cfg, "")
    return keys


BAD_VALUES = BAD_NUMBERS + ["true", "null", "[1, 2]", "{a: 1}", "[]", "'x'", "cuda:7", "cpu", "-1e30", "1e30",
                            "torch", "../../etc/passwd", "\x00"]


def _yaml_junk(rng: random.Random, keys) -> str:
    kind = rng.choice(["other_mode", "wrong_type", "unknown", "nested", "python_tag", "aliases", "scalar", "bytes",
                       "huge", "deep"])
    from nerf_app.train.config import preset_path
    if kind == "other_mode":
        return preset_path(rng.choice(["sdf", "nerf", "audio", "occupancy", "deepsdf"])).read_text()
    if kind == "deep":  # 2,000 nesting levels: the YAML parser's recursion limit
        return "train: " + "[" * 2000 + "]" * 2000 + "\n"
    if kind == "python_tag":
        return "train: !!python/object/apply:os.system ['touch PWNED_YAML']\n"
    if kind == "aliases":  # a billion-laughs document: safe_load expands aliases
        lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
        for i in range(1, 9):
            prev = chr(ord("a") + i - 1)
            cur = chr(ord("a") + i)
            lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]")
        return "\n".join(lines) + "\n"
    if kind == "scalar":
        return rng.choice(["3\n", "- 1\n- 2\n", "null\n", "'text'\n", ""])
    if kind == "bytes":
        return rng.randbytes(rng.randint(1, 64)).decode("latin-1")
    if kind == "deep":
        return "train: " + "[" * 2000 + "]" * 2000 + "\n"
    doc: dict = {}
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        value = rng.choice([None, [], {}, "x", True, -1, 0, float("nan"), float("inf"), 10 ** 30, [1, 2], {"a": 1}])
        if kind == "unknown":
            key = key + "_typo"
        if kind == "huge":
            value = 10 ** rng.randint(10, 400)
        parts = key.split(".")
        d = doc
        for p in parts[:-1]:
            d = d.setdefault(p, {}) if isinstance(d.get(p, {}), dict) else d
        d[parts[-1]] = value if kind != "nested" else {"deeper": value}
    if rng.random() < 0.3:
        doc["mode"] = rng.choice(["sdf", "nerf", "image", 3, None])
    return yaml.safe_dump(doc, allow_unicode=True)


def test_deeply_nested_yaml_is_one_error(base):
    cfg_file = base / "deep.yaml"
    cfg_file.write_text("train: " + "[" * 2000 + "]" * 2000 + "\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["train", str(base / "tiny.png"), "--out", str(base / "deep_run"), "--max-steps", "1",
                   "--config", str(cfg_file), *SMALL])
    assert rc == 2 and "error:" in err.getvalue()


def test_fuzz_config(base):
    family = "config"
    keys = _config_keys()
    n = cases(40, 600)
    for k in range(n):
        rng = random.Random(k)
        case = _case_folder(base, k)
        img, new = str(case / "tiny.png"), case / "new"
        how = rng.choice(["set_fresh", "set_resume", "config_file", "run_config"])
        run = None
        if how == "set_fresh":
            argv = ["train", img, "--out", new, "--max-steps", "2", *SMALL,
                    "--set", f"{rng.choice(keys)}={rng.choice(BAD_VALUES)}"]
        elif how == "set_resume":
            run = case / "run"
            argv = ["train", "--resume", run, "--max-steps", "4", "--no-progress",
                    "--set", f"{rng.choice(keys)}={rng.choice(BAD_VALUES)}"]
        elif how == "config_file":
            cfg_file = case / "c.yaml"
            cfg_file.write_text(_yaml_junk(rng, keys), encoding="utf-8", errors="surrogateescape")
            argv = ["train", img, "--out", new, "--max-steps", "2", "--config", cfg_file, *SMALL]
        else:  # the run's own config.yaml is damaged: eval / render / resume must fail cleanly or work
            run = case / "run"
            (run / "config.yaml").write_text(_yaml_junk(rng, keys), encoding="utf-8", errors="surrogateescape")
            verb = rng.choice([["eval", run], ["render", run, "--frames", "1", "--resolution", "8"],
                               ["train", "--resume", run, "--max-steps", "4", "--no-progress"]])
            argv = verb
        _run_cli(argv, family, f"{how} seed={k}: nerf-app {' '.join(map(str, argv))[:300]}", case, run_dir=run,
                 fresh_out=new if argv[0] == "train" and "--resume" not in map(str, argv) else None, cwd=case)
        assert not (case / "PWNED_YAML").exists() and not Path("PWNED_YAML").exists()
    TALLY.emit()
    assert TALLY.bad(family) == 0, TALLY.report(family)


# ------------------------------------------------------------------------------------------- checkpoints

class _Evil:
    """A pickle that runs a shell command when loaded without weights_only."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _damage_checkpoint(rng: random.Random, state: dict, path: Path, marker: Path) -> str:
    kind = rng.choice(["drop_key", "extra_key", "wrong_shape", "nan", "inf", "wrong_type", "truncate", "flip",
                       "evil_pickle", "evil_nested", "other_mode", "step_type", "empty_dict", "not_a_dict",
                       "rng_junk", "optimizer_junk", "task_junk", "zero_bytes", "huge_step", "dtype"])
    s = {k: v for k, v in state.items()}
    s["model"] = dict(state["model"])
    if kind in ("truncate", "flip", "zero_bytes", "evil_pickle", "evil_nested", "not_a_dict"):
        if kind == "evil_pickle":
            path.write_bytes(pickle.dumps(_Evil(marker)))
        elif kind == "evil_nested":
            buf = io.BytesIO()
            torch.save({"model": _Evil(marker), "step": 1}, buf, _use_new_zipfile_serialization=True)
            path.write_bytes(buf.getvalue())
        elif kind == "not_a_dict":
            torch.save([1, 2, 3] if rng.random() < 0.5 else torch.zeros(3), path)
        else:
            data = bytearray(path.read_bytes())
            if kind == "truncate":
                data = data[:rng.randrange(len(data))]
            elif kind == "flip":
                for _ in range(rng.randint(1, 20)):
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            else:
                data = bytearray()
            path.write_bytes(bytes(data))
        return kind
    name = rng.choice(sorted(s["model"]))
    t = s["model"][name]
    if kind == "drop_key":
        victim = rng.choice(sorted(s))
        if rng.random() < 0.5:
            del s["model"][name]
        else:
            del s[victim]
    elif kind == "extra_key":
        s["model"]["bogus.weight"] = torch.zeros(3)
        s["bogus"] = 1
    elif kind == "wrong_shape":
        s["model"][name] = torch.zeros(*(d + 1 for d in t.shape)) if t.dim() else torch.zeros(2)
    elif kind in ("nan", "inf") and t.is_floating_point() and t.numel():
        t = t.clone()
        t.view(-1)[rng.randrange(t.numel())] = float(kind)
        s["model"][name] = t
    elif kind == "wrong_type":
        s["model"][name] = rng.choice(["x", 3, None, [1.0]])
    elif kind == "other_mode":
        s["config"] = dict(s["config"], mode=rng.choice(["sdf", "nerf", "audio"]))
    elif kind == "step_type":
        s["step"] = rng.choice(["10", -5, 2.5, None, float("nan"), True])
    elif kind == "huge_step":
        s["step"] = rng.choice([2**62, 10**30])
    elif kind == "empty_dict":
        s = {}
    elif kind == "rng_junk":
        s["rng"] = rng.choice([{}, None, {"torch": torch.zeros(3, dtype=torch.uint8)}, "x"])
    elif kind == "optimizer_junk":
        s["optimizer"] = rng.choice([{}, None, {"state": {}, "param_groups": []}, {"state": 1}])
    elif kind == "task_junk":
        s["task"] = rng.choice([None, "x", {"shape": [-1, 0, 3]}, {"space": "bogus"}, {"shape": "x"}])
    elif kind == "dtype":
        s["model"][name] = t.to(torch.float64) if t.is_floating_point() else t
    try:
        torch.save(s, path)
    except Exception:  # noqa: BLE001 - an unsaveable mutation (e.g. 10**30 overflows): write junk instead
        path.write_bytes(b"junk")
    return kind


def test_fuzz_checkpoints(base):
    family = "checkpoints"
    pristine = torch.load(base / "pristine" / "checkpoints" / "final.pt", weights_only=True)
    n = cases(50, 600)
    for k in range(n):
        rng = random.Random(k)
        case = _case_folder(base, k)
        run, marker = case / "run", case / "PWNED_CHECKPOINT"  # the marker inside: the child may write there
        which = rng.choice(["final", "last", "both"])
        kinds = []
        for name in (["final", "last"] if which == "both" else [which]):
            kinds.append(_damage_checkpoint(rng, pristine, run / "checkpoints" / f"{name}.pt", marker))
        verb = rng.choice([["eval", run], ["render", run, "--frames", "1", "--resolution", "8"],
                           ["train", "--resume", run, "--max-steps", "5", "--no-progress"],
                           ["eval", run, "--checkpoint", rng.choice(["last", "final", "nope", "../../x"])],
                           ["export", run]])
        _run_cli(verb, family, f"seed={k} {which}:{kinds}: nerf-app {' '.join(map(str, verb))}", case,
                 run_dir=run)
        if marker.exists():
            TALLY.fail(family, "tracebacks", f"seed={k} {kinds}: a pickle in a checkpoint ran code")
            marker.unlink()
    TALLY.emit()
    assert TALLY.bad(family) == 0, TALLY.report(family)


# ------------------------------------------------------------------------------------------- output paths

# (verb, flag, kind, argv builder(target, case folder, base)): every verb's output flag
OUTPUT_FLAGS = [
    ("train", "--out", "folder", lambda t, c, b: ["train", c / "tiny.png", "--out", t, "--max-steps", "1", *SMALL]),
    ("process", "--out", "folder", lambda t, c, b: ["process", c / "empty", "--out", t, "--no-progress"]),
    ("render", "--out", "file", lambda t, c, b: ["render", c / "run", "--out", t, "--frames", "1", "--resolution", "8"]),
    ("eval", "--out", "file", lambda t, c, b: ["eval", c / "run", "--out", t]),
    ("export", "--mesh", "file", lambda t, c, b: ["export", c / "run", "--mesh", t]),
    ("export", "--points", "file", lambda t, c, b: ["export", c / "run", "--points", t]),
    ("demo", "--out", "folder", lambda t, c, b: ["demo", "--out", t, "--scene", c / "empty", "--max-time", "1"]),
    ("fit-latent", "--out", "folder", lambda t, c, b: ["fit-latent", c / "run", c / "tiny.png", "--out", t]),
    ("make-scene", "OUT", "folder", lambda t, c, b: ["make-scene", t, "--json"]),
    ("inspect", "--png", "file", lambda t, c, b: ["inspect", c / "empty", "--png", t]),
]
# the pieces a target is made of: folders it goes under and the names it ends in
OUT_PREFIXES = ["", "./", "adir/", "afile/", "node/", "fifo/", "link_to_file/", "link_to_dir/", "loop/", "missing/a/",
                "adir/../afile/", "/proc/", "/proc/self/", "/sys/", "/sys/kernel/", "/proc/nerf_app_fuzz/"]
OUT_NAMES = ["adir", "afile", "node", "fifo", "link_to_file", "link_to_dir", "loop", "", "x.out", "x.out/", ".",
             "..", "n" * 300, "a\x00b", "new", "new/"]


def _output_case_folder(base: Path, k: int) -> Path:
    """A fresh case folder: a folder with a file, a file, a character device (1,3, made here: never the
    machine's /dev/null), a FIFO, symlinks to the file and the folder, a symlink loop, a copy of the run."""
    case = base / f"outcase{k % 2}"
    if case.exists():
        shutil.rmtree(case)
    (case / "adir").mkdir(parents=True)
    (case / "adir" / "keep.txt").write_text("keep")
    (case / "afile").write_text("precious")
    try:
        os.mknod(case / "node", 0o20666, os.makedev(1, 3))
    except OSError:
        os.mkfifo(case / "node")
    os.mkfifo(case / "fifo")
    os.symlink("afile", case / "link_to_file")
    os.symlink("adir", case / "link_to_dir")
    os.symlink("loop", case / "loop")
    _copy_run(base, case)
    shutil.copy(base / "tiny.png", case / "tiny.png")
    (case / "empty").mkdir()
    return case


def _surely_bad(target: str, kind: str, case: Path) -> bool:
    """Whether no command may succeed writing ``target`` as ``kind`` (the refusals the check promises)."""
    if not target.strip() or "\x00" in target or any(len(p.encode()) > 255 for p in target.split("/")):
        return True
    if target.startswith(("/proc/", "/sys/")):
        return True
    parts = target.rstrip("/").split("/")
    under = parts[:-1]
    for i in range(len(under)):
        p = case.joinpath(*under[:i + 1])
        if os.path.lexists(p) and not os.path.isdir(p):
            return True  # under a file, a device, a FIFO, a symlink loop
    full = case / target
    if kind == "folder":
        return os.path.lexists(full) and not os.path.isdir(full)
    return target.endswith("/") or parts[-1] in (".", "..") or os.path.isdir(full) or \
        (os.path.lexists(full) and not os.path.isfile(full))


def test_fuzz_output_paths(base):
    """Every verb's output flag into generated targets: under files, devices, FIFOs, symlinks (loops too),
    /proc and /sys, existing folders and files, '', '.', '..', trailing '/', NUL, 300-byte names. Each case
    runs with its working folder inside its own case folder (never the repository). Exit 0, or exit 2 with
    one line; a failed case leaves the case folder (and its run copy) exactly as it was; a surely bad target
    (see _surely_bad) that exits 0 is a bad_success; the device node stays a device."""
    family = "output-paths"
    rng = random.Random(0)
    n = cases(80, 1500)
    k = 0
    while k < n:
        verb, flag, kind, build = rng.choice(OUTPUT_FLAGS)
        target = rng.choice(OUT_PREFIXES) + rng.choice(OUT_NAMES)
        if os.path.normpath(target).startswith(".."):
            # '..' from the case folder names the folder above it, which a verb rightly looks into (is it
            # empty? a run?) and the confinement counts as an outside read; 'adir/..' is the same kind of
            # target (a parent reference to an existing, non-empty folder) inside the case (full run, session 9)
            target = "adir/" + target
        case = _output_case_folder(base, k)
        bad = _surely_bad(target, kind, case)
        if not bad and verb in ("make-scene", "train"):
            continue  # a good target for a slow verb: its success is covered by the verb's own tests
        k += 1
        argv = build(target, case, base)
        repro = f"case {k} (cwd=CASE): nerf-app {' '.join(map(repr, map(str, argv)))}"
        rc = _run_cli(argv, family, repro, case, run_dir=case, cwd=case)
        if bad and rc == 0:
            TALLY.fail(family, "bad_success", f"{repro}: exit 0 for a target that cannot be written")
        node = os.lstat(case / "node").st_mode
        if not (stat.S_ISCHR(node) or stat.S_ISFIFO(node)) or (case / "afile").read_text() != "precious":
            TALLY.fail(family, "damaged_run_folders", f"{repro}: replaced the device node or the file")
    TALLY.emit()
    assert TALLY.family(family)["cases"] == n
    assert TALLY.bad(family) == 0, TALLY.report(family)
