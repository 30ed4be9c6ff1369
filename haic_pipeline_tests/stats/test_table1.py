"""Table 1 builder and publication formatting."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from haic_pipeline.stats import (
    build_table1,
    compare_means,
    compare_proportions,
    format_count_percent,
    format_estimate_ci,
    format_hr,
    format_mean_sd,
    format_median_ci,
    format_p,
)

COLUMNS = ["variable", "level", "first_line", "post_ate_beva", "overall", "test", "p_value"]


def cohort() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    n = 120
    df = pd.DataFrame({
        "group": np.where(np.arange(n) < 70, "first_line", "post_ate_beva"),
        "age": np.round(rng.normal(64, 10, n)),
        "sex": rng.choice(["female", "male"], n, p=[0.2, 0.8]),
        "ecog": rng.choice([0.0, 1.0, 2.0], n, p=[0.6, 0.35, 0.05]),
        "bclc_stage": rng.choice(["A", "B", "C", "D"], n, p=[0.1, 0.3, 0.5, 0.1]),
    })
    df.loc[[3, 80], "ecog"] = np.nan
    df.loc[5, "age"] = np.nan
    return df


def test_table1_layout_values_and_tests():
    df = cohort()
    tab = build_table1(df, continuous=["age"], categorical=["sex", "ecog", "bclc_stage"])
    assert list(tab.columns) == COLUMNS
    n_row = tab.iloc[0]
    assert (n_row["variable"], n_row["first_line"], n_row["post_ate_beva"], n_row["overall"]) == \
        ("n", "70", "50", "120")
    age = tab[(tab["variable"] == "age") & (tab["level"] == "mean \u00b1 SD")].iloc[0]
    fl = df.loc[df["group"] == "first_line", "age"].dropna()
    assert age["first_line"] == f"{fl.mean():.2f} \u00b1 {fl.std(ddof=1):.2f}"
    assert age["test"] == "t_test"
    assert age["p_value"] == pytest.approx(compare_means(df["age"], df["group"]).p_value, rel=1e-12)
    assert tab[(tab["variable"] == "age") & (tab["level"] == "missing")]["overall"].tolist() == ["1"]
    ecog = tab[tab["variable"] == "ecog"]
    assert ecog["level"].tolist() == ["0", "1", "2", "missing"]
    expected = compare_proportions(df["ecog"], df["group"])
    assert set(ecog["test"].iloc[:3]) == {expected.test}
    assert ecog["p_value"].iloc[0] == pytest.approx(expected.p_value, rel=1e-12)
    # n (%) over the group's non-missing values
    k = int(((df["group"] == "post_ate_beva") & (df["ecog"] == 0)).sum())
    denom = int(((df["group"] == "post_ate_beva") & df["ecog"].notna()).sum())
    assert ecog["post_ate_beva"].iloc[0] == f"{k} ({100 * k / denom:.1f})"
    bclc = tab[tab["variable"] == "bclc_stage"]
    assert bclc["level"].tolist() == ["A", "B", "C", "D"]
    assert tab["p_value"].dtype == float


def test_table1_level_order_and_one_group_empty():
    df = cohort()
    df = df[df["group"] == "first_line"]
    tab = build_table1(df, continuous=["age"], categorical=["sex"],
                       levels={"sex": ["male", "female"]})
    sex = tab[tab["variable"] == "sex"]
    assert sex["level"].tolist() == ["male", "female"]
    assert sex["post_ate_beva"].tolist() == ["0 (NA)", "0 (NA)"]
    assert sex["test"].isna().all() and sex["p_value"].isna().all()
    age = tab[tab["variable"] == "age"].iloc[0]
    assert age["post_ate_beva"] == "NA \u00b1 NA" and math.isnan(age["p_value"])


def test_table1_fisher_when_expected_count_small():
    df = pd.DataFrame({"group": ["first_line"] * 8 + ["post_ate_beva"] * 8,
                       "ascites": ["none"] * 7 + ["mild"] + ["none"] * 3 + ["mild"] * 5})
    tab = build_table1(df, categorical=["ascites"], include_n=False)
    assert tab["test"].tolist() == ["fisher", "fisher"]
    assert tab["p_value"].iloc[0] == pytest.approx(
        compare_proportions(df["ascites"], df["group"]).p_value)


@pytest.mark.parametrize("p,text", [
    (0.0734, "0.073"), (0.0005, "<0.001"), (0.000999, "<0.001"), (0.001, "0.001"),
    (0.9996, "1.000"), (1.27e-5, "<0.001"), (None, "NA"), (float("nan"), "NA"),
])
def test_format_p(p, text):
    assert format_p(p) == text


def test_formatters():
    assert format_median_ci(12.43, 9.0, None) == "12.4 (9.0\u2013NA)"
    assert format_hr(0.40412, 0.19655, 0.8287) == "HR 0.404 (0.197\u20130.829)"
    assert format_mean_sd(65.7911, 11.1867) == "65.79 \u00b1 11.19"
    assert format_count_percent(12, 35) == "12 (34.3)"
    assert format_count_percent(0, 0) == "0 (NA)"
    assert format_estimate_ci(45.2, float("nan"), 60.31, digits=1) == "45.2 (NA\u201360.3)"
    assert format_median_ci(None, None, None) == "NA (NA\u2013NA)"
