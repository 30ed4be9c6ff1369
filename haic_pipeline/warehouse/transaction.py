"""One DuckDB transaction: every table an asset writes changes together or not at all."""

from __future__ import annotations

from contextlib import contextmanager

import duckdb


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    """BEGIN … COMMIT; on any exception (or a kill) nothing of the block is kept."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # the failure already ended the transaction
        raise
    con.execute("COMMIT")
