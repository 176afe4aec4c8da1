"""Data-parallel training on ``torch.distributed`` (gloo on CPUs, NCCL on GPUs; docs/training.md, "More than
one process").

How a step is shared (the design that makes K ranks equal one process):

* Every rank holds the whole model, seeded alike, and draws the *same* global batch of B rays (one seeded
  generator, the same draws on every rank); rank r keeps rows ``[r*B//K, (r+1)*B//K)`` (:func:`part`). So the
  global RNG and sampler states never differ between ranks, a checkpoint written by rank 0 is the state of the
  whole run, and ``--resume`` works with any number of ranks.
* Each rank weights its per-ray loss terms by ``K * B_r / B`` (1 when B divides evenly): the mean of the
  ranks' losses is the loss of the global batch, and the mean of their gradients its gradient.
* :meth:`Distributed.average_gradients` all-reduces every gradient (the hash table's included, dense, in
  buckets) plus the loss in one pass; every rank then takes the same optimizer step.
* Whatever the loop decides from the clock (the time budget, time-based checkpoints, a time-based schedule)
  uses rank 0's clock, shared each step (:meth:`Distributed.shared_elapsed`): ranks agree on when to stop.
* Rank 0 alone writes the run folder (checkpoints, log, config), shows the progress bar and serves the viewer.

Failures: collectives have a bounded timeout; a rank that fails posts its error line in the rendezvous store
before it exits, and a rank whose collective fails names the rank that is gone and why
(:class:`RankLostError`). The run folder keeps its last checkpoint (rank 0 never writes after a failed step).

Launch: ``torchrun --nproc-per-node K -m nerf_app train ...`` (or ``--nnodes N --rdzv-endpoint HOST:PORT``),
or ``nerf-app train ... --nproc K`` (:func:`launch`: K local ranks, the store hosted by the launcher).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ..errors import ConfigError, NerfAppError

_JOINED = False   # set once this process joins a group (exit_rank)

#: keys of this project in the rendezvous store (per torchrun restart: a restarted group starts clean)
_PREFIX = f"nerf_app/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
#: dense all-reduce buckets of at most this many elements (64 MB of float32); a larger gradient goes alone
BUCKET_ELEMENTS = 16 << 20
#: seconds a collective may wait for the other ranks (a dead peer is usually seen at once: its sockets close)
DEFAULT_TIMEOUT_S = 60.0
#: seconds the ranks wait for one another to finish setting up (decoding images may take minutes)
SETUP_TIMEOUT_S = 1800.0


class RankLostError(NerfAppError):
    """Another rank died, failed or stopped answering; the run stops (its folder keeps the last checkpoint)."""


def part(n: int, rank: int, world: int) -> Tuple[int, int]:
    """Rows ``[start, stop)`` of a global batch of ``n`` that ``rank`` of ``world`` takes."""
    return rank * n // world, (rank + 1) * n // world


def environment_world() -> Tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's (or the launcher's) environment; ``(0, 1, 0)`` outside."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (got RANK={os.environ.get('RANK')!r}, "
                          f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r})") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not a rank of WORLD_SIZE={world}")
    return rank, world, local


def is_distributed_environment() -> bool:
    """True when this process is one rank of several (torchrun or ``--nproc``)."""
    return environment_world()[1] > 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # gloo's own text: "[.../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:48359: Connection reset by
    # peer. This is typically caused by ..." -> the part that says what happened
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    return line.split(". This is typically")[0][:300]


class Distributed:
    """This process's place in a data-parallel run: rank, world size, the store and the process group.

    Build it with :meth:`from_environment` (None when the process runs alone: the single-process path is
    untouched). ``timeout`` bounds every collective.
    """

    def __init__(self, rank: int, world: int, local_rank: int, timeout: float = DEFAULT_TIMEOUT_S):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.timeout = float(timeout)
        self.store = None
        self.backend = None
        self.bytes_per_step = 0      # what the last gradient exchange sent (the flat buffer's size)
        self.step = -1               # the step being run, for messages

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, timeout: Optional[float] = None) -> Optional["Distributed"]:
        rank, world, local = environment_world()
        if world <= 1:
            return None
        if timeout is None:
            timeout = float(os.environ.get("NERF_APP_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
        return cls(rank, world, local, timeout)

    # ---- joining -----------------------------------------------------------------------------

    def join(self, device: str = "cpu") -> "Distributed":
        """Connect to the store and form the process group: gloo for a CPU device, NCCL for CUDA. A rank that
        cannot reach the others within the timeout is one error line, not a hang."""
        global _JOINED
        _JOINED = True
        import torch.distributed as dist
        from torch.distributed import TCPStore

        addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
        try:
            port = int(os.environ.get("MASTER_PORT", "29500"))
        except ValueError:
            raise ConfigError(f"MASTER_PORT must be a port number, got {os.environ.get('MASTER_PORT')!r}") from None
        # torchrun's agent (or our launcher) hosts the store: every rank is its client; with a bare env:// setup
        # rank 0 hosts it
        agent_store = (os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" or
                       os.environ.get("NERF_APP_LAUNCHER_STORE") == "1")
        self.backend = "nccl" if str(device).startswith("cuda") else "gloo"
        join_timeout = timedelta(seconds=max(self.timeout, 1.0))
        where = f"{addr}:{port}"
        try:
            self.store = TCPStore(addr, port, self.world, is_master=(self.rank == 0 and not agent_store),
                                  timeout=join_timeout, wait_for_workers=False)
        except Exception as exc:  # the store is not there: rank 0 (or the launcher) never started
            raise RankLostError(f"rank {self.rank}: cannot reach the rendezvous store at {where} within "
                                f"{self.timeout:.0f} s ({_first_line(exc)}); is rank 0 running and "
                                f"MASTER_ADDR/MASTER_PORT right?") from None
        self._post("world", str(self.world))
        self._check_world()
        if self.backend == "nccl":  # unverified: no GPU has run this path (docs/gpu-status.md)
            torch.cuda.set_device(self.local_rank)
        try:
            dist.init_process_group(self.backend, store=self.store, rank=self.rank, world_size=self.world,
                                    timeout=join_timeout)
        except Exception as exc:
            failed = self._failures()  # a rank that found a wrong world size (or anything else) said so
            if failed:
                r, msg = failed[0]
                raise RankLostError(f"rank {self.rank}: stopped because rank {r} failed: {msg}") from None
            missing = self._missing_ranks("joined", wait=0.0)
            who = f"rank(s) {', '.join(map(str, missing))} did not join" if missing else "the group did not form"
            raise RankLostError(f"rank {self.rank}: {who} within {self.timeout:.0f} s ({where}, world size "
                                f"{self.world}): {_first_line(exc)}") from None
        self._post("joined", "1")
        return self

    def _check_world(self) -> None:
        """Every rank must have rank 0's world size (torchrun's --nnodes and --nproc-per-node alike on every
        machine). Another one is one line here, posted for rank 0 too; before this check the ranks waited for
        ranks that never came, and a rank 0 whose peer left during setup waited out the setup timeout."""
        if self.is_root:
            return
        deadline = time.monotonic() + self.timeout
        theirs = self._read("world", 0)
        while theirs is None and time.monotonic() < deadline:
            time.sleep(0.05)
            theirs = self._read("world", 0)
        if theirs is not None and theirs != str(self.world):
            line = (f"rank {self.rank}: started with world size {self.world} but rank 0 with {theirs}; start every "
                    f"rank with the same world size (torchrun: the same --nnodes and --nproc-per-node everywhere)")
            self._post("failed", line)
            raise ConfigError(line)

    def close(self) -> None:
        import gc
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:
                pass
            # whatever still holds the group (a cycle, a finished work object) is freed now, while the
            # interpreter is whole: gloo's C++ objects freed during its teardown can abort the process
            gc.collect()

    # ---- the store: status lines ---------------------------------------------------------------

    def _post(self, what: str, value: str, rank: Optional[int] = None) -> None:
        try:
            self.store.set(f"{_PREFIX}{what}/{self.rank if rank is None else rank}", value)
        except Exception:
            pass  # the store is gone too; the caller's own error line still stands

    def _read(self, what: str, rank: int) -> Optional[str]:
        key = f"{_PREFIX}{what}/{rank}"
        try:
            if self.store.check([key]):
                return self.store.get(key).decode("utf-8", "replace")
        except Exception:
            return None
        return None

    def _missing_ranks(self, what: str, wait: float) -> List[int]:
        """Ranks that have not posted ``what`` after up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            missing = [r for r in range(self.world) if r != self.rank and self._read(what, r) is None]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.1)

    def report_failure(self, message: str) -> None:
        """Post this rank's error line for the others (called before a failing rank exits)."""
        if self.store is not None:
            self._post("failed", message)

    def ready(self) -> None:
        """Setup barrier: every rank has built its model and (rank 0) prepared the run folder; a rank that failed
        instead makes every other rank stop with its line. Waits at most :data:`SETUP_TIMEOUT_S`."""
        self._post("ready", "1")
        deadline = time.monotonic() + max(SETUP_TIMEOUT_S, self.timeout)
        while True:
            failed = self._failures()
            if failed:
                r, msg = failed[0]
                raise RankLostError(f"rank {self.rank}: stopped because rank {r} failed: {msg}")
            missing = [r for r in range(self.world) if r != self.rank and self._read("ready", r) is None]
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise RankLostError(f"rank {self.rank}: rank(s) {', '.join(map(str, missing))} did not finish "
                                    f"setting up within {max(SETUP_TIMEOUT_S, self.timeout):.0f} s")
            time.sleep(0.05)

    def _failures(self) -> List[Tuple[int, str]]:
        return [(r, m) for r in range(self.world) if r != self.rank for m in [self._read("failed", r)] if m]

    def quiet_failure(self, message: str, wait: float = 3.0) -> bool:
        """After this rank failed with ``message``: True when rank 0 failed with the same line (a bad flag, a
        foreign checkpoint: every rank finds it), so this rank need not print it again."""
        if self.is_root or self.store is None:
            return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            theirs = self._read("failed", 0)
            if theirs is not None:
                return theirs == message
            time.sleep(0.05)
        return False

    def _lost(self, what: str, exc: BaseException) -> RankLostError:
        """The error line for a collective that failed: which rank is gone and why, as far as the store tells."""
        failed = self._failures()
        if not failed:
            # a rank that failed on purpose posts its line before it exits; give it a moment
            time.sleep(1.0)
            failed = self._failures()
        at = f" at step {self.step + 1}" if self.step >= 0 else ""
        if failed:
            r, msg = failed[0]
            return RankLostError(f"rank {self.rank}: stopped{at} because rank {r} failed: {msg}")
        # no line from anyone: the others answer a roll call; who does not was killed or lost its machine
        self._post(f"alive{self.step}", "1")
        missing = self._missing_ranks(f"alive{self.step}", wait=5.0)
        cause = _first_line(exc)
        if missing:
            ranks = ", ".join(map(str, missing))
            return RankLostError(f"rank {self.rank}: rank {ranks} stopped answering{at} (killed, crashed or its "
                                 f"machine is unreachable; {what}: {cause})")
        return RankLostError(f"rank {self.rank}: {what} failed{at}: {cause}")

    # ---- collectives -------------------------------------------------------------------------

    def _run(self, what: str, fn):
        try:
            return fn()
        except NerfAppError:
            raise
        except Exception as exc:  # gloo/NCCL errors: a closed connection, a timeout
            raise self._lost(what, exc) from None

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (once, after build/resume: identical from the start)."""
        import torch.distributed as dist
        tensors = [t for t in list(module.parameters()) + list(module.buffers())]

        def go():
            for t in tensors:
                dist.broadcast(t.data, src=0)
        self._run("broadcasting the model", go)

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor], what: str) -> None:
        import torch.distributed as dist

        def go():
            for t in tensors:
                dist.broadcast(t, src=0)
        self._run(what, go)

    def sum_values(self, values: Sequence[float]) -> List[float]:
        """Element-wise sums over the ranks of a few numbers (float64; on the GPU under NCCL, which reduces only
        device tensors)."""
        import torch.distributed as dist
        t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                         device="cuda" if self.backend == "nccl" else "cpu")
        self._run("summing step statistics", lambda: dist.all_reduce(t))
        return t.tolist()

    def average_gradients(self, params: Iterable[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """Every gradient replaced by its mean over the ranks (dense, in buckets of :data:`BUCKET_ELEMENTS`);
        returns the mean loss, carried in the last bucket. A parameter without a gradient gets zeros, so the
        buffer has the same layout on every rank."""
        import torch.distributed as dist
        params = [p for p in params if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        loss_t = loss.detach().reshape(1).to(params[0].grad.dtype) if params else loss.detach().reshape(1)
        grads = [p.grad for p in params]
        sent = 0
        world = float(self.world)

        def flush(bucket: List[torch.Tensor], extra: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
            nonlocal sent
            parts = [g.reshape(-1) for g in bucket] + ([extra] if extra is not None else [])
            if not parts:
                return None
            flat = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
            dist.all_reduce(flat)
            flat.div_(world)
            sent += flat.numel() * flat.element_size()
            k = 0
            for g in bucket:
                g.copy_(flat[k:k + g.numel()].view_as(g))
                k += g.numel()
            return flat[k:] if extra is not None else None

        def go():
            nonlocal sent
            bucket, size = [], 0
            for g in grads:
                if g.numel() >= BUCKET_ELEMENTS and g.is_contiguous():
                    dist.all_reduce(g)  # large (the hash table): reduced in place, no copy
                    g.div_(world)
                    sent += g.numel() * g.element_size()
                    continue
                if size + g.numel() > BUCKET_ELEMENTS and bucket:
                    flush(bucket)
                    bucket, size = [], 0
                bucket.append(g)
                size += g.numel()
            return flush(bucket, loss_t)

        mean_loss = self._run("the gradient all-reduce", go)
        self.bytes_per_step = sent
        return mean_loss.reshape(()).to(loss.dtype) if mean_loss is not None else loss

    def shared_elapsed(self, elapsed: float) -> float:
        """Rank 0's training clock on every rank: the time budget, time-based checkpoints and a time-based
        schedule are decided alike everywhere."""
        import torch.distributed as dist
        t = torch.tensor([elapsed if self.is_root else 0.0], dtype=torch.float64)
        if self.backend == "nccl":
            t = t.cuda()
        self._run("sharing the clock", lambda: dist.all_reduce(t))
        return float(t.item())


# ---- launcher (--nproc K) -----------------------------------------------------------------------


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _die_with_parent() -> None:
    """In a rank (before exec): SIGTERM when the launcher dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except Exception:
        pass


def launch(argv: List[str], nproc: int, threads: Optional[int] = None, grace_s: float = 60.0,
           log=None) -> int:
    """Run ``python -m nerf_app <argv>`` as ``nproc`` local ranks and wait for them. The launcher hosts the
    rendezvous store (so any rank may die and the others can still read why). When a rank ends badly, the others
    have ``grace_s`` seconds to stop on their own (they do at their next collective), then are terminated.
    Returns the exit status: 0 when every rank succeeded, else the first failing rank's (2 for an error line)."""
    from torch.distributed import TCPStore

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    store = TCPStore("127.0.0.1", 0, nproc, is_master=True, wait_for_workers=False,
                     timeout=timedelta(seconds=DEFAULT_TIMEOUT_S))
    per_rank = threads or max(1, (os.cpu_count() or 1) // nproc)
    procs = []
    for r in range(nproc):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(nproc), LOCAL_RANK=str(r), LOCAL_WORLD_SIZE=str(nproc),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(store.port), NERF_APP_LAUNCHER_STORE="1",
                   OMP_NUM_THREADS=str(per_rank))
        # c10d's C++ warnings (a socket poll that timed out) would add lines beside the one error line
        env.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
        procs.append(subprocess.Popen([sys.executable, "-m", "nerf_app", *argv], env=env,
                                      preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None))
    first_bad: Optional[Tuple[int, int]] = None
    told = set()
    deadline = None

    def on_term(signum, frame):  # a launcher stopped by SIGTERM/SIGHUP takes its ranks with it
        raise KeyboardInterrupt
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            codes = [p.poll() for p in procs]
            for r, c in enumerate(codes):
                if c not in (None, 0) and r not in told:
                    told.add(r)
                    # a rank that died without a word: say how in the store, where the others look for the cause
                    key = f"{_PREFIX}failed/{r}"
                    if not store.check([key]):
                        store.set(key, f"killed by {_signal_name(c)}" if c < 0 else f"exited with status {c}")
                    if first_bad is None:
                        first_bad = (r, c)
                        deadline = time.monotonic() + grace_s
            if all(c is not None for c in codes):
                break
            if deadline is not None and time.monotonic() > deadline:
                for r, p in enumerate(procs):
                    if p.poll() is None:
                        log(f"nerf-app train: error: rank {r} did not stop within {grace_s:.0f} s of rank "
                            f"{first_bad[0]}'s failure; terminating it")
                        p.terminate()
                deadline = time.monotonic() + 10.0
                grace_s = 0.0
                if all(p.poll() is not None for p in procs):
                    break
            time.sleep(0.1)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if first_bad is None:
        return 0
    r, c = first_bad
    if c < 0 and not any(p.returncode == 2 for p in procs):  # nobody printed the line: the launcher does
        log(f"nerf-app train: error: rank {r} was killed by {_signal_name(c)}")
    return 2 if c < 0 else c


def exit_rank(code: int):
    """End the process of a rank whose group was joined (:meth:`Distributed.join`), after its work is written and
    :meth:`Distributed.close` ran: flush the standard streams and leave through ``os._exit``, skipping the
    interpreter's teardown. There gloo's C++ threads can abort a process whose run succeeded (SIGABRT,
    "terminate called without an active exception": twice in about 35 runs of tests/test_distributed.py;
    pytorch#179291 describes the teardown race). A process that never joined a group exits as usual."""
    if not _JOINED:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(int(code or 0))
