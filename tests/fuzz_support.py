"""Shared machinery of the fuzz/chaos suite (``tests/test_fuzz_*.py``, ``tests/test_scene_fuzz.py``,
``benchmarks/chaos.py``).

- :data:`FULL` / :func:`cases`: the default (CI) run uses a fast subset; ``NERF_APP_FUZZ_FULL=1`` runs the
  full counts (>= 10,000 cases over all families).
- :class:`FileWatch`: an audit hook (``sys.addaudithook``) that records EVERY path opened or listed while it
  is active - not only paths inside the temp folder - so ``/etc/passwd``, ``../../`` escapes and symlinks
  pointing out are all seen. :meth:`FileWatch.outside` returns those outside the allowed folders: the scene
  folder under test plus an explicit allow-list (the Python installation and site-packages with torch, the
  nerf_app package and its presets, ``/dev``, ``/proc``, ``/sys``, and folders a test names as outputs).
- :func:`snapshot`: files + sizes + mtimes + SHA-256 of a folder, to prove a failed command wrote nothing.
- :class:`Tally`: figures per family (cases, tracebacks, outside reads, damaged run folders, hangs), printed
  as JSON lines by the tests (``-s``) and by ``benchmarks/chaos.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import site
import sys
import sysconfig
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, List, Optional

FULL = os.environ.get("NERF_APP_FUZZ_FULL", "").strip().lower() in ("1", "true", "yes", "on")
REPO_ROOT = Path(__file__).resolve().parents[1]


def cases(fast: int, full: int) -> int:
    """How many generated cases a family runs: ``fast`` in CI, ``full`` under NERF_APP_FUZZ_FULL=1."""
    return full if FULL else fast


# --------------------------------------------------------------------------------------------- file watch

def _python_roots() -> List[Path]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(sysconfig.get_paths()[key])
        except KeyError:
            pass
    try:
        roots.update(site.getsitepackages())
    except AttributeError:
        pass
    try:
        roots.add(site.getusersitepackages())
    except AttributeError:
        pass
    import torch
    import nerf_app
    roots.add(str(Path(torch.__file__).resolve().parent))
    roots.add(str(Path(nerf_app.__file__).resolve().parent))  # lazily imported verbs and their __pycache__
    try:
        from nerf_app.train.config import preset_dir
        roots.add(str(preset_dir().resolve()))  # configs/<mode>.yaml
    except Exception:  # noqa: BLE001 - a broken install shows up in the tests themselves
        pass
    return sorted({Path(r).resolve() for r in roots if r})


ALWAYS_ALLOWED = [Path("/dev"), Path("/proc"), Path("/sys")]


class FileWatch:
    """Records every path opened (``open``, ``os.open`` via io) or listed while :meth:`watch` is active."""

    _installed: Optional["FileWatch"] = None

    def __init__(self):
        self.active = False
        self.seen: List[str] = []
        self.python_roots = _python_roots()

    @classmethod
    def get(cls) -> "FileWatch":
        """The process-wide watch (audit hooks cannot be removed, so there is exactly one)."""
        if cls._installed is None:
            cls._installed = cls()
            sys.addaudithook(cls._installed._hook)
        return cls._installed

    def _hook(self, event, args):
        if not self.active or event not in ("open", "os.listdir", "os.scandir", "shutil.copyfile", "os.symlink"):
            return
        target = args[0] if args else None
        if target is None or isinstance(target, int):
            return  # an already open descriptor: its path was recorded when it was opened
        self.active = False  # resolve() below must not recurse into the hook
        try:
            try:
                raw = os.fsdecode(target)
                p = os.path.realpath(raw)
                # shutil.rmtree walks with dir_fd: its relative names cannot be resolved here (the event
                # carries no dir_fd). A relative name that does not exist from the working folder opens
                # nothing there; one that does exist is recorded as resolved from the working folder.
                if not os.path.isabs(raw) and not os.path.lexists(p):
                    p = None
            except (TypeError, ValueError, OSError):
                p = repr(target)
            # the import system lists every sys.path folder while looking for a module: not a read
            if p is not None and not (event != "open" and p in self._import_dirs()):
                self.seen.append(p)
        finally:
            self.active = True

    @staticmethod
    def _import_dirs():
        return {os.path.realpath(p or ".") for p in sys.path}

    @contextmanager
    def watch(self):
        self.seen = []
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def outside(self, allowed: Iterable[Path]) -> List[str]:
        """Recorded paths that are not inside ``allowed`` nor the allow-list."""
        roots = [Path(os.path.realpath(a)) for a in allowed] + self.python_roots + ALWAYS_ALLOWED
        out = []
        for s in self.seen:
            p = Path(s)
            if not any(p == r or p.is_relative_to(r) for r in roots):
                out.append(s)
        return sorted(set(out))


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


# --------------------------------------------------------------------------------------------- time limit

class Hang(BaseException):
    """Raised by :func:`time_limit` (a BaseException so that no ``except Exception`` swallows it)."""


@contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in the main thread after ``seconds`` (SIGALRM; POSIX only)."""
    def handler(signum, frame):
        raise Hang(f"took longer than {seconds} s")
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------------------------- figures

class Tally:
    """Counts per family; ``failures`` keeps a few reproducers per kind for the assertion message."""

    KINDS = ("tracebacks", "outside_reads", "damaged_run_folders", "hangs", "bad_success")

    def __init__(self):
        self.families: Dict[str, Dict[str, int]] = {}
        self.failures: Dict[str, List[str]] = {}

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
        return [json.dumps({"family": k, **v, "full": FULL}) for k, v in sorted(self.families.items())]

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
