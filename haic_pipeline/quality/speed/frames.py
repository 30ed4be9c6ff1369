"""Reading the gate's frames fast: the same queries as `quality/frames.py`, read as ~2 M-row
pandas chunks with several drops per chunk, text as ENUM categoricals and the dtypes GX's pandas
engine has fast paths for; the staging frame in parts split on the key's hash. The values, NULLs
and counts are those of `frames.read_frame` (a test compares the verdicts of both paths).
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import numpy as np
import pandas as pd

from haic_pipeline.catalogue import quote
from haic_pipeline.contracts import Contract
from haic_pipeline.quality.frames import _ident, frame_columns, staging_frame_sql
from haic_pipeline.quality.suites import RuleSpec

#: rows per pandas batch (2048-row DuckDB vectors): ~2 M rows, a few hundred MB at most (GX builds
#: its metric graph once per batch, whatever its size: fewer, larger batches)
CHUNK_VECTORS = 1024
#: rows per part of a staging frame at most (see staging_frames)
STAGING_PART_ROWS = 1 << 20


def fit_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Give GX's pandas engine the dtypes it has fast paths for (same values, same counts):

    - integers as int64: GX's `column_values.between` is vectorised only for Python's int and
      float dtypes; numpy's int32/int16 fall back to a Python call per value;
    - text codes as pandas categoricals: `isin` and `isna` work on integer codes, not strings;
    - flags as int8, or nullable Int8 with NULLs (which stay missing): `isin` looks small
      integers up in a table but hashes booleans; `1 == True` in Python, numpy and pandas, so
      every expectation counts the same rows;
    - one block per dtype: GX's pandas engine drops a column's NULL rows from the whole frame for
      each metric, one copy per block.
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
    values and NULLs, as fit_dtypes would make them, without building millions of Python
    strings. The values are read first with one DISTINCT query (DuckDB computes only the text
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
            casts.append(f"{_ident(c)}::ENUM({', '.join(quote(v) for v in vs)}) AS {_ident(c)}")
    if not casts:
        return sql
    return f"SELECT * REPLACE ({', '.join(casts)}) FROM ({sql}) AS f"


def typed_text_values(con: duckdb.DuckDBPyConnection, c: Contract, rules: list[RuleSpec],
                      extract_ids: list[str]) -> dict[str, list[str]]:
    """For dictionary_encoded's `known`: a superset of the values of each text column of the
    drop frame that is a typed code or text column as such (`t.<col>`), read from the raw
    column's few distinct values through the typed view's own expression (compile.typed_expr).
    Else dictionary_encoded's DISTINCT pass would compute the whole typed view (joins included)
    once more. A value missing from a superset would make the ENUM cast fail loudly, never pass
    silently."""
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


def staging_frames(con: duckdb.DuckDBPyConnection, c: Contract) -> Iterator[pd.DataFrame]:
    """The staging frame (8 bytes a row) in parts of ~1 M rows or fewer (a power of two of them),
    split on the key's hash (its low bits): rows with the same natural key always fall in the
    same part, so uniqueness judged part by part is uniqueness of the whole table (a duplicate
    10 M rows apart is still seen), and the parts can be validated in parallel. Small parts keep
    pandas' `duplicated` (GX's uniqueness metric) hash table in the CPU's cache. One read of the
    table; the split is a radix sort on the part number in numpy."""
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
