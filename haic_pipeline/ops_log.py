"""ops.run_log: one row per failed run (pure DuckDB, no Dagster)."""

from __future__ import annotations

import datetime as dt

import duckdb

DDL = """
CREATE TABLE IF NOT EXISTS ops.run_log (
    run_id    VARCHAR NOT NULL,
    job       VARCHAR NOT NULL,
    partition VARCHAR,
    step      VARCHAR,
    status    VARCHAR NOT NULL,
    message   VARCHAR,
    logged_at TIMESTAMP NOT NULL
)"""


def record_run_failure(con: duckdb.DuckDBPyConnection, *, run_id: str, job: str, step: str | None,
                       message: str | None, partition: str | None = None) -> None:
    """Append a failed run. The message is the error's class and first line only: error texts of
    this project never carry identifiers (they name files, rows and rules)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(DDL)
    con.execute(
        "INSERT INTO ops.run_log VALUES (?, ?, ?, ?, 'failed', ?, ?)",
        [run_id, job, partition, step, (message or "")[:500],
         dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)],
    )
