"""`ensure_ops` / `ensure_schema` recognise a warehouse already in its current shape by the DDL
fingerprints in its catalogue and run nothing again; anything missing or changed is (re)created."""

from __future__ import annotations

import dataclasses

import duckdb
import pytest

from haic_pipeline.contracts import Column, load_contracts
from haic_pipeline.warehouse import schema
from haic_pipeline.warehouse.schema import ensure_ops, ensure_schema

HAND_MADE = "CREATE OR REPLACE VIEW ops.waivers AS SELECT 'hand made' AS check_name"


@pytest.fixture
def con(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        yield con


def _view_sql(con) -> str:
    return con.execute("SELECT sql FROM duckdb_views() WHERE schema_name = 'ops' AND view_name = 'waivers'").fetchall()[0][0]


def _hand_made_view_keeping_the_fingerprint(con) -> None:
    con.execute(HAND_MADE)
    con.execute(f"COMMENT ON VIEW ops.waivers IS '{schema.OPS_FINGERPRINT}'")


def test_a_new_warehouse_gets_every_table_and_its_fingerprints(con):
    contracts = load_contracts()
    ensure_schema(con, contracts)
    tables = {f"{s}.{t}": c for s, t, c in con.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables()").fetchall()}
    assert {f"ops.{t}" for t in schema.OPS_TABLES} <= set(tables)
    assert len(schema.OPS_TABLES) >= 10
    for domain, contract in contracts.items():
        assert tables[f"raw.{domain}"] == schema.fingerprint(schema.raw_table_ddl(contract))
    assert {s for (s,) in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()} >= set(schema.SCHEMAS)


def test_a_current_warehouse_runs_no_ddl_again(con):
    ensure_schema(con, load_contracts())
    _hand_made_view_keeping_the_fingerprint(con)   # would be replaced by any run of the ops DDL
    ensure_ops(con)
    ensure_schema(con, load_contracts())
    assert "hand made" in _view_sql(con)


def test_a_missing_table_or_a_changed_ddl_is_created_again(con, monkeypatch):
    ensure_schema(con, load_contracts())
    con.execute("DROP TABLE ops.run_log")
    _hand_made_view_keeping_the_fingerprint(con)
    ensure_ops(con)
    assert con.execute("SELECT count(*) FROM ops.run_log").fetchall() == [(0,)]
    assert "hand made" not in _view_sql(con)       # the whole ops DDL ran

    _hand_made_view_keeping_the_fingerprint(con)
    monkeypatch.setattr(schema, "OPS_FINGERPRINT", schema.fingerprint(*schema.OPS_DDL, "-- a changed DDL"))
    ensure_ops(con)
    assert "hand made" not in _view_sql(con)
    assert con.execute("SELECT comment FROM duckdb_views() WHERE view_name = 'waivers'").fetchall() == [
        (schema.OPS_FINGERPRINT,)]


def test_an_older_warehouse_without_fingerprints_is_brought_to_its_shape(con):
    contracts = load_contracts()
    labs = contracts["labs"]
    con.execute("CREATE SCHEMA raw")
    con.execute(schema.raw_table_ddl(labs).replace(f"    {labs.raw_columns[-1]} VARCHAR,\n", ""))  # a column short
    ensure_schema(con, contracts)
    columns = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = 'raw' "
                                          "AND table_name = 'labs'").fetchall()]
    assert labs.raw_columns[-1] in columns


def test_a_column_added_to_a_contract_reaches_its_raw_table(con):
    contracts = load_contracts()
    ensure_schema(con, contracts)
    labs = contracts["labs"]
    wider = dataclasses.replace(labs, columns=(*labs.columns, Column(name="lab_site", type="string")))
    ensure_schema(con, {**contracts, "labs": wider})
    columns = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = 'raw' "
                                          "AND table_name = 'labs'").fetchall()]
    assert "lab_site" in columns
    assert con.execute("SELECT comment FROM duckdb_tables() WHERE schema_name = 'raw' AND table_name = 'labs'"
                       ).fetchall() == [(schema.fingerprint(schema.raw_table_ddl(wider)),)]
