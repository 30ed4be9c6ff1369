"""Publish the analysts' read-only copy after every successful refresh."""

import dagster as dg

from haic_pipeline.defs.resources import HaicConfig, WarehouseResource
from haic_pipeline.defs.study.assets import ATTRITION, COHORT, ENDPOINTS, STAGING
from haic_pipeline.warehouse.publish import publish_analytics_copy

try:  # the analysis area adds its tables when present
    from haic_pipeline.defs.analysis.assets import ANALYSIS_KEYS
except ImportError:  # pragma: no cover - analysis area not wired yet
    ANALYSIS_KEYS = []


@dg.asset(
    key=dg.AssetKey(["analytics", "analysts_copy"]),
    deps=[*STAGING.values(), COHORT, ENDPOINTS, ATTRITION, *ANALYSIS_KEYS],
    group_name="publish",
    kinds={"duckdb"},
    automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    description="analytics.duckdb beside the warehouse: staging and analysis only, written to a temporary "
    "file and renamed into place, so analysts' open sessions never block a refresh. "
    "Open it with: make sql  (or duckdb -readonly warehouse/analytics.duckdb).",
)
def analysts_copy(context: dg.AssetExecutionContext, haic: HaicConfig, duckdb: WarehouseResource):
    settings = haic.settings()
    with duckdb.get_connection() as con:
        result = publish_analytics_copy(con, settings.analytics_copy)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(result.path)),
        "tables": len(result.tables),
        "size_mb": round(result.bytes / 1e6, 2),
        "open_with": f"duckdb -readonly {result.path}",
    })
