"""DDL of the pipeline's own schemas (`raw`, `ops`) and creation of the analysts' schemas.

raw.<domain>  one table per extract domain, every delivered value as text (a raw landing never
              fails on a bad value: the staging rules judge it), identifiers already handled
              (patient_key instead of patient_id, no patient_name), plus lineage columns
              `_extract_id`, `_row_number` (1-based data row in the file), `_loaded_at`.
ops.*         every table of the pipeline's own record, defined here and nowhere else: drops,
              load_log, quarantine, row_flags, refresh_state, interventions (+ view waivers),
              dq_results, run_log, software, monitoring_inputs. `ensure_ops` creates what is missing (and brings an
              older table to its current shape); every writer of `ops` calls it.

Each DDL carries its fingerprint in the catalogue (a comment: on `ops.waivers`, the view `ensure_ops`
creates last, the hash of all the `ops` DDL; on each raw table, the hash of its DDL), so a warehouse
already in its current shape is recognised by one catalogue read and no statement is run again (a
refresh calls `ensure_*` in most of its steps). A changed DDL changes its fingerprint: the next
call runs it.
"""

from __future__ import annotations

import hashlib
import re

import duckdb

from haic_pipeline.contracts import Contract

SCHEMAS = ("raw", "ops", "staging", "analysis")

# the columns of ops.quarantine (a row an error rule kept out of staging) and of ops.row_flags (a
# row a warn rule marked): the same record of an offending row
_OFFENDING_ROW = """(
        domain      VARCHAR NOT NULL,
        extract_id  VARCHAR NOT NULL,
        row_number  BIGINT NOT NULL,
        patient_key VARCHAR,
        check_name  VARCHAR NOT NULL,
        severity    VARCHAR NOT NULL,
        reason      VARCHAR NOT NULL,
        row_json    JSON
    )"""

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
    "\n    CREATE TABLE IF NOT EXISTS ops.quarantine " + _OFFENDING_ROW,
    "\n    CREATE TABLE IF NOT EXISTS ops.row_flags " + _OFFENDING_ROW,
    """
    CREATE TABLE IF NOT EXISTS ops.refresh_state (
        name        VARCHAR PRIMARY KEY,
        fingerprint VARCHAR NOT NULL,
        updated_at  TIMESTAMP NOT NULL
    )""",
    # the data-quality record and cache (haic_pipeline/quality/store.py)
    """
    CREATE TABLE IF NOT EXISTS ops.dq_results (
        refresh           VARCHAR NOT NULL,   -- Dagster run id (or the caller's refresh id)
        checked_at        TIMESTAMP NOT NULL,
        check_name        VARCHAR NOT NULL,   -- the asset check, e.g. labs_error_rules
        asset             VARCHAR NOT NULL,   -- staging/labs
        rule              VARCHAR NOT NULL,   -- the contract rule / generated check name
        expectation       VARCHAR,            -- GX expectation class
        severity          VARCHAR NOT NULL,   -- error / warn
        scope             VARCHAR NOT NULL,   -- drop / schema / staging / patient / drop_sequence / drop_changes
        extract_id        VARCHAR,            -- the drop validated (NULL for staging-wide rules)
        passed            BOOLEAN NOT NULL,
        evaluated         BIGINT,
        unexpected        BIGINT,
        unexpected_share  DOUBLE,
        max_share         DOUBLE,
        gx_success        BOOLEAN,            -- GX's own success on the drop's frame(s); NULL when the drop
                                              -- shared a frame with others (counts attributed, passed = GX's formula)
        exception         VARCHAR,            -- the expectation raised: not measured
        suite_fingerprint VARCHAR NOT NULL,
        data_fingerprint  VARCHAR NOT NULL,   -- manifest sha256 of the drop, or the staging state
        details           JSON
    )""",
    # failed runs (haic_pipeline/warehouse/ops_log.py)
    """
    CREATE TABLE IF NOT EXISTS ops.run_log (
        run_id    VARCHAR NOT NULL,
        job       VARCHAR NOT NULL,
        partition VARCHAR,
        step      VARCHAR,
        status    VARCHAR NOT NULL,
        message   VARCHAR,
        logged_at TIMESTAMP NOT NULL
    )""",
    # the software of every refresh (haic_pipeline/provenance.py, analysis/build.build_software)
    """
    CREATE TABLE IF NOT EXISTS ops.software (
        refresh     VARCHAR,      -- the Dagster run id (or the caller's refresh id)
        recorded_at TIMESTAMP,
        extract_id  VARCHAR,
        data_cutoff DATE,
        component   VARCHAR,      -- python, dagster, duckdb, ..., haic_pipeline (git commit)
        version     VARCHAR
    )""",
    # what each loaded drop's state holds for the monitoring of study_spec §6, derived once per
    # drop sequence (haic_pipeline/analysis/monitoring.py)
    """
    CREATE TABLE IF NOT EXISTS ops.monitoring_inputs (
        extract_id       VARCHAR NOT NULL,
        drops_key        VARCHAR NOT NULL,   -- the loaded drops up to this one (a change re-derives it)
        data_cutoff      DATE,
        endpoint         VARCHAR NOT NULL,
        "group"          VARCHAR NOT NULL,
        n                INTEGER,
        events           INTEGER,
        follow_up_months DOUBLE,
        without_event    INTEGER,
        accrued_12m      INTEGER,
        z                DOUBLE,
        log_hr           DOUBLE,
        se_log_hr        DOUBLE,
        note             VARCHAR,
        derived_from     VARCHAR,
        PRIMARY KEY (extract_id, endpoint, "group")
    )""",
    # retract / restore / waive / revoke (haic_pipeline/warehouse/interventions.py)
    """
    CREATE TABLE IF NOT EXISTS ops.interventions (
        action      VARCHAR NOT NULL,   -- retract / restore (a drop), waive / revoke (a check for a drop)
        extract_id  VARCHAR NOT NULL,
        check_name  VARCHAR,            -- waive / revoke only
        reason      VARCHAR NOT NULL,   -- the engineer's words only
        actor       VARCHAR NOT NULL,   -- the operating-system user who ran the command
        recorded_at TIMESTAMP NOT NULL, -- UTC
        rules       VARCHAR[]           -- waive only: the check's rules the drop failed when it was waived
    )""",
    # a warehouse whose table predates the column: add it, and move the rules a waiver's reason
    # held as "<reason> [rules: a, b]" into it (the reason keeps the engineer's words)
    "ALTER TABLE ops.interventions ADD COLUMN IF NOT EXISTS rules VARCHAR[]",
    r"""
    UPDATE ops.interventions
    SET rules = string_split(regexp_extract(reason, '\[rules: ([^\]]*)\]$', 1), ', '),
        reason = regexp_replace(reason, ' \[rules: [^\]]*\]$', '')
    WHERE action = 'waive' AND rules IS NULL AND regexp_matches(reason, ' \[rules: [^\]]*\]$')""",
    """
    CREATE OR REPLACE VIEW ops.waivers AS   -- the waivers that stand now
    SELECT check_name, extract_id, reason, rules, actor AS waived_by, recorded_at AS waived_at
    FROM (SELECT *, row_number() OVER (PARTITION BY check_name, extract_id ORDER BY recorded_at DESC) AS k
          FROM ops.interventions WHERE action IN ('waive', 'revoke'))
    WHERE k = 1 AND action = 'waive'""",
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


def fingerprint(*ddl: str) -> str:
    return "haic-ddl " + hashlib.sha256("\n".join(ddl).encode()).hexdigest()[:16]


OPS_FINGERPRINT = fingerprint(*OPS_DDL)
OPS_TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS ops\.(\w+)", "\n".join(OPS_DDL)))


def _comments(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """'<schema>.<table or view>' -> its comment, for the raw and ops schemas of the connection's
    database ('<schema>' -> None for each schema that exists)."""
    return dict(con.execute(
        "SELECT schema_name, NULL FROM duckdb_schemas() WHERE database_name = current_database() "
        "UNION ALL SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name IN ('raw', 'ops') "
        "UNION ALL SELECT schema_name || '.' || view_name, comment FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = 'ops'").fetchall())


def _ops_current(comments: dict[str, str | None]) -> bool:
    return comments.get("ops.waivers") == OPS_FINGERPRINT and all(f"ops.{t}" in comments for t in OPS_TABLES)


def ensure_ops(con: duckdb.DuckDBPyConnection, comments: dict[str, str | None] | None = None) -> None:
    """Create the `ops` schema and every table of it that does not exist yet (idempotent);
    `comments`: the catalogue's, if the caller has just read it (`_comments`)."""
    if not _ops_current(_comments(con) if comments is None else comments):
        _create_ops(con)


def _create_ops(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    for ddl in OPS_DDL:
        con.execute(ddl)
    con.execute(f"COMMENT ON VIEW ops.waivers IS '{OPS_FINGERPRINT}'")


def ensure_schema(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> None:
    """Create every schema and pipeline table that does not exist yet (idempotent).

    A column added to a contract is added to its raw table (older drops hold NULL there).
    """
    comments = _comments(con)
    for schema in SCHEMAS:
        if schema not in comments:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    ensure_ops(con, comments)
    for contract in contracts.values():
        ddl = raw_table_ddl(contract)
        mark = fingerprint(ddl)
        if comments.get(f"raw.{contract.domain}") != mark:
            _create_raw(con, contract, ddl, mark)


def _create_raw(con: duckdb.DuckDBPyConnection, contract: Contract, ddl: str, mark: str) -> None:
    con.execute(ddl)
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
    con.execute(f"COMMENT ON TABLE raw.{contract.domain} IS '{mark}'")
