#!/usr/bin/env bash
# Compile check of the CUDA code for machines without a GPU (CI): every .cu file with nvcc for sm_80
# and sm_90 (the kernels include no torch headers, so plain nvcc is enough), and the torch glue with
# NERF_APP_WITH_CUDA defined, syntax-checked against the CPU torch's headers and the CUDA headers.
# This proves the code compiles, not that it runs: see docs/gpu-status.md for what ran on a GPU.
#
# CUDA_CHECK_ARCHS (default "80 90"): the architectures. CUDA_CHECK_PTXAS=1: print ptxas's report of every
# kernel (registers, spills, stack, shared memory) and skip the glue check; scripts/gpu_check.sh's ptxas stage.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
if [ ! -x "$NVCC" ]; then
  echo "[cuda-check] nvcc not found: cannot compile-check the CUDA kernels" >&2
  exit 1
fi
CUDA_ROOT="${CUDA_HOME:-$("$PY" -c "from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or '/usr/local/cuda')")}"
ARCHS="${CUDA_CHECK_ARCHS:-80 90}"
PTXAS="${CUDA_CHECK_PTXAS:-0}"
GENCODE=()
for a in $ARCHS; do GENCODE+=(-gencode "arch=compute_$a,code=sm_$a"); done
VERBOSE=()
[ "$PTXAS" = 1 ] && VERBOSE=(-Xptxas -v)
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
status=0
pids=()
for cu in csrc/cuda/*.cu; do
  "$NVCC" -std=c++17 -O3 --expt-relaxed-constexpr -Icsrc/include -Icsrc "${GENCODE[@]}" "${VERBOSE[@]}" \
    -c "$cu" -o "$OUT/$(basename "$cu").o" > "$OUT/$(basename "$cu").txt" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for cu in csrc/cuda/*.cu; do  # in file order, whatever order they finished in
  [ "$PTXAS" = 1 ] && echo "== $cu (sm_${ARCHS// /, sm_})"
  cat "$OUT/$(basename "$cu").txt"
done
if [ "$PTXAS" = 1 ]; then
  [ "$status" -ne 0 ] && { echo "[cuda-check] FAILED" >&2; exit 1; }
  echo "[cuda-check] ptxas report: $(ls csrc/cuda/*.cu | wc -l) .cu files for sm_${ARCHS// /, sm_}"
  exit 0
fi
# The CPU build of torch lacks the one generated CUDA header; an empty stand-in is enough to parse.
mkdir -p "$OUT/shim/c10/cuda/impl"
echo "// stand-in for the header a CUDA build of torch generates" > "$OUT/shim/c10/cuda/impl/cuda_cmake_macros.h"
TORCH_INC="$("$PY" -c "from torch.utils.cpp_extension import include_paths; print(' '.join('-I' + p for p in include_paths()))")"
PY_INC="$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
for cpp in csrc/*.cpp csrc/cuda/*.cpp; do
  [ -e "$cpp" ] || continue
  g++ -std=c++20 -fsyntax-only -DNERF_APP_WITH_CUDA=1 -DTORCH_EXTENSION_NAME=_C $TORCH_INC -I"$OUT/shim" -I"$PY_INC" \
    -I"$CUDA_ROOT/include" -Icsrc/include -Icsrc "$cpp" || status=1
done
if [ "$status" -ne 0 ]; then
  echo "[cuda-check] FAILED" >&2
  exit 1
fi
echo "[cuda-check] ok: $(ls csrc/cuda/*.cu | wc -l) .cu files compiled for sm_${ARCHS// /, sm_}; CUDA glue syntax-checked"
