"""Benchmark: `haic backup` and `haic restore` of the demo warehouse (or of a given one).

    .venv/bin/python benchmarks/bench_backup.py [--patients 100] [--runs 3]
    .venv/bin/python benchmarks/bench_backup.py --warehouse /path/to/haic.duckdb [--runs 1]

Without --warehouse: writes the demo drops (100 patients, 6 drops) into a temp inbox and runs
`haic run` once. With --warehouse: copies that file into a temp folder (the original is never
touched; e.g. the 100,000-patient warehouse bench_refresh.py builds). Then, each in a child
process as a user runs them, times `haic backup --out` (copy, every table hashed, manifest) and
`haic restore --force` (copy, every table re-hashed, rename, analysts' copy rewritten), and prints
the wall and CPU seconds with the warehouse's size and rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _haic(env: dict, *args: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `haic` child process (CPU: user + system, so a machine
    shared with other work still shows what the command costs)."""
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "haic_pipeline.cli", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"haic {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warehouse", type=Path, help="back up a copy of this warehouse instead of the demo's")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="haic-bench-backup-"))
    try:
        env = dict(os.environ, HAIC_INBOX=str(tmp / "inbox"), HAIC_WAREHOUSE=str(tmp / "wh" / "haic.duckdb"),
                   DAGSTER_HOME=str(tmp / "dagster_home"), HAIC_ENV="demo")
        (tmp / "dagster_home").mkdir()
        (tmp / "wh").mkdir()
        if args.warehouse:
            shutil.copyfile(args.warehouse, tmp / "wh" / "haic.duckdb")
            what = str(args.warehouse)
        else:
            from haic_pipeline.synthetic import write_drops

            write_drops(tmp / "inbox", patients=args.patients, drops=6, seed=1)
            refresh, _ = _haic(env, "run", "--no-demo")
            what = f"the demo ({args.patients} patients, 6 drops; `haic run` {refresh:.1f} s)"
        size = (tmp / "wh" / "haic.duckdb").stat().st_size
        print(f"warehouse: {what}, {size / 1e6:.1f} MB", flush=True)
        for run in range(1, args.runs + 1):
            out = tmp / f"backups-{run}"
            took, took_cpu = _haic(env, "backup", "--out", str(out), "--name", "b")
            manifest = json.loads((out / "b" / "manifest.json").read_text())
            rows = sum(t["rows"] for t in manifest["tables"].values())
            back, back_cpu = _haic(env, "restore", str(out / "b"), "--force")
            print(f"run {run}: backup {took:5.1f} s (CPU {took_cpu:.1f} s; {len(manifest['tables'])} tables, "
                  f"{rows:,} rows, {manifest['bytes'] / 1e6:.1f} MB); restore {back:5.1f} s (CPU {back_cpu:.1f} s)",
                  flush=True)
            shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
