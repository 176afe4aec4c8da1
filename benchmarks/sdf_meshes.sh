#!/usr/bin/env bash
# Fit every shared mesh (sdf; armadillo also occupancy) on the CPU with a time budget, evaluate, and
# print one JSON line per run with the metrics, training time and machine load.
# Usage: bash benchmarks/sdf_meshes.sh [OUT_DIR] [SECONDS_ARMADILLO] [SECONDS_OTHERS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/sdf_bench}; T_ARM=${2:-120}; T_OTHER=${3:-60}
MESHES=../shared/data/meshes
mkdir -p "$OUT"
run() {  # mode mesh seconds
  local mode=$1 mesh=$2 secs=$3 dir="$OUT/$1-$2"
  rm -rf "$dir"
  local load_before; load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  python -m nerf_app.cli train "$MESHES/$mesh.obj" --mode "$mode" --max-time "$secs" --threads 2 --out "$dir" --no-progress >"$dir.log" 2>&1
  python -m nerf_app.cli eval "$dir" --set train.progress=false >>"$dir.log" 2>&1
  python - "$dir" "$load_before" "$(nproc)" <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/metrics.json"))
keep = ["mode", "chamfer_l1", "normal_consistency", "fscore", "iou", "steps", "train_seconds", "setup_seconds", "eval_seconds"]
out = {"mesh": sys.argv[1].rstrip("/").split("/")[-1].split("-", 1)[1], **{k: m[k] for k in keep}, "load_before": sys.argv[2], "cpus": int(sys.argv[3])}
print(json.dumps(out), flush=True)
PY
}
run sdf armadillo "$T_ARM"
run occupancy armadillo "$T_ARM"
for m in bunny teapot spot fandisk rocker-arm; do run sdf "$m" "$T_OTHER"; done
