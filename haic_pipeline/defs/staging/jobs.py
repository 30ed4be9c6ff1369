"""The refresh job: everything downstream of the landed drops (staging, and later checks and
the analysis; not the `operations` group, the backup), run by `make run` after new drops, and by the nightly schedule."""

import dagster as dg

from haic_pipeline.defs.executor import EXECUTOR, RUN_CONFIG

refresh_job = dg.define_asset_job(
    name="refresh",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("ingest", "operations"),
    description="Rebuild staging (and everything downstream) from all loaded drops.",
    executor_def=EXECUTOR,
    config=RUN_CONFIG,
)
