"""R parity of the "beyond the paper" statistics (study_spec §5): every number in every
``reference/r_beyond/NAME.json`` is reproduced from ``NAME.csv`` alone.

The JSON files come from ``r_beyond.R`` (the exact R calls). For each data set the
statistics layer computes a dict with the JSON's structure: propensity model, weights and
their type-3 quantiles, SMDs, IPTW Kaplan-Meier, IPTW Cox with robust se and robust score
test, RMST unweighted and IPTW with contrasts, ``cox.zph``. Every leaf must exist and match:
1e-6 relative, Cox-model quantities (``iptw_cox``, ``cox_zph``) 1e-5; medians, counts,
df, names exactly. A key that the JSON has and this test does not compute fails (new
reference keys cannot be skipped). ``NAME_weights.csv`` (R's ps and weights per row) is
compared row by row when present.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from haic_pipeline.stats import (
    balance_table,
    cox_regression,
    cox_zph,
    kaplan_meier,
    propensity_weights,
    quantile_type3,
    rmst_compare,
    weighted_logrank,
)

from .robustness_compute import rmst_block
from .stats_reference import beyond_dir, compare_sections, shared_dir

EXACT_KEYS = {"median", "median_lower", "median_upper", "n", "df", "tau", "landmark", "covariates"}
COX_SECTIONS = {"iptw_cox", "cox_zph"}


def discover() -> list[str]:
    d = beyond_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if (d / f"{p.stem}.csv").is_file())


DATASETS = discover()


def _skip() -> None:
    pytest.skip(f"R reference folder not found: looked at {beyond_dir()} (shared dir {shared_dir()})")


def load(name: str) -> tuple[pd.DataFrame, dict]:
    import json

    d = beyond_dir()
    frame = pd.read_csv(d / f"{name}.csv")
    with open(d / f"{name}.json", encoding="utf-8") as fh:
        return frame, json.load(fh)


def compute(frame: pd.DataFrame, ref: dict) -> dict:
    """What the statistics layer returns for the R calls of ``r_beyond.R``."""
    covs = list(ref["covariates"])
    tau, landmark = ref["tau"], ref["landmark"]
    out: dict = {"covariates": covs, "tau": tau, "landmark": landmark, "n": len(frame)}
    ps = propensity_weights(frame, "arm", covs)
    assert ps.ok, ps.reason
    out["ps_coefficients"] = dict(ps.coefficients)
    w = ps.weights
    summ = ps.summary.set_index("treatment")
    trunc = propensity_weights(frame, "arm", covs, truncate=(0.01, 0.99))
    q01, q99 = quantile_type3(w, [0.01, 0.99])
    assert trunc.truncation == (q01, q99)
    out["weights"] = {"sum": float(w.sum()), "min": float(w.min()), "max": float(w.max()),
                      "ess_treated": float(summ.loc[1, "ess"]),
                      "ess_control": float(summ.loc[0, "ess"]),
                      "q01_type3": trunc.truncation[0], "q99_type3": trunc.truncation[1]}
    bal = balance_table(frame, "arm", covs, w)
    out["smd"] = {r.covariate: {"before": r.smd_before, "after": r.smd_after}
                  for r in bal.itertuples()}
    data = frame.assign(sw=w)
    out["iptw_km"] = {}
    for arm in (1, 0):
        sub = data[data["arm"] == arm]
        km = kaplan_meier(sub["time"], sub["event"], weights=sub["sw"])
        s = km.summary_at(landmark)
        out["iptw_km"][str(arm)] = {"surv": s.surv, "lower": s.lower, "upper": s.upper,
                                    "std_err": s.std_err, "median": km.median,
                                    "median_lower": km.median_lower,
                                    "median_upper": km.median_upper}
    cox = cox_regression(data, "time", "event", ["arm"], weights="sw", robust=True)
    row = cox.iloc[0]
    wl = weighted_logrank(data["time"], data["event"], data["arm"], data["sw"])
    assert wl.statistic == pytest.approx(cox.attrs["robust_score"], rel=1e-12)
    out["iptw_cox"] = {"coef": row.coef, "hr": row.hr, "robust_se": row.se,
                       "hr_lower": row.hr_lower, "hr_upper": row.hr_upper,
                       "p_value": row.p_value, "robust_score": wl.statistic,
                       "robust_score_p": wl.p_value}
    t, e, a = data["time"], data["event"], data["arm"]
    out["rmst"] = rmst_block(rmst_compare(t, e, a, tau, reference=0))
    out["iptw_rmst"] = rmst_block(rmst_compare(t, e, a, tau, weights=data["sw"], reference=0))
    zph = cox_zph(data, "time", "event", ["arm", *covs], transform="km")
    out["cox_zph"] = {r.term: {"chisq": r.chisq, "df": r.df, "p_value": r.p_value}
                      for r in zph.itertuples()}
    return out


def check(ref: dict, got: dict) -> tuple[list, list]:
    return compare_sections(ref, got, lambda s: 1e-5 if s in COX_SECTIONS else 1e-6, EXACT_KEYS)


@pytest.mark.parametrize("name", DATASETS or ["<reference folder missing>"])
def test_matches_every_number_in_r_beyond_reference(name: str) -> None:
    if not DATASETS:
        _skip()
    frame, ref = load(name)
    failures, counter = check(ref, compute(frame, ref))
    assert not failures, f"{name}: {len(failures)} mismatches:\n" + "\n".join(failures)
    assert len(counter) >= 60  # lung: 90 reference numbers


@pytest.mark.parametrize("name", DATASETS or ["<reference folder missing>"])
def test_propensity_scores_and_weights_match_r_row_by_row(name: str) -> None:
    if not DATASETS:
        _skip()
    path = beyond_dir() / f"{name}_weights.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    frame, ref = load(name)
    r = pd.read_csv(path)
    res = propensity_weights(frame, "arm", ref["covariates"])
    assert res.n == len(r) and res.n_excluded_missing == 0
    np.testing.assert_allclose(res.ps.to_numpy(), r["ps"].to_numpy(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(res.weights.to_numpy(), r["sw"].to_numpy(), rtol=1e-6, atol=0)


def test_lung_reference_is_present_and_fully_covered() -> None:
    if not beyond_dir().is_dir():
        _skip()
    assert "lung" in DATASETS
    frame, ref = load("lung")
    _, counter = check(ref, compute(frame, ref))

    def leaves(node) -> int:
        return sum(leaves(v) for v in node.values()) if isinstance(node, dict) else 1

    assert len(counter) == leaves(ref) == 90  # every leaf of lung.json is compared


def test_comparison_detects_a_wrong_number() -> None:
    """The comparison itself can fail: a perturbed value, a missing key, a wrong median."""
    if not DATASETS:
        _skip()
    frame, ref = load("lung")
    got = compute(frame, ref)
    got["iptw_km"]["1"]["std_err"] *= 1 + 2e-6
    got["iptw_cox"]["robust_se"] *= 1 + 2e-5
    del got["iptw_rmst"]["ratio"]["p_value"]
    got["iptw_km"]["0"]["median"] += 1
    got["cox_zph"]["GLOBAL"]["df"] = 4
    failures, _ = check(ref, got)
    joined = "\n".join(failures)
    assert "iptw_km.1.std_err" in joined
    assert "iptw_cox.robust_se" in joined
    assert "iptw_rmst.ratio.p_value: in the R reference but not computed" in joined
    assert "iptw_km.0.median" in joined
    assert "cox_zph.GLOBAL.df" in joined
    assert len(failures) == 5
