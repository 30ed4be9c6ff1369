"""Consistency checks of the analysis tables against staging.endpoints (used as Dagster asset
checks; plain functions here). Each returns ``(passed, details)``; details are aggregate
counts only (no patient-level values)."""

from __future__ import annotations

import duckdb


def km_summary_matches_endpoints(con: duckdb.DuckDBPyConnection) -> tuple[bool, dict]:
    """n and events of analysis.km_summary equal the counts of staging.endpoints for every
    endpoint x group (patients with a time >= 0: a negative time is left out of the analysis,
    see analysis.data.StudyData), and the table is from the same drop as staging.endpoints."""
    rows = con.execute("""
        WITH e AS (
            SELECT "group", os_months, os_event, pfs_months, pfs_event FROM staging.endpoints
        ), expected AS (
            SELECT 'OS' AS endpoint, coalesce(g, 'overall') AS "group", count(*) AS n, sum(ev) AS events
            FROM (SELECT "group" AS g, os_event AS ev FROM e WHERE os_months >= 0) GROUP BY ROLLUP (g)
            UNION ALL
            SELECT 'PFS', coalesce(g, 'overall'), count(*), sum(ev)
            FROM (SELECT "group" AS g, pfs_event AS ev FROM e WHERE pfs_months >= 0) GROUP BY ROLLUP (g)
        )
        SELECT coalesce(k.endpoint, x.endpoint), coalesce(k."group", x."group"),
               k.n, coalesce(x.n, 0), k.events, coalesce(x.events, 0)
        FROM analysis.km_summary AS k
        FULL JOIN expected AS x ON k.endpoint = x.endpoint AND k."group" = x."group"
        ORDER BY 1, 2
    """).fetchall()
    mismatches = [f"{ep}/{g}: table n={n} events={ev}, staging.endpoints n={xn} events={xev}"
                  for ep, g, n, xn, ev, xev in rows
                  if n is None or int(n) != int(xn) or int(ev or 0) != int(xev)]
    drops = con.execute("""
        SELECT (SELECT any_value(extract_id) FROM analysis.km_summary),
               (SELECT any_value(extract_id) FROM staging.endpoints)
    """).fetchall()[0]
    if drops[1] is not None and drops[0] != drops[1]:
        mismatches.append(f"analysis.km_summary is from drop {drops[0]}, staging.endpoints from {drops[1]}")
    return not mismatches, {"rows_compared": len(rows), "mismatches": mismatches}


def finite_values(con: duckdb.DuckDBPyConnection, tables) -> dict[str, list[str]]:
    """For each ``analysis.<table>``, its floating-point columns that hold NaN or +-inf, as
    ``"<column>: <k> NaN, <m> infinite"`` (an empty list: every number is finite or NULL). A
    result that cannot be computed is stored as NULL with a note, so a non-finite number here
    means a computation went wrong. A table that does not exist is reported as such."""
    out = {}
    for table in tables:
        cols = [c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'analysis' AND table_name = ? "
            "AND data_type IN ('DOUBLE', 'FLOAT', 'REAL') ORDER BY column_index", [table]).fetchall()]
        exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'analysis' "
                             "AND table_name = ?", [table]).fetchall()[0][0]
        if not exists:
            out[table] = ["table missing"]
            continue
        if not cols:
            out[table] = []
            continue
        counts = con.execute("SELECT " + ", ".join(
            f'count(*) FILTER (WHERE isnan("{c}")), count(*) FILTER (WHERE isinf("{c}"))' for c in cols)
            + f" FROM analysis.{table}").fetchall()[0]
        out[table] = [f"{c}: {counts[2 * i]} NaN, {counts[2 * i + 1]} infinite"
                      for i, c in enumerate(cols) if counts[2 * i] or counts[2 * i + 1]]
    return out


#: overlap weights balance every modelled covariate exactly; an |SMD| above this is a defect
EXACT_BALANCE_TOLERANCE = 1e-6


def overlap_balance(con: duckdb.DuckDBPyConnection, tolerance: float = EXACT_BALANCE_TOLERANCE) -> tuple[bool, dict]:
    """The overlap (ATO) weights balance every covariate of the propensity model exactly: with an
    intercept in the logistic model the fit's score equations make the weighted means equal in
    the two groups (study_spec §5.6). Passes when every modelled covariate of analysis.balance
    has |smd_after_overlap| <= ``tolerance`` (a table without overlap weights, after a failed
    fit, has nothing to check); details name the covariates that fail and the largest |SMD|."""
    checked, largest = con.execute(
        "SELECT count(*), max(abs(smd_after_overlap)) FROM analysis.balance "
        "WHERE in_propensity_model AND smd_after_overlap IS NOT NULL").fetchall()[0]
    bad = con.execute("SELECT covariate, smd_after_overlap FROM analysis.balance WHERE in_propensity_model "
                      "AND abs(smd_after_overlap) > ? ORDER BY covariate", [tolerance]).fetchall()
    return not bad, {"covariates_checked": int(checked), "largest_abs_smd": float(largest or 0.0),
                     "unbalanced": [f"{c}: SMD {v:.3g}" for c, v in bad]}
