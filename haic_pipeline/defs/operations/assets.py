"""The nightly backup of the whole warehouse: asset `ops/backup` (group `operations`), job
`backup` and schedule `nightly_backup` (HAIC_BACKUP_CRON, default 03:00 HAIC_TIMEZONE, an hour
after the nightly refresh), on when HAIC_BACKUP_KEEP > 0 (the newest N backups in HAIC_BACKUP_DIR
are kept). The asset is in the `duckdb_writer` pool, so it never runs while a step writes the
warehouse; the backup logic is haic_pipeline.warehouse.backup."""

import dagster as dg

from haic_pipeline.defs.executor import EXECUTOR, RUN_CONFIG
from haic_pipeline.defs.resources import DUCKDB_POOL, HaicConfig
from haic_pipeline.settings import ConfigurationError, backup_settings, refresh_schedule
from haic_pipeline.warehouse import backup as backups
from haic_pipeline.warehouse.faults import StorageFault

BACKUP = dg.AssetKey(["ops", "backup"])


def _settings():
    try:
        return backup_settings()
    except ConfigurationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


@dg.asset(
    key=BACKUP,
    group_name="operations",
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    description="A copy of the whole warehouse (raw, ops with the interventions, staging, analysis; every table, "
    "view and sequence) in a new folder of HAIC_BACKUP_DIR, with a manifest of each table's rows and hash. "
    "The newest HAIC_BACKUP_KEEP backups are kept (0: the nightly schedule is off and none is removed). "
    "Restore with: haic restore <folder>.",
)
def backup(context: dg.AssetExecutionContext, haic: HaicConfig) -> dg.MaterializeResult:
    settings, kept = haic.settings(), _settings()
    try:
        taken = backups.take(settings.warehouse, kept.folder, what="backup folder (HAIC_BACKUP_DIR)",
                             memory_limit=settings.duckdb_memory)
    except (backups.BackupError, StorageFault) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    removed = backups.prune(kept.folder, kept.keep)
    for folder in removed:
        context.log.info(f"removed backup {folder} (HAIC_BACKUP_KEEP={kept.keep})")
    m = taken.manifest
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(taken.folder)),
        "tables": len(m["tables"]),
        "rows": sum(t["rows"] for t in m["tables"].values()),
        "size_mb": round(m["bytes"] / 1e6, 2),
        "seconds": round(taken.seconds, 2),
        "last_extract_id": m["last_extract_id"] or "-",
        "keep": kept.keep or "all (HAIC_BACKUP_KEEP=0)",
        "removed": ", ".join(p.name for p in removed) or "-",
        "restore_with": f"haic restore {taken.folder}",
    })


backup_job = dg.define_asset_job(
    name="backup",
    selection=dg.AssetSelection.assets(BACKUP),
    description="Back up the whole warehouse into HAIC_BACKUP_DIR, keeping the newest HAIC_BACKUP_KEEP.",
    executor_def=EXECUTOR,
    config=RUN_CONFIG,
)


def nightly_backup_schedule() -> dg.ScheduleDefinition:
    """The nightly backup at HAIC_BACKUP_CRON in HAIC_TIMEZONE, running when HAIC_BACKUP_KEEP > 0
    (read when the definitions load). A bad HAIC_BACKUP_KEEP leaves it stopped rather than stop
    the code location loading; the asset, run by hand, then fails naming the setting."""
    try:
        s = backup_settings()
        cron, timezone, on = s.cron, s.timezone, s.keep > 0
    except ConfigurationError:
        cron, timezone, on = "0 3 * * *", refresh_schedule()[1], False
    return dg.ScheduleDefinition(
        name="nightly_backup",
        job=backup_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED,
        description="Back up the whole warehouse after the nightly refresh, keeping the newest HAIC_BACKUP_KEEP "
        "backups in HAIC_BACKUP_DIR. On when HAIC_BACKUP_KEEP > 0 (set it, then restart the daemon).",
    )


@dg.definitions
def nightly() -> dg.Definitions:
    """The asset, its job and the schedule (built when the definitions load, so the schedule reads
    HAIC_BACKUP_* then). A module with a `@dg.definitions` function contributes that Definitions
    alone, so it names all three."""
    return dg.Definitions(assets=[backup], jobs=[backup_job], schedules=[nightly_backup_schedule()])
