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

from .conftest import local_instance
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
    with local_instance() as instance:
        instance.add_dynamic_partitions(DROPS.name, [E1])
        result = load().resolve_job_def("ingest_drop").execute_in_process(
            partition_key=E1, instance=instance, raise_on_error=False, resources=resources)
        assert not result.success
        with dg.build_run_status_sensor_context(
            sensor_name="run_failure_to_ops_log", dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(), resources=resources,
        ) as context:
            run_failure_to_ops_log(context.for_run_failure())
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        rows = con.execute("SELECT job, partition, step, status, message FROM ops.run_log").fetchall()
    assert len(rows) == 1
    job, partition, step, status, message = rows[0]
    assert (job, partition, status) == ("ingest_drop", E1, "failed")
    assert step == "raw_drop" and "manifest says 9" in message
    assert "10000001" not in message


def _requested(defs, result) -> set[str]:
    """The assets one evaluation of the automation conditions requested."""
    return {k.to_user_string() for k in defs.resolve_asset_graph().materializable_asset_keys
            if result.get_requested_partitions(k)}


def test_one_tick_requests_the_whole_refresh_and_a_failed_blocking_check_holds_it(env):
    """The automation conditions evaluated for real (`evaluate_automation_conditions`, as the
    automation sensor evaluates them in the daemon) on a new deployment. Once the first drop has
    landed, a single tick requests everything the refresh job rebuilds, so the first refresh is one
    run, not one run per layer of blocking checks. The drop's ECOG values are out of range: in that
    run the blocking assessments check fails and stops what is downstream, and the next tick
    requests nothing (the failed check holds its downstream; nothing loops)."""
    from .quality.test_quality import cohort

    defs = load()
    resources = resources_for(load_settings())
    refresh = defs.resolve_job_def("refresh")
    everything = {k.to_user_string() for k in refresh.asset_layer.selected_asset_keys}
    with dg.DagsterInstance.ephemeral() as instance:
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert tick.total_requested == 0              # nothing landed yet

        write_drop(env / "inbox", E1, cohort(40, bad_ecog=12))
        instance.add_dynamic_partitions(DROPS.name, [E1])
        assert defs.resolve_job_def("ingest_drop").execute_in_process(
            partition_key=E1, instance=instance, resources=resources).success
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert _requested(defs, tick) == everything, sorted(everything ^ _requested(defs, tick))

        # the run the sensor would launch: the blocking check fails, downstream is not materialized
        run = refresh.execute_in_process(instance=instance, resources=resources, raise_on_error=False)
        assert not run.success
        failed = [e.asset_check_evaluation_data.check_name for e in run.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed]
        assert "assessments_error_rules" in failed
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.total_requested == 0, sorted(_requested(defs, tick))
