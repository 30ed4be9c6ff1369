"""Benchmark: what the group-sequential monitoring (study_spec §6) adds to a refresh.

    .venv/bin/python benchmarks/bench_monitoring.py [--patients 100] [--drops 6] [--runs 3]

Writes synthetic drops into a temp folder, lands them into a DuckDB file with the real loader,
builds staging and the study, then times `build_monitoring` (analysis.monitoring_* and the
history's columns) in the three situations a refresh meets:

- nothing new: every drop's monitoring inputs are recorded (a refresh without a new drop);
- one new drop: the newest drop's inputs come from the live staging (the nightly case);
- a backlog: every drop but the newest is replayed in memory (the first refresh of a backlog of
  `--drops` drops, or after a retraction of the first drop).

Prints the best and median wall time of each over `--runs` runs. Not a test: timings depend on
the machine (and on what else runs on it).
"""

from __future__ import annotations

import statistics
import time

from _demo import arguments, demo_study


def main() -> None:
    args = arguments(__doc__, "runs")

    from haic_pipeline.analysis import build_monitoring
    from haic_pipeline.study.plan import load_plan

    plan = load_plan()
    with demo_study("monitoring", args.patients, args.drops) as (con, _):
        build_monitoring(con, plan)   # warm-up: imports, the first derivation
        newest = con.execute("SELECT max(extract_id) FROM ops.drops WHERE status = 'loaded'").fetchall()[0][0]
        times: dict[str, list[float]] = {"nothing new": [], "one new drop": [],
                                         f"backlog of {args.drops}": []}
        for _ in range(args.runs):
            for case, delete in (("nothing new", None),
                                 ("one new drop", "WHERE extract_id = ?"),
                                 (f"backlog of {args.drops}", "")):
                if delete is not None:
                    con.execute(f"DELETE FROM ops.monitoring_inputs {delete}", [newest] if delete else [])
                t0 = time.perf_counter()
                build_monitoring(con, plan)
                times[case].append(time.perf_counter() - t0)
        events, looks = con.execute("SELECT events, looks_taken FROM analysis.monitoring_status").fetchall()[0]
    print(f"{args.patients} patients, {args.drops} drops, {events} {plan.endpoint} events, {looks} formal look(s)")
    print(f"{'case':<18} {'best s':>8} {'median s':>9}")
    for case, ts in times.items():
        print(f"{case:<18} {min(ts):>8.3f} {statistics.median(ts):>9.3f}")


if __name__ == "__main__":
    main()
