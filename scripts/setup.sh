#!/usr/bin/env bash
# Installs everything nerf_app needs into the active Python, on a fresh machine with or without a GPU:
# torch (the build this machine should have), the runtime and test dependencies, and the package with
# its compiled extension (C++ kernels always; CUDA kernels too when torch has CUDA and nvcc exists).
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

# torch: keep one that is already installed; otherwise take TORCH_SPEC (default: the 2.13.0 build this
# project's machines provide — a CPU build from local disk on GPU-less machines). Never pull a
# multi-GB CUDA build onto a machine without a GPU by accident: set TORCH_SPEC yourself elsewhere.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing ${TORCH_SPEC:=torch==2.13.0}"
  "$PY" -m pip install -q "$TORCH_SPEC"
fi
"$PY" -m pip install -q setuptools wheel ninja
"$PY" -m pip install -q -r requirements-test.txt
# The viewer's browser test drives Debian's Chromium (never a browser download at test time). Install it
# when it is missing and we can (root + apt-get); otherwise - or if apt fails - that one test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] installing chromium (for the viewer's browser test)"
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
      >/dev/null 2>&1; then
    echo "[setup] chromium could not be installed; tests/test_viewer.py's browser test will skip"
  fi
fi
echo "[setup] building nerf_app and its extension (a few minutes on 2 cores the first time)"
# --no-build-isolation: compile against the torch installed above, not a freshly downloaded one.
# A failed build must stop here (never run the tests against a stale _C*.so): the log is shown and
# the script exits non-zero.
log="$(mktemp)"
if ! "$PY" -m pip install -q --no-build-isolation -e . >"$log" 2>&1; then
  cat "$log" >&2
  echo "[setup] FAILED: pip could not build/install nerf_app (log above)" >&2
  rm -f "$log"
  exit 1
fi
grep -v "Running pip as the 'root' user" "$log" || true
rm -f "$log"
"$PY" -c "import nerf_app; from nerf_app import backend; r = backend.build_report(); print('[setup] extension:', r['extension'], '| cuda kernels:', r['cuda_kernels'], '| openmp threads:', r['openmp_threads'])"
