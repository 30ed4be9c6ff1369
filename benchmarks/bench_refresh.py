"""Benchmark: the whole `make run` refresh on a 100,000-patient history.

    .venv/bin/python benchmarks/bench_refresh.py [--patients 100000] [--drops 6]

Writes the synthetic drops into a temp inbox, then runs `haic run` (what `make run` runs) in a
child process against a fresh warehouse and prints wall time and peak memory (the summed RSS
of the run's process tree, data-quality workers included, sampled every 0.1 s); then runs it a second time with no new drop. Targets: first run < 120 s and
< 4 GiB on this 2-core machine; the second run in seconds, changing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).parent))
from _memory import keep_or_remove, run_measured  # noqa: E402


def _run(env: dict) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    proc, peak = run_measured([sys.executable, "-m", "haic_pipeline.cli", "run", "--no-demo"], env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(f"haic run failed ({proc.returncode})")
    return wall, peak, proc.stdout


def _step_seconds(dagster_home: str) -> dict[str, float]:
    """Seconds per step key, summed over every run recorded in `dagster_home`."""
    code = (
        "import json, dagster as dg\n"
        "inst = dg.DagsterInstance.get()\n"
        "out = {}\n"
        "for rec in inst.get_run_records():\n"
        "    key = 'run:' + rec.dagster_run.job_name\n"
        "    if rec.start_time and rec.end_time:\n"
        "        out[key] = out.get(key, 0) + rec.end_time - rec.start_time\n"
        "    for st in inst.get_run_step_stats(rec.dagster_run.run_id):\n"
        "        if st.start_time and st.end_time:\n"
        "            key = 'ingest_drop' if rec.dagster_run.job_name == 'ingest_drop' else st.step_key\n"
        "            out[key] = out.get(key, 0) + st.end_time - st.start_time\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, DAGSTER_HOME=dagster_home),
                          capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--drops", type=int, default=6)
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()

    from haic_pipeline.synthetic import write_drops

    tmp = Path(tempfile.mkdtemp(prefix="haic-bench-"))
    inbox = tmp / "inbox"
    t0 = time.perf_counter()
    write_drops(inbox, patients=args.patients, drops=args.drops, seed=1)
    gen = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in inbox.rglob("*.csv")) / 1e6

    env = dict(os.environ, HAIC_INBOX=str(inbox), HAIC_WAREHOUSE=str(tmp / "wh" / "haic.duckdb"),
               HAIC_PSEUDONYM_KEY="bench-key", DAGSTER_HOME=str(tmp / "dagster_home"))
    wall1, peak1, _ = _run(env)
    with duckdb.connect(env["HAIC_WAREHOUSE"], read_only=True) as con:
        raw_labs = con.execute("SELECT count(*) FROM raw.labs").fetchall()[0][0]
        stg_labs = con.execute("SELECT count(*) FROM staging.labs").fetchall()[0][0]
        patients = con.execute("SELECT count(*) FROM staging.patients").fetchall()[0][0]
        quarantined = con.execute("SELECT count(*) FROM ops.quarantine").fetchall()[0][0]
    steps = _step_seconds(env["DAGSTER_HOME"])
    wall2, _, out2 = _run(env)

    print(f"synthetic drops: {args.patients:,} patients, {args.drops} drops, {size:,.0f} MB of CSV, written in {gen:.1f} s")
    print(f"warehouse: raw.labs {raw_labs:,} rows, staging.labs {stg_labs:,} rows, "
          f"staging.patients {patients:,}, ops.quarantine {quarantined:,}")
    print(f"first  `haic run` (all drops + full refresh): {wall1:6.1f} s wall, peak RSS {peak1:,.2f} GiB")
    print(f"second `haic run` (no new drop):              {wall2:6.1f} s wall")
    runs = {k[4:]: v for k, v in steps.items() if k.startswith("run:")}
    steps = {k: v for k, v in steps.items() if not k.startswith("run:")}
    print("first run, seconds per Dagster run (start to end): " + ", ".join(f"{k} {v:.1f}" for k, v in runs.items())
          + f"; outside runs (CLI, Dagster start-up) {wall1 - sum(runs.values()):.1f}")
    print(f"first run, seconds per step (Dagster's step stats, all runs; {sum(steps.values()):.1f} in all): "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:12]))
    print(f"  landing (ingest_drop runs) {sum(v for k, v in steps.items() if k.startswith('ingest')):.1f} s, "
          f"quality checks {sum(v for k, v in steps.items() if k.endswith(('_rules', 'drop_sequence', 'drop_changes'))):.1f} s")
    print("targets: first run < 120 s and < 4 GiB; second run in seconds")
    keep_or_remove(tmp, args.keep)


if __name__ == "__main__":
    main()
