"""Cox regression: R parity beyond the reference JSONs (R 4.2.2 / survival 3.5-3),
lifelines' convergence trap, and clear errors for models that cannot be fitted."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from haic_pipeline.stats import CoxFitError, cox_regression


def test_efron_with_missing_values_and_heavy_ties_matches_r(lung_months):
    frame, _ = lung_months
    covs = ["age", "male", "ecog", "wt_loss"]
    res = cox_regression(frame, "time", "event", covs)
    # R: coxph(Surv(time, event) ~ age + male + ecog + wt_loss, data = lung_months)
    r_coef = [0.013550919007106, 0.603987717303201, 0.521009030052614, -0.00894829079912731]
    r_p = [0.159478827912212, 0.000574514781246517, 3.60036436410019e-05, 0.177860277891745]
    r_lo = [0.994686204868027, 1.2971871653669, 1.31502915485793, 0.978274495065554]
    r_hi = [1.03296137833167, 2.57996861288065, 2.15579426420263, 1.00407668408974]
    np.testing.assert_allclose(res["coef"], r_coef, rtol=1e-6)
    np.testing.assert_allclose(res["p_value"], r_p, rtol=1e-6)
    np.testing.assert_allclose(res["hr_lower"], r_lo, rtol=1e-6)
    np.testing.assert_allclose(res["hr_upper"], r_hi, rtol=1e-6)
    assert res["n"].unique().tolist() == [213] and res["events"].unique().tolist() == [151]
    assert res.attrs["loglik"] == pytest.approx(-661.289272091468, rel=1e-9)
    assert res["term"].tolist() == covs
    assert list(res.columns[:8]) == ["term", "coef", "hr", "hr_lower", "hr_upper", "p_value",
                                     "n", "events"]


def test_breslow_two_covariates_matches_r(lung_months):
    frame, _ = lung_months
    res = cox_regression(frame, "time", "event", ["male", "ecog"], ties="breslow")
    np.testing.assert_allclose(res["coef"], [0.550032424475472, 0.474370937166273], rtol=1e-6)
    np.testing.assert_allclose(res["p_value"], [0.00103362873049524, 2.3492809757252e-05], rtol=1e-6)
    efron = cox_regression(frame, "time", "event", ["male", "ecog"])
    assert abs(efron["coef"].iloc[0] / res["coef"].iloc[0] - 1) > 1e-3  # ties matter here


def test_converges_where_lifelines_default_stops_short(veteran):
    """lifelines' default stops a Newton step early: karno's p (|z| = 6.5) is ~8e-5 off R."""
    lifelines = pytest.importorskip("lifelines")
    frame, ref = veteran
    covs = list(ref["cox"])
    r_p = ref["cox"]["karno"]["p_value"]
    ours = cox_regression(frame, "time", "event", covs).set_index("term")
    ours_err = abs(ours.loc["karno", "p_value"] / r_p - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lf = lifelines.CoxPHFitter().fit(frame[["time", "event", *covs]], "time", "event")
        lf_tight = lifelines.CoxPHFitter().fit(frame[["time", "event", *covs]], "time", "event",
                                              fit_options={"precision": 1e-12})
    lf_err = abs(lf.summary.loc["karno", "p"] / r_p - 1)
    assert lf_err > 1e-5  # the trap
    assert ours_err < 1e-8 and ours_err < lf_err / 100
    # with tightened convergence lifelines (Efron) agrees with us
    np.testing.assert_allclose(ours["coef"], lf_tight.params_[covs], rtol=1e-8)


def test_agrees_with_tightened_lifelines_on_tied_synthetic_data():
    lifelines = pytest.importorskip("lifelines")
    rng = np.random.default_rng(7)
    n = 400
    df = pd.DataFrame({"a": rng.integers(0, 2, n).astype(float), "b": rng.normal(size=n)})
    df["time"] = np.ceil(rng.exponential(10 * np.exp(-0.5 * df["a"] - 0.3 * df["b"])))
    df["event"] = (rng.uniform(size=n) < 0.7).astype(float)
    ours = cox_regression(df, "time", "event", ["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lf = lifelines.CoxPHFitter().fit(df, "time", "event", fit_options={"precision": 1e-12})
    # R: coxph(Surv(time, event) ~ a + b, ties = "efron") on the same data
    np.testing.assert_allclose(ours["coef"], [0.50348222161476, 0.345330454274062], rtol=1e-9)
    assert ours.attrs["loglik"] == pytest.approx(-1356.83483644569, rel=1e-12)
    assert ours.attrs["loglik_null"] == pytest.approx(-1375.95426875067, rel=1e-12)
    # lifelines (a second implementation) agrees to its own convergence
    np.testing.assert_allclose(ours["coef"], lf.params_[["a", "b"]], rtol=1e-5)
    np.testing.assert_allclose(ours["p_value"], lf.summary.loc[["a", "b"], "p"], rtol=1e-4)


def test_boolean_covariate_and_complete_cases():
    df = pd.DataFrame({
        "time": [5, 8, 3, 9, 12, 4, 7, 10, 2, 6, 11, 1],
        "event": [1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1],
        "flag": [True, False, True, False, False, True, False, True, True, False, False, True],
        "x": [1.0, np.nan, 0.4, 0.5, 1.5, 2.5, 3.0, 1.8, 0.2, np.nan, 2.2, 0.7],
    })
    res = cox_regression(df, "time", "event", ["flag", "x"])
    assert res["n"].iloc[0] == 10 and res["events"].iloc[0] == 7
    one = cox_regression(df, "time", "event", ["flag"])
    assert one["n"].iloc[0] == 12 and one["events"].iloc[0] == 8


def _small():
    return pd.DataFrame({
        "time": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "event": [1, 1, 0, 1, 1, 1, 0, 1, 1, 1],
        "x": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        "z": [0.3, 1.2, 0.7, 0.1, 0.9, 1.5, 0.4, 0.8, 1.1, 0.2],
        "k": [2.0] * 10,
    })


def test_no_events_is_a_clear_error():
    df = _small().assign(event=0)
    with pytest.raises(CoxFitError, match="no events"):
        cox_regression(df, "time", "event", ["z"])


def test_constant_column_is_a_clear_error():
    with pytest.raises(CoxFitError, match="'k' is constant"):
        cox_regression(_small(), "time", "event", ["z", "k"])


def test_one_group_empty_is_a_constant_column():
    df = _small()
    df["group"] = 0.0  # nobody in the comparison group
    with pytest.raises(CoxFitError, match="'group' is constant"):
        cox_regression(df, "time", "event", ["group", "z"])


def test_perfect_separation_is_a_clear_error():
    # every x = 1 subject dies before every x = 0 subject: the MLE of x is +infinity
    df = _small()
    df["event"] = 1
    with pytest.raises(CoxFitError, match="'x' diverges.*separation"):
        cox_regression(df, "time", "event", ["x"])
    with pytest.raises(CoxFitError, match="'x'"):
        cox_regression(df, "time", "event", ["z", "x"])


def test_collinear_columns_are_a_clear_error():
    df = _small()
    df["z2"] = 2 * df["z"] + 1
    with pytest.raises(CoxFitError, match="collinear: 'z', 'z2'"):
        cox_regression(df, "time", "event", ["z", "z2"])


def test_non_numeric_column_and_no_complete_cases():
    df = _small()
    df["s"] = ["a"] * 10
    with pytest.raises(CoxFitError, match="'s' is not numeric"):
        cox_regression(df, "time", "event", ["s"])
    df["z"] = np.nan
    with pytest.raises(CoxFitError, match="no complete cases"):
        cox_regression(df, "time", "event", ["z"])
    assert issubclass(CoxFitError, ValueError)

