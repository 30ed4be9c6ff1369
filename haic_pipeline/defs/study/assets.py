"""The study's derived tables (study_spec §1–2): cohort, endpoints, attrition.

The SQL lives in haic_pipeline/sql/study/; this module only wires it. Each asset waits for every
blocking data-quality check upstream (a failed check stops the study, see the quality area).
"""

import dagster as dg

from haic_pipeline.contracts import load_contracts
from haic_pipeline.defs.automation.conditions import STUDY_AUTOMATION
from haic_pipeline.defs.resources import DUCKDB_POOL, WarehouseResource
from haic_pipeline.study import build_attrition, build_cohort, build_endpoints

STAGING = {d: dg.AssetKey(["staging", d]) for d in load_contracts()}
COHORT = dg.AssetKey(["staging", "cohort"])
ENDPOINTS = dg.AssetKey(["staging", "endpoints"])
ATTRITION = dg.AssetKey(["analysis", "attrition"])


def _study_asset(key: dg.AssetKey, deps: list[dg.AssetKey], group: str, build, description: str):
    """The asset of one SQL model of haic_pipeline/sql/study/, built by `build` (haic_pipeline.study)."""
    @dg.asset(key=key, deps=deps, group_name=group, kinds={"duckdb", "sql"}, pool=DUCKDB_POOL,
              automation_condition=STUDY_AUTOMATION, description=description)
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
        with duckdb.get_connection() as con:
            result = build(con)
        return dg.MaterializeResult(metadata=result.metadata())

    return _asset


cohort = _study_asset(
    COHORT, list(STAGING.values()), "study", build_cohort,
    "staging.cohort: one row per patient of staging.patients with inclusion, exclusion reason, group, index "
    "date and baseline covariates (study_spec §1). SQL: haic_pipeline/sql/study/cohort.sql")
endpoints = _study_asset(
    ENDPOINTS, [COHORT, STAGING["imaging"], STAGING["vital_status"]], "study", build_endpoints,
    "staging.endpoints: OS, PFS and best response per included patient (study_spec §2). "
    "SQL: haic_pipeline/sql/study/endpoints.sql")
attrition = _study_asset(
    ATTRITION, [COHORT], "analysis", build_attrition,
    "analysis.attrition: CONSORT-style counts, one row per exclusion step in the order of study_spec §1. "
    "SQL: haic_pipeline/sql/study/attrition.sql")
