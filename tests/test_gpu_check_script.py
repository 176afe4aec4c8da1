"""scripts/gpu_check.sh cannot rot before its first GPU run: on this CPU machine it stops at once with one
line; --prepare writes data the GPU tests find; the dry run (GPU_CHECK_DRY=1) runs every stage's plumbing
on the CPU backends and leaves exactly report.json, stages.md and logs.tar.gz; a failed kernel stage makes
the exit code non-zero. (The dry run's two slow stages, the ptxas report and the training-step benchmark,
run in .ci/run's complete dry run.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time

import pytest
import torch

from conftest import HAS_CPP, REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import gpu_check_report  # noqa: E402


def run(*args, env=None, timeout=300):
    full = dict(os.environ, **(env or {}))
    full.pop("OUT", None)
    t0 = time.perf_counter()
    p = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=timeout,
                       cwd=REPO_ROOT)
    return p, time.perf_counter() - t0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The embedded demo scene prepared as the script's data (the GPU machine gets lego the same way)."""
    data = tmp_path_factory.mktemp("gpu_data")
    p, _ = run("--prepare", env={"GPU_CHECK_SOURCE": str(REPO_ROOT / "data" / "demo"), "NERF_APP_DATA": str(data)})
    assert p.returncode == 0, p.stdout + p.stderr
    return data


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would run")
def test_stops_at_once_with_one_line_without_a_cuda_torch(tmp_path):
    out = tmp_path / "out"
    p, seconds = run(str(out), timeout=60)
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, (p.returncode, lines)
    assert lines[0].startswith("[gpu-check] stop: ") and ("not a CUDA build" in lines[0] or "no GPU" in lines[0])
    assert seconds < 30 and not out.exists()


def test_prepare_writes_a_manifest_and_a_missing_file_stops_the_run(prepared, tmp_path):
    manifest = json.loads((prepared / "lego" / "MANIFEST.json").read_text())
    assert manifest["bytes"] <= 20 * 2 ** 20 and "transforms_train.json" in manifest["files"]
    for rel, size in manifest["files"].items():
        assert (prepared / "lego" / rel).stat().st_size == size
    # the check runs before any stage: an incomplete copy stops the run with one line (exit 3)
    broken = tmp_path / "data"
    subprocess.run(["cp", "-r", str(prepared), str(broken)], check=True)
    victim = next(r for r in manifest["files"] if r.endswith(".png"))
    (broken / "lego" / victim).unlink()
    for data in (broken, tmp_path / "nothing"):
        p, _ = run(str(tmp_path / "out"), env={"GPU_CHECK_DRY": "1", "NERF_APP_DATA": str(data)}, timeout=60)
        lines = (p.stdout + p.stderr).strip().splitlines()
        assert p.returncode == 3 and len(lines) == 1 and "prepared data is missing" in lines[0], (p.returncode, lines)
    assert not (tmp_path / "out").exists()


def test_gpu_tests_find_the_prepared_data(prepared):
    """Collected against the prepared data (not ../shared): on a CPU they skip for want of a GPU, not of data."""
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        "tests/test_gpu_training_step.py"], capture_output=True, text=True, cwd=REPO_ROOT,
                       env=dict(os.environ, NERF_APP_DATA=str(prepared), NERF_APP_REQUIRE_CUDA="0"), timeout=120)
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the tests run")
    assert p.returncode == 0, p.stdout[-2000:]
    skips = [line for line in p.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("no CUDA GPU" in line or "CUDA kernels" in line for line in skips), skips
    assert "data" not in " ".join(skips)


@pytest.mark.skipif(not HAS_CPP, reason="the dry run uses the C++ extension (the CPU backends)")
def test_dry_run_exercises_every_stage(prepared, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    p, seconds = run(str(out), env={"GPU_CHECK_DRY": "1", "NERF_APP_DATA": str(prepared),
                                    "GPU_CHECK_WORK": str(work), "GPU_CHECK_SKIP": "^(ptxas|bench_train_step)$"},
                     timeout=400)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert sorted(f.name for f in out.iterdir()) == ["logs.tar.gz", "report.json", "stages.md"]
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "dry" and report["ok"] and report["verdict"]["kernels"] == "pass"
    status = {s["name"]: s for s in report["stages"]}
    expected_ok = ["environment", "build", "info", "cuda_tests", "bench_hashgrid", "bench_mlp", "train_lego15",
                   "eval_lego15", "render", "export"]
    assert all(status[n]["status"] == "ok" for n in expected_ok), {n: status[n]["status"] for n in expected_ok}
    skipped = {n: s["detail"] for n, s in status.items() if s["status"] == "skipped"}
    assert set(skipped) == {"deps", "ptxas", "bench_hashgrid_fp16", "bench_train_step", "train_lego60",
                            "eval_lego60", "nerfacc_crosscheck"} and all(skipped.values()), skipped
    res = report["results"]
    assert res["cuda_tests"]["tests"] > 0 and res["cuda_tests"]["skipped"] == res["cuda_tests"]["tests"]
    assert res["bench_hashgrid"] and res["bench_mlp"]
    assert 0 < res["lego15_metrics"]["psnr"] < 60 and res["lego15_train"]["step"] == 4
    assert res["render"]["frames"] == 1 and res["export"]["faces"] > 0
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {f"logs/{n}.log" for n in expected_ok} <= names and "cuda_tests.xml" in names
    assert (out / "logs.tar.gz").stat().st_size <= 16 * 2 ** 20
    print(f"dry run: {seconds:.0f} s")


@pytest.mark.skipif(not HAS_CPP, reason="uses the dry run")
def test_a_failed_kernel_stage_fails_the_script(prepared, tmp_path):
    """Only the ptxas stage runs, with no nvcc: the kernel verdict is "fail" and the exit code 1."""
    others = "^(environment|build|info|cuda_tests|bench_.*|train_.*|eval_.*|render|export)$"
    p, _ = run(str(tmp_path / "out"), env={"GPU_CHECK_DRY": "1", "NERF_APP_DATA": str(prepared),
                                           "GPU_CHECK_SKIP": others, "NVCC": "/nonexistent/nvcc",
                                           "GPU_CHECK_WORK": str(tmp_path / "work")}, timeout=120)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert p.returncode == 1 and report["verdict"]["kernels"] == "fail", (p.returncode, report["verdict"])
    ptxas = next(s for s in report["stages"] if s["name"] == "ptxas")
    assert ptxas["status"] == "failed" and "nvcc not found" in ptxas["log_tail"]


def _verdict(rows):
    stages = [dict(zip(("name", "kind", "status", "detail"), r)) for r in rows]
    return gpu_check_report.verdict(stages)


def test_verdict_and_exit_codes():
    ok = [("build", "kernel", "ok", ""), ("cuda_tests", "kernel", "ok", ""), ("train_lego15", "app", "ok", "")]
    assert _verdict(ok) == ({"kernels": "pass", "app_failed_or_starved": []}, 0)
    assert _verdict(ok + [("bench_mlp", "kernel", "timeout", "")])[1] == 1
    assert _verdict(ok + [("bench_mlp", "kernel", "skipped", "budget spent")])[0]["kernels"] == "incomplete"
    assert _verdict(ok + [("bench_mlp", "kernel", "skipped", "budget spent")])[1] == 1
    assert _verdict(ok + [("bench_mlp", "kernel", "skipped", "GPU_CHECK_SKIP")])[1] == 0
    assert _verdict(ok + [("export", "app", "failed", "")]) == ({"kernels": "pass",
                                                                 "app_failed_or_starved": ["export"]}, 4)
    assert _verdict(ok + [("nerfacc_crosscheck", "optional", "failed", "")])[1] == 0
    assert _verdict([("build", "kernel", "skipped", "GPU_CHECK_SKIP")])[0]["kernels"] == "incomplete"


def test_ptxas_report_is_parsed():
    text = """ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooPf
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 72 registers, used 1 barriers, 38912 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function '_Z3barv' for 'sm_90'
ptxas info    : Function properties for _Z3barv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 20 registers, used 0 barriers, 400 bytes cmem[0]
"""
    rows = gpu_check_report.parse_ptxas(text)
    assert [(r["registers"], r["spill_stores"], r["smem_bytes"], r["stack_bytes"]) for r in rows] == \
        [(72, 4, 38912, 8), (20, 0, 0, 0)]
    assert rows[0]["kernel"] in ("foo(float*)", "_Z3fooPf") and rows[0]["arch"] == "sm_90"


def test_gpu_tests_fail_with_one_line_when_the_data_is_missing(tmp_path):
    """Where the GPU tests do run, missing data is one failure line, never a skip (the fixture, used alone)."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(f"import sys\nsys.path.insert(0, {str(REPO_ROOT / 'tests')!r})\n"
                     "from test_gpu_training_step import lego  # noqa: F401\n\n"
                     "def test_needs_lego(lego):\n    assert lego.is_dir()\n")
    env = dict(os.environ, NERF_APP_DATA=str(tmp_path / "nowhere"))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(probe)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 1, p.stdout[-2000:]
    errors = [line for line in p.stdout.splitlines() if "GPU test data not found" in line]
    assert errors and "gpu_check.sh --prepare" in errors[0] and "Traceback" not in p.stdout
