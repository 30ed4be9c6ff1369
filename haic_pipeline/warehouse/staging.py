"""Run the compiled staging models (`haic_pipeline/sql/staging/<domain>.sql`) in DuckDB.

Each model rebuilds staging.<domain> and its domain's rows of ops.quarantine / ops.row_flags
from all of raw.<domain>, inside one transaction: a failure leaves the previous tables intact.
Rebuilding from raw every time is what makes the rules simple and exact (latest-wins over all
drops; an orphan released as soon as its patient row arrives; a withdrawn patient removed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from haic_pipeline.contracts import load_contracts
from haic_pipeline.settings import kill_if_asked
from haic_pipeline.warehouse.compile import model_path
from haic_pipeline.warehouse.refresh import record_build, staging_fingerprint, unchanged_since_last_build
from haic_pipeline.warehouse.schema import ensure_schema
from haic_pipeline.warehouse.transaction import transaction


@dataclass
class StagingResult:
    domain: str
    rows: int
    quarantined: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    raw_rows: int = 0

    @property
    def quarantined_rows(self) -> int:
        return sum(self.quarantined.values())


def build_staging(con: duckdb.DuckDBPyConnection, domain: str) -> StagingResult:
    sql = model_path(domain).read_text()
    with transaction(con):
        con.execute(sql)
        kill_if_asked(f"staging.{domain} uncommitted")
    return staging_result(con, domain)


def staging_result(con: duckdb.DuckDBPyConnection, domain: str) -> StagingResult:
    def by_check(table: str) -> dict[str, int]:
        return dict(con.execute(
            f"SELECT check_name, count(*) FROM {table} WHERE domain = ? GROUP BY 1 ORDER BY 1", [domain]
        ).fetchall())

    return StagingResult(
        domain=domain,
        rows=con.execute(f"SELECT count(*) FROM staging.{domain}").fetchall()[0][0],
        quarantined=by_check("ops.quarantine"),
        flagged=by_check("ops.row_flags"),
        raw_rows=con.execute(f"SELECT count(*) FROM raw.{domain}").fetchall()[0][0],
    )


def refresh_staging(con: duckdb.DuckDBPyConnection, domain: str) -> tuple[StagingResult, bool]:
    """staging.<domain> brought up to date: rebuilt when a loaded drop or a staging model changed
    since its last build (warehouse.refresh), else left as it is. (result, rebuilt)."""
    ensure_schema(con, load_contracts())
    fingerprint = staging_fingerprint(con, domain)
    if unchanged_since_last_build(con, f"staging.{domain}", fingerprint):
        return staging_result(con, domain), False
    result = build_staging(con, domain)
    record_build(con, f"staging.{domain}", fingerprint)
    return result, True
