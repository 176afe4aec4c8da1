#!/usr/bin/env bash
# The first-run check of the GPU path: one command on a machine with an NVIDIA GPU and no network, about
# 8 minutes on an H100/H200 (docs/gpu-status.md gives the exact command to run there and the stage budget).
#
#   bash scripts/gpu_check.sh --prepare   # once, where ../shared/data exists: lego -> .gpu_data/ (git-ignored, ~16 MB)
#   bash scripts/gpu_check.sh [OUT_DIR]   # on the GPU machine (OUT_DIR default: $OUT/gpu_check, else runs/gpu_check)
#   bash scripts/gpu_check.sh --pip [OUT_DIR]     # also the pip stages (test deps, nerfacc): they need a network
#   GPU_CHECK_DRY=1 bash scripts/gpu_check.sh DIR # the CPU dry run: every stage's plumbing (CI)
#
# Offline by construction: nothing is installed unless --pip asks. Before any stage it stops with one line
# (exit 2) when torch is not a CUDA build, sees no GPU or nvcc is missing, and (exit 3) when the prepared
# data is missing ($NERF_APP_DATA/lego, else .gpu_data/lego). Then, each under `timeout` with its share of
# the budget: build the extension with CUDA required, the ptxas report of every kernel, every CUDA test
# (NERF_APP_REQUIRE_CUDA=1: a test that cannot run its kernels fails), the hash-grid / MLP / training-step
# benchmarks, lego trained for 15 s and 60 s with eval, render and export of the trained run, and the
# nerfacc cross-check when nerfacc is installed. Everything is written to a work folder (GPU_CHECK_WORK,
# default a new /tmp/gpu_check.*); OUT_DIR receives exactly report.json, stages.md and logs.tar.gz
# (<= 16 MiB), rewritten after every stage. Exit 0: all ran and passed; 1: a kernel stage failed (or could
# not run for lack of time); 4: only application stages failed. Skipped stages are reported as skipped.
#
# GPU_CHECK_SKIP: a regex of stage names not to run; GPU_CHECK_BUDGET_S: the whole budget (default 480).
# GPU_CHECK_DRY=1: no GPU needed: the extension as built, the ptxas report for sm_90, the CUDA tests
# collected (they skip), benchmarks and a few training steps on the CPU backends.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="${PYTHON:-python3}"
DRY="${GPU_CHECK_DRY:-0}"
[ "$DRY" = 0 ] || DRY=1
SKIP="${GPU_CHECK_SKIP:-^$}"
DATA="${NERF_APP_DATA:-$ROOT/.gpu_data}"
case "$DATA" in /*) ;; *) DATA="$ROOT/$DATA" ;; esac
LEGO="$DATA/lego"
PIP=0

say() { echo "[gpu-check] $*"; }

case "${1:-}" in
  --prepare|--prepare-data)
    # lego -> $DATA/lego: every training image, 20 test and 4 val views, and a manifest of sizes
    SOURCE="${GPU_CHECK_SOURCE:-$ROOT/../shared/data/lego}"
    exec "$PY" - "$SOURCE" "$LEGO" <<'PYEOF'
import json, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
if not (src / "transforms_train.json").is_file():
    raise SystemExit(f"[gpu-check] prepare: {src}/transforms_train.json not found (GPU_CHECK_SOURCE names the scene)")
if dst.exists():
    shutil.rmtree(dst)
dst.mkdir(parents=True)
keep = {"train": None, "test": 20, "val": 4}   # frames kept per split (None: all)
files = {}
for split, n in keep.items():
    f = src / f"transforms_{split}.json"
    if not f.is_file():
        continue
    meta = json.loads(f.read_text())
    meta["frames"] = meta["frames"][:n] if n else meta["frames"]
    for fr in meta["frames"]:
        rel = Path(fr["file_path"] + ("" if Path(fr["file_path"]).suffix else ".png"))
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
        files[rel.as_posix()] = (dst / rel).stat().st_size
    (dst / f.name).write_text(json.dumps(meta, indent=1))
    files[f.name] = (dst / f.name).stat().st_size
total = sum(files.values())
if total > 20 * 2 ** 20:
    shutil.rmtree(dst)
    raise SystemExit(f"[gpu-check] prepare: {total / 2**20:.1f} MiB is over the 20 MiB limit; nothing written")
(dst / "MANIFEST.json").write_text(json.dumps({"source": str(src), "bytes": total, "files": files}, indent=1))
print(f"[gpu-check] {src} -> {dst}: {len(files)} files, {total / 2**20:.1f} MiB")
PYEOF
    ;;
  --pip) PIP=1; shift ;;
esac

OUT_DIR="${1:-${OUT:+$OUT/gpu_check}}"
OUT_DIR="${OUT_DIR:-$ROOT/runs/gpu_check}"
START=$(date +%s)
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"

# ---- preflight: one line and stop, before anything is written -------------------------------------------
NVCC_BIN="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"   # as scripts/check_cuda_compile.sh finds it
if [ "$DRY" = 0 ]; then
  why="$("$PY" - <<'PYEOF' 2>&1
import sys
try:
    import torch
except Exception as exc:
    sys.exit(f"{sys.executable} cannot import torch ({type(exc).__name__}: {exc})")
if not torch.version.cuda:
    sys.exit(f"torch {torch.__version__} is not a CUDA build (torch.version.cuda=None)")
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU (device_count={torch.cuda.device_count()})")
PYEOF
)"
  if [ -n "$why" ]; then
    say "stop: $(echo "$why" | tail -n 1); nothing was run"
    exit 2
  fi
  if [ ! -x "$NVCC_BIN" ]; then
    say "stop: nvcc not found ($NVCC_BIN; NVCC, PATH, /usr/local/cuda/bin): the extension cannot be built; nothing was run"
    exit 2
  fi
fi
if ! "$PY" -c "import json,sys,os; m=json.load(open(sys.argv[1]+'/MANIFEST.json')); \
bad=[f for f,n in m['files'].items() if not os.path.isfile(sys.argv[1]+'/'+f) or os.path.getsize(sys.argv[1]+'/'+f)!=n]; \
sys.exit(1 if bad else 0)" "$LEGO" 2>/dev/null; then
  say "stop: the prepared data is missing or incomplete at $LEGO (run \`bash scripts/gpu_check.sh --prepare\` where ../shared/data exists and carry .gpu_data/, or set NERF_APP_DATA); nothing was run"
  exit 3
fi
export NERF_APP_DATA="$DATA"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"   # nerf_app from this checkout, installed or not

WORK="${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
mkdir -p "$WORK/logs" "$WORK/runs" "$OUT_DIR"
: > "$WORK/stages.tsv"
MODE=gpu; [ "$DRY" = 1 ] && MODE=dry
"$PY" -c "import json,sys; json.dump({'mode': sys.argv[1], 'start': int(sys.argv[2]), 'budget_s': int(sys.argv[3]), \
'data': sys.argv[4], 'work': sys.argv[5], 'pip_stages': sys.argv[6] == '1'}, open(sys.argv[5] + '/meta.json', 'w'))" \
  "$MODE" "$START" "$BUDGET_S" "$LEGO" "$WORK" "$PIP"
say "$MODE run: work folder $WORK, results to $OUT_DIR, budget ${BUDGET_S}s"

report() { "$PY" "$ROOT/scripts/gpu_check_report.py" "$WORK" "$OUT_DIR" 2>>"$WORK/logs/report_errors.log" | tail -n 1; }

# stage NAME KIND LIMIT_S CMD...: runs CMD under timeout, logs to WORK/logs/NAME.log, records the outcome and
# rewrites the report. KIND: kernel (decides the verdict), app or optional.
stage() {
  local name="$1" kind="$2" limit="$3"; shift 3
  if [[ "$name" =~ $SKIP ]]; then
    skip_stage "$name" "$kind" "GPU_CHECK_SKIP"
    return 0
  fi
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  if [ "$left" -lt 20 ]; then
    skip_stage "$name" "$kind" "budget spent"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  local t0=$(date +%s)
  say "$name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1 < /dev/null
  local rc=$?
  local dt=$(( $(date +%s) - t0 )) status=ok
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status=timeout; elif [ "$rc" -ne 0 ]; then status=failed; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$status" "$dt" "$limit" "$rc" "" >> "$WORK/stages.tsv"
  say "$name: $status in ${dt}s"
  report > /dev/null
  [ "$rc" -eq 0 ]
}
skip_stage() {  # NAME KIND WHY
  printf '%s\t%s\tskipped\t0\t0\t-\t%s\n' "$1" "$2" "$3" >> "$WORK/stages.tsv"
  say "$1: skipped ($3)"
  report > /dev/null
}

# ---- stages ---------------------------------------------------------------------------------------------
ARCH="$("$PY" -c 'import torch; m, n = torch.cuda.get_device_capability(); print(f"{m}{n}")' 2>/dev/null)"
[ "$DRY" = 1 ] || [ -z "$ARCH" ] && ARCH=90
ARCH_DOT="${ARCH:0:${#ARCH}-1}.${ARCH: -1}"   # 90 -> 9.0, 100 -> 10.0 (TORCH_CUDA_ARCH_LIST's spelling)
if [ "$DRY" = 1 ]; then DEV=cpu; else DEV=cuda; fi

stage environment app 30 bash -c "
  (command -v nvidia-smi >/dev/null && nvidia-smi) || echo 'no nvidia-smi'
  $NVCC_BIN --version || echo 'no nvcc'
  $PY --version; nproc; free -g | head -2; df -h . | tail -1
  $PY - <<'EOF'
import json, torch
from nerf_app import backend
env = {'torch': torch.__version__, 'torch_cuda': torch.version.cuda, 'cuda_available': torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=p.name, capability=f'{p.major}.{p.minor}', memory_gib=round(p.total_memory / 2**30, 1))
try:
    env['extension_before_build'] = backend.build_report()
except Exception as exc:
    env['extension_before_build'] = repr(exc)
print(json.dumps(env, default=str))
json.dump(env, open('$WORK/environment.json', 'w'), default=str)
EOF"

if [ "$PIP" = 1 ]; then
  stage deps optional 120 "$PY" -m pip install -q setuptools wheel ninja -r requirements-test.txt
else
  skip_stage deps optional "offline: --pip runs it"
fi

# the extension with CUDA required (a build without the CUDA kernels fails), for this GPU's architecture only;
# --no-index: pip never looks for anything on a network
if [ "$DRY" = 1 ]; then
  stage build kernel 60 "$PY" -c "from nerf_app import backend; import sys; print(backend.build_report()); \
sys.exit(0 if backend.has_cpp() else 'the C++ extension is not built')"
else
  stage build kernel 300 env NERF_APP_REQUIRE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH_DOT" MAX_JOBS="$(nproc)" \
    bash -c "$PY -m pip install --no-index --no-build-isolation --no-deps -e . ||
             { echo '[gpu-check] pip could not install the checkout: building in place instead'; \
               $PY setup.py build_ext --inplace; } &&
             $PY -c 'from nerf_app import backend; import sys; print(backend.build_report()); \
sys.exit(0 if backend.has_cuda_kernels() else \"the extension has no CUDA kernels\")'"
fi
# registers, spills, stack and shared memory of every kernel, from ptxas (the architecture of this GPU)
stage ptxas kernel 120 env CUDA_CHECK_ARCHS="$ARCH" CUDA_CHECK_PTXAS=1 bash scripts/check_cuda_compile.sh
stage info app 30 "$PY" -m nerf_app.cli info

# every CUDA test; NERF_APP_REQUIRE_CUDA=1 turns a skip into a failure (in the dry run they skip: collection only)
CUDA_TEST_FILES="tests/test_hashgrid.py tests/test_mlp.py tests/test_render_ops.py tests/test_gpu_training_step.py"
if [ "$DRY" = 1 ]; then REQ=0; else REQ=1; fi
stage cuda_tests kernel 180 env NERF_APP_REQUIRE_CUDA="$REQ" "$PY" -m pytest -q -rfEs -m cuda -p no:cacheprovider \
  --junitxml="$WORK/cuda_tests.xml" $CUDA_TEST_FILES

# benchmarks on CUDA (one JSON line per measurement); the dry run: tiny sizes on the CPU
if [ "$DRY" = 1 ]; then
  stage bench_hashgrid kernel 60 "$PY" benchmarks/hashgrid.py --device cpu --points 4096 --reps 1 --torch-reps 1
  skip_stage bench_hashgrid_fp16 kernel "dry run: fp16 tables are CUDA-only"
  stage bench_mlp kernel 60 "$PY" benchmarks/mlp.py --device cpu --rows 4096 --reps 1 --widths 64
  stage bench_train_step kernel 90 "$PY" benchmarks/nerf_train.py --device cpu --scene "$LEGO" --samples 4096 \
    --steps 1 --warmup 1 --downscale 4 --backends native
else
  stage bench_hashgrid kernel 45 "$PY" benchmarks/hashgrid.py --device cuda --torch-reps 1
  stage bench_hashgrid_fp16 kernel 45 "$PY" benchmarks/hashgrid.py --device cuda --dtype float16 --torch-reps 1
  stage bench_mlp kernel 45 "$PY" benchmarks/mlp.py --device cuda
  stage bench_train_step kernel 60 "$PY" benchmarks/nerf_train.py --device cuda --scene "$LEGO" --samples 262144 \
    --steps 8 --backends native,mixed
fi

# lego trained for 15 s and 60 s, each evaluated on 20 test views; render and export of the longer run
if [ "$DRY" = 1 ]; then
  TRAIN_SET=(--set device=cpu --set data.downscale=4 --set rays.target_samples=2048 --set rays.initial_rays=128
             --set grid.resolution=32 --set model.log2_hashmap_size=14 --set rays.steps_per_unit_diagonal=128)
  T15=(--max-steps 4) T60=() EVAL_LIMIT=1 FRAMES=1 RES=32 MESH_RES=32
else
  TRAIN_SET=(--set device=cuda) T15=(--max-time 15) T60=(--max-time 60) EVAL_LIMIT=20 FRAMES=8 RES=200 MESH_RES=128
fi
train_eval() {  # NAME TRAIN_LIMIT_S BUDGET_ARGS...
  local name="$1" limit="$2"; shift 2
  if stage "train_$name" app "$limit" "$PY" -m nerf_app.cli train "$LEGO" --mode nerf "$@" --no-progress \
       "${TRAIN_SET[@]}" --out "$WORK/runs/$name"; then
    stage "eval_$name" app 60 "$PY" -m nerf_app.cli eval "$WORK/runs/$name" --limit "$EVAL_LIMIT"
  else
    skip_stage "eval_$name" app "train_$name did not pass"
  fi
}
train_eval lego15 75 "${T15[@]}"
if [ "$DRY" = 1 ]; then
  skip_stage train_lego60 app "dry run: the commands of lego15 with another budget"
  skip_stage eval_lego60 app "dry run: the commands of lego15 with another budget"
else
  train_eval lego60 120 "${T60[@]}"
fi
RUN="$WORK/runs/lego60"
[ -e "$RUN/checkpoints/final.pt" ] || RUN="$WORK/runs/lego15"
if [ -e "$RUN/checkpoints/final.pt" ]; then
  stage render app 60 "$PY" -m nerf_app.cli render "$RUN" --frames "$FRAMES" --resolution "$RES"
  LEVEL=()
  if [ "$DRY" = 1 ]; then  # a field trained for a few CPU steps is nowhere near the density 2.5: its median
    LEVEL=(--threshold "$("$PY" -c "import sys, torch; from nerf_app.train.modes import open_run
t = open_run(sys.argv[1], lock=False)[0]; torch.manual_seed(0)
print(float(t.model.field.density(torch.rand(32768, 3))[0].median()))" "$RUN" 2>/dev/null || echo 2.5)")
  fi
  stage export app 60 "$PY" -m nerf_app.cli export "$RUN" --resolution "$MESH_RES" "${LEVEL[@]}"
else
  skip_stage render app "no trained run"
  skip_stage export app "no trained run"
fi

# optional: nerfacc's marching and compositing on the same inputs (CUDA only; never installed without --pip)
if [ "$PIP" = 1 ] && [ "$DRY" = 0 ]; then
  stage nerfacc_install optional 90 "$PY" -m pip install -q nerfacc
fi
if [ "$DRY" = 1 ]; then
  skip_stage nerfacc_crosscheck optional "dry run (CUDA only)"
elif "$PY" -c "import nerfacc" >/dev/null 2>&1; then
  stage nerfacc_crosscheck optional 120 "$PY" benchmarks/nerfacc_crosscheck.py
else
  skip_stage nerfacc_crosscheck optional "nerfacc not installed (--pip installs it where there is a network)"
fi

code="$(report)"
say "kernels: $(grep -o '"kernels": "[a-z]*"' "$OUT_DIR/report.json" | cut -d'"' -f4); report: $OUT_DIR/report.json, $OUT_DIR/stages.md, $OUT_DIR/logs.tar.gz (exit ${code:-1})"
exit "${code:-1}"
