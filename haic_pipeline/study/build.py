"""Build the study tables (study_spec §1, §2) from the staging tables, in DuckDB.

    build_cohort(con)     -> staging.cohort      haic_pipeline/sql/study/cohort.sql
    build_endpoints(con)  -> staging.endpoints   haic_pipeline/sql/study/endpoints.sql  (needs staging.cohort)
    build_attrition(con)  -> analysis.attrition  haic_pipeline/sql/study/attrition.sql  (needs staging.cohort)
    build_study(con)      -> all three, in that order

Each model runs in ONE transaction (as haic_pipeline.warehouse.staging.build_staging): a failure
leaves the previous table intact. The study parameters below are defined here only and handed
to the SQL as DuckDB variables (`study_start`, `month_days`), read there with the macro
`study_parameter(name)` (`set_parameters`).
Each build returns a small result whose `metadata()` is plain JSON-able values (Dagster metadata).
No Dagster import here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from haic_pipeline.warehouse.transaction import transaction

#: §1: a patient whose index date (first HAIC_FP start) is before this date is excluded.
STUDY_START = date(2022, 3, 1)
#: Units: a month is 30.4375 days (365.25 / 12); every time in staging.endpoints is in months.
MONTH_DAYS = 30.4375
#: §1: exclusion reasons in the order they are applied (the first that applies is recorded).
EXCLUSION_ORDER = (
    "consent_withdrawn",
    "no_haic",
    "index_before_study_start",
    "index_after_cutoff",
    "age_under_18",
    "prior_other_systemic",
    "no_follow_up",
)
GROUPS = ("first_line", "post_ate_beva")

SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "study"


def sql_path(model: str) -> Path:
    return SQL_DIR / f"{model}.sql"


def set_parameters(con: duckdb.DuckDBPyConnection) -> None:
    """Hand the study parameters to the SQL models: session variables of this connection, read
    with the macro `study_parameter(name)`, which stops a model run without them (a temporary
    macro: nothing is written to the warehouse)."""
    con.execute("SET VARIABLE study_start = ?", [STUDY_START])
    con.execute("SET VARIABLE month_days = ?", [MONTH_DAYS])
    con.execute("CREATE OR REPLACE TEMP MACRO study_parameter(name) AS coalesce(getvariable(name), "
                "error('variable ' || name || ' is not set (run via haic_pipeline.study.build)'))")


def _run_model(con: duckdb.DuckDBPyConnection, model: str) -> None:
    sql = sql_path(model).read_text()
    set_parameters(con)
    with transaction(con):
        con.execute(sql)


def _provenance(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str | None, str | None]:
    row = con.execute(f"SELECT any_value(data_cutoff)::VARCHAR, any_value(extract_id) FROM {table}").fetchall()[0]
    return row[0], row[1]


class _Result:
    """What a build tells Dagster: every field of the result, as the asset's metadata."""

    def metadata(self) -> dict:
        return asdict(self)


@dataclass
class CohortResult(_Result):
    rows: int
    included: int
    excluded: dict[str, int] = field(default_factory=dict)   # by exclusion_reason, §1 order
    by_group: dict[str, int] = field(default_factory=dict)   # included patients per group
    data_cutoff: str | None = None
    extract_id: str | None = None


@dataclass
class EndpointsResult(_Result):
    rows: int
    os_events: int
    pfs_events: int
    by_group: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> n, os_events, pfs_events
    best_response: dict[str, int] = field(default_factory=dict)
    negative_times: int = 0   # rows with os_months or pfs_months < 0 (source dates before index)
    data_cutoff: str | None = None
    extract_id: str | None = None


@dataclass
class AttritionResult(_Result):
    steps: list[dict] = field(default_factory=list)  # step, reason, n_excluded, n_remaining
    data_cutoff: str | None = None
    extract_id: str | None = None


def build_cohort(con: duckdb.DuckDBPyConnection) -> CohortResult:
    _run_model(con, "cohort")
    return cohort_result(con)


def cohort_result(con: duckdb.DuckDBPyConnection) -> CohortResult:
    rows, included = con.execute("SELECT count(*), count(*) FILTER (WHERE included) FROM staging.cohort").fetchall()[0]
    counts = dict(con.execute(
        "SELECT exclusion_reason, count(*) FROM staging.cohort WHERE NOT included GROUP BY 1").fetchall())
    by_group = dict(con.execute(
        'SELECT "group", count(*) FROM staging.cohort WHERE included GROUP BY 1').fetchall())
    cutoff, extract_id = _provenance(con, "staging.cohort")
    return CohortResult(
        rows=rows, included=included,
        excluded={r: counts.get(r, 0) for r in EXCLUSION_ORDER},
        by_group={g: by_group.get(g, 0) for g in GROUPS},
        data_cutoff=cutoff, extract_id=extract_id,
    )


def build_endpoints(con: duckdb.DuckDBPyConnection) -> EndpointsResult:
    _run_model(con, "endpoints")
    return endpoints_result(con)


def endpoints_result(con: duckdb.DuckDBPyConnection) -> EndpointsResult:
    rows, os_events, pfs_events, negative = con.execute(
        "SELECT count(*), coalesce(sum(os_event), 0), coalesce(sum(pfs_event), 0), "
        "count(*) FILTER (WHERE os_months < 0 OR pfs_months < 0) FROM staging.endpoints").fetchall()[0]
    by_group = {g: {"n": 0, "os_events": 0, "pfs_events": 0} for g in GROUPS}
    for g, n, ose, pfe in con.execute(
            'SELECT "group", count(*), sum(os_event), sum(pfs_event) FROM staging.endpoints GROUP BY 1').fetchall():
        by_group[g] = {"n": n, "os_events": int(ose), "pfs_events": int(pfe)}
    responses = dict(con.execute(
        "SELECT best_response, count(*) FROM staging.endpoints GROUP BY 1").fetchall())
    cutoff, extract_id = _provenance(con, "staging.endpoints")
    return EndpointsResult(
        rows=rows, os_events=int(os_events), pfs_events=int(pfs_events), by_group=by_group,
        best_response={r: responses.get(r, 0) for r in ("CR", "PR", "SD", "PD", "NE")},
        negative_times=negative, data_cutoff=cutoff, extract_id=extract_id,
    )


def build_attrition(con: duckdb.DuckDBPyConnection) -> AttritionResult:
    _run_model(con, "attrition")
    return attrition_result(con)


def attrition_result(con: duckdb.DuckDBPyConnection) -> AttritionResult:
    steps = [
        {"step": s, "reason": r, "n_excluded": e, "n_remaining": n}
        for s, r, e, n in con.execute(
            "SELECT step, reason, n_excluded, n_remaining FROM analysis.attrition ORDER BY step").fetchall()
    ]
    cutoff, extract_id = _provenance(con, "analysis.attrition")
    return AttritionResult(steps=steps, data_cutoff=cutoff, extract_id=extract_id)


def build_study(con: duckdb.DuckDBPyConnection) -> tuple[CohortResult, EndpointsResult, AttritionResult]:
    """staging.cohort, then staging.endpoints and analysis.attrition (which read it)."""
    return build_cohort(con), build_endpoints(con), build_attrition(con)
