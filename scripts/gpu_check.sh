#!/usr/bin/env bash
# The first-run check of the GPU path, on a machine with an NVIDIA GPU: one script, about 8 minutes on an
# H100/H200. It installs a CUDA torch (unless one is there), builds the extension with CUDA required, runs
# every CUDA test, the hash-grid / MLP / training-step benchmarks on CUDA, trains lego for 15 s and 60 s
# with eval, renders and exports the CUDA-trained (60 s) run, and (when nerfacc installs) cross-checks marching
# and compositing against nerfacc. Every stage is time-limited; a failure is recorded and the script goes
# on. Results: OUT_DIR/report.json (one object: environment, each stage's status/seconds/log, parsed
# numbers) and OUT_DIR/<stage>.log.
#
#   bash scripts/gpu_check.sh --prepare-data   # on any machine with ../shared/data: lego -> .gpu_data/
#   bash scripts/gpu_check.sh [OUT_DIR]        # on the GPU machine (default: $OUT/gpu_check or runs/gpu_check)
#
# .gpu_data/ is git-ignored; when only the checkout travels to the GPU machine, carry it along (it holds
# lego's training images and a 20-view test split, ~16 MB). See docs/gpu-status.md.
# GPU_CHECK_SKIP: a regex of stage names not to run; GPU_CHECK_DEVICE (default cuda): the training device
# (a CPU dry run of the script's plumbing: GPU_CHECK_DEVICE=cpu GPU_CHECK_SKIP='torch|build|cuda|bench|nerfacc').
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"   # whole-script budget: stages that cannot fit are skipped, not started
SKIP="${GPU_CHECK_SKIP:-^$}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"

if [ "${1:-}" = "--prepare-data" ]; then
  "$PY" - <<'PYEOF'
import json, shutil
from pathlib import Path
src, dst = Path("../shared/data/lego"), Path(".gpu_data/lego")
if not src.is_dir():
    raise SystemExit(f"{src} not found")
dst.mkdir(parents=True, exist_ok=True)
keep = {"train": None, "test": 20, "val": 4}   # frames kept per split (None: all)
for split, n in keep.items():
    meta = json.loads((src / f"transforms_{split}.json").read_text())
    meta["frames"] = meta["frames"][:n] if n else meta["frames"]
    for f in meta["frames"]:
        rel = Path(f["file_path"] + ("" if f["file_path"].endswith(".png") else ".png"))
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    (dst / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
total = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
print(f"[gpu-check] lego -> {dst} ({total / 2**20:.1f} MiB)")
PYEOF
  exit $?
fi

OUT_DIR="${1:-${OUT:+$OUT/gpu_check}}"
OUT_DIR="${OUT_DIR:-runs/gpu_check}"
mkdir -p "$OUT_DIR"
STAGES="$OUT_DIR/stages.tsv"
: > "$STAGES"
START=$(date +%s)
LEGO=".gpu_data/lego"
[ -d "$LEGO" ] || LEGO="../shared/data/lego"

# stage NAME LIMIT_S CMD...: runs CMD under timeout, logs to OUT_DIR/NAME.log, records the outcome.
stage() {
  local name="$1" limit="$2"; shift 2
  if [[ "$name" =~ $SKIP ]]; then
    printf '%s\tskipped\t0\t%s\n' "$name" "GPU_CHECK_SKIP" >> "$STAGES"
    echo "[gpu-check] $name: skipped (GPU_CHECK_SKIP)"
    return 0
  fi
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  if [ "$left" -lt 20 ]; then
    printf '%s\tskipped\t0\t%s\n' "$name" "budget spent" >> "$STAGES"
    echo "[gpu-check] $name: skipped (budget spent)"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  local t0=$(date +%s)
  echo "[gpu-check] $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local status=ok
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status=timeout
  [ "$rc" -ne 0 ] && [ "$status" = ok ] && status=failed
  printf '%s\t%s\t%s\trc=%s\n' "$name" "$status" "$dt" "$rc" >> "$STAGES"
  echo "[gpu-check] $name: $status in ${dt}s"
  [ "$rc" -eq 0 ]
}

has_cuda_torch() { "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }

stage environment 30 bash -c "nvidia-smi; nvcc --version; $PY --version; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())'; df -h .; nproc"

# 1. a CUDA torch: keep one that sees the GPU; else the registry's torch==2.13.0 (CUDA on Linux x86_64),
#    else the PyTorch index's CUDA 12.8 build.
if ! has_cuda_torch && ! [[ torch_install =~ $SKIP ]]; then
  stage torch_install 240 "$PY" -m pip install --no-cache-dir "${TORCH_SPEC:-torch==2.13.0}"
  has_cuda_torch || stage torch_install_cu128 240 "$PY" -m pip install --no-cache-dir \
    --index-url https://download.pytorch.org/whl/cu128 "${TORCH_SPEC:-torch==2.13.0}"
fi
# The lent GPU machines reach no registry: this stage may fail there (it is recorded and the script goes on);
# their image already holds torch, numpy, scipy, scikit-image, opencv, imageio, tqdm, pyyaml and pytest, which
# is what the CUDA tests, training, eval, render and the marching-cubes export need.
stage deps 120 "$PY" -m pip install -q setuptools wheel ninja -r requirements-test.txt

# 2. the extension with CUDA required (fails instead of silently building CPU-only); native arch only
ARCH="$("$PY" -c 'import torch; m, n = torch.cuda.get_device_capability(); print(f"{m}.{n}")' 2>/dev/null || echo 9.0)"
stage build 300 env NERF_APP_REQUIRE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$(nproc)" \
  "$PY" -m pip install --no-build-isolation --no-deps -e .
stage info 30 "$PY" -m nerf_app.cli info

# 3. every CUDA test: missing kernels fail rather than skip
# (the op test files by name: other test modules import packages an offline GPU image may lack)
stage cuda_tests 240 env NERF_APP_REQUIRE_CUDA=1 "$PY" -m pytest -q -m cuda -p no:cacheprovider \
  --continue-on-collection-errors --junitxml="$OUT_DIR/cuda_tests.xml" tests/test_hashgrid.py tests/test_mlp.py \
  tests/test_render_ops.py tests/test_distortion.py tests/test_gpu_training_step.py

# 4. benchmarks on CUDA (one JSON line per measurement in the logs)
stage bench_hashgrid 60 "$PY" benchmarks/hashgrid.py --device cuda --torch-reps 1
stage bench_hashgrid_fp16 60 "$PY" benchmarks/hashgrid.py --device cuda --dtype float16 --torch-reps 1
stage bench_mlp 60 "$PY" benchmarks/mlp.py --device cuda
stage bench_train_step 90 "$PY" benchmarks/nerf_train.py --device cuda --scene "$LEGO" --samples 262144 \
  --steps 8 --backends native,mixed

# 5. lego on CUDA: 15 s and 60 s with eval; render and export the trained run
train_eval() {  # SECONDS NAME
  stage "train_$2" $(( $1 + 60 )) "$PY" -m nerf_app.cli train "$LEGO" --mode nerf --max-time "$1" --no-progress \
    --set device="$DEVICE" --out "$OUT_DIR/$2" &&
  stage "eval_$2" 60 "$PY" -m nerf_app.cli eval "$OUT_DIR/$2" --limit 20
}
train_eval 15 lego15
train_eval 60 lego60
# render and export the longer run (a 15 s run may not reach the mesh level yet); the 15 s one if it is missing
RUN="$OUT_DIR/lego60"
[ -e "$RUN/checkpoints/final.pt" ] || RUN="$OUT_DIR/lego15"
stage render 60 "$PY" -m nerf_app.cli render "$RUN" --frames 8 --resolution 200
stage export 60 "$PY" -m nerf_app.cli export "$RUN" --resolution 128

# 6. optional: nerfacc (CUDA-only, JIT-built on first use) on the same inputs
stage nerfacc_install 90 "$PY" -m pip install -q nerfacc &&
  stage nerfacc_crosscheck 150 "$PY" benchmarks/nerfacc_crosscheck.py

# report
"$PY" - "$OUT_DIR" "$START" <<'PYEOF'
import json, sys, time
from pathlib import Path
out, start = Path(sys.argv[1]), int(sys.argv[2])
report = {"script": "scripts/gpu_check.sh", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
          "total_seconds": int(time.time()) - start, "stages": [], "results": {}}
try:
    import torch
    from nerf_app import backend
    report["environment"] = backend.build_report()
except Exception as exc:
    report["environment"] = {"error": repr(exc)}
for line in (out / "stages.tsv").read_text().splitlines():
    name, status, seconds, detail = (line.split("\t") + ["", "", "", ""])[:4]
    log = out / f"{name}.log"
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    report["stages"].append({"name": name, "status": status, "seconds": int(seconds or 0), "detail": detail,
                             "log": log.name, **({"log_tail": tail} if status != "ok" else {})})
    if name.startswith(("bench_", "nerfacc_crosscheck")) and log.exists():
        rows = []
        for row in log.read_text(errors="replace").splitlines():
            try:
                rows.append(json.loads(row))
            except ValueError:
                pass
        report["results"][name] = rows
    if name == "cuda_tests" and log.exists():
        report["results"]["cuda_tests_summary"] = log.read_text(errors="replace").strip().splitlines()[-1:]
for run in ("lego15", "lego60"):
    m = out / run / "metrics.json"
    if m.exists():
        report["results"][f"{run}_metrics"] = json.loads(m.read_text())
report["ok"] = all(s["status"] in ("ok", "skipped") for s in report["stages"] if not s["name"].startswith("nerfacc")) \
    and not any(s["detail"] == "budget spent" for s in report["stages"])
(out / "report.json").write_text(json.dumps(report, indent=1))
print(f"[gpu-check] report: {out / 'report.json'} (ok={report['ok']}, {report['total_seconds']} s)")
PYEOF
