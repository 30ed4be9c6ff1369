"""Benchmark: the data-quality gates on a 100,000-patient history.

    .venv/bin/python benchmarks/bench_quality.py [--patients 100000] [--drops 6] [--keep]

Writes the synthetic drops into a temp folder, lands them (haic_pipeline.ingest.load_drop) and
builds staging (haic_pipeline.warehouse.staging.build_staging), then times, each in a child
process (so peak memory and the Great Expectations import are measured alone):

1. validating the whole history (every check, every drop, nothing stored yet): every suite on
   the staging tables of a 100,000-patient history, target < 30 s;
2. the same with nothing new (every check answers from ops.dq_results, GX not imported);
3. one new drop (the nightly case): the last drop's stored results and the staging-wide ones are
   deleted, so exactly what a newly arrived drop triggers is validated again.

Peak RSS is the summed RSS of the child's process tree (GX worker processes included), sampled
every 0.1 s (benchmarks/_memory.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _memory import keep_or_remove, run_measured  # noqa: E402

CHILD = r"""
import json, sys, time, duckdb
t0 = time.perf_counter()
from haic_pipeline.quality.speed import parallel
from haic_pipeline.quality.gate import run_all
con = duckdb.connect(sys.argv[1]); con.execute("SET memory_limit='2GB'"); con.execute("SET enable_progress_bar = false")
outcomes = run_all(con, reports_dir=sys.argv[2], refresh=sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - t0, "gx": f"{parallel.workers()} worker processes" if parallel.started() else
                  ("in-process" if "great_expectations" in sys.modules else "not imported"),
                  "groups": {o.check.group or o.check.name: round(o.seconds, 2) for o in outcomes}}))
"""


def _child(db: Path, reports: Path, refresh: str) -> tuple[dict, float]:
    proc, peak = run_measured([sys.executable, "-c", CHILD, str(db), str(reports), refresh])
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit("validation failed")
    return json.loads(proc.stdout.strip().splitlines()[-1]), peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--drops", type=int, default=6)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    import duckdb

    from haic_pipeline.contracts import load_contracts
    from haic_pipeline.ingest import find_complete_drops, load_drop
    from haic_pipeline.synthetic import write_drops
    from haic_pipeline.warehouse.staging import build_staging

    tmp = Path(tempfile.mkdtemp(prefix="haic-bench-quality-"))
    db, reports = tmp / "haic.duckdb", tmp / "reports" / "quality"
    t0 = time.perf_counter()
    write_drops(tmp / "inbox", patients=args.patients, drops=args.drops, seed=1)
    print(f"synthetic drops written in {time.perf_counter() - t0:.1f} s")
    contracts = load_contracts()
    drops = find_complete_drops(tmp / "inbox")

    def land(selected):
        with duckdb.connect(str(db)) as con:
            con.execute("SET memory_limit='2GB'")
            t = time.perf_counter()
            for d in selected:
                load_drop(con, d, contracts, "bench-key")
            t_land = time.perf_counter() - t
            t = time.perf_counter()
            for domain in contracts:
                build_staging(con, domain)
            return t_land, time.perf_counter() - t, con.execute("SELECT count(*) FROM raw.labs").fetchall()[0][0]

    t_land, t_stage, labs = land(drops)
    print(f"history: {len(drops)} drops landed in {t_land:.1f} s, staging built in {t_stage:.1f} s, "
          f"raw.labs {labs:,} rows; {os.environ.get('HAIC_DQ_WORKERS') or os.cpu_count()} cores for GX")
    full, peak1 = _child(db, reports, "bench-1")
    cached, peak2 = _child(db, reports, "bench-2")
    # the nightly case: the last drop as if it had just arrived (its stored results and the
    # staging-wide ones removed, so exactly what a new drop triggers is validated again)
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM ops.dq_results WHERE extract_id = ? OR extract_id IS NULL", [drops[-1].extract_id])
    nightly, peak3 = _child(db, reports, "bench-3")
    for title, res, peak in (("every suite, whole history (first run)", full, peak1),
                             ("no change (stored results)", cached, peak2),
                             ("one new drop (nightly)", nightly, peak3)):
        print(f"{title:40s} {res['seconds']:7.1f} s  peak RSS {peak:.2f} GiB  GX: {res['gx']}")
        slow = sorted(res["groups"].items(), key=lambda kv: -kv[1])[:4]
        print("    slowest check groups (one Dagster step each): " + ", ".join(f"{k} {v:.1f} s" for k, v in slow))
    print(f"report: {reports / 'index.html'}")
    keep_or_remove(tmp, args.keep)


if __name__ == "__main__":
    main()
