"""Nightly schedule and the run-failure sensor, evaluated for real."""

import json
import os

import dagster as dg
import duckdb

from haic_pipeline.definitions import load
from haic_pipeline.defs.automation.sensors import run_failure_to_ops_log
from haic_pipeline.defs.ingest.assets import DROPS
from haic_pipeline.defs.resources import resources_for
from haic_pipeline.settings import load_settings

from .dropkit import patient, write_drop

E1 = "20240101T020000Z"


def test_nightly_schedule_targets_the_refresh_job_at_two_in_seoul():
    schedule = load().resolve_schedule_def("nightly_refresh")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Asia/Seoul"
    assert schedule.job_name == "refresh"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_failed_run_is_written_to_ops_run_log_without_identifiers(env):
    folder = write_drop(env / "inbox", E1, {"patients.csv": [patient("10000001")]})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["patients.csv"]["rows"] = 9
    (folder / "manifest.json").write_text(json.dumps(manifest))
    resources = resources_for(load_settings())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(DROPS.name, [E1])
        result = load().resolve_job_def("ingest_drop").execute_in_process(
            partition_key=E1, instance=instance, raise_on_error=False, resources=resources)
        assert not result.success
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_to_ops_log", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(), resources=resources,
        ).for_run_failure()
        run_failure_to_ops_log(context)
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        rows = con.execute("SELECT job, partition, step, status, message FROM ops.run_log").fetchall()
    assert len(rows) == 1
    job, partition, step, status, message = rows[0]
    assert (job, partition, status) == ("ingest_drop", E1, "failed")
    assert step == "raw_drop" and "manifest says 9" in message
    assert "10000001" not in message
