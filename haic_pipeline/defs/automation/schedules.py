"""The nightly refresh: 02:00 in HAIC_TIMEZONE (default Asia/Seoul), even when no drop arrived
(follow-up matures: censoring times move to the new cutoff only with a new drop, but the
quality checks, the report and the analysts' copy are re-published every night)."""

import dagster as dg

from haic_pipeline.defs.staging.jobs import refresh_job
from haic_pipeline.settings import refresh_schedule

CRON, TIMEZONE = refresh_schedule()

nightly_refresh = dg.ScheduleDefinition(
    name="nightly_refresh",
    job=refresh_job,
    cron_schedule=CRON,
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rebuild staging, checks, study and reports from every loaded drop, every night.",
)
