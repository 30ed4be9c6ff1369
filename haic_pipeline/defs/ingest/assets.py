"""Ingest: one run per drop lands it in raw.<domain> (a drop = a dynamic partition)."""


import dagster as dg

from haic_pipeline.contracts import load_contracts
from haic_pipeline.defs.resources import DUCKDB_POOL, HaicConfig, WarehouseResource
from haic_pipeline.ingest import Drop, DropRejected, load_drop
from haic_pipeline.settings import warn_if_demo_key

DROPS = dg.DynamicPartitionsDefinition(name="drops")
RAW_KEYS = {domain: dg.AssetKey(["raw", domain]) for domain in load_contracts()}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            group_name="ingest",
            description=f"raw.{domain}: every delivered row of {domain}.csv, as text, with "
            "_extract_id / _row_number / _loaded_at; patient_id pseudonymised, patient_name dropped.",
            kinds={"duckdb"},
            skippable=True,
        )
        for domain, key in RAW_KEYS.items()
    ],
    partitions_def=DROPS,
    pool=DUCKDB_POOL,
    can_subset=False,
)
def raw_drop(context: dg.AssetExecutionContext, haic: HaicConfig, duckdb: WarehouseResource):
    """Verify one drop against its manifest and land it in raw.* in one transaction."""
    settings = haic.settings()
    warn_if_demo_key(settings, context.log)
    extract_id = context.partition_key
    drop = Drop(path=settings.inbox / extract_id, extract_id=extract_id)
    if not drop.manifest_path.is_file():
        raise dg.Failure(description=f"drop {extract_id}: no {drop.manifest_path} (not in the inbox, or incomplete)")
    with duckdb.get_connection() as con:
        try:
            result = load_drop(con, drop, load_contracts(), settings.pseudonym_key)
        except DropRejected as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={"extract_id": extract_id, "file": exc.file or "", "reason": exc.reason,
                          "row": exc.row if exc.row is not None else -1,
                          "where": "ops.load_log (status = 'rejected')"},
                allow_retries=False,
            ) from None
    for w in result.warnings:
        context.log.warning("drop %s: %s", extract_id, w)
    rows = result.rows_by_domain()
    for domain, key in RAW_KEYS.items():
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "status": result.status,
                "rows_in_drop": rows.get(domain, 0),
                "file_delivered": domain in rows,
                "data_cutoff": str(result.data_cutoff),
                "extract_id": extract_id,
                "manifest_sha256": drop.manifest_sha256(),
            },
        )
