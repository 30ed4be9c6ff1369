"""Univariable screening and the multivariable model of study_spec §3."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from haic_pipeline.stats import CoxFitError, binary_indicator, cox_regression, cox_screening
from haic_pipeline.stats.models import EXCLUDED_COLUMNS, MODEL_COLUMNS


def study_frame(n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "group": rng.integers(0, 2, n).astype(float),
        "age_ge_65": rng.integers(0, 2, n).astype(float),
        "ecog_0": rng.integers(0, 2, n).astype(float),
        "afp_ge_400": rng.integers(0, 2, n).astype(float),
        "noise": rng.integers(0, 2, n).astype(float),
        "sex_male": np.ones(n),  # no variation
    })
    lin = -0.6 * df["group"] + 0.9 * df["ecog_0"] + 0.7 * df["afp_ge_400"]
    df["os_months"] = np.round(rng.exponential(14 * np.exp(-lin)), 1)
    df["os_event"] = (rng.uniform(size=n) < 0.75).astype(float)
    # 25% missing -> left out; 10% missing -> kept, complete cases per model
    df.loc[rng.choice(n, int(0.25 * n), replace=False), "noise"] = np.nan
    df.loc[rng.choice(n, int(0.10 * n), replace=False), "afp_ge_400"] = np.nan
    return df


CANDIDATES = ["group", "age_ge_65", "sex_male", "ecog_0", "afp_ge_400", "noise"]


def test_screening_rules_and_multivariable_model():
    df = study_frame()
    res = cox_screening(df, "os_months", "os_event", CANDIDATES)
    excl = dict(zip(res.excluded["term"], res.excluded["reason"]))
    assert excl == {"sex_male": "no_variation", "noise": "missing_over_20pct"}
    assert list(res.excluded.columns) == EXCLUDED_COLUMNS
    uni = res.univariable.set_index("term")
    assert list(uni.index) == ["group", "age_ge_65", "ecog_0", "afp_ge_400"]
    assert (res.univariable["model"] == "univariable").all()
    # each univariable model = cox_regression on its own complete cases
    for term in uni.index:
        alone = cox_regression(df, "os_months", "os_event", [term]).iloc[0]
        assert uni.loc[term, "hr"] == pytest.approx(alone["hr"], rel=1e-12)
        assert uni.loc[term, "n"] == df[term].notna().sum()
    # entry rule: group always, others with p < 0.1
    expected = ["group"] + [t for t in uni.index if t != "group" and uni.loc[t, "p_value"] < 0.1]
    assert res.selected == expected
    assert "ecog_0" in expected and "afp_ge_400" in expected
    multi = res.multivariable
    assert multi["term"].tolist() == expected and (multi["model"] == "multivariable").all()
    full = cox_regression(df, "os_months", "os_event", expected)
    np.testing.assert_allclose(multi["hr"], full["hr"], rtol=1e-12)
    assert multi["n"].iloc[0] == df[expected].notna().all(axis=1).sum()
    assert list(res.models.columns) == MODEL_COLUMNS
    assert len(res.models) == len(uni) + len(multi)


def test_group_is_kept_even_when_not_significant():
    df = study_frame(seed=11)
    # a group label unrelated to the outcome: alternate the sorted-by-time rows
    df = df.sort_values("os_months").reset_index(drop=True)
    df["group"] = (df.index % 2).astype(float)
    res = cox_screening(df, "os_months", "os_event", ["age_ge_65", "group", "ecog_0"])
    uni = res.univariable.set_index("term")["p_value"]
    assert uni["group"] > 0.1
    assert "group" in res.selected
    assert res.selected == ["group"] + [t for t in ["age_ge_65", "ecog_0"] if uni[t] < 0.1]


def test_missing_threshold_is_strictly_more_than_20_percent():
    df = study_frame(n=100)
    df["edge"] = np.random.default_rng(5).integers(0, 2, 100).astype(float)
    df.loc[:19, "edge"] = np.nan  # exactly 20% missing: kept
    df["over"] = df["edge"]
    df.loc[20, "over"] = np.nan  # 21%: left out
    res = cox_screening(df, "os_months", "os_event", ["group", "edge", "over"])
    assert "edge" in res.univariable["term"].tolist()
    assert res.excluded.set_index("term").loc["over", "reason"] == "missing_over_20pct"


def test_unfittable_candidate_is_listed_not_fatal():
    df = study_frame(n=60)
    # 'sep' = 1 exactly for the 20 earliest times, all events: monotone likelihood
    df = df.sort_values("os_months").reset_index(drop=True)
    df["os_event"] = 1.0
    df["sep"] = (df.index < 20).astype(float)
    res = cox_screening(df, "os_months", "os_event", ["group", "sep"])
    row = res.excluded.set_index("term").loc["sep"]
    assert row["reason"] == "not_estimable" and "separation" in row["detail"]
    assert res.selected == ["group"]


def test_no_events_raises():
    df = study_frame(n=50).assign(os_event=0.0)
    with pytest.raises(CoxFitError, match="no events"):
        cox_screening(df, "os_months", "os_event", ["group", "ecog_0"])


def test_binary_indicator_keeps_missing():
    s = binary_indicator(["HBV", "HCV", None, "alcohol", "HBV"], "HBV")
    assert s.tolist()[:2] == [1.0, 0.0] and np.isnan(s.iloc[2]) and s.tolist()[3:] == [0.0, 1.0]
    t = binary_indicator(["C", "D", "A", "B", np.nan], ["C", "D"])
    assert t.tolist()[:4] == [1.0, 1.0, 0.0, 0.0] and np.isnan(t.iloc[4])
