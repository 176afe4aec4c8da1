"""Shared machinery of the fuzz/chaos suite (``tests/test_fuzz_*.py``, ``tests/test_scene_fuzz.py``,
``benchmarks/chaos.py``).

- :data:`FULL` / :func:`cases`: the default (CI) run uses a fast subset; ``NERF_APP_FUZZ_FULL=1`` runs the
  full counts (>= 10,000 cases over all families).
- :func:`runner` / :func:`judge`: every case runs in its own child process that the kernel confines to the
  case folder and the installation (Landlock), whose every open and exec is reported (seccomp user
  notification), which is killed on time, and whose fds 1 and 2 are searched for tracebacks (see
  ``fuzz_confine.py``). ``/etc/passwd``, ``../../`` escapes and symlinks pointing out are refused and
  counted whatever library opens them (cv2, numpy, an ffmpeg subprocess), not only Python's ``open``.
- :func:`snapshot`: files + sizes + mtimes + SHA-256 of a folder, to prove a failed command wrote nothing.
- :class:`Tally`: figures per family (cases, tracebacks, outside reads, damaged run folders, hangs), printed
  as JSON lines by the tests (``-s``) and by ``benchmarks/chaos.py``.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import traceback
from pathlib import Path
from typing import Dict, List, Optional

from fuzz_confine import Runner, traceback_in

FULL = os.environ.get("NERF_APP_FUZZ_FULL", "").strip().lower() in ("1", "true", "yes", "on")
REPO_ROOT = Path(__file__).resolve().parents[1]


def cases(fast: int, full: int) -> int:
    """How many generated cases a family runs: ``fast`` in CI, ``full`` under NERF_APP_FUZZ_FULL=1."""
    return full if FULL else fast


# --------------------------------------------------------------------------------------------- confined cases

# the modules a case may need, imported once by the zygote (a case that imports one itself pays for it).
# Two zygotes: forking costs with the size of the process, so the scene loads (880 of the default cases)
# fork from one without torch._dynamo, scipy, viser ...; the commands fork from one that has them.
# pycolmap: its shared library looks up the user's name when it is loaded (getpwuid_r: /etc/passwd,
# /etc/nsswitch.conf - seen by the kernel watch, never by an audit hook); loaded here, before a case's
# confinement, that read is not charged to the case whose command first imports it.
PRELOAD_LOAD = ["pycolmap", "fuzz_cases", "scene_checks", "nerf_app.data", "cv2", "PIL.Image", "PIL.PngImagePlugin",
                "PIL.JpegImagePlugin", "PIL.WebPImagePlugin", "PIL.BmpImagePlugin", "numpy.ma"]
PRELOAD_CLI = PRELOAD_LOAD + [
    "nerf_app.cli", "nerf_app.train.run", "yaml",
    # torch.optim's first optimizer imports torch._dynamo: ~800 modules, 5 s a case if each child did it
    "torch._dynamo", "torch.optim", "numpy.random", "numpy.fft", "imageio", "getpass",
    "nerf_app.train.modes", "nerf_app.nerf", "nerf_app.inr", "nerf_app.geometry", "nerf_app.process",
    "nerf_app.metrics", "nerf_app.camera_paths", "nerf_app.demo_scene", "nerf_app.viewer",
    "nerf_app.viewer.server", "nerf_app.train.distributed", "nerf_app.nerf.task", "nerf_app.nerf.evaluate",
    "nerf_app.inr.image", "nerf_app.ops", "nerf_app.encodings", "nerf_app.networks", "skimage.metrics",
    "imageio.plugins.pillow", "multiprocessing.pool", "rich.console", "rich.table", "nerf_app._C",
    "skimage.metrics._structural_similarity", "scipy.ndimage", "scipy.special", "viser", "charset_normalizer",
    "PIL.Image:init"]  # "module:function": called once (PIL's init imports every image plugin)
_RUNNERS: Dict[str, Runner] = {}


def runner(kind: str = "cli") -> Runner:
    """The session's zygote for ``kind`` "load" (scene loads) or "cli" (commands), started on first use."""
    r = _RUNNERS.get(kind)
    if r is None or r.proc.poll() is not None:
        preload = PRELOAD_LOAD
        if kind == "cli":
            import pkgutil
            import nerf_app.commands as commands
            preload = PRELOAD_CLI + [f"nerf_app.commands.{m.name}" for m in pkgutil.iter_modules(commands.__path__)]
        r = _RUNNERS[kind] = Runner(preload)
        atexit.register(r.close)
    return r


def judge(report: dict, tally: "Tally", family: str, repro: str) -> Optional[dict]:
    """The figures every case shares: a hang (killed on time), a traceback (out of the case, from a
    background thread, or printed on fd 1/2 by anything), a file opened outside the case folder and the
    installation (seen by the kernel: refused by Landlock, reported by the seccomp watch). Returns the
    case's own result, or None when there is none to judge."""
    if report["hang"]:
        tally.fail(family, "hangs", f"{repro}: killed after {report['seconds']:.1f} s")
    else:
        tb = traceback_in(report)
        if tb:
            tally.fail(family, "tracebacks", f"{repro}: {tb}")
    if report["outside"]:
        tally.fail(family, "outside_reads", f"{repro}: {report['outside'][:5]}")
    tally.watch = report.get("watch", tally.watch)
    return None if report["hang"] or report["exception"] else report["result"]


# --------------------------------------------------------------------------------------------- snapshots

def snapshot(folder: Path) -> Dict[str, tuple]:
    """``{relative path: (size, mtime_ns, sha256)}`` of every file (and ``dir`` entries for folders)."""
    folder = Path(folder)
    out: Dict[str, tuple] = {}
    if not folder.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), folder)] = ("dir",)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if f == ".lock" and dirpath == str(folder):
                # the run lock (flock) file: a train records its pid and command in it while it holds the
                # lock, also when it then fails; only its presence is compared
                out[".lock"] = ("lock",)
                continue
            st = os.lstat(p)
            h = hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.isfile(p) else "special"
            out[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns, h)
    return out


def snapshot_diff(before: Dict[str, tuple], after: Dict[str, tuple]) -> List[str]:
    changed = [f"+{k}" for k in after.keys() - before.keys()] + [f"-{k}" for k in before.keys() - after.keys()]
    changed += [f"~{k}" for k in before.keys() & after.keys() if before[k] != after[k]]
    return sorted(changed)


# --------------------------------------------------------------------------------------------- figures

class Tally:
    """Counts per family; ``failures`` keeps a few reproducers per kind for the assertion message."""

    KINDS = ("tracebacks", "outside_reads", "damaged_run_folders", "hangs", "bad_success")

    def __init__(self):
        self.families: Dict[str, Dict[str, int]] = {}
        self.failures: Dict[str, List[str]] = {}
        self.watch = "none"  # how opens were seen: "seccomp" (kernel, confined by Landlock) or "audit-hook"

    def family(self, name: str) -> Dict[str, int]:
        return self.families.setdefault(name, {"cases": 0, "errors": 0, "ok": 0, **{k: 0 for k in self.KINDS}})

    def case(self, family: str, outcome: str) -> None:
        f = self.family(family)
        f["cases"] += 1
        f[outcome] = f.get(outcome, 0) + 1

    def fail(self, family: str, kind: str, reproducer: str) -> None:
        self.family(family)[kind] += 1
        lst = self.failures.setdefault(f"{family}/{kind}", [])
        if len(lst) < 5:
            lst.append(reproducer[:1500])

    def bad(self, family: Optional[str] = None) -> int:
        fams = [self.families[family]] if family else list(self.families.values())
        return sum(f[k] for f in fams for k in self.KINDS)

    def lines(self) -> List[str]:
        return [json.dumps({"family": k, **v, "full": FULL, "watch": self.watch})
                for k, v in sorted(self.families.items())]

    def report(self, family: Optional[str] = None) -> str:
        keys = [k for k in self.failures if family is None or k.startswith(family + "/")]
        return "\n".join(f"{k}:\n  " + "\n  ".join(self.failures[k]) for k in keys)

    def emit(self, path: Optional[str] = None) -> None:
        """Print the JSON lines (and append them to $NERF_APP_FUZZ_REPORT when set)."""
        text = "\n".join(self.lines())
        print(text)
        target = path or os.environ.get("NERF_APP_FUZZ_REPORT")
        if target:
            with open(target, "a", encoding="utf-8") as f:
                f.write(text + "\n")


def short_traceback(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(tb[-3:])
