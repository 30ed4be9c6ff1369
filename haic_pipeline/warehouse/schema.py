"""DDL of the pipeline's own schemas (`raw`, `ops`) and creation of the analysts' schemas.

raw.<domain>  one table per extract domain, every delivered value as text (a raw landing never
              fails on a bad value: the staging rules judge it), identifiers already handled
              (patient_key instead of patient_id, no patient_name), plus lineage columns
              `_extract_id`, `_row_number` (1-based data row in the file), `_loaded_at`.
ops.*         drops, load_log, quarantine, row_flags, refresh_state, interventions (+ view waivers).
"""

from __future__ import annotations

import duckdb

from haic_pipeline.contracts import Contract
from haic_pipeline.warehouse.interventions import INTERVENTIONS_DDL

SCHEMAS = ("raw", "ops", "staging", "analysis")

OPS_DDL = [
    """
    CREATE TABLE IF NOT EXISTS ops.drops (
        extract_id      VARCHAR NOT NULL,
        manifest_sha256 VARCHAR NOT NULL,
        status          VARCHAR NOT NULL,      -- loaded / rejected / retracted (haic drop retract)
        reason          VARCHAR,
        extracted_at    TIMESTAMP,
        data_cutoff     DATE,
        source_system   VARCHAR,
        encoding        VARCHAR,
        attempted_at    TIMESTAMP NOT NULL,
        PRIMARY KEY (extract_id, manifest_sha256)
    )""",
    """
    CREATE TABLE IF NOT EXISTS ops.load_log (
        extract_id VARCHAR NOT NULL,
        file       VARCHAR NOT NULL,
        rows       BIGINT,
        sha256     VARCHAR,
        status     VARCHAR NOT NULL,           -- loaded / rejected / duplicate / retracted / restored
        reason     VARCHAR,
        loaded_at  TIMESTAMP NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS ops.quarantine (
        domain      VARCHAR NOT NULL,
        extract_id  VARCHAR NOT NULL,
        row_number  BIGINT NOT NULL,
        patient_key VARCHAR,
        check_name  VARCHAR NOT NULL,
        severity    VARCHAR NOT NULL,
        reason      VARCHAR NOT NULL,
        row_json    JSON
    )""",
    """
    CREATE TABLE IF NOT EXISTS ops.row_flags (
        domain      VARCHAR NOT NULL,
        extract_id  VARCHAR NOT NULL,
        row_number  BIGINT NOT NULL,
        patient_key VARCHAR,
        check_name  VARCHAR NOT NULL,
        severity    VARCHAR NOT NULL,
        reason      VARCHAR NOT NULL,
        row_json    JSON
    )""",
    """
    CREATE TABLE IF NOT EXISTS ops.refresh_state (
        name        VARCHAR PRIMARY KEY,
        fingerprint VARCHAR NOT NULL,
        updated_at  TIMESTAMP NOT NULL
    )""",
]


def raw_table_ddl(contract: Contract) -> str:
    cols = []
    for name in contract.raw_columns:
        ctype = "BOOLEAN" if name == "_patient_id_valid" else "VARCHAR"
        cols.append(f"    {name} {ctype}")
    cols += [
        "    _extract_id VARCHAR NOT NULL",
        "    _row_number BIGINT NOT NULL",
        "    _loaded_at TIMESTAMP NOT NULL",
    ]
    return f"CREATE TABLE IF NOT EXISTS raw.{contract.domain} (\n" + ",\n".join(cols) + "\n)"


def ensure_schema(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> None:
    """Create every schema and pipeline table that does not exist yet (idempotent).

    A column added to a contract is added to its raw table (older drops hold NULL there).
    """
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for ddl in OPS_DDL + INTERVENTIONS_DDL:
        con.execute(ddl)
    for contract in contracts.values():
        con.execute(raw_table_ddl(contract))
        existing = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'raw' AND table_name = ?",
                [contract.domain],
            ).fetchall()
        }
        for name in contract.raw_columns:
            if name not in existing:
                ctype = "BOOLEAN" if name == "_patient_id_valid" else "VARCHAR"
                con.execute(f"ALTER TABLE raw.{contract.domain} ADD COLUMN {name} {ctype}")
