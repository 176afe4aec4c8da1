"""Fuzz cases run in a child process that the kernel confines, watches and kills on time.

Why: an audit hook (``sys.addaudithook``) sees only the opens Python makes. cv2, pycolmap, numpy's C
readers, an ``mmap`` of a descriptor or an ffmpeg subprocess open files without Python seeing it. Here the
kernel both refuses and reports every open:

- **Landlock** (Linux >= 5.13; ABI read with ``landlock_create_ruleset(NULL, 0, VERSION)``): the case's
  process may read only the case folder and the installation (:func:`allowed_roots`: the Python
  installation, the nerf_app package, system libraries, ``/proc``, ``/sys``, a few ``/dev`` files) and
  write only in the case folder. Any other open fails with EACCES, whatever library makes it.
- **seccomp user notification** (Linux >= 5.0): every ``open``/``openat``/``openat2``/``execve``/``execveat``
  of the case's process, its threads and its subprocesses stops until this module's supervisor has read
  the path out of the process's memory and let the call go on (``SECCOMP_USER_NOTIF_FLAG_CONTINUE``; the
  call then meets Landlock). So each open is counted against its case, also the ones Landlock refuses.
- **A hard timeout**: the case runs in its own process group, killed with SIGKILL when time is up (this
  stops C code too, which SIGALRM cannot).
- **Tracebacks at the file-descriptor level**: the case's fds 1 and 2 go to memory files, so a traceback
  printed by C code, a background thread (``threading.excepthook``) or ``sys.unraisablehook`` is seen even
  when the case exits 0.

How it runs: a *zygote* process imports torch, nerf_app and the test helpers once, then forks one child
per case (a fork costs milliseconds; a fresh interpreter with torch costs seconds). The child confines
itself (Landlock, then the seccomp filter, whose listener it hands to the zygote over a socket pair) and
runs one named function. The zygote never runs torch code, so the forked children start with no OpenMP
thread pool. The bindings are written here with ctypes: the ``landlock`` package on PyPI is a 1.0.0.dev
pre-release of one author and seccomp's Python binding (libseccomp's) is not on PyPI; the kernel
interfaces used are small and stable (UAPI).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

TESTS_DIR = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------- kernel interfaces

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# x86_64 and aarch64 share the Landlock numbers (new syscalls have one number on every architecture)
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_ARCH = os.uname().machine
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(_ARCH)
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(_ARCH)
# the syscalls watched: open, openat, openat2, execve, execveat (aarch64 has no plain open)
WATCHED = {"x86_64": {2: "open", 257: "openat", 437: "openat2", 59: "execve", 322: "execveat"},
           "aarch64": {56: "openat", 437: "openat2", 221: "execve", 281: "execveat"}}.get(_ARCH, {})

LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS = {"execute": 1 << 0, "write_file": 1 << 1, "read_file": 1 << 2, "read_dir": 1 << 3, "remove_dir": 1 << 4,
      "remove_file": 1 << 5, "make_char": 1 << 6, "make_dir": 1 << 7, "make_reg": 1 << 8, "make_sock": 1 << 9,
      "make_fifo": 1 << 10, "make_block": 1 << 11, "make_sym": 1 << 12, "refer": 1 << 13, "truncate": 1 << 14,
      "ioctl_dev": 1 << 15}
_ABI_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_ONLY = FS["execute"] | FS["write_file"] | FS["read_file"] | FS["truncate"] | FS["ioctl_dev"]
READ = FS["read_file"] | FS["read_dir"] | FS["execute"]

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER, SECCOMP_GET_NOTIF_SIZES = 1, 3
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF = 0x7FFF0000, 0x7FC00000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
AT_FDCWD = -100


def _ioc_wr(nr: int, size: int) -> int:  # _IOWR('!', nr, size)
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


def _syscall(*args) -> int:
    r = _libc.syscall(*args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; raises OSError (ENOSYS: not built, EOPNOTSUPP: disabled at boot)."""
    return _syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))


def _notif_sizes():
    sizes = (ctypes.c_uint16 * 3)()
    _syscall(SYS_SECCOMP, SECCOMP_GET_NOTIF_SIZES, 0, ctypes.byref(sizes))
    return tuple(sizes)


def capability() -> Dict[str, object]:
    """What the kernel here offers: ``{"landlock": abi or "errno NAME: text", "seccomp_notify": True or text}``."""
    out: Dict[str, object] = {}
    try:
        out["landlock"] = landlock_abi()
    except OSError as exc:
        out["landlock"] = f"errno {errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    if SYS_SECCOMP is None:
        out["seccomp_notify"] = f"architecture {_ARCH} not supported here"
    else:
        try:
            _notif_sizes()
            out["seccomp_notify"] = True
        except OSError as exc:
            out["seccomp_notify"] = f"errno {errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return out


def why_not_confined() -> Optional[str]:
    """None when the kernel can confine and watch a case; else the measured reason (for a skip)."""
    cap = capability()
    if not isinstance(cap["landlock"], int):
        return f"the kernel cannot confine (Landlock: {cap['landlock']})"
    if cap["seccomp_notify"] is not True:
        return f"the kernel cannot watch opens (seccomp user notification: {cap['seccomp_notify']})"
    return None


def _landlock_ruleset(rules: Sequence[tuple]) -> int:
    """A Landlock ruleset fd allowing ``rules`` = [(path, rights)] and nothing else of the file system."""
    abi = landlock_abi()
    handled = _ABI_RIGHTS.get(abi, (1 << 16) - 1)
    attr = struct.pack("<Q", handled)  # handled_access_fs only: network and scopes are not the point here
    buf = ctypes.create_string_buffer(attr, len(attr))
    rfd = _syscall(SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a root that does not exist here (no /lib64, no user site-packages)
            try:
                rights &= handled
                if not os.path.isdir(path):
                    rights &= FILE_ONLY
                rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd), 12)
                _syscall(SYS_LANDLOCK_ADD_RULE, rfd, LANDLOCK_RULE_PATH_BENEATH, rule, ctypes.c_uint32(0))
            finally:
                os.close(fd)
    except BaseException:
        os.close(rfd)
        raise
    return rfd


def _landlock_restrict(ruleset_fd: int) -> None:
    """Restrict this thread and everything it starts later (needs no_new_privs)."""
    _syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, ctypes.c_uint32(0))


def _seccomp_listener() -> int:
    """Install a filter that hands every watched syscall to a listener; returns the listener fd."""
    def stmt(code, k):
        return struct.pack("<HBBI", code, 0, 0, k)

    def jeq(k, jt, jf):
        return struct.pack("<HBBI", 0x15, jt, jf, k)  # BPF_JMP|BPF_JEQ|BPF_K
    nrs = sorted(WATCHED)
    prog = [stmt(0x20, 4),                             # ld [arch]
            jeq(AUDIT_ARCH, 1, 0),
            stmt(0x06, SECCOMP_RET_ALLOW),             # another ABI (x32 ...): not watched
            stmt(0x20, 0)]                             # ld [nr]
    for i, nr in enumerate(nrs):
        prog.append(jeq(nr, len(nrs) - i, 0))          # -> the USER_NOTIF return below
    prog += [stmt(0x06, SECCOMP_RET_ALLOW), stmt(0x06, SECCOMP_RET_USER_NOTIF)]
    code = b"".join(prog)
    filt = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("<HxxxxxxQ", len(prog), ctypes.addressof(filt))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    return _syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, fbuf)


# ---------------------------------------------------------------------------------------- what may be read

def allowed_roots() -> List[Path]:
    """Read-only roots every case needs: the Python installation and site-packages, the nerf_app package
    and its presets, the system's shared libraries and executables (ffmpeg), and the kernel's views."""
    import site
    import sysconfig
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        roots.add(sysconfig.get_paths().get(key, ""))
    roots.update(getattr(site, "getsitepackages", lambda: [])())
    roots.add(getattr(site, "getusersitepackages", lambda: "")())
    import nerf_app
    roots.add(str(Path(nerf_app.__file__).resolve().parent))
    try:
        from nerf_app.train.config import preset_dir
        roots.add(str(preset_dir().resolve()))
    except Exception:  # noqa: BLE001 - a broken install shows up in the tests themselves
        pass
    roots.add(str(TESTS_DIR))  # the test helpers the cases import, and tracebacks' source lines
    roots.update(["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/bin", "/bin", "/usr/local/bin",
                  "/usr/share", "/etc/ld.so.cache", "/etc/localtime", "/etc/fonts", "/proc", "/sys"])
    return sorted({Path(os.path.realpath(r)) for r in roots if r})


DEVICES = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full", "/dev/tty"]


def is_inside(path: str, roots: Iterable[Path]) -> bool:
    p = Path(path)
    return any(p == r or p.is_relative_to(r) for r in roots)


# ---------------------------------------------------------------------------------------- the child

def _rules(request: dict) -> List[tuple]:
    rw = FS["read_file"] | FS["read_dir"] | FS["write_file"] | FS["remove_dir"] | FS["remove_file"] | \
        FS["make_dir"] | FS["make_reg"] | FS["make_sym"] | FS["make_fifo"] | FS["make_sock"] | \
        FS["make_char"] | FS["refer"] | FS["truncate"]
    rules = [(str(r), READ) for r in map(Path, request["roots"])]
    rules += [(d, FS["read_file"] | FS["write_file"] | FS["ioctl_dev"]) for d in DEVICES]
    rules += [(str(c), rw) for c in request["folders"]]
    return rules


_AUDIT_OPENS: List[dict] = []


def _audit_open(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
        try:
            _AUDIT_OPENS.append({"call": event, "path": os.path.abspath(os.fsdecode(args[0])), "flags": 0})
        except (TypeError, ValueError):
            pass


def _child(request: dict, sock: socket.socket, ruleset_fd: Optional[int]) -> None:
    """In the forked child: confine, hand over the listener, run the function, send its result. Never returns."""
    code = 0
    try:
        os.setpgid(0, 0)  # its own process group: a timeout kills ffmpeg and friends with it
        if request.get("cwd"):
            os.chdir(request["cwd"])
        threading.excepthook = _thread_hook
        if ruleset_fd is not None:
            if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS)")
            _landlock_restrict(ruleset_fd)
            os.close(ruleset_fd)
            fd = _seccomp_listener()
            socket.send_fds(sock, [b"L"], [fd])
            os.close(fd)
        else:  # a kernel that cannot confine: Python-level opens only, through an audit hook
            sys.addaudithook(_audit_open)
            sock.sendall(b"U")
        module, _, name = request["func"].partition(":")
        func = getattr(importlib.import_module(module), name)
        result = func(**request.get("kwargs", {}))
        if _THREAD_ERRORS:
            result = dict(result or {}, thread_errors=_THREAD_ERRORS)
        opens = [dict(o, path=os.path.realpath(o["path"])) for o in _AUDIT_OPENS]
        payload = json.dumps({"result": result, "audit_opens": opens}).encode()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as a traceback
        payload = json.dumps({"exception": "".join(traceback.format_exception(exc))[-4000:]}).encode()
        code = 70
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        sock.sendall(struct.pack("<I", len(payload)) + payload)
    finally:
        os._exit(code)


_THREAD_ERRORS: List[str] = []


def _thread_hook(args) -> None:
    """A background thread that dies with an exception: recorded (a case that exits 0 still fails)."""
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    _THREAD_ERRORS.append(text[-2000:])
    sys.__stderr__.write(f"Exception in thread {getattr(args.thread, 'name', '?')}:\n{text}")


# ---------------------------------------------------------------------------------------- the supervisor

class _Watch:
    """Answers the child's watched syscalls (letting each go on) and records the paths."""

    def __init__(self, listener: int):
        self.fd = listener
        n_notif, n_resp, _ = _notif_sizes()
        self.n_notif, self.n_resp = n_notif, n_resp
        self.recv = _ioc_wr(0, n_notif)
        self.send = _ioc_wr(1, n_resp)
        self.opens: List[dict] = []
        self._mem: Dict[int, int] = {}

    def _read_str(self, tid: int, addr: int) -> Optional[bytes]:
        fd = self._mem.get(tid)
        if fd is None:
            fd = self._mem[tid] = os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        out = b""
        while len(out) < 8192:
            chunk = 4096 - (addr % 4096)
            data = os.pread(fd, chunk, addr)
            if not data:
                return None
            cut = data.find(b"\0")
            if cut >= 0:
                return out + data[:cut]
            out += data
            addr += len(data)
        return out

    def handle(self) -> bool:
        buf = bytearray(self.n_notif)
        try:
            fcntl.ioctl(self.fd, self.recv, buf, True)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINTR):  # the caller died or the call was interrupted
                return True
            return False
        nid, tid, _flags = struct.unpack_from("<QII", buf, 0)
        nr = struct.unpack_from("<i", buf, 16)[0]
        args = struct.unpack_from("<6Q", buf, 32)
        name = WATCHED.get(nr, str(nr))
        try:
            if name in ("open", "execve"):
                dirfd, addr, flags = AT_FDCWD, args[0], args[1]
            else:
                dirfd, addr = ctypes.c_int32(args[0] & 0xFFFFFFFF).value, args[1]
                flags = args[2] if name == "openat" else 0
                if name == "openat2":  # struct open_how {u64 flags; u64 mode; u64 resolve}
                    flags = struct.unpack("<Q", self._pread(tid, args[2], 8))[0]
            raw = self._read_str(tid, addr)
            path = self._absolute(tid, dirfd, raw)
            self.opens.append({"call": name, "path": path, "flags": int(flags)})
        except OSError:
            pass  # the thread is gone (killed) or the pointer is bad: the kernel will refuse the call itself
        resp = struct.pack("<QqiI", nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE).ljust(self.n_resp, b"\0")
        try:
            fcntl.ioctl(self.fd, self.send, bytearray(resp), True)
        except OSError:
            pass  # ENOENT: the thread died meanwhile
        return True

    def _pread(self, tid, addr, n):
        fd = self._mem.get(tid) or os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        self._mem[tid] = fd
        return os.pread(fd, n, addr)

    @staticmethod
    def _absolute(tid: int, dirfd: int, raw: Optional[bytes]) -> str:
        if raw is None:
            return "<unreadable pointer>"
        path = os.fsdecode(raw)
        if not path.startswith("/"):
            where = f"/proc/{tid}/cwd" if dirfd == AT_FDCWD else f"/proc/{tid}/fd/{dirfd}"
            path = os.path.join(os.readlink(where), path)
        # symlinks resolved as the kernel will (the last component too: opening a link opens its target)
        return os.path.realpath(path)

    def close(self):
        for fd in self._mem.values():
            os.close(fd)
        self._mem.clear()
        os.close(self.fd)


def _read_memfd(fd: int, limit: int = 200_000) -> str:
    size = os.fstat(fd).st_size
    data = os.pread(fd, min(size, limit), max(0, size - limit))
    return data.decode("utf-8", "replace")


_RULESETS: Dict[tuple, int] = {}


def _ruleset_for(request: dict) -> int:
    """Rulesets are built once per set of case folders (the cases of a family reuse two folders)."""
    def ident(f):  # a rule holds the folder's inode: a folder removed and made again is a new rule
        try:
            st = os.stat(f)
            return f, st.st_dev, st.st_ino
        except OSError:
            return f, None, None
    key = (tuple(request["roots"]), tuple(map(ident, request["folders"])))
    if key not in _RULESETS:
        if len(_RULESETS) >= 16:
            for fd in _RULESETS.values():
                os.close(fd)
            _RULESETS.clear()
        _RULESETS[key] = _landlock_ruleset(_rules(request))
    return _RULESETS[key]


def run_one(request: dict, confine: bool) -> dict:
    """Fork a child for one case, supervise it until it ends or its time is up. Runs in the zygote."""
    ruleset = _ruleset_for(request) if confine else None
    out_fd = os.memfd_create("case-stdout", os.MFD_CLOEXEC)
    err_fd = os.memfd_create("case-stderr", os.MFD_CLOEXEC)
    parent_sock, child_sock = socket.socketpair()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        parent_sock.close()
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in _ZYGOTE_FDS:
            try:
                os.close(fd)
            except OSError:
                pass
        _child(request, child_sock, ruleset)
    child_sock.close()
    timeout = float(request.get("timeout", 30.0))
    deadline = t0 + timeout
    watch, killed = None, False
    try:
        # the child's first message: the listener (confined) or a plain byte
        parent_sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            msg, fds, _, _ = socket.recv_fds(parent_sock, 16, 1)
        except (socket.timeout, OSError):
            msg, fds = b"", []
        parent_sock.setblocking(False)
        payload = msg[1:]  # a quick child's result may come in the same read as its first byte
        if fds:
            watch = _Watch(fds[0])
        poll = select.poll()
        poll.register(parent_sock, select.POLLIN)
        if watch:
            poll.register(watch.fd, select.POLLIN)
        sock_open, listen_open = bool(msg), watch is not None
        while sock_open or listen_open:
            left = deadline - time.monotonic()
            if left <= 0 and not killed:
                killed = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for fd, ev in poll.poll(max(0, int(left * 1000)) if not killed else 1000):
                if watch and fd == watch.fd:
                    if ev & select.POLLIN:
                        if not watch.handle():
                            listen_open = False
                            poll.unregister(fd)
                    elif ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                        listen_open = False
                        poll.unregister(fd)
                elif fd == parent_sock.fileno():
                    try:
                        data = parent_sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    if data:
                        payload += data
                    else:
                        sock_open = False
                        poll.unregister(fd)
            if killed and time.monotonic() > deadline + 10:
                break  # something holds the listener open after the kill: give up on it
        _, status = os.waitpid(pid, 0)
    finally:
        parent_sock.close()
        if watch:
            watch.close()
    seconds = time.monotonic() - t0
    result, exception, audit_opens = None, None, []
    if len(payload) >= 4:
        body = payload[4:4 + struct.unpack_from("<I", payload)[0]]
        try:
            msg = json.loads(body)
            result, exception, audit_opens = msg.get("result"), msg.get("exception"), msg.get("audit_opens", [])
        except ValueError:
            exception = "the child's result was cut short"
    stdout, stderr = _read_memfd(out_fd), _read_memfd(err_fd)
    os.close(out_fd)
    os.close(err_fd)
    code = os.waitstatus_to_exitcode(status)
    opens = watch.opens if watch else audit_opens
    roots = [Path(r) for r in request["roots"]] + [Path(f) for f in request["folders"]] + [Path(d) for d in DEVICES]
    # an attempt on a path that does not exist reads nothing (exec's search of $PATH, a probe for a
    # sidecar file); one that exists outside the allowed roots is an outside read, refused or not
    outside = sorted({o["path"] for o in opens if not is_inside(o["path"], roots) and not _import_probe(o, request)
                      and os.path.lexists(o["path"])})
    return {"result": result, "exception": exception, "hang": killed, "exit": code, "seconds": round(seconds, 3),
            "stdout": stdout[-4000:], "stderr": stderr[-8000:], "outside": outside,
            "execs": sorted({o["path"] for o in opens if o["call"].startswith("exec")}), "n_opens": len(opens),
            "confined": watch is not None, "watch": "seccomp" if watch else "audit-hook"}


def _import_probe(o: dict, request: dict) -> bool:
    """The import system lists each sys.path folder while looking for a module: not a read of a file."""
    return bool(o["flags"] & os.O_DIRECTORY) and o["path"] in request.get("import_dirs", ())


# ---------------------------------------------------------------------------------------- the zygote

_ZYGOTE_FDS: List[int] = []


def zygote_main() -> None:
    """Read one JSON request a line on fd 0, answer one JSON line on the protocol fd. Runs no torch code."""
    proto = os.dup(1)
    os.dup2(2, 1)  # prints of imported modules must not corrupt the protocol
    _ZYGOTE_FDS.extend([0, proto])
    preload = json.loads(os.environ.get("NERF_APP_FUZZ_PRELOAD", "[]"))
    import torch  # noqa: F401 - imported once here, shared by every forked case
    failed = {}
    for m in preload:
        module, _, call = m.partition(":")
        try:
            mod = importlib.import_module(module)
            if call:
                getattr(mod, call)()
        except Exception as exc:  # noqa: BLE001 - a case that needs it fails on its own, with its traceback
            failed[m] = f"{exc.__class__.__name__}: {exc}"
    # the preloaded objects go to the GC's permanent generation: a collection in a forked case then does not
    # walk (and so copy-on-write) the whole inherited heap
    import gc
    gc.collect()
    gc.freeze()
    confine = why_not_confined() is None
    import_dirs = sorted({os.path.realpath(p or ".") for p in sys.path})
    hello = {"ready": True, "capability": capability(), "confine": confine, "preload_failed": failed}
    os.write(proto, (json.dumps(hello) + "\n").encode())
    stdin = os.fdopen(0, "rb", buffering=0)
    pending = b""
    while True:
        chunk = stdin.read(1 << 16)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            request.setdefault("import_dirs", import_dirs)
            try:
                answer = run_one(request, confine and request.get("confine", True))
            except BaseException as exc:  # noqa: BLE001 - the supervisor itself failed: tell the parent
                answer = {"supervisor_error": "".join(traceback.format_exception(exc))[-3000:]}
            data = (json.dumps(answer) + "\n").encode()
            while data:
                data = data[os.write(proto, data):]


class Runner:
    """The parent's handle on one zygote: ``run(func, folders, **kwargs)`` -> the case's report."""

    def __init__(self, preload: Sequence[str] = ()):
        import nerf_app  # the zygote imports the very nerf_app this process uses (a worktree, not the install)
        path = [str(TESTS_DIR), str(Path(nerf_app.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, NERF_APP_FUZZ_PRELOAD=json.dumps(list(preload)),
                   PYTHONPATH=os.pathsep.join(path).rstrip(os.pathsep))
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen([sys.executable, "-c", "import fuzz_confine; fuzz_confine.zygote_main()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=str(TESTS_DIR))
        hello = self.proc.stdout.readline()
        if not hello:
            raise RuntimeError("the fuzz zygote did not start")
        self.hello = json.loads(hello)
        self.confined = bool(self.hello["confine"])
        self.roots = [str(r) for r in allowed_roots()]

    def run(self, func: str, folders: Sequence[Path], kwargs: Optional[dict] = None, timeout: float = 30.0,
            cwd: Optional[Path] = None, confine: Optional[bool] = None) -> dict:
        """Run ``func`` ("module:name", a module the zygote imported) in a fresh confined child. ``folders``:
        what the case may read and write (its case folder); everything else but :func:`allowed_roots` is
        refused and reported in ``outside``."""
        if confine is None:  # NERF_APP_FUZZ_UNCONFINED=1: the same cases without Landlock (for comparisons)
            confine = os.environ.get("NERF_APP_FUZZ_UNCONFINED", "") in ("", "0")
        request = {"func": func, "kwargs": kwargs or {}, "folders": [os.path.realpath(f) for f in folders],
                   "roots": self.roots, "timeout": timeout, "cwd": str(cwd) if cwd else None, "confine": confine}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fuzz zygote died (exit {self.proc.poll()})")
        answer = json.loads(line)
        if os.environ.get("NERF_APP_FUZZ_TRACE"):  # one line per case, to compare two runs
            with open(os.environ["NERF_APP_FUZZ_TRACE"], "a") as f:
                f.write(json.dumps({"func": func, "kwargs": kwargs, "result": answer["result"],
                                    "outside": answer["outside"]}, default=str) + "\n")
        if "supervisor_error" in answer:
            raise RuntimeError(answer["supervisor_error"])
        return answer

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Exception in thread", "Exception ignored in")


def traceback_in(report: dict) -> Optional[str]:
    """The evidence of a traceback in a case's report (an exception out of the function, a dead background
    thread, or a traceback printed on fd 1/2 by anything), else None."""
    if report.get("exception"):
        return report["exception"][-1500:]
    res = report.get("result") or {}
    if isinstance(res, dict) and res.get("thread_errors"):
        return "a background thread raised: " + res["thread_errors"][0][-1200:]
    for stream in ("stderr", "stdout"):
        text = report.get(stream) or ""
        for marker in TRACEBACK_MARKERS:
            if marker in text:
                i = text.index(marker)
                return f"printed on {stream}: " + text[i:i + 1500]
    if report.get("exit") not in (0, None) and not report.get("hang"):
        return f"the case's process exited {report.get('exit')}: {(report.get('stderr') or '')[-800:]}"
    return None
