"""Group-sequential statistics (study_spec §6) against R rpact and against the formulas.

R's numbers: the shared ``reference/sequential/rpact_boundaries.json`` and the committed
``reference/sequential_open.json`` (made by ``reference/sequential_open.R``), both
``getDesignGroupSequential(sided = 2)`` and ``getSampleSizeSurvival``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from haic_pipeline.stats import (
    GroupFollowUp,
    conditional_power,
    expected_events,
    months_to_target,
    project_events,
    repeated_ci,
    schoenfeld_events,
    spending_boundaries,
)
from haic_pipeline.stats.sequential import spending_function

from .stats_reference import REPO_ROOT, shared_dir

OPEN_REFERENCE = Path(__file__).resolve().parent / "reference" / "sequential_open.json"
SPENDING = {"asOF": "obf", "asP": "pocock"}


def shared_reference() -> dict:
    path = shared_dir() / "reference" / "sequential" / "rpact_boundaries.json"
    if not path.is_file():
        pytest.skip(f"R reference not found: looked at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def open_reference() -> dict:
    return json.loads(OPEN_REFERENCE.read_text(encoding="utf-8"))


def _r_vector(values: list) -> np.ndarray:
    return np.array([math.inf if v is None else v for v in values], dtype=float)  # JSON null = Inf


def assert_matches_rpact(name: str, design: dict) -> None:
    """z to 2e-4, cumulative alpha and nominal p to 1e-7, +Inf where R has Inf.

    Exception, where rpact's own integral is the less exact one: at a look before which
    (next to) no alpha has been spent (< 1e-11), the boundary is the single-look value
    Phi^-1(1 - increment/2) up to that amount; rpact's fixed 91-point integration is off by
    up to ~2e-8 in probability there, which at an increment of 1e-7 or less moves its z by
    1e-3 or turns it into Inf. There the boundary is held to the exact value instead, and its
    nominal p to R's within 1e-7."""
    b = spending_boundaries(design["information_fractions"], design["alpha"],
                            SPENDING[design["spending"]])
    r_z = _r_vector(design["critical_z"])
    np.testing.assert_allclose(b.cumulative_alpha, design["cumulative_alpha_spent"], rtol=0, atol=1e-7,
                               err_msg=f"{name}: cumulative alpha")
    np.testing.assert_allclose(b.nominal_p, design["nominal_p"], rtol=0, atol=1e-7,
                               err_msg=f"{name}: nominal p")
    spent_before = np.concatenate(([0.0], b.cumulative_alpha[:-1]))
    for k, (ours, theirs) in enumerate(zip(b.critical_z, r_z)):
        if spent_before[k] < 1e-11:
            exact = -norm.ppf(b.alpha_increments[k] / 2) if b.alpha_increments[k] > 0 else math.inf
            single = norm.isf((spending_function(b.information_fractions[k], b.alpha, b.spending)
                               - spent_before[k]) / 2)
            if math.isfinite(ours):
                assert ours == pytest.approx(exact, abs=1e-7), (name, k)
            else:
                assert single >= 8, (name, k, single)
        else:
            if math.isinf(theirs):
                assert math.isinf(ours), (name, k, ours)
            else:
                assert abs(ours - theirs) <= 2e-4, (name, k, ours, theirs)


def test_boundaries_match_the_shared_rpact_reference():
    ref = shared_reference()
    assert ref["designs"]
    for name, design in ref["designs"].items():
        assert_matches_rpact(name, design)
        # the shared designs spend alpha at every look: plain z comparison holds too
        b = spending_boundaries(design["information_fractions"], design["alpha"],
                                SPENDING[design["spending"]])
        np.testing.assert_allclose(b.critical_z, _r_vector(design["critical_z"]), rtol=0, atol=2e-4)


@pytest.mark.parametrize("name", sorted(open_reference()["designs"]))
def test_boundaries_match_rpact_on_open_designs(name):
    assert_matches_rpact(name, open_reference()["designs"][name])


def test_open_reference_covers_what_the_issue_asks():
    designs = open_reference()["designs"].values()
    assert max(len(d["information_fractions"]) for d in designs) == 12
    assert {d["spending"] for d in designs} == {"asOF", "asP"}
    assert {0.01, 0.1} <= {d["alpha"] for d in designs}
    assert any(d["critical_z"][0] is None for d in designs)  # a first look with c = Inf
    assert any(d["information_fractions"][-1] < 1 for d in designs)  # looks so far


def test_rpact_disagreement_where_it_is_imprecise_is_on_rpact_side():
    """12 equal OBF looks: look 1 spends ~1e-15 (c = 7.676: finite below 8, rpact says Inf from
    7.5 on), so look 2's boundary is the single-look one for the rest of alpha(t_2) to 1e-7;
    rpact's 5.36861 is 2e-3 off it, ours is not."""
    d = open_reference()["designs"]["obf_12_equal"]
    b = spending_boundaries(d["information_fractions"], d["alpha"], "obf")
    first = float(spending_function(1 / 12, 0.05, "obf"))
    assert b.critical_z[0] == pytest.approx(norm.isf(first / 2), abs=1e-9) and 7.5 < b.critical_z[0] < 8
    assert math.isinf(_r_vector(d["critical_z"])[0])
    increment = float(spending_function(2 / 12, 0.05, "obf")) - first
    assert b.critical_z[1] == pytest.approx(norm.isf(increment / 2), abs=1e-7)
    assert abs(d["critical_z"][1] - b.critical_z[1]) > 1e-3


@pytest.mark.parametrize("source", ["shared", "open"])
def test_schoenfeld_events_match_rpact(source):
    ref = shared_reference() if source == "shared" else open_reference()
    for case in ref["schoenfeld_events"]:
        ours = schoenfeld_events(case["hazard_ratio"], case["alpha"], case["power"], case["allocation_ratio"])
        assert ours == pytest.approx(case["events"], rel=1e-6), case


def test_schoenfeld_formula_and_symmetry_in_allocation():
    z = norm.ppf(0.975) + norm.ppf(0.8)
    r = 35 / 65
    assert schoenfeld_events(0.6, 0.05, 0.8, r) == pytest.approx(z ** 2 * (1 + r) ** 2 / (r * math.log(0.6) ** 2), rel=1e-12)
    assert schoenfeld_events(0.6, allocation_ratio=r) == pytest.approx(schoenfeld_events(0.6, allocation_ratio=1 / r), rel=1e-12)


@pytest.mark.parametrize("kwargs, key", [
    ({"hazard_ratio": 1.0}, "hazard_ratio"),
    ({"hazard_ratio": 0.0}, "hazard_ratio"),
    ({"hazard_ratio": -0.5}, "hazard_ratio"),
    ({"hazard_ratio": math.nan}, "hazard_ratio"),
    ({"hazard_ratio": 0.6, "alpha": 0.0}, "alpha"),
    ({"hazard_ratio": 0.6, "alpha": 1.0}, "alpha"),
    ({"hazard_ratio": 0.6, "power": 1.0}, "power"),
    ({"hazard_ratio": 0.6, "allocation_ratio": 0.0}, "allocation_ratio"),
])
def test_schoenfeld_rejects_impossible_values(kwargs, key):
    with pytest.raises(ValueError, match=key):
        schoenfeld_events(**kwargs)


def test_two_looks_against_direct_quadrature():
    """Independent of rpact: P(|Z1| < c1, |Z2| >= c2) by adaptive quadrature equals the
    increment alpha(t2) - alpha(t1) at our c2, for both spending functions."""
    t1, t2 = 0.3, 0.8
    for spending in ("obf", "pocock"):
        b = spending_boundaries([t1, t2], 0.05, spending)
        c1, c2 = b.critical_z
        rho, sd = math.sqrt(t1 / t2), math.sqrt(1 - t1 / t2)

        def cross(c: float) -> float:
            f = lambda z1: norm.pdf(z1) * (norm.cdf((-c - rho * z1) / sd) + norm.sf((c - rho * z1) / sd))
            return integrate.quad(f, -c1, c1, epsabs=1e-14, epsrel=1e-12, limit=200)[0]

        increment = float(spending_function(t2, 0.05, spending) - spending_function(t1, 0.05, spending))
        assert cross(c2) == pytest.approx(increment, rel=1e-7)
        # and 1e-5 either side of c2 is visibly off: the check resolves the boundary
        assert abs(cross(c2 + 1e-5) - increment) > 10 * abs(cross(c2) - increment)


def test_three_looks_against_direct_quadrature():
    t = [0.2, 0.45, 1.0]
    b = spending_boundaries(t, 0.05, "pocock")
    c1, c2, c3 = b.critical_z
    s1, s2 = math.sqrt(t[1] - t[0]), math.sqrt(t[2] - t[1])

    def inner(x2: float, x1: float) -> float:  # score scale: S1 = x1, S2 = x2
        dens = norm.pdf(x1, scale=math.sqrt(t[0])) * norm.pdf(x2 - x1, scale=s1)
        b3 = c3 * math.sqrt(t[2])
        return dens * (norm.cdf((-b3 - x2) / s2) + norm.sf((b3 - x2) / s2))

    b1, b2 = c1 * math.sqrt(t[0]), c2 * math.sqrt(t[1])
    p = integrate.dblquad(inner, -b1, b1, -b2, b2, epsabs=1e-12, epsrel=1e-8)[0]
    assert p == pytest.approx(b.alpha_increments[2], rel=1e-6)


def test_boundaries_depend_only_on_the_looks_so_far():
    rng = np.random.default_rng(19)
    for spending in ("obf", "pocock"):
        for _ in range(5):
            t = np.sort(rng.uniform(0.02, 1.0, size=8))
            full = spending_boundaries(t, 0.05, spending)
            for k in range(1, len(t)):
                head = spending_boundaries(t[:k], 0.05, spending)
                np.testing.assert_array_equal(head.critical_z, full.critical_z[:k])
                np.testing.assert_array_equal(head.cumulative_alpha, full.cumulative_alpha[:k])
            # "the looks so far plus t": the boundary a look now would face
            now = spending_boundaries(list(t[:3]) + [0.9], 0.05, spending)
            np.testing.assert_array_equal(now.critical_z[:3], full.critical_z[:3])


def test_a_boundary_above_8_is_infinite():
    """study_spec §6.1: above 8, +inf (no alpha to spend yet). t1 = 0.07: the exact boundary is
    8.47; t1 = 0.085: 7.599, finite here (rpact 3.3.4 reports Inf from 7.5 on)."""
    b = spending_boundaries([0.07, 0.5, 1.0], 0.05, "obf")
    assert norm.isf(float(spending_function(0.07, 0.05, "obf")) / 2) > 8
    assert math.isinf(b.critical_z[0])
    assert b.nominal_p[0] == 0.0 and b.alpha_increments[0] == 0.0 and b.cumulative_alpha[0] == 0.0
    # the unspent share moves to the next look: alpha(t_2) spent there, alpha in total
    assert b.cumulative_alpha[1] == pytest.approx(float(spending_function(0.5, 0.05, "obf")), abs=1e-15)
    assert b.cumulative_alpha[-1] == pytest.approx(0.05, abs=1e-15)
    finite = spending_boundaries([0.085, 0.5, 1.0], 0.05, "obf")
    exact = norm.isf(4 * norm.sf(norm.isf(0.05 / 4) / math.sqrt(0.085)) / 2)
    assert 7.5 < exact < 8 and finite.critical_z[0] == pytest.approx(exact, abs=1e-9)


def test_looks_close_together_stay_accurate():
    """A look 1e-6 after another spends ~1e-8 more alpha: the final boundary barely moves
    (by ~1e-7; the kernel between the two is 700 times narrower than the density it carries)."""
    for spending in ("obf", "pocock"):
        two = spending_boundaries([0.5, 1.0], 0.05, spending)
        three = spending_boundaries([0.5, 0.500001, 1.0], 0.05, spending)
        assert three.critical_z[0] == two.critical_z[0]
        assert three.critical_z[2] == pytest.approx(two.critical_z[1], abs=2e-6)
        assert three.critical_z[1] > three.critical_z[0]
    with pytest.raises(ValueError, match="too close together"):
        spending_boundaries([0.5, 0.500000001, 1.0], 0.05, "obf")


def test_result_shape_and_totals():
    b = spending_boundaries([0.25, 0.5, 0.75, 1.0])
    assert b.spending == "obf" and b.alpha == 0.05 and len(b) == 4
    assert b.alpha_increments.sum() == pytest.approx(0.05, abs=1e-15)
    np.testing.assert_allclose(b.nominal_p, 2 * norm.sf(b.critical_z), rtol=1e-12)
    assert np.all(np.diff(b.critical_z) < 0)  # OBF boundaries fall
    with pytest.raises(ValueError):
        b.critical_z[0] = 1.0  # read-only
    single = spending_boundaries([1.0], 0.05, "pocock")
    assert single.critical_z[0] == pytest.approx(norm.isf(0.025), abs=1e-12)


@pytest.mark.parametrize("fractions, alpha, spending, key", [
    ([], 0.05, "obf", "non-empty"),
    ([0.5, 0.5, 1.0], 0.05, "obf", "strictly increasing"),
    ([0.6, 0.4, 1.0], 0.05, "obf", "strictly increasing"),
    ([0.0, 0.5, 1.0], 0.05, "obf", r"\(0, 1\]"),
    ([0.5, 1.2], 0.05, "obf", r"\(0, 1\]"),
    ([0.5, math.nan], 0.05, "obf", r"\(0, 1\]"),
    (["a", 1.0], 0.05, "obf", "numbers"),
    ([0.5, 1.0], 0.0, "obf", "alpha"),
    ([0.5, 1.0], 1.5, "obf", "alpha"),
    ([0.5, 1.0], 0.05, "asOF", "spending"),
])
def test_spending_boundaries_rejects_bad_input(fractions, alpha, spending, key):
    with pytest.raises(ValueError, match=key):
        spending_boundaries(fractions, alpha, spending)


# ---------------------------------------------------------------------------------------------
# repeated CI and conditional power
# ---------------------------------------------------------------------------------------------


def test_repeated_ci():
    lo, hi = repeated_ci(math.log(0.7), 0.2, 2.5)
    assert lo == pytest.approx(math.exp(math.log(0.7) - 0.5))
    assert hi == pytest.approx(math.exp(math.log(0.7) + 0.5))
    assert repeated_ci(math.log(0.7), 0.2, math.inf) == (None, None)
    with pytest.raises(ValueError, match="se"):
        repeated_ci(0.1, 0.0, 2.0)
    with pytest.raises(ValueError, match="log_hr"):
        repeated_ci(math.nan, 0.2, 2.0)


def test_conditional_power_hand_checked():
    z, t, looks = -1.8, 0.6, [0.3]
    c_final = spending_boundaries([0.3, 1.0], 0.05, "obf").critical_z[-1]
    b_value, theta = abs(z) * math.sqrt(t), abs(z) / math.sqrt(t)
    expected = 1 - norm.cdf((c_final - b_value - theta * (1 - t)) / math.sqrt(1 - t))
    assert conditional_power(z, t, looks, 0.05, "obf") == pytest.approx(expected, rel=1e-12)
    # with no look taken yet the final boundary is the fixed-sample one
    assert conditional_power(1.0, 0.5, [], 0.05, "pocock") == pytest.approx(
        norm.sf((norm.isf(0.025) - 1.0 / math.sqrt(0.5)) / math.sqrt(0.5)), rel=1e-9)
    assert conditional_power(2.0, 1.0, [0.5]) is None
    with pytest.raises(ValueError, match="information_fraction"):
        conditional_power(1.0, 0.0, [])
    with pytest.raises(ValueError, match="looks_so_far"):
        conditional_power(1.0, 0.5, [0.4, 1.0])


# ---------------------------------------------------------------------------------------------
# projected events
# ---------------------------------------------------------------------------------------------


def test_expected_events_one_group_hand_checked():
    g = GroupFollowUp(events=10, follow_up_months=100.0, without_event=20, accrual_per_month=2.0)
    lam = 0.1  # 10 events / 100 months
    u = 6.0
    hand = 20 * (1 - math.exp(-0.6)) + 2.0 * (6.0 - (1 - math.exp(-0.6)) / 0.1)
    assert g.hazard == lam
    assert expected_events(u, [g]) == pytest.approx(hand, rel=1e-12)
    assert expected_events(0.0, [g]) == 0.0
    # solve 10 + E(u) = 25 and check it against the hand formula at the solution
    p = months_to_target(10, 25, [g])
    v = p.months
    assert 10 + 20 * (1 - math.exp(-lam * v)) + 2.0 * (v - (1 - math.exp(-lam * v)) / lam) == pytest.approx(25, abs=1e-8)
    assert p.note is None


def test_months_to_target_closed_form_without_accrual():
    """No accrual: E(u) = n (1 - e^(-lambda u)), so u = -ln(1 - (target - e)/n) / lambda."""
    g = GroupFollowUp(events=8, follow_up_months=160.0, without_event=30, accrual_per_month=0.0)
    p = months_to_target(8, 20, [g])
    assert p.months == pytest.approx(-math.log(1 - 12 / 30) / 0.05, rel=1e-9)
    unreachable = months_to_target(8, 38, [g])  # 30 patients left, 30 more needed: never
    assert unreachable.months is None and "no accrual" in unreachable.note


def test_projection_two_groups_and_a_group_without_events():
    a = GroupFollowUp(events=12, follow_up_months=240.0, without_event=25, accrual_per_month=1.5)
    b = GroupFollowUp(events=6, follow_up_months=200.0, without_event=40, accrual_per_month=0.5)
    none = GroupFollowUp(events=0, follow_up_months=0.0, without_event=5, accrual_per_month=3.0)
    u = 9.0
    hand = sum(n * (1 - math.exp(-lam * u)) + r * (u - (1 - math.exp(-lam * u)) / lam)
               for n, lam, r in ((25, 0.05, 1.5), (40, 0.03, 0.5)))
    assert expected_events(u, [a, b, none]) == pytest.approx(hand, rel=1e-12)
    cutoff = dt.date(2026, 3, 31)
    proj = project_events(18, 40, [a, b, none], cutoff)
    exact = months_to_target(18, 40, [a, b, none]).months
    assert proj.months == round(exact, 2)
    assert proj.date == cutoff + dt.timedelta(days=round(exact * 30.4375))
    assert 18 + expected_events(exact, [a, b]) == pytest.approx(40, abs=1e-8)
    assert project_events(18, 18, [a], cutoff).months == 0.0
    no_events = months_to_target(0, 10, [none])
    assert no_events.months is None and no_events.note


def test_expected_events_small_hazard_is_continuous():
    tiny = GroupFollowUp(events=1, follow_up_months=1e9, without_event=10, accrual_per_month=4.0)
    lam, u = 1e-9, 12.0
    # series of r (u - (1 - e^(-lam u))/lam) = r lam u^2 / 2 - ..., plus n lam u
    assert expected_events(u, [tiny]) == pytest.approx(10 * lam * u + 4.0 * lam * u * u / 2, rel=1e-6)


@pytest.mark.parametrize("field", ["events", "follow_up_months", "without_event", "accrual_per_month"])
def test_group_follow_up_rejects_bad_values(field):
    values = {"events": 1, "follow_up_months": 10.0, "without_event": 3, "accrual_per_month": 0.5}
    values[field] = -1
    with pytest.raises(ValueError, match=field):
        GroupFollowUp(**values)
    values[field] = math.nan
    with pytest.raises(ValueError, match=field):
        GroupFollowUp(**values)


def test_group_follow_up_takes_database_numbers():
    from decimal import Decimal

    g = GroupFollowUp(events=np.int64(4), follow_up_months=Decimal("80.5"), without_event=7,
                      accrual_per_month=np.float32(0.25))
    assert g.hazard == pytest.approx(4 / 80.5) and isinstance(g.follow_up_months, float)


def test_benchmark_script_runs(monkeypatch, capsys):
    """The benchmark at a tiny size, in this process (its imports are loaded already)."""
    script = REPO_ROOT / "benchmarks" / "bench_sequential.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--looks", "3", "5", "--repeat", "1"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "best s" in out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("obf", "3"), ("obf", "5"), ("pocock", "3"), ("pocock", "5")]
    assert all(float(r[2]) >= 0 and float(r[4]) > 1.9 for r in rows)
