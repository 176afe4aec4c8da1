"""The report of scripts/gpu_check.sh: read its work folder, write report.json, stages.md and logs.tar.gz.

    python3 scripts/gpu_check_report.py WORK OUT_DIR   # prints the exit code the script should return

Run after every stage (a run killed from outside still leaves its latest report), so it imports nothing
heavy: no torch, no nerf_app. WORK holds ``stages.tsv`` (name, kind, status, seconds, limit, rc, detail per
line), ``meta.json`` (mode, start time, budget, data), ``logs/NAME.log`` and the runs. OUT_DIR gets exactly
three files: ``report.json``, ``stages.md`` and ``logs.tar.gz`` (every stage log, the JUnit XML, the
environment, the runs' metrics and training logs; at most 16 MiB, each file cut to its tail if needed).

Exit codes: 0 every stage that ran passed and no kernel stage was left out for lack of time; 1 a kernel
stage (build, ptxas, cuda_tests, bench_*) failed or timed out, or was skipped because the budget ran out;
4 only application stages (training, eval, render, export, ...) failed. (2 and 3 are the script's own:
no CUDA torch/GPU/nvcc, no data.)
"""
from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

BUNDLE_LIMIT = 16 * 2 ** 20 - 64 * 1024   # under the 16 MiB a result file may have
FILE_TAIL = 4 * 2 ** 20                   # one file's share before the bundle is checked


def read_stages(work: Path):
    rows = []
    path = work / "stages.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = (line.split("\t") + [""] * 7)[:7]
        name, kind, status, seconds, limit, rc, detail = parts
        rows.append({"name": name, "kind": kind, "status": status, "seconds": int(seconds or 0),
                     "limit": int(limit or 0), "rc": None if rc in ("", "-") else int(rc), "detail": detail})
    return rows


def json_lines(text: str):
    out = []
    for row in text.splitlines():
        row = row.strip()
        if row.startswith("{"):
            try:
                out.append(json.loads(row))
            except ValueError:
                pass
    return out


PTXAS_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
PTXAS_USED = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?")


def parse_ptxas(text: str):
    """One row per kernel of ``nvcc -Xptxas -v`` output: registers, spills, stack, static shared memory."""
    rows, current = [], None
    for line in text.splitlines():
        m = PTXAS_ENTRY.search(line)
        if m:
            current = {"kernel": m.group(1), "arch": m.group(2)}
            rows.append(current)
            continue
        if current is None:
            continue
        m = PTXAS_FRAME.search(line)
        if m:
            current.update(stack_bytes=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = PTXAS_USED.search(line)
        if m:
            current.update(registers=int(m.group(1)), smem_bytes=int(m.group(3) or 0))
    names = demangle([r["kernel"] for r in rows])
    for r, name in zip(rows, names):
        r["kernel"] = name
    return rows


def demangle(names):
    """Readable kernel names (c++filt when there is one; the anonymous namespace dropped)."""
    import shutil
    import subprocess
    if not names or not shutil.which("c++filt"):
        return names
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return names
    lines = out.splitlines()
    if len(lines) != len(names):
        return names
    return [re.sub(r"\(anonymous namespace\)::", "", n) for n in lines]


def junit_summary(path: Path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        return {"error": f"no JUnit XML: {exc}"}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    total["failed"] = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase")
                       if c.find("failure") is not None or c.find("error") is not None][:40]
    return total


def results(work: Path, stages):
    res = {}
    logs = work / "logs"
    for s in stages:
        log = logs / f"{s['name']}.log"
        if s["status"] == "skipped" or not log.exists():
            continue
        text = log.read_text(errors="replace")
        if s["name"] == "ptxas":
            res["ptxas"] = parse_ptxas(text)
        elif s["name"].startswith(("bench_", "nerfacc_crosscheck", "render", "export")):
            rows = json_lines(text)
            if rows:
                res[s["name"]] = rows if s["name"].startswith(("bench_", "nerfacc")) else rows[-1]
        elif s["name"] == "cuda_tests":
            res["cuda_tests"] = junit_summary(work / "cuda_tests.xml")
            res["cuda_tests"]["summary"] = text.strip().splitlines()[-1:] if text.strip() else []
        elif s["name"].startswith("eval_"):
            run = s["name"][len("eval_"):]
            m = work / "runs" / run / "metrics.json"
            if m.exists():
                metrics = json.loads(m.read_text())
                res[f"{run}_metrics"] = {k: metrics[k] for k in ("psnr", "ssim", "lpips", "n_images", "train_steps",
                                                                  "train_seconds", "seconds_per_image")
                                         if k in metrics}
        elif s["name"].startswith("train_"):
            run = s["name"][len("train_"):]
            log_jsonl = work / "runs" / run / "log.jsonl"
            if log_jsonl.exists():
                rows = json_lines(log_jsonl.read_text(errors="replace"))
                last = [r for r in rows if "loss" in r][-1:]
                if last:
                    res[f"{run}_train"] = {k: last[0][k] for k in ("step", "time", "loss", "psnr", "samples",
                                                                   "rays") if k in last[0]}
    return res


def bundle(work: Path, out: Path) -> dict:
    """logs.tar.gz: every stage log, the JUnit XML, meta/environment, the runs' small text files."""
    files = sorted((work / "logs").glob("*")) + sorted(work.glob("*.xml")) + sorted(work.glob("*.json")) + \
        sorted(work.glob("stages.tsv"))
    for run in sorted((work / "runs").glob("*")) if (work / "runs").is_dir() else []:
        files += [p for p in sorted(run.glob("*")) if p.is_file() and p.suffix in (".json", ".jsonl", ".yaml",
                                                                                      ".txt", ".log")]
    blobs = []
    for p in files:
        if not p.is_file():
            continue
        data = p.read_bytes()
        cut = len(data) > FILE_TAIL
        blobs.append((p.relative_to(work).as_posix(), data[-FILE_TAIL:] if cut else data, cut))

    def write(items):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data, _ in items:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    payload, dropped = write(blobs), []
    while len(payload) > BUNDLE_LIMIT and blobs:  # drop the largest files until it fits
        blobs.sort(key=lambda b: len(b[1]))
        dropped.append(blobs.pop()[0])
        payload = write(blobs)
    tmp = out / ".logs.tar.gz.tmp"
    tmp.write_bytes(payload)
    tmp.replace(out / "logs.tar.gz")
    return {"file": "logs.tar.gz", "bytes": len(payload), "files": len(blobs),
            "cut_to_tail": [b[0] for b in blobs if b[2]], "dropped": dropped}


def verdict(stages):
    kernel = [s for s in stages if s["kind"] == "kernel"]
    bad = lambda s: s["status"] in ("failed", "timeout")  # noqa: E731
    starved = lambda s: s["status"] == "skipped" and s["detail"].startswith("budget")  # noqa: E731
    if any(bad(s) for s in kernel):
        kernels = "fail"
    elif any(starved(s) for s in kernel) or not any(s["status"] == "ok" for s in kernel):
        kernels = "incomplete"
    else:
        kernels = "pass"
    app_bad = [s["name"] for s in stages if s["kind"] == "app" and (bad(s) or starved(s))]
    code = 1 if kernels in ("fail", "incomplete") and kernel else (4 if app_bad else 0)
    return {"kernels": kernels, "app_failed_or_starved": app_bad}, code


def main(work: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((work / "meta.json").read_text()) if (work / "meta.json").exists() else {}
    stages = read_stages(work)
    logs = work / "logs"
    for s in stages:
        if s["status"] not in ("ok", "skipped"):
            log = logs / f"{s['name']}.log"
            s["log_tail"] = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    env = work / "environment.json"
    v, code = verdict(stages)
    report = {"script": "scripts/gpu_check.sh", **meta, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "elapsed_seconds": int(time.time()) - int(meta.get("start", time.time())),
              "environment": json.loads(env.read_text()) if env.exists() else None,
              "verdict": v, "exit_code": code, "ok": code == 0,
              "stages": stages, "results": results(work, stages)}
    report["logs"] = bundle(work, out)
    table = ["| stage | kind | status | seconds | limit | detail |", "|---|---|---|---|---|---|"]
    table += [f"| {s['name']} | {s['kind']} | {s['status']} | {s['seconds']} | {s['limit']} | {s['detail']} |"
              for s in stages]
    table += ["", f"kernels: **{v['kernels']}**; exit code {code}; mode {meta.get('mode', '?')}; "
              f"{report['elapsed_seconds']} s of a {meta.get('budget_s', '?')} s budget"]
    for name, text in (("stages.md", "\n".join(table) + "\n"), ("report.json", json.dumps(report, indent=1))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    return code


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), Path(sys.argv[2])))
