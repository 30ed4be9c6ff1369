"""deploy/dagster.yaml's instance storage (haic_pipeline/instance_storage/sqlite.py): Dagster's
SQLite files under DAGSTER_HOME, each database's connection kept open. Storage calls reuse the open
files instead of opening them again; at most RUN_SHARDS_KEPT run databases stay open; another
process's writes are read through a kept connection; dispose closes them; a home written by
Dagster's default storage reads the same. (The PostgreSQL counterpart is tested in
test_production_postgres.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from haic_pipeline.instance_storage.sqlite import RUN_SHARDS_KEPT

ROOT = Path(__file__).resolve().parents[1]


def _open_databases(home: Path) -> list[str]:
    """The SQLite files under `home` this process holds open (paths relative to `home`)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(home)) and target.endswith(".db"):
            out.append(os.path.relpath(target, home))
    return sorted(out)


def _new_run(instance, i: int):
    run = instance.create_run_for_job(dg.GraphDefinition(name="nothing").to_job(), tags={"call": str(i)})
    instance.report_engine_event("a stored event", run)
    return run


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_storage_calls_reuse_open_databases_and_see_other_processes_writes(home):
    instance = dg.DagsterInstance.get()
    try:
        assert type(instance.run_storage).__name__ == "HeldConnectionSqliteRunStorage"
        first = _new_run(instance, 0)
        instance.all_instigator_state()
        held = _open_databases(home)
        assert {"history/runs.db", "history/runs/index.db", f"history/runs/{first.run_id}.db",
                "schedules/schedules.db"} <= set(held), held

        # the same run, many calls: the same files, opened once
        for _ in range(30):
            instance.report_engine_event("another event", first)
            assert instance.get_run_by_id(first.run_id) is not None
            instance.all_instigator_state()
        assert _open_databases(home) == held
        assert len(instance.all_logs(first.run_id)) == 31

        # many runs: at most RUN_SHARDS_KEPT run databases stay open
        runs = [_new_run(instance, i) for i in range(1, RUN_SHARDS_KEPT + 3)]
        shards = [p for p in _open_databases(home) if p.startswith("history/runs/") and p != "history/runs/index.db"]
        assert len(set(shards)) == RUN_SHARDS_KEPT, shards
        assert f"history/runs/{runs[-1].run_id}.db" in shards and f"history/runs/{first.run_id}.db" not in shards
        assert all(instance.all_logs(r.run_id) for r in [first, *runs])   # evicted ones open again

        # another process writes a run and its event; this one reads them through its open files
        code = ("import dagster as dg\n"
                "with dg.DagsterInstance.get() as i:\n"
                "    r = i.create_run_for_job(dg.GraphDefinition(name='elsewhere').to_job())\n"
                "    i.report_engine_event('written elsewhere', r)\n"
                "    print(r.run_id)\n")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        run_id = other.stdout.strip().splitlines()[-1]
        assert instance.get_run_by_id(run_id).job_name == "elsewhere"
        assert [e.message for e in instance.all_logs(run_id)] == ["written elsewhere"]
        assert len(instance.get_runs()) == RUN_SHARDS_KEPT + 4
    finally:
        instance.dispose()
    # dispose closes the run and event-log stores' files (Dagster never disposes an instance's
    # schedule store: its file stays open to the end of the process)
    assert _open_databases(home) == ["schedules/schedules.db"]


def test_a_home_written_by_dagsters_default_storage_reads_the_same(home):
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")   # Dagster's default storage
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        run = _new_run(instance, 0)
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "HeldConnectionSqliteRunStorage"
        assert instance.get_run_by_id(run.run_id).job_name == "nothing"
        assert [e.message for e in instance.all_logs(run.run_id)] == ["a stored event"]
        _new_run(instance, 1)
        assert len(instance.get_runs()) == 2


def test_a_process_that_exits_without_disposing_leaves_no_wal_behind(home):
    """`haic` ends with its exit handlers, then `os._exit` (cli/main.py: program): the handlers close
    every kept connection, so each database is checkpointed and its -wal and -shm files removed."""
    code = ("import atexit, os\n"
            "import dagster as dg\n"
            "i = dg.DagsterInstance.get()\n"
            "r = i.create_run_for_job(dg.GraphDefinition(name='exits').to_job())\n"
            "i.report_engine_event('before the exit', r)\n"
            "i.all_instigator_state()\n"
            "atexit._run_exitfuncs()\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*.db*"))
    assert files and all(f.endswith(".db") for f in files), files
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert [e.message for e in instance.all_logs(run.run_id)] == ["before the exit"]
