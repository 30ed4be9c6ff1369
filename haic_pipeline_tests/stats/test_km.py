"""Kaplan-Meier edge cases against numbers computed with R 4.2.2 / survival 3.5-3
(``survfit``, ``quantile``, ``summary(..., extend = TRUE)``), and the lifelines difference."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from haic_pipeline.stats import kaplan_meier, reverse_km_follow_up

REL = 1e-9


def close(a, b, rel=REL):
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None or (isinstance(a, float) and math.isnan(a))
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-15)


def test_zero_time_rows_anywhere_in_the_input():
    # time-0 rows (e.g. PFS censored at index) listed late and unsorted
    time = [5, 0, 3, 0, 8, 2, 0, 6, 6, 9, 4, 0]
    event = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1]
    km = kaplan_meier(time, event)
    tab = km.table
    assert tab["time"].tolist() == [0, 2, 3, 4, 5, 6, 8, 9]
    assert tab["n_at_risk"].tolist() == [12, 8, 7, 6, 5, 4, 2, 1]
    assert tab["n_events"].tolist() == [2, 1, 1, 1, 1, 2, 0, 0]
    assert tab["n_censored"].tolist() == [2, 0, 0, 0, 0, 0, 1, 1]
    r_surv = [0.833333333333333, 0.729166666666667, 0.625, 0.520833333333333,
              0.416666666666667, 0.208333333333333, 0.208333333333333, 0.208333333333333]
    r_lower = [0.647036987013362, 0.506603972230599, 0.389309779327583, 0.287729708631334,
               0.199254499121708, 0.0611010868963184, 0.0611010868963184, 0.0611010868963184]
    r_upper = [1, 1, 1, 0.942785374515094, 0.871303342591361, 0.710343792270461,
               0.710343792270461, 0.710343792270461]
    np.testing.assert_allclose(tab["survival"], r_surv, rtol=1e-12)
    np.testing.assert_allclose(tab["lower"], r_lower, rtol=1e-12)
    np.testing.assert_allclose(tab["upper"], r_upper, rtol=1e-12)
    assert (km.median, km.median_lower, km.median_upper) == (5, 3, None)
    s = km.summary_at(4)
    assert close(s.surv, 0.520833333333333) and close(s.std_err, 0.157690122609244)
    assert close(s.lower, 0.287729708631334) and close(s.upper, 0.942785374515094)
    assert tuple(km.quantile(0.25)) == (2, 0, 6)
    # S(0) < 1 because of the two events at time 0
    assert km.survival_at(0).surv == pytest.approx(10 / 12)
    assert km.survival_at(-1) == (1.0, 1.0, 1.0)


def test_survival_exactly_one_half_uses_the_midpoint_rule():
    # S = 0.5 on [4, 6): the median is (4 + 6) / 2 = 5, as R
    km = kaplan_meier([1, 2, 3, 4, 5, 6, 7, 8], [1, 1, 1, 1, 0, 1, 1, 0])
    assert km.survival_at(4.5).surv == 0.5
    assert (km.median, km.median_lower, km.median_upper) == (5, 3, None)
    assert tuple(km.quantile(0.25)) == (2.5, 1, None)
    s = km.summary_at(4)
    assert close(s.std_err, 0.176776695296637)
    assert close(s.lower, 0.250048821862805) and close(s.upper, 0.999804750678524)


def test_all_events_curve_reaches_zero_and_ci_becomes_missing():
    km = kaplan_meier([2, 4, 4, 7, 9], [1, 1, 1, 1, 1])
    last = km.table.iloc[-1]
    assert last["survival"] == 0.0
    assert math.isnan(last["lower"]) and math.isnan(last["upper"])  # R: NA
    assert (km.median, km.median_lower, km.median_upper) == (4, 4, None)
    s = km.summary_at(8)
    assert close(s.surv, 0.2) and close(s.std_err, 0.178885438199983)
    assert close(s.lower, 0.0346491185068608) and s.upper == 1.0
    assert tuple(km.quantile(0.25)) == (4, 2, None)
    # reverse KM: nobody censored, so median follow-up is not reached
    fu = reverse_km_follow_up([2, 4, 4, 7, 9], [1, 1, 1, 1, 1])
    assert fu.median is None and fu.events == 0


def test_median_not_reached_is_none():
    km = kaplan_meier([1, 3, 4, 6, 8, 10, 12], [0, 1, 0, 0, 1, 0, 0])
    assert (km.median, km.median_lower, km.median_upper) == (None, 8, None)
    s = km.summary_at(12)
    assert close(s.surv, 0.555555555555556) and close(s.std_err, 0.248451997499977)
    assert close(s.lower, 0.231237674035404) and s.upper == 1.0
    assert tuple(km.quantile(0.25)) == (8, 3, None)


def test_no_events_flat_curve():
    km = kaplan_meier([3, 1, 2], [0, 0, 0])
    assert km.events == 0
    assert km.table["survival"].tolist() == [1.0, 1.0, 1.0]
    assert km.table["lower"].tolist() == [1.0, 1.0, 1.0]
    assert km.median is None and km.median_lower is None and km.median_upper is None
    assert km.survival_at(10) == (1.0, 1.0, 1.0)


def test_extend_past_last_time_and_missing_rows_dropped():
    km = kaplan_meier([1, 2, np.nan, 3], [1, 0, 1, np.nan])
    assert km.n == 2 and km.events == 1
    assert km.summary_at(100).surv == 0.5
    assert km.summary_at(100).n_at_risk == 0


def test_conf_level_changes_the_interval():
    km90 = kaplan_meier([1, 2, 3, 4, 5, 6], [1, 1, 0, 1, 1, 0], conf_level=0.90)
    km95 = kaplan_meier([1, 2, 3, 4, 5, 6], [1, 1, 0, 1, 1, 0])
    s90, s95 = km90.survival_at(4), km95.survival_at(4)
    assert s90.surv == s95.surv
    assert s95.lower < s90.lower < s90.surv


@pytest.mark.parametrize("time,event,msg", [
    ([1, -2], [1, 1], "negative"),
    ([1, 2], [1, 2], "0 \\(censored\\) / 1"),
    ([1, 2, 3], [1, 0], "differ in length"),
    ([], [], "at least one"),
])
def test_bad_input_is_rejected(time, event, msg):
    with pytest.raises(ValueError, match=msg):
        kaplan_meier(time, event)


def test_reverse_km_follow_up_matches_r(lung_months):
    frame, _ = lung_months
    male = frame[frame["group"] == "male"]
    fu = reverse_km_follow_up(male["time"], male["event"])
    assert (fu.median, fu.median_lower, fu.median_upper) == (28, 26, None)  # R
    assert fu.events == int((male["event"] == 0).sum())


def test_lifelines_ci_is_not_rs_default_and_ours_is(lung):
    """lifelines' KM interval is R's log-log; R's default (and ours) is log."""
    pytest.importorskip("lifelines")
    from lifelines import KaplanMeierFitter

    frame, ref = lung
    t365 = ref["km_overall"]["landmark"]
    r_lower, r_upper = ref["km_overall"]["surv_lower"], ref["km_overall"]["surv_upper"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lf = KaplanMeierFitter().fit(frame["time"], frame["event"])
    ci = lf.confidence_interval_survival_function_
    lf_lower, lf_upper = ci[ci.index <= t365].iloc[-1].to_numpy()
    assert abs(lf_lower / r_lower - 1) > 1e-3 and abs(lf_upper / r_upper - 1) > 1e-3
    ours = kaplan_meier(frame["time"], frame["event"]).survival_at(t365)
    assert ours.lower == pytest.approx(r_lower, rel=1e-9)
    assert ours.upper == pytest.approx(r_upper, rel=1e-9)
    # and its median is inf when not reached where R (and we) say NA / None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lf2 = KaplanMeierFitter().fit([1, 3, 4, 6, 8, 10, 12], [0, 1, 0, 0, 1, 0, 0])
    assert math.isinf(lf2.median_survival_time_)
    assert kaplan_meier([1, 3, 4, 6, 8, 10, 12], [0, 1, 0, 0, 1, 0, 0]).median is None
