"""Publish the analysts' read-only copy after every successful refresh."""

import dagster as dg

from haic_pipeline.defs.analysis.assets import (
    baseline_characteristics,
    beyond,
    beyond_figures,
    cox,
    monitoring,
    monitoring_figures,
    refresh_history,
    report_figures,
    response,
    software,
    study_report,
    survival,
)
from haic_pipeline.defs.automation.conditions import STUDY_AUTOMATION
from haic_pipeline.defs.resources import HaicConfig, WarehouseResource
from haic_pipeline.defs.study.assets import ATTRITION, COHORT, ENDPOINTS, STAGING
from haic_pipeline.warehouse.publish import publish_analytics_copy

# every analysis.* table, the figures and the report: the copy is published after all of them
PUBLISHED_AFTER = [baseline_characteristics, survival, response, cox, beyond, refresh_history, monitoring, software,
                   report_figures, beyond_figures, monitoring_figures, study_report]
ANALYSIS_KEYS = [key for asset in PUBLISHED_AFTER for key in asset.keys]


@dg.asset(
    key=dg.AssetKey(["analytics", "analysts_copy"]),
    deps=[*STAGING.values(), COHORT, ENDPOINTS, ATTRITION, *ANALYSIS_KEYS],
    group_name="publish",
    kinds={"duckdb"},
    automation_condition=STUDY_AUTOMATION,
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
        "republished": result.published,
        "open_with": f"duckdb -readonly {result.path}",
    })
