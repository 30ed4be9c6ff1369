"""Benchmark: the Dagster instance's storage calls, with Dagster's stores as released and with
`haic_pipeline/instance_storage/` (each database's connection kept open).

    .venv/bin/python benchmarks/bench_instance_storage.py [--runs 20] [--events 20] [--no-postgres]

One Dagster process's storage work as a run does it: `--runs` runs created, each with `--events`
events stored and read back, and the sensor state read. Prints the wall time and the machine's
busy CPU time (this process and the database server together) per event, for:

- SQLite under a temporary DAGSTER_HOME: Dagster's default storage, then deploy/dagster.yaml's;
- PostgreSQL 15 (a throwaway cluster, as the production tests start it; skipped with
  `--no-postgres` or when PostgreSQL is not installed): dagster-postgres's storage (`storage:
  postgres:`), then deploy/production/dagster.yaml's.

Not a test: timings depend on the machine (and on what else runs on it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (every process, the database server included)."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, open("/proc/stat").readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def workload(runs: int, events: int) -> int:
    import dagster as dg

    job = dg.GraphDefinition(name="bench").to_job()
    with dg.DagsterInstance.get() as instance:
        for i in range(runs):
            run = instance.create_run_for_job(job, tags={"i": str(i)})
            for j in range(events):
                instance.report_engine_event(f"event {j}", run)
            assert len(instance.all_logs(run.run_id)) == events
            instance.all_instigator_state()
    return runs * events


def measure(label: str, config: dict, runs: int, events: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="haic-bench-home-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        os.environ["DAGSTER_HOME"] = str(home)
        workload(1, 1)   # tables created, modules imported
        b0, t0 = busy_seconds(), time.perf_counter()
        n = workload(runs, events)
        wall, busy = time.perf_counter() - t0, busy_seconds() - b0
        print(f"  {label:<50} {1000 * wall / n:7.2f} ms wall  {1000 * busy / n:7.2f} ms busy CPU  per event")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    local = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    print(f"SQLite ({args.runs} runs x {args.events} events)")
    measure("Dagster's SQLite storage (default)", {"telemetry": {"enabled": False}}, args.runs, args.events)
    measure("deploy/dagster.yaml (connections kept)", local, args.runs, args.events)

    if args.no_postgres:
        return
    sys.path.insert(0, str(ROOT))
    from haic_pipeline_tests.pgcluster import PG_BIN, start_cluster

    if not (PG_BIN / "initdb").exists():
        print(f"PostgreSQL: skipped ({PG_BIN}/initdb missing)")
        return
    cluster, stop = start_cluster()
    try:
        production = yaml.safe_load((ROOT / "deploy" / "production" / "dagster.yaml").read_text())
        stock = {"storage": {"postgres": production["storage"]["custom"]["config"]}, "telemetry": {"enabled": False}}
        print(f"PostgreSQL 15, scram-sha-256 over TCP ({args.runs} runs x {args.events} events)")
        for i, (label, config) in enumerate([("dagster-postgres's storage (storage: postgres:)", stock),
                                              ("deploy/production/dagster.yaml (kept)", production)]):
            cluster.create_database(f"bench{i}", "haic", "bench-password")
            os.environ.update(cluster.env(f"bench{i}", "haic", "bench-password"))
            measure(label, config, args.runs, args.events)
    finally:
        stop()


if __name__ == "__main__":
    main()
