"""Compile each data contract into its staging model: `haic_pipeline/sql/staging/<domain>.sql`.

    python -m haic_pipeline.warehouse.compile          # rewrite the SQL files
    python -m haic_pipeline.warehouse.compile --check  # fail if they are out of date (a test does this)

The SQL files are generated (one source of truth: `data_contracts/`) but committed, so that an
analyst or a reviewer reads each staging model on its own, as plain DuckDB SQL. Each model:

1. types and normalises every column of raw.<domain> (trim, code case, strict YYYY-MM-DD dates,
   integers, decimals; labs: censoring sign split off, unit converted to the canonical unit);
2. applies delta semantics: per natural key, the row of the newest drop wins (the last data row
   if a drop repeats a key); exact duplicates and superseded versions drop out, a drop that
   repeats a key with *different* values gets the `duplicate_key_conflict` error;
3. evaluates every rule of the contract on the winning rows: `error` rules send the row to
   ops.quarantine (one row per failed check, with the reason), `warn` rules keep the row and
   list the rule names in the row's `dq_warnings`; every warn offence of a winning row is in
   ops.row_flags, also that of a row quarantined for an error rule (the drop delivered it, and the
   gate re-judges a drop's warn rules on these rows);
4. writes staging.<domain>. A patient whose consent is withdrawn keeps only
   (patient_key, consent_status) in staging.patients and vanishes from every other table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from haic_pipeline.catalogue import judged_rows, offending_sql, quote, row_rules
from haic_pipeline.contracts import Column, Contract, load_contracts

SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "staging"

DATE_RE = r"\d{4}-\d{2}-\d{2}"
INT_RE = r"[+-]?\d+"
DEC_RE = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"


def _text(col: str) -> str:
    return f"nullif(trim(r.{col}), '')"


def typed_expr(col: Column) -> list[str]:
    """SELECT items turning raw text into the column's type (NULL when it does not parse)."""
    t = _text(col.name)
    if col.identifier == "pseudonymise":
        return ["r.patient_key", "r._patient_id_valid"]
    if col.type == "string":
        return [f"{t} AS {col.name}"]
    if col.type == "code":
        fn = {"upper": "upper", "lower": "lower"}.get(col.case or "", "")
        return [f"{fn}({t}) AS {col.name}"]
    if col.type == "date":
        return [f"CASE WHEN regexp_full_match({t}, {quote(DATE_RE)}) THEN try_cast({t} AS DATE) END AS {col.name}"]
    if col.type == "datetime":
        # DuckDB's own TIMESTAMP cast decides the format (YYYY-MM-DD[ HH:MM[:SS]]): no regex pass over every value
        return [f"try_cast({t} AS TIMESTAMP) AS {col.name}"]
    if col.type == "integer":
        return [f"CASE WHEN regexp_full_match({t}, {quote(INT_RE)}) THEN try_cast({t} AS INTEGER) END AS {col.name}"]
    if col.type == "decimal":
        return [f"CASE WHEN regexp_full_match({t}, {quote(DEC_RE)}) THEN try_cast({t} AS DOUBLE) END AS {col.name}"]
    if col.type == "lab_value":
        # a number, optionally after one censoring sign ('<1.0', '>60000'); no regex (10 M rows)
        number = f"try_cast(CASE WHEN left({t}, 1) IN ('<', '>') THEN ltrim(substr({t}, 2)) ELSE {t} END AS DOUBLE)"
        return [
            f"CASE WHEN isfinite({number}) THEN {number} END AS {col.name}_number",
            f"CASE WHEN {col.name}_number IS NOT NULL AND left({t}, 1) IN ('<', '>') THEN left({t}, 1) END AS {col.name}_censoring",
        ]
    raise ValueError(col.type)


def checks(c: Contract) -> list[tuple[str, str, str, str]]:
    """(check_name, severity, predicate, reason SQL) of every row rule the staging SQL judges:
    the rule catalogue's, each predicate its expectation's unexpected rows (catalogue.offending_sql);
    duplicate_key_conflict is decided by the ranking of step 3 instead."""
    return [(r.name, r.severity, offending_sql(r), r.reason) for r in row_rules(c)
            if r.family != "duplicate_key"]


def _struct(check: str) -> str:
    return f"{{'check_name': {quote(check)}, 'reason': _r_{check}}}"


def typed_view(c: Contract) -> str:
    """`raw.typed_<domain>`: every delivered row of raw.<domain>, typed and normalised (NULL where a
    value does not parse), with its delivered text in `raw_<column>` and the drop's extraction
    date. The staging model and the data-quality suites both read this one definition."""
    d = c.domain
    lab = any(col.type == "lab_value" for col in c.columns)
    select = ["r._extract_id", "r._row_number", "d.extracted_at::DATE AS _extract_date"]
    for col in c.columns:
        if col.in_raw:
            select.extend(typed_expr(col))
    select += [f"{_text(col.name)} AS raw_{col.name}" for col in c.columns
               if col.in_raw and col.identifier != "pseudonymise"]
    joins = [f"FROM raw.{d} AS r",
             "JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded'"]
    if lab:
        rows = []
        for test, spec in c.units.items():
            for unit, div in spec["divide_by"].items():
                rows.append(f"        ({quote(test)}, {quote(str(unit).lower())}, {quote(spec['canonical'])}, {float(div)!r})")
        select += ["u.divisor AS _unit_divisor", "u.canonical_unit",
                   "round(value_number / u.divisor, 6) AS value_canonical"]
        joins += [
            "-- accepted units per test: value in the canonical unit = delivered value / divisor",
            "LEFT JOIN (VALUES\n" + ",\n".join(rows) + "\n    ) AS u(test_code, unit_lower, canonical_unit, divisor)",
            "    ON u.test_code = upper(nullif(trim(r.test_code), '')) AND u.unit_lower = coalesce(lower(nullif(trim(r.unit), '')), '')",
        ]
    return (f"CREATE OR REPLACE VIEW raw.typed_{d} AS\nSELECT\n    " + ",\n    ".join(select) + "\n"
            + "\n".join(joins) + ";\n")


def compile_contract(c: Contract) -> str:
    d = c.domain
    lab = any(col.type == "lab_value" for col in c.columns)
    key = c.staging_key
    # the staging columns: (expression over raw.typed_<domain>, output name)
    staged: list[tuple[str, str]] = []
    for col in c.columns:
        if not col.in_staging:
            continue
        if col.type == "lab_value":
            staged += [("value_canonical", "value"), ("value_censoring", "value_censoring"),
                       ("canonical_unit", "unit")]
        elif lab and col.name == "unit":
            continue
        else:
            staged.append((col.warehouse_name, col.warehouse_name))
    content = [expr for expr, _ in staged]
    if lab:
        content.append("raw_unit")
    rules = checks(c)
    errors = [r for r in rules if r[1] == "error"]
    warns = [r for r in rules if r[1] == "warn"]

    lines = [
        f"-- staging.{d}: generated from data_contracts/{d}.yaml by",
        "--   python -m haic_pipeline.warehouse.compile",
        "-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).",
        f"-- Reads raw.{d} (every loaded drop) and ops.drops"
        + ("" if d == "patients" else ", staging.patients (orphans, consent)") + ".",
        f"-- Writes raw.typed_{d} (view), staging.{d}, and the '{d}' rows of ops.quarantine (error rules)",
        "-- and ops.row_flags (warn rules).",
        "",
        "-- 1. type and normalise every delivered column",
        typed_view(c),
    ]
    where = f"\n    WHERE {judged_rows(c)}" if judged_rows(c) else ""
    # each rule yields its reason text where it fails, NULL elsewhere (cheap to carry, exact to report)
    reasons = [f"CASE WHEN {pred} THEN {reason} END AS _r_{name}" for name, _sev, pred, reason in errors + warns]
    error_cols = [f"_r_{n}" for n, *_ in errors]
    warn_cols = [f"_r_{n}" for n, *_ in warns]
    has_error = " OR ".join(f"{x} IS NOT NULL" for x in error_cols) or "false"
    has_warn = " OR ".join(f"{x} IS NOT NULL" for x in warn_cols) or "false"
    key_cols = ", ".join(key)
    key_full = " AND ".join(f"{k} IS NOT NULL" for k in key)
    winners = (f"FROM _{d}_judged AS j ANTI JOIN _{d}_later AS v USING (_extract_id, _row_number)")
    lines += [
        f"CREATE OR REPLACE TEMP TABLE _{d}_judged AS",
        "-- 2. every rule of the contract, judged on every delivered row: its reason where it fails, else NULL",
        "SELECT _extract_id, _row_number,",
        "    " + ",\n    ".join(f"{e} AS {n}" if e != n else e for e, n in staged) + ",",
        f"    hash({', '.join(content)}) AS _content,",
        f"    CASE WHEN {key_full} THEN hash({key_cols}) END AS _key_hash" + ("," if reasons else ""),
        "    " + ",\n    ".join(reasons),
        f"FROM raw.typed_{d} AS t{where};",
        "",
        "-- 3. delta semantics: per natural key the newest drop wins (the last data row within a drop).",
        "--    Only keys delivered more than once need ranking; their losing rows are listed here: older",
        "--    versions and exact duplicates drop out, a different row of the winner's drop is a conflict.",
        f"CREATE OR REPLACE TEMP TABLE _{d}_later AS",
        "--    Keys are first grouped on their 8-byte hash (a collision only ranks a few more rows),",
        "--    then ranked on the key itself.",
        f"WITH repeated AS (SELECT _key_hash FROM _{d}_judged WHERE _key_hash IS NOT NULL GROUP BY ALL HAVING count(*) > 1),",
        "ranked AS (",
        "    SELECT _extract_id, _row_number, _content,",
        "        row_number() OVER w AS _version,",
        "        first_value(_extract_id) OVER w AS _winner_extract_id,",
        "        first_value(_row_number) OVER w AS _winner_row_number,",
        "        first_value(_content) OVER w AS _winner_content",
        f"    FROM _{d}_judged SEMI JOIN repeated USING (_key_hash)",
        f"    WINDOW w AS (PARTITION BY {key_cols} ORDER BY _extract_id DESC, _row_number DESC)",
        ")",
        "SELECT _extract_id, _row_number, _winner_row_number,",
        "    _extract_id = _winner_extract_id AND _content <> _winner_content AS _conflict",
        "FROM ranked WHERE _version > 1;",
        "",
    ]
    raw_json_cols = ", ".join(
        f"{quote(name)}: r.{name}" for name in c.raw_columns
        if name != "_patient_id_valid" and not (name != "patient_key" and c.column(name).identifier == "raw_only")
    )
    row_json = f"to_json({{{raw_json_cols}}})"
    conflict_reason = ("'same natural key as data row ' || v._winner_row_number || "
                       "' of this drop, with different values; that later row was kept'")
    lines += [
        "-- 4. error rules: the row goes to ops.quarantine, one row per failed check",
        f"DELETE FROM ops.quarantine WHERE domain = {quote(d)};",
        "INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)",
        "WITH failed AS (",
        f"    SELECT v._extract_id, v._row_number, j.patient_key, 'duplicate_key_conflict' AS check_name, {conflict_reason} AS reason",
        f"    FROM _{d}_later AS v JOIN _{d}_judged AS j USING (_extract_id, _row_number) WHERE v._conflict",
    ]
    if error_cols:
        lines += [
            "    UNION ALL",
            "    SELECT _extract_id, _row_number, patient_key, u.check_name, u.reason",
            f"    FROM (SELECT j.*, unnest([{', '.join(_struct(n) for n, *_ in errors)}]) AS u",
            f"          {winners} WHERE {has_error})",
            "    WHERE u.reason IS NOT NULL",
        ]
    lines += [
        ")",
        f"SELECT {quote(d)}, f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason, {row_json}",
        f"FROM failed AS f JOIN raw.{d} AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;",
        "",
        "-- 5. warn rules: every offence of a winning row is listed in ops.row_flags (also that of a",
        "--    row quarantined above: the drop's warn counts must not shrink by its errors);",
        "--    a row without errors stays in staging with the rule names in dq_warnings",
        f"DELETE FROM ops.row_flags WHERE domain = {quote(d)};",
    ]
    if warn_cols:
        lines += [
            "INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)",
            f"SELECT {quote(d)}, f._extract_id, f._row_number, f.patient_key, f.u.check_name, 'warn', f.u.reason, {row_json}",
            f"FROM (SELECT j.*, unnest([{', '.join(_struct(n) for n, *_ in warns)}]) AS u",
            f"      {winners} WHERE {has_warn}) AS f",
            f"JOIN raw.{d} AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number",
            "WHERE f.u.reason IS NOT NULL;",
        ]
    lines.append("")
    select = []
    for _expr, name in staged:
        if d == "patients" and name not in ("patient_key", "consent_status"):
            select.append(f"CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE {name} END AS {name}")
        else:
            select.append(name)
    warn_list = ", ".join(f"CASE WHEN _r_{n} IS NOT NULL THEN {quote(n)} END" for n, *_ in warns)
    select += [
        (f"CASE WHEN {has_warn} THEN list_filter([{warn_list}], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END"
         if warns else "[]::VARCHAR[]") + " AS dq_warnings",
        "_extract_id",
        "_row_number",
    ]
    lines += [
        "-- 6. the staging table: the winning row of each key, without errors",
        f"CREATE OR REPLACE TABLE staging.{d} AS",
        "SELECT\n    " + ",\n    ".join(select),
        winners,
        f"WHERE NOT ({has_error});",
        "",
        f"DROP TABLE _{d}_judged;",
        f"DROP TABLE _{d}_later;",
    ]
    return "\n".join(lines) + "\n"


def compiled_models(contracts: dict[str, Contract] | None = None) -> dict[str, str]:
    contracts = contracts or load_contracts()
    return {d: compile_contract(c) for d, c in contracts.items()}


def model_path(domain: str) -> Path:
    return SQL_DIR / f"{domain}.sql"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed model is out of date")
    args = parser.parse_args(argv)
    stale = []
    SQL_DIR.mkdir(parents=True, exist_ok=True)
    for domain, sql in compiled_models().items():
        path = model_path(domain)
        if args.check:
            if not path.exists() or path.read_text() != sql:
                stale.append(str(path))
        else:
            path.write_text(sql)
            print(f"wrote {path}")
    if stale:
        print("out of date (run python -m haic_pipeline.warehouse.compile):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
