"""Benchmark: a demo `haic run` from an empty inbox (what `make run` does on a fresh clone, and what
the tests' `haic` processes do), with the time Python's cyclic garbage collector takes in it.

    .venv/bin/python benchmarks/bench_demo_run.py [--runs 3]

Each run is a child process on a fresh temp inbox, warehouse and DAGSTER_HOME. It prints the
run's wall time, its CPU time (user + system) and the CPU seconds spent in the collector (timed
with `gc.callbacks`), twice per round: as `haic run` does it (the collector held off while the
libraries import, their heap frozen afterwards: `haic_pipeline/preload.py`), and with Python's
default collector (the child replaces `hold_collector` and the freeze with no-ops).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the child: the collector timed, optionally as Python has it by default, then `haic run`
CHILD = """
import gc, json, os, sys, time
spent = [0.0, 0]
started = {}
def timed(phase, info):
    if phase == "start":
        started["t"] = time.process_time()
    else:
        spent[0] += time.process_time() - started["t"]
        spent[1] += 1
gc.callbacks.append(timed)
mode, out = sys.argv[1], sys.argv[2]
if mode == "default":
    from haic_pipeline import preload
    preload.hold_collector = lambda: None
    preload._imported = lambda: None
from haic_pipeline.cli.main import program
os_exit = os._exit
def report(code):
    with open(out, "w") as f:
        json.dump({"gc_seconds": spent[0], "collections": spent[1]}, f)
    os_exit(code)
os._exit = report
sys.argv = ["haic", "run"]
program()
"""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(mode: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="haic-bench-run-") as tmp:
        base = Path(tmp)
        for name in ("inbox", "wh", "dagster_home"):
            (base / name).mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HAIC_", "DAGSTER_"))}
        env.update(HAIC_INBOX=str(base / "inbox"), HAIC_WAREHOUSE=str(base / "wh" / "haic.duckdb"),
                   DAGSTER_HOME=str(base / "dagster_home"), HAIC_PSEUDONYM_KEY="bench-key", HAIC_ENV="test")
        out = base / "gc.json"
        cpu0, t0 = _children_cpu(), time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(out)], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        if proc.returncode != 0:
            raise SystemExit(f"haic run failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return {"wall": wall, "cpu": cpu, **json.loads(out.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"haic run": [], "default collector": []}
    for i in range(args.runs):   # alternated, so that a slower minute of the machine hits both
        results["haic run"].append(one_run("haic"))
        results["default collector"].append(one_run("default"))
        print(f"round {i + 1}/{args.runs} done", flush=True)
    print(f"\ndemo `haic run` from an empty inbox, {args.runs} run(s) each (median, range):")
    for name, runs in results.items():
        parts = []
        for key, unit in (("wall", "s wall"), ("cpu", "s CPU"), ("gc_seconds", "s in the collector")):
            values = [r[key] for r in runs]
            parts.append(f"{statistics.median(values):.2f} {unit} ({min(values):.2f}-{max(values):.2f})")
        collections = statistics.median(r["collections"] for r in runs)
        print(f"  {name:<18} " + ", ".join(parts) + f", {collections:.0f} collections")


if __name__ == "__main__":
    main()
