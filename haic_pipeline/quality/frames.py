"""The frames the suites validate: the DuckDB queries, selected columns only, as pandas frames.

- drop frame: the rows the pending drops delivered, from `raw.typed_<domain>` (the staging
  model's own typed view), with `_extract_id` (each row's drop). Delivered text never leaves
  DuckDB: a `<col>__delivered` column is `true` where the text is not empty and NULL otherwise.
- drop-patient frame: one row per drop and patient it delivered rows of, in one domain
  (patient-level rules: orphans).
- Drop and drop-patient frames hold the rows the staging SQL judges: outside patients, a patient
  who withdrew consent is neither judged nor staged (catalogue.judged_rows).
- schema frame: the contract's staging columns and types left-joined to the table's real ones.
- staging frame: one hash of the natural key per row of staging.<domain> (uniqueness).
- patient frame: one row per drop and patient it delivered (any domain), with per patient the
  latest `earlier` and the earliest `later` date of each cross-table rule, from staging.

Drop and patient frames take the extract_ids as a list parameter (one per `?`). `read_frame`
reads a query as it is; `quality/speed/frames.py` reads the same queries faster (chunks, ENUM
categoricals, several drops per frame).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from haic_pipeline.catalogue import judged_rows, quote
from haic_pipeline.contracts import Contract
from haic_pipeline.quality.suites import RuleSpec, staging_columns

PATIENT_DATES = "_dq_patient_dates"


def read_frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    """The query's result as one pandas frame, as DuckDB types it."""
    return con.execute(sql, params or []).df()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def frame_columns(rules: list[RuleSpec]) -> dict[str, str]:
    """The drop frame's columns for `rules` (column -> SQL), in rule order. A column two rules
    define differently is an error (the rules of several checks share one frame)."""
    cols: dict[str, str] = {}
    for r in rules:
        for col, expr in r.sql.items():
            if cols.setdefault(col, expr) != expr:
                raise ValueError(f"frame column {col!r} defined twice: {cols[col]!r} and {expr!r} ({r.check}.{r.name})")
    return cols


def drop_frame_sql(c: Contract, rules: list[RuleSpec]) -> str:
    """The pending drops' rows the staging SQL judges (catalogue.judged_rows), with the rules'
    frame columns."""
    cols = frame_columns(rules)
    select = ",\n    ".join(f"{expr} AS {_ident(col)}" for col, expr in cols.items())
    judged = judged_rows(c, "t.")
    return (f"SELECT\n    t._extract_id AS _extract_id,\n    {select}\nFROM raw.typed_{c.domain} AS t\n"
            "WHERE t._extract_id IN (SELECT unnest(?::VARCHAR[]))" + (f" AND {judged}" if judged else ""))


def drop_patient_frame_sql(c: Contract, rules: list[RuleSpec]) -> str:
    """One row per pending drop and patient it delivered rows of in this domain (patient-level
    rules count patients: one patient's 24 orphan lab rows are one offence), the patients the
    staging SQL judges only."""
    cols = frame_columns(rules)
    select = ",\n    ".join(f"{expr} AS {_ident(col)}" for col, expr in cols.items())
    judged = judged_rows(c)
    return (f"SELECT\n    t._extract_id AS _extract_id,\n    {select}\n"
            f"FROM (SELECT DISTINCT _extract_id, patient_key FROM raw.{c.domain}\n"
            "      WHERE patient_key IS NOT NULL AND _extract_id IN (SELECT unnest(?::VARCHAR[]))"
            + (f" AND {judged}" if judged else "") + ") AS t")


def schema_frame(con: duckdb.DuckDBPyConnection, c: Contract) -> pd.DataFrame:
    rows = ", ".join(f"({quote(n)}, {quote(t)})" for n, t in staging_columns(c))
    return con.execute(
        f"""SELECT e.column_name, e.expected_type, c.data_type AS actual_type
            FROM (VALUES {rows}) AS e(column_name, expected_type)
            LEFT JOIN information_schema.columns AS c
              ON c.table_schema = 'staging' AND c.table_name = ? AND c.column_name = e.column_name
            ORDER BY e.column_name""",
        [c.domain],
    ).df()


def staging_frame_sql(c: Contract) -> str:
    key = ", ".join(_ident(k) for k in c.staging_key)
    return f"SELECT hash({key}) AS natural_key_hash FROM staging.{c.domain}"


def build_patient_dates(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract],
                        rules: list[RuleSpec]) -> None:
    """TEMP table: per patient of staging.patients, each cross-table rule's latest `earlier` and
    earliest `later` date (computed once per check run, then joined per drop)."""
    per_domain: dict[str, dict[str, str]] = {}   # domain -> {alias: aggregate expr}
    sides: dict[str, tuple[list[str], list[str]]] = {}
    index_regimen = None

    def ref(name: str, agg: str) -> str:
        if name == "index_date":
            return "idx.index_date"
        domain, _, column = name.partition(".")
        alias = f"{agg}_{column}"
        per_domain.setdefault(domain, {})[alias] = f"{agg}({_ident(column)}::DATE) AS {_ident(alias)}"
        return f"a_{domain}.{_ident(alias)}"

    for r in rules:
        index_regimen = r.source.get("index_regimen") or index_regimen
        earlier = [ref(x, "max") for x in r.source["earlier"]]
        later = [ref(x, "min") for x in r.source["later"]]
        sides[r.name] = (earlier, later)
    ctes = [f"idx AS (SELECT patient_key, min(start_date)::DATE AS index_date FROM staging.treatments "
            f"WHERE regimen = {quote(index_regimen or '')} GROUP BY 1)"]
    joins = ["LEFT JOIN idx USING (patient_key)"]
    for domain, aggs in per_domain.items():
        ctes.append(f"a_{domain} AS (SELECT patient_key, {', '.join(aggs.values())} "
                    f"FROM staging.{domain} GROUP BY 1)")
        joins.append(f"LEFT JOIN a_{domain} USING (patient_key)")
    cols = []
    for name, (earlier, later) in sides.items():
        e = earlier[0] if len(earlier) == 1 else f"greatest({', '.join(earlier)})"
        lt = later[0] if len(later) == 1 else f"least({', '.join(later)})"
        cols += [f"{e} AS {_ident(name + '__earlier')}", f"{lt} AS {_ident(name + '__later')}"]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {PATIENT_DATES} AS\nWITH {', '.join(ctes)}\n"
        f"SELECT p.patient_key, {', '.join(cols)}\nFROM (SELECT DISTINCT patient_key FROM staging.patients) AS p\n"
        + "\n".join(joins)
    )


def patient_frame_sql(contracts: dict[str, Contract], rules: list[RuleSpec]) -> tuple[str, int]:
    """SQL of the patient frame of the pending drops (parameters: their extract_ids, once per
    domain): one row per drop and patient it delivered."""
    cols = ", ".join(f"d.{_ident(c)}" for r in rules for c in (r.kwargs["column_A"], r.kwargs["column_B"]))
    delivered = " UNION ".join(
        f"SELECT _extract_id, patient_key FROM raw.{d} WHERE _extract_id IN (SELECT unnest(?::VARCHAR[]))"
        for d, c in contracts.items() if c.has_patient)
    n = sum(1 for c in contracts.values() if c.has_patient)
    return (f"SELECT pts._extract_id, {cols} FROM ({delivered}) AS pts JOIN {PATIENT_DATES} AS d USING (patient_key)", n)


def flag_cross_table(con: duckdb.DuckDBPyConnection, rules: list[RuleSpec]) -> int:
    """List in ops.row_flags (domain 'cross_table', warn) every patient of staging who breaks a
    cross-table rule now, pointing at the patient's staging.vital_status row (its drop and data
    row): the per-row counterpart of the check's per-drop shares. Rewritten whole each time the
    rules are judged (needs the TEMP table of build_patient_dates)."""
    con.execute("DELETE FROM ops.row_flags WHERE domain = 'cross_table'")
    for r in rules:
        e, lt = _ident(r.name + "__earlier"), _ident(r.name + "__later")
        con.execute(
            f"""INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity,
                                           reason, row_json)
                SELECT 'cross_table', v._extract_id, v._row_number, d.patient_key, {quote(r.name)}, 'warn',
                       {quote(r.name.replace('_', ' ') + ': ')} || d.{e}::VARCHAR || ' is after ' || d.{lt}::VARCHAR,
                       to_json({{'patient_key': d.patient_key, 'earlier': d.{e}, 'later': d.{lt}}})
                FROM {PATIENT_DATES} AS d JOIN staging.vital_status AS v USING (patient_key)
                WHERE d.{e} > d.{lt}""")
    return con.execute("SELECT count(*) FROM ops.row_flags WHERE domain = 'cross_table'").fetchall()[0][0]
