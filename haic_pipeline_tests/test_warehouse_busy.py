"""The warehouse held by another process (an analyst's read-only session) or in a read-only folder:
a Dagster run using WarehouseResource fails within seconds with one clear message, not after
dagster-duckdb's minutes of retries, and a drop that could not be landed is not rejected.

Real parts: the lock is a real DuckDB connection held in another process; the read-only folder is
a read-only bind mount (as root, permission bits do not stop writes; skipped where mounting is
not permitted)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from haic_pipeline.definitions import load
from haic_pipeline.defs.ingest.assets import DROPS
from haic_pipeline.defs.resources import WarehouseResource, resources_for
from haic_pipeline.settings import load_settings

from .conftest import local_instance
from .dropkit import patient, write_drop

E1 = "20240101T020000Z"
FAST = 15.0  # seconds: dagster-duckdb alone retried for well over a minute


@pytest.fixture
def holder(env):
    """A read-only DuckDB connection to the warehouse, held open by another process."""
    path = Path(os.environ["HAIC_WAREHOUSE"])
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE marker AS SELECT 1 AS x")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time\n"
         f"con = duckdb.connect({str(path)!r}, read_only=True)\n"
         "print('held', flush=True)\n"
         "time.sleep(300)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@dg.asset
def touches_warehouse(duckdb: WarehouseResource) -> None:
    with duckdb.get_connection() as con:
        con.execute("CREATE OR REPLACE TABLE written AS SELECT 1 AS x")


def _failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    return failure.event_specific_data.error.message


def test_run_fails_at_once_while_an_analyst_holds_the_warehouse(env, holder):
    path = os.environ["HAIC_WAREHOUSE"]
    with local_instance() as instance:
        t0 = time.monotonic()
        result = dg.materialize([touches_warehouse], instance=instance, raise_on_error=False,
                                resources={"duckdb": WarehouseResource(database=path)})
        elapsed = time.monotonic() - t0
    assert not result.success
    assert elapsed < FAST, f"the run took {elapsed:.0f} s to fail"
    message = _failure_message(result)
    assert f"warehouse {path} is open in another process" in message, message
    assert f"PID {holder.pid}" in message, message
    assert "close it and rerun" in message and "nothing was changed" in message, message
    assert "analytics.duckdb" in message, message


def test_ingest_run_under_a_held_warehouse_fails_clearly_and_rejects_nothing(env, holder):
    write_drop(env / "inbox", E1, {"patients.csv": [patient("10000001")]})
    with local_instance() as instance:
        instance.add_dynamic_partitions(DROPS.name, [E1])
        t0 = time.monotonic()
        result = load().resolve_job_def("ingest_drop").execute_in_process(
            partition_key=E1, instance=instance, raise_on_error=False, resources=resources_for(load_settings()))
        elapsed = time.monotonic() - t0
    assert not result.success and elapsed < FAST, elapsed
    message = _failure_message(result)
    assert "is open in another process" in message and "10000001" not in message, message
    assert not (env / "inbox" / E1 / "_REJECTED.txt").exists()
    holder.kill()
    holder.wait()
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ops'").fetchall() == [(0,)]


def test_a_short_lock_is_waited_for(env):
    """A holder that lets go within the wait (the run-failure sensor writing a row) does not fail the run."""
    path = os.environ["HAIC_WAREHOUSE"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, time\n"
         f"con = duckdb.connect({path!r})\n"
         "print('held', flush=True)\n"
         "time.sleep(1.0)\n"
         "con.close()\n"
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with local_instance() as instance:
            result = dg.materialize([touches_warehouse], instance=instance,
                                    resources={"duckdb": WarehouseResource(database=path)})
        assert result.success
    finally:
        proc.kill()
        proc.wait()
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("SELECT x FROM written").fetchall() == [(1,)]


def test_run_fails_at_once_on_a_read_only_warehouse_folder(env):
    path = Path(os.environ["HAIC_WAREHOUSE"])
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE marker AS SELECT 1 AS x")
    folder = path.parent
    mounted = []
    try:
        for args in (["--bind", str(folder), str(folder)], ["-o", "remount,bind,ro", str(folder)]):
            proc = subprocess.run(["mount", *args], capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.skip(f"cannot mount a read-only folder here ({proc.stderr.strip()})")
            mounted = [folder]
        with local_instance() as instance:
            t0 = time.monotonic()
            result = dg.materialize([touches_warehouse], instance=instance, raise_on_error=False,
                                    resources={"duckdb": WarehouseResource(database=str(path))})
            elapsed = time.monotonic() - t0
    finally:
        for point in mounted:
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
    assert not result.success and elapsed < FAST, elapsed
    message = _failure_message(result)
    # the words of `haic run`'s preflight (faults.check_writable)
    assert f"warehouse folder {folder} is read-only / not writable" in message, message
    assert "make it writable and rerun; nothing was changed" in message, message


def test_the_cli_says_the_same_when_the_warehouse_is_held(env, holder):
    """`haic run` and `haic drop retract` name the file and the holding process, exit 1, no traceback."""
    for args in (["run", "--no-demo"], ["drop", "retract", E1, "--reason", "test"]):
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "haic_pipeline.cli", *args], capture_output=True, text=True,
                              env=dict(os.environ))
        assert proc.returncode == 1, (args, proc.stdout[-500:], proc.stderr[-2000:])
        assert "is open in another process" in proc.stderr and f"PID {holder.pid}" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert time.monotonic() - t0 < 60
