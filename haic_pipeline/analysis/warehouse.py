"""The ``analysis.*`` tables of study_spec §4: column names and types, and how they are written.

Every table has the spec's columns first, then (where noted) explanatory columns
(``note``, ``detail``), then the provenance columns ``data_cutoff`` and ``extract_id``: the
newest loaded drop the result was computed from (every loaded drop up to it contributes;
``ops.drops`` lists them). ``analysis.refresh_history`` already has both in its key.

Writes use ``CREATE OR REPLACE TABLE`` with explicit types (an empty result still has the
right schema) and all tables of one build in ONE transaction: a failure leaves the previous
tables intact. NaN is never stored: missing numbers are NULL.
"""

from __future__ import annotations

from typing import Mapping

import duckdb
import numpy as np
import pandas as pd

from haic_pipeline.warehouse.transaction import transaction

from .data import Provenance

PROVENANCE = [("data_cutoff", "DATE"), ("extract_id", "VARCHAR")]

TABLES: dict[str, list[tuple[str, str]]] = {
    "baseline_characteristics": [
        ("variable", "VARCHAR"), ("level", "VARCHAR"), ("first_line", "VARCHAR"),
        ("post_ate_beva", "VARCHAR"), ("overall", "VARCHAR"), ("test", "VARCHAR"),
        ("p_value", "DOUBLE"), *PROVENANCE],
    "km_summary": [
        ("endpoint", "VARCHAR"), ("group", "VARCHAR"), ("n", "INTEGER"), ("events", "INTEGER"),
        ("median_months", "DOUBLE"), ("median_lower", "DOUBLE"), ("median_upper", "DOUBLE"),
        ("rate_12m", "DOUBLE"), ("rate_12m_lower", "DOUBLE"), ("rate_12m_upper", "DOUBLE"),
        *PROVENANCE],
    "km_curves": [
        ("endpoint", "VARCHAR"), ("group", "VARCHAR"), ("time_months", "DOUBLE"),
        ("n_at_risk", "INTEGER"), ("n_events", "INTEGER"), ("n_censored", "INTEGER"),
        ("survival", "DOUBLE"), ("lower", "DOUBLE"), ("upper", "DOUBLE"), *PROVENANCE],
    "survival_tests": [
        ("endpoint", "VARCHAR"), ("test", "VARCHAR"), ("statistic", "DOUBLE"), ("df", "INTEGER"),
        ("p_value", "DOUBLE"), ("note", "VARCHAR"), *PROVENANCE],
    "follow_up": [
        ("group", "VARCHAR"), ("median_months", "DOUBLE"), ("lower", "DOUBLE"), ("upper", "DOUBLE"),
        *PROVENANCE],
    "response_summary": [
        ("group", "VARCHAR"), ("n", "INTEGER"), ("cr", "INTEGER"), ("pr", "INTEGER"),
        ("sd", "INTEGER"), ("pd", "INTEGER"), ("ne", "INTEGER"), ("orr", "DOUBLE"), ("dcr", "DOUBLE"),
        *PROVENANCE],
    "response_tests": [
        ("measure", "VARCHAR"), ("test", "VARCHAR"), ("statistic", "DOUBLE"), ("p_value", "DOUBLE"),
        ("note", "VARCHAR"), *PROVENANCE],
    "cox_models": [
        ("endpoint", "VARCHAR"), ("model", "VARCHAR"), ("term", "VARCHAR"), ("n", "INTEGER"),
        ("events", "INTEGER"), ("hr", "DOUBLE"), ("hr_lower", "DOUBLE"), ("hr_upper", "DOUBLE"),
        ("p_value", "DOUBLE"), *PROVENANCE],
    "cox_excluded": [
        ("endpoint", "VARCHAR"), ("term", "VARCHAR"), ("reason", "VARCHAR"), ("detail", "VARCHAR"),
        *PROVENANCE],
    "refresh_history": [
        ("extract_id", "VARCHAR"), ("data_cutoff", "DATE"), ("endpoint", "VARCHAR"),
        ("group", "VARCHAR"), ("n", "INTEGER"), ("events", "INTEGER"), ("median_months", "DOUBLE"),
        ("rate_12m", "DOUBLE")],
}


def _ddl(table: str) -> str:
    cols = ", ".join(f'"{c}" {t}' for c, t in TABLES[table])
    return f"analysis.{table} ({cols})"


def _prepared(table: str, frame: pd.DataFrame, prov: Provenance | None) -> pd.DataFrame:
    """The frame with the table's columns in order, provenance filled, NaN -> None."""
    df = frame.copy()
    names = [c for c, _ in TABLES[table]]
    if prov is not None and table != "refresh_history":
        df["data_cutoff"] = prov.data_cutoff
        df["extract_id"] = prov.extract_id
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise KeyError(f"analysis.{table}: columns missing from the result: {missing}")
    df = df[names].astype(object)
    return df.where(pd.notna(df), None)


def _insert(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame) -> None:
    if not len(df):
        return
    cols = TABLES[table]
    select = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in cols)
    con.register("_analysis_rows", df)
    try:
        con.execute(f"INSERT INTO analysis.{table} SELECT {select} FROM _analysis_rows")
    finally:
        con.unregister("_analysis_rows")


def write_tables(con: duckdb.DuckDBPyConnection, results: Mapping[str, pd.DataFrame],
                 prov: Provenance) -> dict[str, int]:
    """CREATE OR REPLACE each ``analysis.<table>`` of ``results`` in one transaction.
    Returns the row count per table."""
    prepared = {t: _prepared(t, f, prov) for t, f in results.items()}
    con.execute("CREATE SCHEMA IF NOT EXISTS analysis")
    with transaction(con):
        for table, df in prepared.items():
            con.execute(f"CREATE OR REPLACE TABLE {_ddl(table)}")
            _insert(con, table, df)
    return {t: len(df) for t, df in prepared.items()}


def append_history(con: duckdb.DuckDBPyConnection, snapshot: pd.DataFrame, prov: Provenance) -> int:
    """Append ``snapshot`` to analysis.refresh_history under ``prov.extract_id`` unless that
    extract_id is already there (or there is no drop). Returns the rows added (0 or more)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS analysis")
    con.execute(f"CREATE TABLE IF NOT EXISTS {_ddl('refresh_history')}")
    if not prov.extract_id:
        return 0
    df = snapshot.copy()
    df["extract_id"] = prov.extract_id
    df["data_cutoff"] = prov.data_cutoff
    df = _prepared("refresh_history", df, None)
    with transaction(con):
        present = con.execute("SELECT count(*) FROM analysis.refresh_history WHERE extract_id = ?",
                              [prov.extract_id]).fetchall()[0][0]
        if present:
            return 0
        _insert(con, "refresh_history", df)
    return len(df)


def read_table(con: duckdb.DuckDBPyConnection, table: str) -> pd.DataFrame:
    """analysis.<table> as a DataFrame, NULL as None/NaN (empty frame if it does not exist)."""
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'analysis' "
                         "AND table_name = ?", [table]).fetchall()[0][0]
    if not exists:
        return pd.DataFrame(columns=[c for c, _ in TABLES.get(table, [])])
    return con.execute(f"SELECT * FROM analysis.{table}").df()


def finite_or_none(x):
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None
