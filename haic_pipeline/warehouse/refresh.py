"""Skip work that cannot change anything: a staging model is rebuilt only when the set of
loaded drops or the model's SQL changed since its last build (ops.refresh_state)."""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb

from haic_pipeline.warehouse.compile import model_path


def loaded_drops_signature(con: duckdb.DuckDBPyConnection) -> str:
    rows = con.execute(
        "SELECT extract_id, manifest_sha256 FROM ops.drops WHERE status = 'loaded' ORDER BY extract_id"
    ).fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def staging_fingerprint(con: duckdb.DuckDBPyConnection, domain: str) -> str:
    """Depends on every loaded drop and on every staging model (orphans and consent depend on
    staging.patients, so a change there must rebuild the others)."""
    h = hashlib.sha256(loaded_drops_signature(con).encode())
    for path in sorted(model_path(domain).parent.glob("*.sql")):
        h.update(path.read_bytes())
    h.update(domain.encode())
    return h.hexdigest()


def unchanged_since_last_build(con: duckdb.DuckDBPyConnection, name: str, fingerprint: str) -> bool:
    schema, table = name.split(".")
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, table]
    ).fetchall()[0][0]
    return bool(exists) and last_fingerprint(con, name) == fingerprint


def last_fingerprint(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    row = con.execute("SELECT fingerprint FROM ops.refresh_state WHERE name = ?", [name]).fetchall()
    return row[0][0] if row else None


def record_build(con: duckdb.DuckDBPyConnection, name: str, fingerprint: str) -> None:
    con.execute(
        "INSERT OR REPLACE INTO ops.refresh_state VALUES (?, ?, ?)",
        [name, fingerprint, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)],
    )
