#!/usr/bin/env bash
# The test command: set everything up (scripts/setup.sh), then run the whole suite (skips listed with reasons).
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k hashgrid`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${PYTHON:-python3}" -m pytest -q -rs "$@"  # -rs: every skip is listed with its reason
