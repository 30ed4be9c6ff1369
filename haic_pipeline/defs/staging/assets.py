"""Staging: typed, validated, latest-wins domain tables built by the compiled SQL models."""


import dagster as dg

from haic_pipeline.contracts import load_contracts
from haic_pipeline.defs.automation.conditions import STAGING_AUTOMATION
from haic_pipeline.defs.ingest.assets import RAW_KEYS
from haic_pipeline.defs.resources import DUCKDB_POOL, WarehouseResource
from haic_pipeline.study.plan import PlanError, load_plan
from haic_pipeline.warehouse.staging import refresh_staging


def _markdown_counts(title: str, counts: dict[str, int]) -> str:
    if not counts:
        return f"_{title}: none_"
    rows = "\n".join(f"| {name} | {n} |" for name, n in sorted(counts.items()))
    return f"| {title} | rows |\n|---|---|\n{rows}"


def _staging_asset(domain: str) -> dg.AssetsDefinition:
    contract = load_contracts()[domain]
    deps = [RAW_KEYS[domain]]
    if domain != "patients":
        deps.append(dg.AssetKey(["staging", "patients"]))

    @dg.asset(
        key=dg.AssetKey(["staging", domain]),
        deps=deps,
        group_name="staging",
        kinds={"duckdb", "sql"},
        pool=DUCKDB_POOL,
        automation_condition=STAGING_AUTOMATION,
        description=(
            f"staging.{domain}: {contract.description} Typed and normalised per "
            f"data_contracts/{domain}.yaml, newest drop wins per ({', '.join(contract.staging_key)}); "
            "rows breaking an error rule are in ops.quarantine, warn rules in ops.row_flags. "
            f"SQL: haic_pipeline/sql/staging/{domain}.sql"
        ),
    )
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
        if domain == "patients":   # the refresh's first step: a bad monitoring plan stops it before any write
            try:
                load_plan()
            except PlanError as exc:
                raise dg.Failure(description=f"monitoring plan: {exc}", allow_retries=False) from None
        with duckdb.get_connection() as con:
            result, rebuilt = refresh_staging(con, domain)
        context.log.info(
            "staging.%s: %s rows, %s quarantined, %s flagged%s", domain, result.rows,
            result.quarantined_rows, sum(result.flagged.values()), "" if rebuilt else " (unchanged, not rebuilt)",
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.rows,
                "raw_rows": result.raw_rows,
                "quarantined_rows": result.quarantined_rows,
                "flagged_rows": sum(result.flagged.values()),
                "rebuilt": rebuilt,
                "quarantine_by_check": dg.MetadataValue.md(_markdown_counts("error check", result.quarantined)),
                "flags_by_check": dg.MetadataValue.md(_markdown_counts("warn check", result.flagged)),
            }
        )

    return _asset


staging_assets = [_staging_asset(domain) for domain in load_contracts()]
