"""R parity: every number in every ``reference/r_survival/NAME.json`` is reproduced.

For each data set the statistics layer computes a dict with the JSON's structure; every
leaf of the JSON must exist in it and match: KM, log-rank and tests to 1e-6 relative,
Cox to 1e-4 relative, medians (and counts, df, names) exactly. A key that the JSON has
and this test does not compute fails the test (so new reference keys cannot be skipped).
"""

from __future__ import annotations


import pandas as pd
import pytest

from haic_pipeline.stats import (
    compare_means,
    compare_proportions,
    cox_regression,
    kaplan_meier,
    landmark_test,
    logrank,
    reverse_km_follow_up,
)

from .stats_reference import (KNOWN_DATASETS, compare_reference, compare_sections, discover_datasets, load_dataset, reference_dir,
                              skip_message)

DATASETS = discover_datasets()
EXACT_KEYS = {"median", "median_lower", "median_upper", "n", "events", "df", "landmark", "t",
              "variable", "test"}


def _km_block(km, landmark) -> dict:
    s = km.summary_at(landmark)
    return {"n": km.n, "events": km.events, "median": km.median,
            "median_lower": km.median_lower, "median_upper": km.median_upper,
            "surv": s.surv, "surv_lower": s.lower, "surv_upper": s.upper,
            "surv_std_err": s.std_err, "landmark": landmark}


def compute(frame: pd.DataFrame, ref: dict) -> dict:
    """What the statistics layer returns for the calls documented in the README."""
    t, e, g = frame["time"], frame["event"], frame["group"]
    landmark = ref["km_overall"]["landmark"]
    out: dict = {"km_overall": _km_block(kaplan_meier(t, e), landmark)}
    out["km_by_group"] = {
        str(level): _km_block(kaplan_meier(t[g == level], e[g == level]), landmark)
        for level in sorted(g.unique())
    }
    lr = logrank(t, e, g)
    out["logrank"] = {"statistic": lr.statistic, "df": lr.df, "p_value": lr.p_value}
    fu = reverse_km_follow_up(t, e)
    out["follow_up"] = {"median": fu.median, "median_lower": fu.median_lower,
                        "median_upper": fu.median_upper}
    lt_t = ref["landmark_test"]["t"]
    lt = landmark_test(t, e, g, lt_t)
    out["landmark_test"] = {"t": lt_t, "statistic": lt.statistic, "p_value": lt.p_value}
    covs = list(ref["cox"])
    cox = cox_regression(frame, "time", "event", covs)
    out["cox"] = {row.term: {"coef": row.coef, "hr": row.hr, "hr_lower": row.hr_lower,
                             "hr_upper": row.hr_upper, "p_value": row.p_value}
                  for row in cox.itertuples()}
    out["cox_n"] = {"n": cox.attrs["n"], "events": cox.attrs["events"],
                    "loglik": cox.attrs["loglik"]}
    bres = cox_regression(frame, "time", "event", covs[:1], ties="breslow")
    out["cox_breslow_first"] = {"coef": float(bres["coef"].iloc[0])}
    if "t_test" in ref:
        var = ref["t_test"]["variable"]
        tt = compare_means(frame[var], g)
        out["t_test"] = {"variable": var, "statistic": tt.statistic, "df": tt.df,
                         "p_value": tt.p_value}
    if "categorical_test" in ref:
        var = ref["categorical_test"]["variable"]
        ct = compare_proportions(frame[var], g)
        out["categorical_test"] = {"variable": var, "test": ct.test, "statistic": ct.statistic,
                                   "p_value": ct.p_value}
    return out


def _compare(ref, got, path: str, rtol: float, failures: list, counter: list) -> None:
    compare_reference(ref, got, path, rtol, failures, counter, EXACT_KEYS)


@pytest.mark.parametrize("name", DATASETS or ["<reference folder missing>"])
def test_matches_every_number_in_r_reference(name: str) -> None:
    if not DATASETS:
        pytest.skip(skip_message())
    frame, ref = load_dataset(name)
    got = compute(frame, ref)
    failures, counter = compare_sections(ref, got, lambda s: 1e-4 if s.startswith("cox") else 1e-6, EXACT_KEYS)
    assert not failures, f"{name}: {len(failures)} mismatches:\n" + "\n".join(failures)
    assert len(counter) >= 30  # every data set has at least 30 reference numbers


def test_reference_folder_has_the_known_data_sets() -> None:
    if not reference_dir().is_dir():
        pytest.skip(skip_message())
    assert set(KNOWN_DATASETS) <= set(DATASETS)


def test_comparison_detects_a_wrong_number(lung) -> None:
    """The comparison itself can fail: a perturbed value or a missing key is reported."""
    frame, ref = lung
    got = compute(frame, ref)
    got["logrank"]["statistic"] *= 1 + 2e-6
    del got["km_overall"]["surv_std_err"]
    got["km_by_group"]["male"]["median"] += 0.5
    failures: list = []
    for section, block in ref.items():
        _compare(block, got[section], section, 1e-6, failures, [])
    joined = "\n".join(failures)
    assert "logrank.statistic" in joined
    assert "km_overall.surv_std_err: in the R reference but not computed" in joined
    assert "km_by_group.male.median" in joined
