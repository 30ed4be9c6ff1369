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


@dg.asset(
    key=COHORT,
    deps=list(STAGING.values()),
    group_name="study",
    kinds={"duckdb", "sql"},
    pool=DUCKDB_POOL,
    automation_condition=STUDY_AUTOMATION,
    description="staging.cohort: one row per patient of staging.patients with inclusion, exclusion "
    "reason, group, index date and baseline covariates (study_spec §1). SQL: haic_pipeline/sql/study/cohort.sql",
)
def cohort(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        result = build_cohort(con)
    return dg.MaterializeResult(metadata=result.metadata())


@dg.asset(
    key=ENDPOINTS,
    deps=[COHORT, STAGING["imaging"], STAGING["vital_status"]],
    group_name="study",
    kinds={"duckdb", "sql"},
    pool=DUCKDB_POOL,
    automation_condition=STUDY_AUTOMATION,
    description="staging.endpoints: OS, PFS and best response per included patient (study_spec §2). "
    "SQL: haic_pipeline/sql/study/endpoints.sql",
)
def endpoints(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        result = build_endpoints(con)
    return dg.MaterializeResult(metadata=result.metadata())


@dg.asset(
    key=ATTRITION,
    deps=[COHORT],
    group_name="analysis",
    kinds={"duckdb", "sql"},
    pool=DUCKDB_POOL,
    automation_condition=STUDY_AUTOMATION,
    description="analysis.attrition: CONSORT-style counts, one row per exclusion step in the order of "
    "study_spec §1. SQL: haic_pipeline/sql/study/attrition.sql",
)
def attrition(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        result = build_attrition(con)
    return dg.MaterializeResult(metadata=result.metadata())
