"""Same inputs, same bits, on two CPU threads (issue 31).

The cause found: ``x[index]`` with a repeated index backpropagates through torch's
``index_put_(accumulate=True)``, which on more than one CPU thread adds the repeated rows with atomic
float adds in thread order (parallel once the gradient has >= 32768 elements). The training step had
four such gathers: each image's appearance matrix for each of its rays, each image's pose correction,
each ray's origin and direction for each of its samples, and each ray's running sum for each of its
samples in the distortion loss. They now go through :func:`nerf_app.ops.gather.take_rows`
(``index_select``, whose backward adds in index order).

- the graph test walks the autograd graph of real training steps of every mode and fails on any
  gather with repeated indices that does not use it: deterministic, however lucky the timing;
- the two-process test trains the same run twice, side by side, on two threads each, with every such
  gather on and batches big enough for torch's parallel path, and requires bit-identical checkpoints
  (the code before the fix differed in the hash table, the MLPs, the appearance and pose parameters and
  Adam's moments in each of the 6 completed trials on the 2-core box).

A second cause, found in session 9: torch computes ``exp``/``log``/``sqrt``/``tanh``... with MKL's vector
math library, whose one-time set-up races when a process's first such call is split across two OpenMP
threads; the losing thread computed its whole share through another code path (1 in ~50 fresh processes,
``benchmarks/mkl_first_call.py``). The occupancy grid's first density estimate is a process's first big
``exp``, which is why two runs differed there. ``nerf_app/mkl_first_call.py`` does the set-up on one thread
when ``nerf_app.backend`` is imported; the tests below check that it happens, and that it does not start
the OpenMP pool (a process forked after that hangs in its first parallel op).
"""
from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, requires_cpp
from nerf_app.ops.gather import take_rows

DEMO = REPO_ROOT / "data" / "demo"
# every gather that carries a gradient on: appearance, pose refinement from step 0, distortion; batches of
# 8192 rays (appearance: 8192 x 12 gradient elements, past torch's parallel threshold)
ALL_GATHERS = ["--set", "appearance.mode=affine", "--set", "optim.distortion_weight=0.01",
               "--set", "cameras.optimize=true", "--set", "cameras.start=0", "--set", "rays.initial_rays=8192",
               "--set", "rays.target_samples=131072", "--set", "model.log2_hashmap_size=14",
               "--set", "model.n_levels=8", "--set", "grid.resolution=32", "--no-progress"]


def _repeated_index_gathers(loss: torch.Tensor) -> collections.Counter:
    """``IndexBackward0`` nodes of ``loss``'s graph whose integer index repeats (their backward is the
    thread-order accumulation), keyed by the gathered tensor's shape."""
    found, seen, stack = collections.Counter(), set(), [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == "IndexBackward0":
            for ix in fn._saved_indices:
                if ix is not None and ix.dtype != torch.bool and torch.unique(ix).numel() != ix.numel():
                    found[tuple(fn._saved_self_sym_sizes)] += 1
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return found


def test_the_graph_walk_sees_a_repeated_index_gather():
    """The detector itself: x[index] with repeats is found, take_rows and a boolean mask are not."""
    x = torch.randn(5, 3, requires_grad=True)
    index = torch.tensor([0, 2, 2, 4])
    assert _repeated_index_gathers(x[index].sum()) == {(5, 3): 1}
    assert not _repeated_index_gathers(take_rows(x, index).sum())
    assert not _repeated_index_gathers(x[x[:, 0] > 0].sum() + x[torch.tensor([1, 3])].sum())


@requires_cpp
@pytest.mark.parametrize("case", ["nerf", "sdf", "image"])
def test_training_steps_gather_repeated_rows_in_index_order(case, shared_data, tmp_path, monkeypatch):
    from nerf_app.cli import main
    args = {
        "nerf": [str(DEMO), "--max-steps", "2", *ALL_GATHERS, "--set", "optim.free_space_weight=0.01"],
        "sdf": [str(shared_data / "meshes" / "spot.obj"), "--max-steps", "2", "--no-progress"],
        "image": [str(shared_data / "image" / "albert.png"), "--max-steps", "2", "--no-progress"],
    }[case]
    found, backwards = collections.Counter(), []
    original = torch.Tensor.backward

    def backward(self, *a, **k):
        backwards.append(1)
        found.update(_repeated_index_gathers(self))
        return original(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        assert main(["train", *args, "--out", str(tmp_path / "run")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert backwards, "no training step ran"
    assert not found, f"gathers with repeated indices and a thread-order backward (use ops.gather.take_rows): {found}"


def test_take_rows_equals_indexing_and_its_gradient_repeats_bit_for_bit():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(67, 3, 4, generator=g, dtype=torch.float64)
    index = torch.randint(0, 67, (3001,), generator=g)   # awkward size, many repeats
    w = torch.randn(3001, 3, 4, generator=g, dtype=torch.float64)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    assert torch.equal(take_rows(a, index), b[index])
    (take_rows(a, index) * w).sum().backward()
    (b[index] * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)
    grid = torch.randint(0, 67, (7, 5), generator=g)     # any index shape
    assert torch.equal(take_rows(x, grid), x[grid])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        x32 = torch.randn(67, 3, 4, generator=g)
        index = torch.randint(0, 67, (20000,), generator=g)  # 240,000 gradient elements: torch's parallel path
        w = torch.randn(20000, 3, 4, generator=g)
        grads = []
        for _ in range(8):
            p = x32.clone().requires_grad_()
            (take_rows(p, index) * w).sum().backward()
            grads.append(p.grad)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], gr) for gr in grads[1:])


def _digest(path) -> dict:
    """sha256 of every tensor and value of a checkpoint but its wall-clock time, by key."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    out = {}

    def walk(obj, key):
        if isinstance(obj, torch.Tensor):
            out[key] = hashlib.sha256(obj.detach().contiguous().numpy().tobytes()).hexdigest()
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{key}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{key}/{i}")
        elif key != "/elapsed":
            out[key] = repr(obj)

    walk(ck, "")
    return out


@requires_cpp
def test_two_processes_on_two_threads_train_bit_identically(tmp_path):
    """Two `train` processes side by side (so the OpenMP threads of both are preempted), 2 threads each:
    every parameter, optimizer moment, RNG state and buffer bit-identical, the occupancy grid's density
    included (it was held to one ulp until MKL's first-call race was found and avoided)."""
    cmds, runs = [], []
    for i in range(2):
        runs.append(tmp_path / f"run{i}")
        cmds.append([sys.executable, "-m", "nerf_app.cli", "train", str(DEMO), "--out", str(runs[-1]),
                     "--max-steps", "6", "--threads", "2", *ALL_GATHERS])
    procs = [subprocess.Popen(c, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in cmds]
    for p in procs:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out
    a, b = (_digest(r / "checkpoints" / "final.pt") for r in runs)
    assert a.keys() == b.keys()
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, f"two identical runs differ in {len(differ)} entries, e.g. {differ[:5]}"


_FIRST_CALL_CHILD = r"""
import os, sys
import torch
torch.set_num_threads(2)   # before the import: then MKL threads a call of 256 values itself (measured)
import nerf_app.backend
mkl_first_call = sys.modules.get("nerf_app.mkl_first_call")
assert mkl_first_call is not None and mkl_first_call._done, "importing nerf_app.backend did not do MKL's set-up"
# the set-up must not have started the OpenMP pool: a child forked now must run a parallel op
x = torch.randn(1 << 16)
pid = os.fork()
if pid == 0:
    torch.set_num_threads(2)
    torch.exp(x)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


def test_importing_the_backend_does_mkl_set_up_single_threaded_and_fork_safely(tmp_path):
    """A fresh process: ``import nerf_app.backend`` runs every MKL-backed elementwise function once, and
    leaves no OpenMP pool behind, so the fuzz harness's forked children still run parallel ops (a warm-up
    of 256 values was threaded by MKL itself, and such a child hung: that is what the time limit catches)."""
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL_CHILD], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["child", "0"], out.stdout


def test_the_set_up_calls_every_function_torch_hands_to_mkl():
    """The list is the functions whose CPU results change under ``MKL_CBWR=COMPATIBLE`` (they are MKL's):
    measured in a child with that setting against this process, on values every function accepts."""
    from nerf_app.mkl_first_call import VML_FUNCTIONS
    names = ["exp", "log", "log10", "log2", "log1p", "expm1", "sqrt", "rsqrt", "tanh", "sigmoid", "sin",
             "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "erf", "erfc", "erfinv", "reciprocal"]
    code = ("import sys, torch\n"
            "x = torch.rand(1 << 16, generator=torch.Generator().manual_seed(0)) * 0.98 + 0.01\n"
            f"for n in {names!r}: sys.stdout.buffer.write(getattr(torch, n)(x).numpy().tobytes())\n")
    env = dict(os.environ, MKL_CBWR="COMPATIBLE")
    compat = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120, check=True).stdout
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=True).stdout
    size = (1 << 16) * 4
    mkl = [n for i, n in enumerate(names) if compat[i * size:(i + 1) * size] != here[i * size:(i + 1) * size]]
    if not mkl:
        # seen on an AMD EPYC with AVX2 (torch's CPU capability "AVX2"): no function's result changes under any
        # MKL_CBWR branch there, so which functions are MKL's cannot be observed on such a CPU
        pytest.skip(f"this CPU has no torch function whose result depends on MKL_CBWR (capability "
                    f"{torch.backends.cpu.get_cpu_capability()}): MKL's functions cannot be told apart here")
    assert "exp" in mkl, "torch no longer uses MKL for exp: revisit nerf_app/mkl_first_call.py"
    assert set(mkl) <= set(VML_FUNCTIONS), f"MKL-backed but not set up at import: {sorted(set(mkl) - set(VML_FUNCTIONS))}"


