"""`ops.dq_results`: one row per (refresh, check, rule, drop) — quality over time, in SQL.

    SELECT refresh, check_name, rule, severity, passed, evaluated, unexpected, extract_id
    FROM ops.dq_results ORDER BY checked_at DESC;

It is also the cache: a drop validated under the current suite fingerprint (the contracts and the
generator's version) is not validated again; staging-wide rules are keyed by the staging state.
Rows carry counts and shares only, never a value. The table's DDL: `warehouse/schema.py`.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pandas as pd

def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def loaded_drops(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """(extract_id, manifest_sha256, extracted_at, data_cutoff) of every loaded drop, oldest first."""
    return con.execute(
        "SELECT extract_id, manifest_sha256, extracted_at, data_cutoff FROM ops.drops "
        "WHERE status = 'loaded' ORDER BY extract_id").fetchall()


def result_row(refresh, check, rule, *, scope, extract_id, passed, evaluated, unexpected, gx_success,
               exception, suite_fp, data_fp, details=None, checked_at=None) -> dict:
    """One row of ops.dq_results: one rule of one check judged for one drop (or staging)."""
    return {"refresh": refresh, "checked_at": checked_at or now(), "check_name": check.name,
            "asset": check.asset, "rule": rule.name, "expectation": rule.expectation or None,
            "severity": rule.severity, "scope": scope, "extract_id": extract_id, "passed": bool(passed),
            "evaluated": evaluated, "unexpected": unexpected,
            "unexpected_share": (unexpected / evaluated) if evaluated else 0.0, "max_share": rule.max_share,
            "gx_success": gx_success, "exception": exception, "suite_fingerprint": suite_fp,
            "data_fingerprint": data_fp, "details": details or {}}


def usable(rows: list[dict] | None) -> bool:
    """Stored rows that stand as a result (none raised: a raised expectation is judged again)."""
    return bool(rows) and not any(r["exception"] for r in rows)


def write_rows(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    if not rows:
        return
    cols = ["refresh", "checked_at", "check_name", "asset", "rule", "expectation", "severity", "scope",
            "extract_id", "passed", "evaluated", "unexpected", "unexpected_share", "max_share",
            "gx_success", "exception", "suite_fingerprint", "data_fingerprint", "details"]
    # one INSERT ... SELECT from a frame: executemany inserts row by row
    frame = pd.DataFrame({c: [r.get(c) if c != "details" else json.dumps(r.get("details") or {}) for r in rows]
                          for c in cols}, dtype=object)
    con.register("_dq_rows", frame)
    try:
        con.execute(f"INSERT INTO ops.dq_results ({', '.join(cols)}) SELECT {', '.join(cols)} FROM _dq_rows")
    finally:
        con.unregister("_dq_rows")


def latest_rows(con: duckdb.DuckDBPyConnection, check_name: str, suite_fp: str,
                keys: list[tuple[str | None, str]]) -> dict[tuple[str | None, str], list[dict]]:
    """For each (extract_id, data_fingerprint): the rows of the latest validation of that key by
    this check under this suite fingerprint (missing keys are absent from the answer)."""
    if not keys:
        return {}
    rows = con.execute(
        """
        SELECT * FROM ops.dq_results
        WHERE check_name = ? AND suite_fingerprint = ?
        QUALIFY checked_at = max(checked_at) OVER (PARTITION BY extract_id, data_fingerprint)
        """, [check_name, suite_fp]).fetchall()
    names = [d[0] for d in con.description]
    wanted = set(keys)
    out: dict[tuple[str | None, str], list[dict]] = {}
    for row in rows:
        rec = dict(zip(names, row))
        key = (rec["extract_id"], rec["data_fingerprint"])
        if key in wanted:
            rec["details"] = json.loads(rec["details"]) if rec["details"] else {}
            out.setdefault(key, []).append(rec)
    return out


def all_latest(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Latest row per (check, rule, drop) for the loaded drops (and staging-wide rows of the latest
    validation), for the report."""
    rows = con.execute(
        """
        WITH loaded AS (SELECT extract_id FROM ops.drops WHERE status = 'loaded')
        SELECT r.* FROM ops.dq_results AS r
        WHERE r.extract_id IS NULL OR r.extract_id IN (SELECT extract_id FROM loaded)
        QUALIFY r.checked_at = max(r.checked_at) OVER (PARTITION BY r.check_name, r.rule, r.extract_id)
        ORDER BY r.check_name, r.rule, r.extract_id NULLS FIRST
        """).fetchall()
    names = [d[0] for d in con.description]
    out = []
    for row in rows:
        rec = dict(zip(names, row))
        rec["details"] = json.loads(rec["details"]) if rec["details"] else {}
        out.append(rec)
    return out


def delivered_rows(con: duckdb.DuckDBPyConnection, extract_ids: list[str], files: list[str] | None = None) -> int:
    """Rows the drops delivered (ops.load_log), in `files` only if given: the size of a backlog."""
    if not extract_ids:
        return 0
    return int(con.execute(
        "SELECT coalesce(sum(rows), 0) FROM ops.load_log WHERE status = 'loaded' AND list_contains(?, extract_id)"
        + (" AND list_contains(?, file)" if files is not None else ""),
        [extract_ids] + ([files] if files is not None else [])).fetchall()[0][0])


def unvalidated_rows(con: duckdb.DuckDBPyConnection, suite_fp: str) -> int:
    """Rows (all domains) of the loaded drops with no result under this suite."""
    ids = [e for (e,) in con.execute(
        "SELECT extract_id FROM ops.drops WHERE status = 'loaded' AND extract_id NOT IN "
        "(SELECT extract_id FROM ops.dq_results WHERE suite_fingerprint = ? AND extract_id IS NOT NULL)",
        [suite_fp]).fetchall()]
    return delivered_rows(con, ids)


def failing_now(con: duckdb.DuckDBPyConnection, check_names: list[str] | None = None) -> list[dict]:
    """The rules that fail now (the latest result of each check, rule and loaded drop, and the
    staging-wide rules), each with `since`: when that rule first failed for that drop. Reads
    only (`haic status` opens the warehouse read-only)."""
    rows = [r for r in all_latest(con) if not r["passed"] and (check_names is None or r["check_name"] in check_names)]
    if not rows:
        return []
    first = dict(((c, rule, e), at) for c, rule, e, at in con.execute(
        "SELECT check_name, rule, extract_id, min(checked_at) FROM ops.dq_results WHERE NOT passed GROUP BY ALL"
    ).fetchall())
    for r in rows:
        r["since"] = first.get((r["check_name"], r["rule"], r["extract_id"]), r["checked_at"])
    return rows
