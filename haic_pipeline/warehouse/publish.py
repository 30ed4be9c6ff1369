"""The analysts' copy: `analytics.duckdb` beside the pipeline's warehouse, with `staging` and
`analysis` only (never `raw` or `ops`).

DuckDB allows one writing process, and an analyst holding the pipeline's file open would block
the nightly refresh. So the refresh never touches the analysts' file in place: it writes a new
copy to a temporary file in the same folder and renames it over the old one (atomic on POSIX).
An analyst's open session keeps reading its consistent old copy (the old inode stays alive until
closed); the next connection sees the new one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from haic_pipeline.settings import kill_if_asked
from haic_pipeline.warehouse.refresh import last_fingerprint, record_build

PUBLISHED_SCHEMAS = ("staging", "analysis")


@dataclass
class PublishResult:
    path: Path
    tables: dict[str, int]
    bytes: int
    published: bool = True  # False: the copy already held exactly this content


# the six domain tables are rebuilt only when their fingerprint in ops.refresh_state changes;
# every other published table (cohort, endpoints, analysis.*) is small and hashed row by row
_DOMAIN_TABLES = ("patients", "treatments", "assessments", "labs", "imaging", "vital_status")


def content_fingerprint(con: duckdb.DuckDBPyConnection, tables: list[tuple[str, str]]) -> str:
    """A fingerprint of everything the copy would hold, cheap enough to take on every refresh."""
    import hashlib

    h = hashlib.sha256()
    state = dict(con.execute("SELECT name, fingerprint FROM ops.refresh_state").fetchall())
    for schema, table in tables:
        name = f"{schema}.{table}"
        if schema == "staging" and table in _DOMAIN_TABLES and name in state:
            h.update(f"{name}={state[name]}".encode())
        else:
            rows = con.execute(f'SELECT count(*), bit_xor(hash(t)) FROM {schema}."{table}" t').fetchall()
            h.update(f"{name}={rows}".encode())
    return h.hexdigest()


def _detach_quietly(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("DETACH haic_publish")
    except duckdb.Error:
        pass  # the failure (e.g. a full disk) may have invalidated the copy: the original error counts


def publish_analytics_copy(con: duckdb.DuckDBPyConnection, target: Path, force: bool = False,
                           record: bool = True) -> PublishResult:
    """Write the copy of `con`'s current database to `target` unless it already holds this content
    (`force`: write it all the same); `record=False` leaves ops.refresh_state as it is (a
    read-only warehouse: a restored one, whose state already names this content)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    for leftover in target.parent.glob(f".{target.name}.*.tmp*"):  # from a publish that was killed
        leftover.unlink(missing_ok=True)
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name IN "
        f"({', '.join('?' for _ in PUBLISHED_SCHEMAS)}) AND NOT temporary ORDER BY 1, 2",
        [db, *PUBLISHED_SCHEMAS],
    ).fetchall()
    fingerprint = content_fingerprint(con, tables)
    if not force and target.exists() and last_fingerprint(con, "analytics_copy") == fingerprint:
        return PublishResult(path=target, tables={f"{s}.{t}": -1 for s, t in tables},
                             bytes=target.stat().st_size, published=False)
    counts = {}
    escaped = str(tmp).replace("'", "''")
    try:
        con.execute(f"ATTACH '{escaped}' AS haic_publish")
        try:
            for schema in PUBLISHED_SCHEMAS:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS haic_publish.{schema}")
            for schema, table in tables:
                con.execute(f'CREATE TABLE haic_publish.{schema}."{table}" AS SELECT * FROM {db}.{schema}."{table}"')
                counts[f"{schema}.{table}"] = con.execute(
                    f'SELECT count(*) FROM haic_publish.{schema}."{table}"').fetchall()[0][0]
            con.execute("CHECKPOINT haic_publish")
        except BaseException:
            _detach_quietly(con)
            raise
        con.execute("DETACH haic_publish")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        kill_if_asked("analytics copy written")
        os.replace(tmp, target)
    except BaseException:  # e.g. a full disk: the old copy stays, nothing half-written is left
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
        raise
    if record:
        record_build(con, "analytics_copy", fingerprint)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return PublishResult(path=target, tables=counts, bytes=target.stat().st_size)
