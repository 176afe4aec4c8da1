"""Output paths are input too: every verb's output flag pointed at a folder where a file is wanted, a path
under a file, a device, a kernel pseudo-filesystem folder (/proc, /sys), a read-only or full file system, a
file-size limit -> exit 2 with ONE line ``nerf-app VERB: error: FLAG ...`` naming the flag, nothing partial
left and nothing that was there changed.

SAFETY: every case runs with its working folder inside a fresh temporary folder (``monkeypatch.chdir`` or
``cwd=`` of a child process); no case names the repository, /work, $HOME, / or the machine's /dev/null as
an output (the "device" target is a character device made in the case folder, so that even a build with the
check removed renames over nothing but its own node). Read-only and full file systems are tiny tmpfs mounts
in a private mount namespace (``unshare -rm``), gone when the child exits; a file-size limit
(RLIMIT_FSIZE) in a child process stands in for a disk that fills during a write where unshare is missing.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nerf_app.cli import main

from fuzz_support import snapshot, snapshot_diff

SMALL = ["--set", "model.log2_hashmap_size=10", "--set", "model.n_levels=4", "--set", "optim.batch_size=256",
         "--set", "model.width=16", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny image, a trained image-mode run of it, an empty folder (all outside any case folder)."""
    import cv2
    root = tmp_path_factory.mktemp("outputs_base")
    img = (np.random.default_rng(0).random((16, 24, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(root / "tiny.png"), img)
    assert main(["train", str(root / "tiny.png"), "--out", str(root / "run"), "--max-steps", "3", *SMALL]) == 0
    (root / "empty").mkdir()
    return root


def make_device(path: Path) -> str:
    """A character device node (1,3: what /dev/null is) in the case folder, else a FIFO: a non-regular
    file target that no command may rename over or write into."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return "device"
    except (OSError, AttributeError):
        os.mkfifo(path)
        return "fifo"


def case_folder(tmp_path: Path) -> Path:
    """The case's working folder: an existing folder, a file with content, a device node."""
    work = tmp_path / "work"
    (work / "adir").mkdir(parents=True)
    (work / "adir" / "keep.txt").write_text("keep")
    (work / "afile").write_text("precious")
    make_device(work / "node")
    return work


# verb, flag, kind (file|folder), argv builder (target, base)
VERBS = [
    ("train", "--out", "folder", lambda t, b: ["train", b / "tiny.png", "--out", t, "--max-steps", "1", *SMALL]),
    ("process", "--out", "folder", lambda t, b: ["process", b / "empty", "--out", t, "--no-progress"]),
    ("render", "--out", "file", lambda t, b: ["render", b / "run", "--out", t, "--frames", "1", "--resolution", "8"]),
    ("eval", "--out", "file", lambda t, b: ["eval", b / "run", "--out", t]),
    ("export", "--mesh", "file", lambda t, b: ["export", b / "run", "--mesh", t]),
    ("export", "--points", "file", lambda t, b: ["export", b / "run", "--points", t]),
    ("demo", "--out", "folder", lambda t, b: ["demo", "--out", t, "--scene", b / "empty", "--max-time", "1"]),
    ("fit-latent", "--out", "folder", lambda t, b: ["fit-latent", b / "run", b / "tiny.png", "--out", t]),
    ("make-scene", "OUT", "folder", lambda t, b: ["make-scene", t, "--json"]),
    ("inspect", "--png", "file", lambda t, b: ["inspect", b / "empty", "--png", t]),
]

# target name -> (path relative to the case folder or absolute, which kinds it is bad for)
TARGETS = {
    "existing folder": ("adir", ("file",)),
    "existing file": ("afile", ("folder",)),
    "under a file": ("afile/x.out", ("file", "folder")),
    "deep under a file": ("afile/a/b/c.out", ("file", "folder")),
    "device": ("node", ("file", "folder")),
    "under a device": ("node/x.out", ("file", "folder")),
    "trailing slash": ("new/", ("file",)),
    "empty name": ("", ("file", "folder")),
    "proc": ("/proc/nerf_app_output_test/x.out", ("file", "folder")),
    "proc folder": ("/proc/nerf_app_output_test", ("file", "folder")),
    "sys": ("/sys/nerf_app_output_test/x.out", ("file", "folder")),
    "long name": ("n" * 300, ("file", "folder")),
}

CASES = [(v, t) for v in VERBS for t, (_, kinds) in TARGETS.items() if v[2] in kinds]


def run_cli(argv):
    err, rc = io.StringIO(), None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code
    return rc, err.getvalue()


def one_error_line(text: str, verb: str, flag: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert "Traceback" not in text, text
    assert len(lines) == 1, text
    assert lines[0].startswith(f"nerf-app {verb}: error: {flag} "), lines[0]
    return lines[0]


@pytest.mark.parametrize("verb_case,target", CASES, ids=[f"{v[0]} {v[1]}: {t}" for v, t in CASES])
def test_bad_output_path_is_one_line_naming_the_flag(base, tmp_path, monkeypatch, verb_case, target):
    verb, flag, kind, build = verb_case
    work = case_folder(tmp_path)
    monkeypatch.chdir(work)  # never the repository: a bad --out resolves inside this folder
    rel, _ = TARGETS[target]
    before, run_before = snapshot(tmp_path), snapshot(base / "run")
    rc, err = run_cli(build(rel, base))
    assert rc == 2, (rc, err)
    one_error_line(err, verb, flag)
    assert snapshot_diff(before, snapshot(tmp_path)) == []
    assert snapshot_diff(run_before, snapshot(base / "run")) == []
    assert stat.S_ISCHR(os.stat(work / "node").st_mode) or stat.S_ISFIFO(os.stat(work / "node").st_mode)
    assert (work / "afile").read_text() == "precious"


def test_the_issue_examples(base, tmp_path, monkeypatch):
    """The three commands the issue found ending in a traceback."""
    work = case_folder(tmp_path)
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    rc, err = run_cli(["eval", base / "run", "--out", "adir"])
    assert rc == 2 and "is a folder" in one_error_line(err, "eval", "--out")
    rc, err = run_cli(["train", base / "tiny.png", "--out", "afile/run", "--max-steps", "1", *SMALL])
    assert rc == 2 and "is a file" in one_error_line(err, "train", "--out")
    rc, err = run_cli(["export", base / "run", "--mesh", "/proc/mesh.ply"])
    assert rc == 2 and "does not accept new files" in one_error_line(err, "export", "--mesh")
    assert snapshot_diff(before, snapshot(tmp_path)) == []


def test_good_outputs_still_work(base, tmp_path, monkeypatch):
    """The checks refuse only what cannot be written: a new file in a new folder, a file replaced, an
    existing empty folder, ``--png none``."""
    work = case_folder(tmp_path)
    monkeypatch.chdir(work)
    rc, err = run_cli(["eval", base / "run", "--out", "new/deeper/m.json"])
    assert rc == 0, err
    assert json.loads((work / "new" / "deeper" / "m.json").read_text())["mode"] == "image"
    (work / "old.json").write_text("{}")
    rc, err = run_cli(["eval", base / "run", "--out", "old.json"])
    assert rc == 0 and "psnr" in json.loads((work / "old.json").read_text())
    (work / "emptyrun").mkdir()
    rc, err = run_cli(["train", base / "tiny.png", "--out", "emptyrun", "--max-steps", "1", *SMALL])
    assert rc == 0, err
    assert (work / "emptyrun" / "checkpoints" / "final.pt").is_file()
    assert not [p for p in work.rglob("*") if ".tmp" in p.name or "probe" in p.name]


# --------------------------------------------------------------------------- the library functions


def test_check_output_leaves_nothing_and_registers_the_flag(tmp_path):
    from nerf_app.errors import OutputError
    from nerf_app.results import atomic_write, check_output, clear_outputs, output_flag
    clear_outputs()
    check_output(tmp_path / "run", "--out", "folder")
    assert list(tmp_path.iterdir()) == []  # the writability probe is nameless (or removed at once)
    assert output_flag(tmp_path / "run" / "checkpoints" / "last.pt") == "--out"

    def fails(tmp):
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(OutputError, match=r"^--out .*run: cannot write .*last\.pt: no space left on device"):
        atomic_write(tmp_path / "run" / "checkpoints" / "last.pt", fails)
    assert list(tmp_path.iterdir()) == []  # the folders atomic_write made are gone again
    clear_outputs()


def test_atomic_write_never_renames_over_a_device(tmp_path):
    from nerf_app.errors import OutputError
    from nerf_app.results import write_text
    node = tmp_path / "node"
    make_device(node)
    with pytest.raises(OutputError, match="not a regular file"):
        write_text(node, "x")
    assert not stat.S_ISREG(os.stat(node).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node"]


# --------------------------------------------------------------------------- full disk, read-only, size limit

CHILD = textwrap.dedent("""
    import json, os, subprocess, sys
    cases = json.loads(sys.argv[1])
    out = []
    for setup, argv in cases:
        for cmd in setup:
            subprocess.run(cmd, shell=True, check=True)
        r = subprocess.run([sys.executable, "-m", "nerf_app.cli", *argv], capture_output=True, text=True)
        out.append({"argv": argv, "rc": r.returncode, "stderr": r.stderr})
    print(json.dumps(out))
""")


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d "
                            "&& umount $d && rmdir $d"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _listing(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.skipif(not _unshare_works(), reason="no user+mount namespaces here (unshare -rm); the RLIMIT_FSIZE "
                    "test below covers a write that fails part-way")
def test_read_only_and_full_file_systems(base, tmp_path):
    """Tiny tmpfs mounts in a private mount namespace: ``ro`` (read-only, holding old.json), ``full``
    (no byte free), ``near`` (20 KiB free: the up-front check passes, the write fails part-way)."""
    work = tmp_path / "work"
    work.mkdir()
    for d in ("ro", "full", "near"):
        (work / d).mkdir()
    setup = ["mount -t tmpfs -o size=64k tmpfs full && dd if=/dev/zero of=full/fill bs=1k count=100 2>/dev/null; true",
             "mount -t tmpfs -o size=1m tmpfs ro && echo keep > ro/old.json && mount -o remount,ro ro",
             "mount -t tmpfs -o size=256k tmpfs near && dd if=/dev/zero of=near/fill bs=1k count=236 2>/dev/null"]
    img, run = str(base / "tiny.png"), str(base / "run")
    cases = [
        (setup, ["eval", run, "--out", "ro/old.json"]),
        ([], ["train", img, "--out", "ro/run", "--max-steps", "1", *SMALL]),
        ([], ["make-scene", "ro/scene"]),
        ([], ["eval", run, "--out", "full/m.json"]),
        ([], ["train", img, "--out", "full/run", "--max-steps", "1", *SMALL]),
        ([], ["render", run, "--out", "full/r.png", "--resolution", "8"]),
        # 20 KiB free: the checkpoint (about 65 KiB) does not fit, the config and log do
        ([], ["train", img, "--out", "near/run", "--max-steps", "2", *SMALL]),
        ([], ["make-scene", "near/scene"]),
        (["ls -A near > near_listing.txt; cat ro/old.json > ro_content.txt"], ["eval", run, "--out", "near/m.json"]),
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(["unshare", "-rm", sys.executable, "-c", CHILD, json.dumps(cases)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    flags = {"eval": "--out", "train": "--out", "render": "--out", "make-scene": "OUT"}
    for res in results[:-1]:
        verb = res["argv"][0]
        assert res["rc"] == 2, res
        lines = [ln for ln in res["stderr"].splitlines() if ln.strip() and not ln.startswith("rendered ")]
        assert "Traceback" not in res["stderr"], res
        assert len(lines) == 1 and lines[0].startswith(f"nerf-app {verb}: error: {flags[verb]} "), res
        where = res["argv"][res["argv"].index("--out") + 1] if "--out" in res["argv"] else res["argv"][1]
        reason = {"ro": "read-only", "full": "no space left on device", "near": "no space left on device"}
        assert reason[where.split("/")[0]] in lines[0], res
    assert results[-1]["rc"] == 0, results[-1]  # a small file still fits in near
    # nothing partial left in the nearly full mount (the last case listed it before it wrote m.json), and
    # the read-only mount's file is as it was
    assert (work / "near_listing.txt").read_text().split() == ["fill"]
    assert (work / "ro_content.txt").read_text() == "keep\n"


FSIZE_CHILD = textwrap.dedent("""
    import resource, sys
    from nerf_app.cli import main
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
    sys.exit(main(sys.argv[2:]))
""")


def test_file_size_limit_during_a_write(base, tmp_path):
    """A write that fails part-way (here: RLIMIT_FSIZE, EFBIG; Python ignores SIGXFSZ): one line naming
    the flag, the run folder the command made is gone, an existing file is kept as it was."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.json").write_text('{"old": true}')  # a file that was there: never touched
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))

    def child(limit, *argv):
        return subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(limit), *map(str, argv)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
    # 20 kB: config and log fit, the checkpoint (about 65 kB) does not
    r = child(20_000, "train", base / "tiny.png", "--out", "runs/new", "--max-steps", "2", *SMALL)
    assert r.returncode == 2, r.stderr
    line = one_error_line("\n".join(ln for ln in r.stderr.splitlines() if not ln.startswith("[train]")), "train",
                          "--out")
    assert "file too large" in line and "runs/new" in line, line
    assert _listing(work) == ["m.json"]  # runs/ and runs/new removed, nothing else made
    # an existing file replaced by a render (64 px: about 10 kB of PNG) under a 1 kB limit: kept as it was
    (work / "r.png").write_bytes(b"old picture")
    r = child(1000, "render", base / "run", "--out", "r.png", "--resolution", "64")
    assert r.returncode == 2, r.stderr
    assert "file too large" in one_error_line(r.stderr, "render", "--out")
    assert (work / "r.png").read_bytes() == b"old picture" and _listing(work) == ["m.json", "r.png"]
