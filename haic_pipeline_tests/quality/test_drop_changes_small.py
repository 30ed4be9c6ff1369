"""drop_changes on small domains: every domain is compared on counts, and a domain is flagged
only when its ratio to the previous drop's rows is at or beyond x0.5 / x2 and the rows gained or
lost reach `min_count_rows` (`_defaults.yaml`), so a handful of rows never warns while a small
domain halving, or vanishing, does."""

from __future__ import annotations

import pytest

from haic_pipeline.contracts import load_contracts, load_defaults
from haic_pipeline.quality.drops import compare, drop_figures

from ..dropkit import land, write_drop
from .test_quality import E1, E2, cohort


def _figures(rows: dict[str, int]) -> dict:
    return {"rows": rows, "changed_row_share": {d: 0.0 for d in rows},
            "new_patient_share": 1.0, "patients_delivered": rows.get("patients", 0)}


def _row_change(previous: dict[str, int], now: dict[str, int]) -> dict:
    return compare(_figures(now), _figures(previous), False, load_defaults().min_count_rows)["row_count_change"]


def test_min_count_is_the_contract_default():
    assert load_defaults().min_count_rows == 5
    assert _row_change({"labs": 40}, {"labs": 40})["details"]["min_count"] == 5


@pytest.mark.parametrize("before, now, flagged", [
    (4, 1, False),        # a quarter of the rows, but 3 rows apart: below min_count
    (8, 4, False),        # exactly half, 4 rows apart: still below min_count
    (10, 5, True),        # exactly half, 5 rows apart: flagged
    (40, 10, True),       # a small domain shrinking sharply
    (40, 0, True),        # a vanished domain
    (3, 0, False),        # a vanished tiny domain: 3 rows are not a sharp change in counts
    (0, 50, False),       # the previous drop lacked the domain: nothing to compare with
    (40, 30, False),      # x0.75: not sharp
    (10, 20, True),       # exactly twice, 10 rows apart
    (2, 6, False),        # x3 but 4 rows apart
    (1000, 500, True),    # a large domain, as before: half is flagged
    (1000, 600, False),
    (1000, 2000, True),
])
def test_small_domains_are_compared_on_counts(before, now, flagged):
    outcome = _row_change({"labs": before, "patients": 50}, {"labs": now, "patients": 50})
    assert outcome["passed"] is (not flagged)
    assert outcome["details"]["flagged_domains"] == (["labs"] if flagged else [])


def test_ratio_is_reported_for_every_compared_domain():
    details = _row_change({"labs": 40, "imaging": 4, "patients": 0}, {"labs": 0, "imaging": 1, "patients": 7})["details"]
    assert details["ratio"] == {"labs": 0.0, "imaging": 0.25}   # patients: nothing before
    assert details["flagged_domains"] == ["labs"]


def test_an_explicit_min_count_overrides_the_default():
    outcome = compare(_figures({"labs": 4}), _figures({"labs": 8}), False, min_count=3)["row_count_change"]
    assert not outcome["passed"] and outcome["details"]["min_count"] == 3


def test_small_real_drops_halving_are_flagged(env, con):
    """Two real drops landed in a DuckDB warehouse: 12 patients, then 6 (every domain halves, all
    far under the former 100-row floor): each domain whose rows fell by 5 or more is flagged."""
    write_drop(env / "inbox", E1, cohort(12))
    write_drop(env / "inbox", E2, cohort(6, start=101))
    land(con, env / "inbox")
    figures = drop_figures(con, load_contracts(), [E1, E2])
    outcome = compare(figures[E2], figures[E1], previous_is_first=True, min_count=5)["row_count_change"]
    before, now = figures[E1]["rows"], figures[E2]["rows"]
    assert before["labs"] == 24 and now["labs"] == 12
    expected = sorted(d for d in before if before[d] - now[d] >= 5)
    assert expected and "labs" in expected
    assert not outcome["passed"]
    assert sorted(outcome["details"]["flagged_domains"]) == expected
