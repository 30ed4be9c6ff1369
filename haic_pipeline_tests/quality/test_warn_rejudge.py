"""A drop's warn count is what it delivered and stays so until a later drop supersedes the rows:
a warn offence of a row that also breaks an error rule (so the row is quarantined) still counts,
at the refresh that validates the drop and at every later refresh without a new drop. The gate
re-judges a failed drop on the offences staging still routes for it, so staging must route a
quarantined row's warn offences too. A real drop, a real DuckDB file, real GX."""

from __future__ import annotations

from haic_pipeline.quality.gate import run_check

from ..dropkit import land, write_drop
from .test_quality import E1, E2, cohort, pid

RULE = "censored_value_not_afp"


def _albumin(first: int, n: int, value: str, unit: str) -> list[dict]:
    """n ALB rows of patients first.. (a key of their own: collected 2023-05-02)."""
    return [{"patient_id": pid(i), "collected_at": "2023-05-02 08:00", "test_code": "ALB", "value": value,
             "unit": unit} for i in range(first, first + n)]


def _warn_rule(outcome) -> tuple[int, bool, bool]:
    rows = [r for r in outcome.rows if r["rule"] == RULE and r["extract_id"] == E1]
    assert len(rows) == 1
    r = rows[0]
    return r["unexpected"], r["passed"], "rejudged" in (r["details"] or {})


def test_a_quarantined_rows_warn_offence_keeps_counting_until_a_later_drop(env, con):
    files = cohort(40)
    # 12 censored albumin values (warn: censoring is for AFP only) among 80 + 12 lab rows:
    # 13 % > the rule's 2 %, 12 >= 5 rows; 8 of them also carry a unit unknown for ALB (error
    # unit_for_test), so they are quarantined
    files["labs.csv"] += _albumin(1, 8, "<2.0", "mmol/L") + _albumin(9, 4, "<2.0", "g/dL")
    write_drop(env / "inbox", E1, files)
    land(con, env / "inbox")
    assert con.execute("SELECT count(*) FROM ops.quarantine WHERE domain = 'labs' AND extract_id = ? "
                       "AND check_name = 'unit_for_test'", [E1]).fetchall()[0][0] == 8

    first = run_check(con, "labs_warn_rules")
    assert _warn_rule(first) == (12, False, False)
    again = run_check(con, "labs_warn_rules")          # no later drop: nothing to lift
    assert _warn_rule(again) == (12, False, False)
    assert not again.passed

    # a later drop supersedes the 12 rows (same keys, plain values): E1 no longer contributes them
    write_drop(env / "inbox", E2, {"labs.csv": _albumin(1, 12, "3.5", "g/dL")})
    land(con, env / "inbox")
    lifted = run_check(con, "labs_warn_rules")
    assert _warn_rule(lifted) == (0, True, True)
