"""ops.run_log: one row per failed run (pure DuckDB, no Dagster; DDL in `warehouse/schema.py`)."""

from __future__ import annotations

import datetime as dt

import duckdb

from haic_pipeline.warehouse.schema import ensure_ops

def record_run_failure(con: duckdb.DuckDBPyConnection, *, run_id: str, job: str, step: str | None,
                       message: str | None, partition: str | None = None) -> None:
    """Append a failed run. The message is the error's class and first line only: error texts of
    this project never carry identifiers (they name files, rows and rules)."""
    ensure_ops(con)
    con.execute(
        "INSERT INTO ops.run_log VALUES (?, ?, ?, ?, 'failed', ?, ?)",
        [run_id, job, partition, step, (message or "")[:500],
         dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)],
    )
