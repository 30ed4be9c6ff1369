"""Benchmark: a snapshot of the demo as of its fourth drop against a full demo refresh.

    .venv/bin/python benchmarks/bench_snapshot.py [--patients 100] [--runs 3]

Writes the demo drops (100 patients, 6 drops) into a temp inbox, runs `haic run` (every drop
landed, then the full refresh) and `haic snapshot --as-of <fourth drop>`, each in a child process
as a user runs them, and prints their wall times. Target: the snapshot takes no longer than the
full refresh.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _haic(env: dict, *args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "haic_pipeline.cli", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"haic {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from haic_pipeline.synthetic import write_drops

    for run in range(1, args.runs + 1):
        tmp = Path(tempfile.mkdtemp(prefix="haic-bench-snapshot-"))
        try:
            write_drops(tmp / "inbox", patients=args.patients, drops=6, seed=1)
            fourth = sorted(p.name for p in (tmp / "inbox").iterdir() if p.is_dir())[3]
            env = dict(os.environ, HAIC_INBOX=str(tmp / "inbox"), HAIC_WAREHOUSE=str(tmp / "wh" / "haic.duckdb"),
                       DAGSTER_HOME=str(tmp / "dagster_home"), HAIC_ENV="demo")
            (tmp / "dagster_home").mkdir()
            refresh = _haic(env, "run", "--no-demo")
            snap = _haic(env, "snapshot", "--as-of", fourth, "--out", str(tmp / "snapshot"))
            print(f"run {run}: full demo refresh (`haic run`, 6 drops) {refresh:5.1f} s; "
                  f"snapshot as of the fourth drop {snap:5.1f} s", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("target: the snapshot takes no longer than the full refresh")


if __name__ == "__main__":
    main()
