"""A failed run is written to ops.run_log (job, step, error class and first line), and nothing
else changes: every asset writes its table in one transaction, so the last good results stay."""

import dagster as dg

from haic_pipeline.defs.resources import WarehouseResource
from haic_pipeline.ops_log import record_run_failure


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
        message = f"{err.cls_name}: {err.message.strip().splitlines()[0] if err.message else ''}"
    with duckdb.get_connection() as con:
        record_run_failure(con, run_id=context.dagster_run.run_id, job=context.dagster_run.job_name,
                           step=step, message=message,
                           partition=context.dagster_run.tags.get("dagster/partition"))
