#!/usr/bin/env bash
# The demo command: set everything up (scripts/setup.sh), then `nerf-app demo` on the embedded scene
# (train -> held-out PSNR/SSIM -> orbit mp4 -> mesh with Chamfer against the analytic surface).
# Extra arguments go to `nerf-app demo` (e.g. `bash scripts/demo.sh --max-time 120`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${PYTHON:-python3}" -m nerf_app.cli demo "$@"
