"""The fuzz/chaos suite at full counts, with its figures as JSON lines.

    python3 benchmarks/chaos.py            # = NERF_APP_FUZZ_FULL=1 python3 -m pytest tests/test_scene_fuzz.py tests/test_fuzz_*.py

Families (tests/): colmap-binary, colmap-text, transforms, llff (test_scene_fuzz.py); images, masks, paths
(test_fuzz_inputs.py); cli-flags, config, checkpoints (test_fuzz_cli.py); kill-9 (test_fuzz_kill.py).
One JSON line per family: cases, errors (clean one-line errors), ok (loads/commands that succeeded and passed
the checks), tracebacks, outside_reads, damaged_run_folders, hangs, bad_success; the kill-9 line has kills,
where they landed and whether the final state is bit-identical. A last line sums them up. Exit status: 0 when
every figure that must be 0 is 0 and the killed run is identical.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/test_scene_fuzz.py", "tests/test_fuzz_inputs.py", "tests/test_fuzz_cli.py", "tests/test_fuzz_confine.py",
         "tests/test_fuzz_kill.py"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fast = "--fast" in argv
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "figures.jsonl"
        env = dict(os.environ, NERF_APP_FUZZ_REPORT=str(report))
        if not fast:
            env["NERF_APP_FUZZ_FULL"] = "1"
        t0 = time.time()
        # --timeout=0: a family at full counts runs thousands of confined cases, past the suite's per-test cap
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                               *([] if fast else ["--timeout=0"]), *FILES],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.time() - t0
        lines = report.read_text().splitlines() if report.exists() else []
        # pytest -q prints its progress dots on the same line as a test's output: find the JSON anywhere
        kill_lines = [l[l.index('{"family": "kill-9"'):] for l in proc.stdout.splitlines() if '{"family": "kill-9"' in l]
    families = {}
    for line in lines:  # each test emits its module's families so far: keep the last line of each
        rec = json.loads(line)
        families[rec["family"]] = rec
    for name, rec in sorted(families.items()):
        print(json.dumps(rec))
    for line in kill_lines:
        print(line)
    keys = ("cases", "tracebacks", "outside_reads", "damaged_run_folders", "hangs", "bad_success")
    total = {k: sum(r.get(k, 0) for r in families.values()) for k in keys}
    kill = json.loads(kill_lines[-1]) if kill_lines else {}
    total.update({"family": "TOTAL", "kills": kill.get("kills", 0), "identical": kill.get("identical", False),
                  "pytest_exit": proc.returncode, "seconds": round(seconds, 1), "full": not fast})
    print(json.dumps(total))
    if proc.returncode != 0:
        print(proc.stdout[-6000:], file=sys.stderr)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
