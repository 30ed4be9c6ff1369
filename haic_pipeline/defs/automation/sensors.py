"""The automation sensor, and the run-failure sensor.

Declarative automation (the assets' conditions, defs/automation/conditions.py) is evaluated by
`automation_condition_sensor`, on by default, every HAIC_SENSOR_INTERVAL_SECONDS (default 30 s),
in the daemon; its cursor lives in the Dagster instance, so it survives a restart of the daemon.

A failed run is written to ops.run_log (job, step, error class and first line), and nothing
else changes: every asset writes its table in one transaction, so the last good results stay.
If the warehouse cannot be written (disk full, read-only), the tick fails with a message saying
so; the sensor's cursor moves on and the run's failure stays in Dagster's run history."""

import dagster as dg

from haic_pipeline.defs.resources import WarehouseResource
from haic_pipeline.settings import sensor_interval_seconds
from haic_pipeline.warehouse.faults import StorageFault, describe
from haic_pipeline.warehouse.ops_log import record_run_failure

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval_seconds(),
    description="Evaluates the assets' automation conditions: staging and everything downstream refresh "
                "after a drop lands, and stop at a failed blocking check.",
)


@dg.run_failure_sensor(
    name="run_failure_to_ops_log",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="Writes every failed run of this code location to ops.run_log.",
)
def run_failure_to_ops_log(context: dg.RunFailureSensorContext, duckdb: WarehouseResource):
    failure = context.failure_event
    step = failure.step_key if failure is not None else None
    message = context.failure_event.message if failure is not None else ""
    errors = context.get_step_failure_events()
    if errors:
        step = errors[0].step_key
        err = errors[0].event_specific_data.error
        while err.cause is not None:  # the error the asset raised, not Dagster's wrapper around it
            err = err.cause
        message = f"{err.cls_name}: {err.message.strip().splitlines()[0] if err.message else ''}"
    try:
        with duckdb.get_connection() as con:
            record_run_failure(con, run_id=context.dagster_run.run_id, job=context.dagster_run.job_name,
                               step=step, message=message,
                               partition=context.dagster_run.tags.get("dagster/partition"))
    except Exception as exc:  # a full disk or read-only warehouse: fail this tick with a clear message
        problem = describe(str(exc), duckdb.database)
        if problem is None:
            raise
        raise StorageFault(f"run {context.dagster_run.run_id[:8]} not written to ops.run_log ({problem}); "
                           "its failure stays in Dagster's run history") from exc
