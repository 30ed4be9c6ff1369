"""The inbox sensor: one run of the ingest job per new complete drop.

It never opens the warehouse (DuckDB allows one writer, and a run may be writing): it lists the
inbox, and keys each run request by extract_id + manifest sha256, so Dagster starts exactly one
run per delivered drop version. A re-delivered identical drop has the same run key and starts
nothing; the same extract_id with a different manifest starts a run that the loader refuses with
a clear message. Folders without manifest.json are still being written and are left alone.
"""


import dagster as dg

from haic_pipeline.defs.ingest.assets import DROPS, RAW_KEYS
from haic_pipeline.defs.executor import EXECUTOR, RUN_CONFIG
from haic_pipeline.defs.resources import HaicConfig
from haic_pipeline.ingest import find_complete_drops
from haic_pipeline.ingest.drops import EXTRACT_ID_PATTERN

def _already_landed(instance: dg.DagsterInstance, extract_id: str, manifest_sha: str) -> bool:
    """True when raw/patients has a materialization of this drop version (same manifest)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_KEYS["patients"], asset_partitions=[extract_id]), limit=1
    ).records
    if not records:
        return False
    meta = records[0].asset_materialization.metadata
    return "manifest_sha256" in meta and meta["manifest_sha256"].value == manifest_sha


ingest_drop_job = dg.define_asset_job(
    name="ingest_drop",
    selection=dg.AssetSelection.assets(*RAW_KEYS.values()),
    partitions_def=DROPS,
    description="Land one drop (partition = extract_id) in raw.*",
    executor_def=EXECUTOR,
    config=RUN_CONFIG,
)


@dg.sensor(
    job=ingest_drop_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches HAIC_INBOX; starts one ingest run per new complete drop (folder with manifest.json).",
)
def inbox_sensor(context: dg.SensorEvaluationContext, haic: HaicConfig):
    settings = haic.settings()
    drops = find_complete_drops(settings.inbox)
    known = set(context.instance.get_dynamic_partitions(DROPS.name))
    new_partitions, requests, skipped = [], [], []
    for drop in drops:
        if not EXTRACT_ID_PATTERN.match(drop.extract_id):
            skipped.append(drop.extract_id)
            continue
        manifest_sha = drop.manifest_sha256()
        if drop.extract_id not in known:
            new_partitions.append(drop.extract_id)
        elif _already_landed(context.instance, drop.extract_id, manifest_sha):
            continue  # landed by an earlier run (e.g. `make run`): nothing to do
        requests.append(
            dg.RunRequest(
                run_key=f"{drop.extract_id}:{manifest_sha}",
                partition_key=drop.extract_id,
                tags={"haic/extract_id": drop.extract_id},
            )
        )
    if skipped:
        context.log.warning("inbox folders whose name is not an extract_id, ignored: %s", ", ".join(skipped))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[DROPS.build_add_request(new_partitions)] if new_partitions else [],
    )
