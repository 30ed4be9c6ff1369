"""The statistics API of study_spec §5.6 away from the reference data sets: R's QR rank
detection (dqrdc2) on a design with exact and near collinearity, E-values against R's formula
and the textbook value, overlap weights' exact balance, truncation counts, argument errors.

R numbers below: R 4.2.2::

    n <- 40; i <- 1:n
    x1 <- sin(i); x2 <- cos(i / 3); x3 <- x1 + 2 * x2; x4 <- x1 + 1e-9 * (i / n)^2
    x5 <- (i / n)^2; x6 <- 1e-9 * sin(2 * i)
    X <- cbind(1, x1, x2, x3, x4, x5, x6)
    qr(X, tol = 1e-7)$pivot     # 1 2 3 6 7 4 5, rank 5
    qr(X, tol = 1e-11)$pivot    # 1 2 3 5 6 7 4, rank 6 (glm.fit's own tolerance)
    evalue(hr, lo, hi, rare)    # r_beyond.R section (9)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from haic_pipeline.stats import balance_table, e_value, propensity_weights, quantile_type3, rare_outcome
from haic_pipeline.stats.iptw import _compressed, _dqrdc2_aliased


def _design() -> np.ndarray:
    n = 40
    i = np.arange(1, n + 1)
    x1, x2, x5 = np.sin(i), np.cos(i / 3), (i / n) ** 2
    return np.column_stack([np.ones(n), x1, x2, x1 + 2 * x2, x1 + 1e-9 * x5, x5, 1e-9 * np.sin(2 * i)])


def test_qr_rank_detection_is_rs_dqrdc2():
    # R's pivot tail beyond the rank, 0-based: tol 1e-7 -> x3 (exact) and x4 (1e-9 away)
    assert _dqrdc2_aliased(_design(), 1e-7) == [3, 4]
    assert _dqrdc2_aliased(_design(), 1e-11) == [3]
    # the test is relative to each column's own norm: a tiny but independent column stays
    assert 6 not in _dqrdc2_aliased(_design(), 1e-7)
    # on the R factor of the design (what large n uses) the decisions are the same
    tall = np.vstack([_design()] * 10)
    assert _compressed(tall).shape == (7, 7)
    assert _dqrdc2_aliased(_compressed(tall), 1e-7) == [3, 4]
    assert _dqrdc2_aliased(_compressed(tall), 1e-11) == [3]
    # more columns than rows: the ones beyond n are aliased, as R's rank = min(k, n)
    wide = np.column_stack([np.ones(3), [1.0, 2, 4], [0.0, 1, 0], [3.0, 1, 2]])
    assert _dqrdc2_aliased(wide) == [3]


def test_near_collinear_covariate_is_left_out_at_the_spec_tolerance():
    x = _design()
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(x[:, 1:], columns=["x1", "x2", "x3", "x4", "x5", "x6"])
    frame["a"] = (rng.random(40) < 1 / (1 + np.exp(-frame["x1"]))).astype(int)
    res = propensity_weights(frame, "a", ["x1", "x2", "x3", "x4", "x5"])
    assert res.aliased == ("x3", "x4") and res.covariates == ("x1", "x2", "x5")
    assert res.aliased_reason == {"x3": "linear_combination", "x4": "linear_combination"}
    assert "x1, x2" in res.aliased_note["x3"]
    glm_tol = propensity_weights(frame, "a", ["x1", "x2", "x3", "x4", "x5"], alias_tol=1e-11)
    assert glm_tol.aliased == ("x3",)  # R glm.fit's own QR tolerance keeps x4


@pytest.mark.parametrize("args,expected", [
    ((1.8, 1.2, 2.7, False), (1.50051882814309, 2.36714327129528, 1.52553091757873)),
    ((1.8, 1.2, 2.7, True), (1.8, 3.0, 1.68989794855664)),  # VanderWeele & Ding's RR 1.8 -> 3
    ((0.7, 0.45, 1.1, False), (0.78124461158574, 1.87868551283741, 1.0)),  # CI contains 1
    ((0.3, 0.1, 0.9, True), (0.3, 6.12220008844692, 1.46247529557426)),  # upper limit closer to 1
])
def test_e_value_matches_r(args, expected):
    hr, lo, hi, rare = args
    ev = e_value(hr, lo, hi, rare=rare)
    assert (ev.rr, ev.e_value, ev.e_value_ci) == pytest.approx(expected, rel=1e-12)
    assert ev.rare is rare
    # the E-value is symmetric in HR <-> 1/HR on the risk-ratio scale
    inv = e_value(1 / hr, 1 / hi, 1 / lo, rare=rare)
    assert inv.e_value == pytest.approx(ev.e_value, rel=1e-12)
    assert inv.e_value_ci == pytest.approx(ev.e_value_ci, rel=1e-12)


def test_e_value_edges_and_errors():
    one = e_value(1.0, 0.8, 1.25)
    assert one.rr == 1.0 and one.e_value == 1.0 and one.e_value_ci == 1.0
    bare = e_value(2.0)
    assert bare.e_value_ci is None and bare.rr_lower is None and bare.e_value > 1
    for bad in [(0.0, 0.5, 1.0), (math.nan, 0.5, 1.0), (math.inf, 1.0, 2.0), (1.5, 1.6, 2.0),
                (1.5, -1.0, 2.0)]:
        with pytest.raises(ValueError):
            e_value(*bad)
    with pytest.raises(ValueError, match="both"):
        e_value(1.5, 1.2, None)


def test_rare_outcome_is_events_below_15_percent():
    assert rare_outcome([1] * 14 + [0] * 86) is True
    assert rare_outcome([1] * 15 + [0] * 85) is False
    assert rare_outcome([1.0, 0.0, np.nan, 0.0, 0.0, 0.0, 0.0, 0.0]) is True  # 1 of 7
    with pytest.raises(ValueError):
        rare_outcome([np.nan])


def _frame(n=500, seed=2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({"x1": rng.integers(0, 2, n).astype(float), "x2": rng.normal(size=n),
                      "x3": rng.exponential(size=n)})
    lin = -0.4 + 0.9 * f["x1"] - 0.6 * f["x2"] + 0.5 * f["x3"]
    f["a"] = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    return f


def test_overlap_weights_formula_and_exact_balance():
    f = _frame()
    covs = ["x1", "x2", "x3"]
    ato = propensity_weights(f, "a", covs, estimand="ATO")
    ate = propensity_weights(f, "a", covs)
    assert ato.ok and ato.estimand == "ATO" and ate.estimand == "ATE"
    np.testing.assert_allclose(ato.ps, ate.ps, rtol=1e-12)
    ps = ato.ps
    np.testing.assert_allclose(ato.weights, np.where(f["a"] == 1, 1 - ps, ps), rtol=1e-15)
    bal = balance_table(f, "a", covs, ato.weights)
    assert bal["smd_after"].abs().max() < 1e-8  # binary and continuous covariates alike
    assert bal["smd_before"].abs().min() > 0.05
    assert ato.clipped is None and ato.truncation is None


def test_truncation_counts_what_it_clips():
    f = _frame()
    tr = propensity_weights(f, "a", ["x1", "x2", "x3"], truncate=(0.05, 0.95))
    st = propensity_weights(f, "a", ["x1", "x2", "x3"])
    lo, hi = quantile_type3(st.weights, [0.05, 0.95])
    assert tr.clipped == (int((st.weights < lo).sum()), int((st.weights > hi).sum()))
    assert tr.clipped[0] > 0 and tr.clipped[1] > 0
    assert int((tr.weights != st.weights).sum()) == sum(tr.clipped)
    assert st.clipped is None
    # at n = 40 the 1st / 99th percentiles (type 3) are the extremes: nothing is clipped
    small = propensity_weights(f.iloc[:40], "a", ["x1", "x2", "x3"], truncate=True)
    assert small.clipped == (0, 0)


def test_estimand_arguments_are_checked():
    f = _frame()
    with pytest.raises(ValueError, match="estimand"):
        propensity_weights(f, "a", ["x1"], estimand="ATT")
    with pytest.raises(ValueError, match="ATE weights only"):
        propensity_weights(f, "a", ["x1"], estimand="ATO", truncate=True)


def test_left_out_covariates_keep_the_complete_cases_of_every_candidate():
    """A covariate left out still defines the modelled patients (R glm's na.omit over the
    formula's variables): its missing rows are excluded and counted."""
    f = _frame()
    f["c"] = 1.0
    f.loc[f.index[:5], "c"] = np.nan
    res = propensity_weights(f, "a", ["x1", "c", "x2"])
    assert res.aliased == ("c",) and res.n == len(f) - 5 and res.n_excluded_missing == 5
    assert res.weights.iloc[:5].isna().all()


def test_every_candidate_left_out_leaves_the_intercept_only_model():
    """glm(A ~ 1): ps = share treated for everyone; stabilized ATE weights are all 1 and
    overlap weights 1 - p / p."""
    f = _frame(n=200)
    f["c"] = 0.0
    f["sep"] = f["a"].astype(float)
    ate = propensity_weights(f, "a", ["c", "sep"])
    ato = propensity_weights(f, "a", ["c", "sep"], estimand="ATO")
    p = f["a"].mean()
    assert ate.ok and ate.covariates == () and ate.aliased == ("c", "sep")
    assert ate.table["term"].tolist() == ["intercept"]
    assert ate.coefficients["intercept"] == pytest.approx(math.log(p / (1 - p)), rel=1e-10)
    np.testing.assert_allclose(ate.weights, 1.0, rtol=1e-10)
    np.testing.assert_allclose(ato.weights, np.where(f["a"] == 1, 1 - p, p), rtol=1e-10)


def test_a_failed_fit_names_what_it_left_out_and_gives_no_weights():
    rows = [(0, 0, 0)] * 20 + [(0, 0, 1)] * 10 + [(1, 1, 0)] * 12 + [(1, 1, 1)] * 9 \
        + [(1, 0, 1)] * 15 + [(0, 1, 0)] * 18
    f = pd.DataFrame(rows, columns=["x1", "x2", "a"]).astype(float)
    f["c"] = 1.0
    for estimand in ("ATE", "ATO"):
        res = propensity_weights(f, "a", ["x1", "c", "x2"], estimand=estimand)
        assert res.status == "separation" and res.weights is None and res.estimand == estimand
        assert res.aliased == ("c",) and res.covariates == ("x1", "x2")
