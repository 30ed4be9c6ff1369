"""The signed log-rank z of the monitoring (study_spec §6.2) against R's survdiff:

    library(survival)
    f <- survdiff(Surv(time, status) ~ sex, data = lung)            # sex 2 = female
    (f$obs[2] - f$exp[2]) / sqrt(f$var[2, 2])                      # -3.21352484896035
    d <- data.frame(t = 1:8, e = c(1, 1, 1, 0, 1, 1, 0, 1), g = rep(c("a", "b"), each = 4))
    f <- survdiff(Surv(t, e) ~ g, data = d); (f$obs[2] - f$exp[2]) / sqrt(f$var[2, 2])   # -2.0524736834717

(R 4.2.2, survival 3.4; printed with digits = 15.)"""

from __future__ import annotations

import pytest

from haic_pipeline.stats import logrank, logrank_z


def test_logrank_z_is_r_survdiff_signed(lung):
    df, _ = lung
    z = logrank_z(df["time"], df["event"], df["group"], ["male", "female"], "female")
    assert z == pytest.approx(-3.21352484896035, abs=1e-12)
    # the other group's z is the same with the opposite sign, and z^2 is the chi-square
    assert logrank_z(df["time"], df["event"], df["group"], ["female", "male"], "male") == pytest.approx(-z, abs=1e-12)
    assert z * z == pytest.approx(logrank(df["time"], df["event"], df["group"]).statistic, rel=1e-12)


def test_logrank_z_small_case_and_errors():
    t, e, g = list(range(1, 9)), [1, 1, 1, 0, 1, 1, 0, 1], ["a"] * 4 + ["b"] * 4
    assert logrank_z(t, e, g, ["a", "b"], "b") == pytest.approx(-2.0524736834717, abs=1e-12)
    with pytest.raises(ValueError, match="two groups"):
        logrank_z(t, e, g, ["a", "b", "c"], "b")
    with pytest.raises(ValueError, match="no events"):
        logrank_z(t, [0] * 8, g, ["a", "b"], "b")
