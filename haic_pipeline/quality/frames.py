"""The frames the suites validate: DuckDB queries read as pandas batches, selected columns only.

- drop frame: the rows the pending drops delivered, from `raw.typed_<domain>` (the staging
  model's own typed view), with `_extract_id` (each row's drop: `iter_labelled` turns it into integer codes and takes it out of
  the frame GX sees). Delivered text never leaves DuckDB: a `<col>__delivered` column is `true`
  where the text is not empty and NULL otherwise. Read in chunks (bounded memory).
- schema frame: the contract's staging columns and types left-joined to the table's real ones.
- staging frames: one hash of the natural key per row of staging.<domain> (uniqueness), in
  parts split on that hash.
- patient frame: one row per drop and patient it delivered (any domain), with per patient the
  latest `earlier` and the earliest `later` date of each cross-table rule, from staging.

Drop and patient frames take the pending extract_ids as a list parameter (one per `?`).
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import numpy as np
import pandas as pd

from haic_pipeline.catalogue import judged_rows
from haic_pipeline.contracts import Contract
from haic_pipeline.quality.suites import RuleSpec, staging_columns

#: rows per pandas batch (2048-row DuckDB vectors): ~2 M rows, a few hundred MB at most (fewer
#: batches: GX spends ~0.2 s building its metric graph per batch, whatever its size).
CHUNK_VECTORS = 1024
#: rows per part of a staging frame at most (see staging_frames)
STAGING_PART_ROWS = 1 << 20
PATIENT_DATES = "_dq_patient_dates"


def _q(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


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


def fit_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Give GX's pandas engine the dtypes it has fast paths for (same values, same results):

    - integers as int64: GX's `column_values.between` is vectorised only for `dtype in [int,
      float]`, and numpy's int32/int16 are neither, so it falls back to a Python call per value
      (ECOG, tumour count: the assessments suite took 8.8 s of GX time on a 100k history, 2.2 s
      as int64);
    - text codes as pandas categoricals: `isin` and `isna` then work on integer codes instead of
      Python strings (2x faster on 10 M lab rows). Values and nulls are unchanged;
    - flags as 0/1 integers: int8 (no NULL) and pandas' nullable Int8 (with NULLs, which stay
      missing): `isin` hashes a bool array (numpy) or a nullable boolean one (pandas) but looks
      an int8 one up in a table, 3x faster (45-50 against 15 ms on 2 M rows; a lab frame has
      seven "flag in {True}" rules). `1 == True` in Python, numpy and pandas, so every
      expectation counts the same rows;
    - one block per dtype (the columns of one dtype in one 2-D array): GX's pandas engine drops
      a column's NULL rows from the whole frame (`df[df[col].notnull()]`) for each metric of a
      rule on a column with NULLs, one copy per block; column by column that was half a lab
      frame's validation time.
    """
    for col in df.columns:
        dtype = df[col].dtype
        if dtype == bool:
            df[col] = df[col].astype("int8")
        elif isinstance(dtype, pd.BooleanDtype):
            df[col] = df[col].astype("Int8")
        elif pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_extension_array_dtype(dtype) \
                and dtype != "int64":
            df[col] = df[col].astype("int64")
        elif dtype == object and pd.api.types.infer_dtype(df[col], skipna=True) == "string":
            df[col] = df[col].astype("category")
    return pd.DataFrame({col: df[col] for col in df.columns})   # the constructor consolidates


def dictionary_encoded(con: duckdb.DuckDBPyConnection, sql: str, params: list,
                       known: dict[str, list[str]] | None = None) -> str:
    """The query with each text column cast to an ENUM of the values it holds, so that DuckDB
    hands pandas categoricals (integer codes) instead of one Python string per row: the same
    values and NULLs, as fit_dtypes would make them, but 10 M lab rows are fetched in 3 s instead
    of 8 s. The values are read first with one DISTINCT query (DuckDB computes only the text
    columns for it), except for the columns whose values the caller knows (`known`, a superset:
    e.g. `_extract_id` -> the extract_ids the query selects)."""
    known = known or {}
    described = con.execute(f"DESCRIBE {sql}", params).fetchall()
    text = [name for name, kind, *_ in described if kind == "VARCHAR"]
    if not text:
        return sql
    unknown = [c for c in text if c not in known]
    lists = con.execute(f"SELECT {', '.join(f'list(DISTINCT {_ident(c)})' for c in unknown)} FROM ({sql}) AS f",
                        params).fetchall()[0] if unknown else []
    values = dict(zip(unknown, lists)) | {c: known[c] for c in text if c in known}
    casts = []
    for c in text:
        vs = sorted({v for v in values[c] or () if v is not None})  # list() of no rows is NULL
        if vs:
            casts.append(f"{_ident(c)}::ENUM({', '.join(_q(v) for v in vs)}) AS {_ident(c)}")
    if not casts:
        return sql
    return f"SELECT * REPLACE ({', '.join(casts)}) FROM ({sql}) AS f"


def typed_text_values(con: duckdb.DuckDBPyConnection, c: Contract, rules: list[RuleSpec],
                      extract_ids: list[str]) -> dict[str, list[str]]:
    """For dictionary_encoded's `known`: a superset of the values of each text column of the
    drop frame that is a typed code or text column as such (`t.<col>`), read from the raw
    column's few distinct values through the typed view's own expression (compile.typed_expr).
    Else dictionary_encoded's DISTINCT pass computes the whole typed view (joins included) once
    more: 1.2 s for the test codes of 10 M lab rows. A value missing from a superset would make
    the ENUM cast fail loudly, never pass silently."""
    from haic_pipeline.warehouse.compile import typed_expr  # noqa: PLC0415

    out = {}
    for name, expr in frame_columns(rules).items():
        col = next((x for x in c.columns if x.name == name), None)
        if expr != f"t.{name}" or col is None or col.identifier or col.type not in ("code", "string"):
            continue
        typed = typed_expr(col)[0].removesuffix(f" AS {name}")
        out[name] = con.execute(
            f"SELECT list(DISTINCT {typed}) FROM (SELECT DISTINCT {_ident(name)} AS {_ident(name)} "
            f"FROM raw.{c.domain} WHERE _extract_id IN (SELECT unnest(?::VARCHAR[]))) AS r",
            [extract_ids]).fetchall()[0][0] or []
    return out


def iter_chunks(con: duckdb.DuckDBPyConnection, sql: str, params: list,
                known: dict[str, list[str]] | None = None) -> Iterator[pd.DataFrame]:
    """The query's result as pandas frames of ~2 M rows (text dictionary-encoded, see
    dictionary_encoded and fit_dtypes), always fetched to the end (a partially fetched DuckDB
    result would block the connection). At least one (maybe empty) frame."""
    result = con.execute(dictionary_encoded(con, sql, params, known), params)
    first = True
    while True:
        df = result.fetch_df_chunk(CHUNK_VECTORS)
        if len(df) == 0:
            if first:
                yield df
            return
        first = False
        yield fit_dtypes(df)


def iter_labelled(con: duckdb.DuckDBPyConnection, sql: str, extract_ids: list[str], n_params: int = 1,
                  known: dict[str, list[str]] | None = None) -> Iterator[tuple[pd.DataFrame, list[str], np.ndarray]]:
    """iter_chunks of a query over `extract_ids` (its `n_params` parameters: that list) with an
    `_extract_id` column: (frame without it, the chunk's extract_ids, each row's index into them
    as int8/16 codes). Empty chunks are skipped. `known`: supersets of text columns' values."""
    for df in iter_chunks(con, sql, [extract_ids] * n_params, {**(known or {}), "_extract_id": extract_ids}):
        if len(df) == 0:
            continue
        drop = df.pop("_extract_id").astype("category")
        yield df, [str(x) for x in drop.cat.categories], drop.cat.codes.to_numpy()


def schema_frame(con: duckdb.DuckDBPyConnection, c: Contract) -> pd.DataFrame:
    rows = ", ".join(f"({_q(n)}, {_q(t)})" for n, t in staging_columns(c))
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


def staging_frames(con: duckdb.DuckDBPyConnection, c: Contract) -> Iterator[pd.DataFrame]:
    """The staging frame (8 bytes a row) in parts of ~1 M rows or fewer (a power of two of them),
    split on the key's hash (its low bits): rows with the same natural key always fall in the
    same part, so uniqueness judged part by part is uniqueness of the whole table (a duplicate
    10 M rows apart is still seen), and the parts can be validated in parallel. Parts this small are also faster:
    pandas' `duplicated` (GX's uniqueness metric) is a hash table that no longer fits in the
    CPU's cache beyond ~0.5 M rows (190 ns a row at 2 M rows, 85 at 0.5 M; the 10 M lab keys
    took 3.1 s of GX time in five parts, 1.3 s in twenty). One read of the table; the split is a
    radix sort on the part number in numpy."""
    hashes = np.asarray(con.execute(staging_frame_sql(c)).fetchnumpy()["natural_key_hash"], dtype=np.uint64)
    parts = 1
    while parts * STAGING_PART_ROWS < len(hashes):
        parts *= 2
    if parts == 1:
        yield pd.DataFrame({"natural_key_hash": hashes.view(np.int64)})   # same bits; int64: GX's fast path
        return
    part = (hashes & np.uint64(parts - 1)).astype(np.uint16)
    ordered = hashes[np.argsort(part, kind="stable")].view(np.int64)
    for piece in np.split(ordered, np.cumsum(np.bincount(part, minlength=parts))[:-1]):
        yield pd.DataFrame({"natural_key_hash": piece})


def pending_rows(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract], extract_ids: list[str]) -> int:
    """Rows the drops delivered (ops.load_log), every domain of the contracts."""
    if not extract_ids:
        return 0
    files = [f"{d}.csv" for d in contracts]
    return int(con.execute(
        "SELECT coalesce(sum(rows), 0) FROM ops.load_log WHERE status = 'loaded' "
        "AND list_contains(?, extract_id) AND list_contains(?, file)", [extract_ids, files]).fetchall()[0][0])


def table_exists(con, schema: str, table: str) -> bool:
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table]).fetchall()[0][0] > 0


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
            f"WHERE regimen = {_q(index_regimen or '')} GROUP BY 1)"]
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
                SELECT 'cross_table', v._extract_id, v._row_number, d.patient_key, {_q(r.name)}, 'warn',
                       {_q(r.name.replace('_', ' ') + ': ')} || d.{e}::VARCHAR || ' is after ' || d.{lt}::VARCHAR,
                       to_json({{'patient_key': d.patient_key, 'earlier': d.{e}, 'later': d.{lt}}})
                FROM {PATIENT_DATES} AS d JOIN staging.vital_status AS v USING (patient_key)
                WHERE d.{e} > d.{lt}""")
    return con.execute("SELECT count(*) FROM ops.row_flags WHERE domain = 'cross_table'").fetchall()[0][0]
