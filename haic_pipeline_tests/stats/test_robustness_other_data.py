"""The weighted comparison of study_spec §5.1-5.6 against R on data sets outside the shared
reference: ``reference/NAME.json``, made from ``reference/NAME.csv`` by the committed
``reference/r_robustness.R`` (R 4.2.2, survival 3.5-3), same R calls as r_beyond.R:

* ``veteran_aliased``: candidates with a constant column and two linear combinations of
  earlier candidates (R glm's NA coefficients), which the propensity model leaves out and names;
* ``colon_single``: missing covariates (complete cases modelled, the others counted) and a site
  indicator seen among the treated only, left out before the fit (it alone separates).

Every key of each JSON is recomputed and compared (a key not computed fails): which covariates
are left out and why, the coefficients, the ATE and overlap weights, SMDs (after overlap
weighting 0 to 1e-6), weighted KM / Cox / robust score / RMST for both weightings, cox.zph of
the unweighted and the weighted fits, E-values (as the outcome is, and as if it were rare),
truncation counts, the unadjusted Cox on the modelled patients, and the robust score test of a
weighted Cox model whose estimate diverges (no event among the treated).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from haic_pipeline.stats import (
    CoxFitError,
    balance_table,
    cox_regression,
    cox_zph,
    propensity_weights,
    quantile_type3,
    rmst_compare,
    weighted_logrank,
)

from .robustness_compute import compute_robustness, cox_block, evalue_block, km_block, rmst_block
from .test_robustness_parity import check, leaves

REFERENCE = Path(__file__).resolve().parent / "reference"
DATASETS = sorted(p.stem for p in REFERENCE.glob("*.json") if (REFERENCE / f"{p.stem}.csv").is_file())


def load(name: str) -> tuple[pd.DataFrame, dict]:
    return (pd.read_csv(REFERENCE / f"{name}.csv"),
            json.loads((REFERENCE / f"{name}.json").read_text(encoding="utf-8")))


def compute(frame: pd.DataFrame, ref: dict) -> dict:
    covs, tau, landmark = list(ref["covariates"]), ref["tau"], ref["landmark"]
    ps = propensity_weights(frame, "arm", covs)
    assert ps.ok, ps.reason
    keep = ps.weights.notna()
    data = frame.loc[keep].assign(sw=ps.weights[keep])
    modelled = list(ps.covariates)
    out: dict = {"covariates": covs, "tau": tau, "landmark": landmark, "n": ps.n,
                 "n_excluded_missing": ps.n_excluded_missing, "aliased": dict(ps.aliased_reason),
                 "modelled": modelled, "ps_coefficients": dict(ps.coefficients)}
    s = ps.summary.set_index("treatment")
    w = data["sw"]
    q01, q99 = quantile_type3(w, [0.01, 0.99])
    out["weights"] = {"sum": float(w.sum()), "min": float(w.min()), "max": float(w.max()),
                      "ess_treated": float(s.loc[1, "ess"]), "ess_control": float(s.loc[0, "ess"]),
                      "q01_type3": q01, "q99_type3": q99}
    bal = balance_table(data, "arm", modelled, "sw")
    out["smd"] = {r.covariate: {"before": r.smd_before, "after": r.smd_after} for r in bal.itertuples()}
    out["iptw_km"] = km_block(data, "sw", landmark)
    out["iptw_cox"], _ = cox_block(data, "sw")
    t, e, a = data["time"], data["event"], data["arm"]
    out["rmst"] = rmst_block(rmst_compare(t, e, a, tau, reference=0))
    out["iptw_rmst"] = rmst_block(rmst_compare(t, e, a, tau, weights=w, reference=0))
    zph = cox_zph(data, "time", "event", ["arm", *modelled], transform="km")
    out["cox_zph"] = {r.term: {"chisq": r.chisq, "df": r.df, "p_value": r.p_value} for r in zph.itertuples()}
    out.update(compute_robustness(frame, covs, tau, landmark))
    ato = propensity_weights(frame, "arm", covs, estimand="ATO").weights[keep]
    out["iptw_evalue_rare"] = evalue_block(cox_regression(data, "time", "event", ["arm"], weights="sw",
                                                          robust=True), rare=True)
    out["overlap_evalue_rare"] = evalue_block(cox_regression(data.assign(ow=ato), "time", "event", ["arm"],
                                                             weights="ow", robust=True), rare=True)
    no_event = data.assign(event0=data["event"].where(data["arm"] == 0, 0))
    wl = weighted_logrank(no_event["time"], no_event["event0"], no_event["arm"], no_event["sw"])
    out["noevent_cox"] = {"robust_score": wl.statistic, "df": wl.df, "robust_score_p": wl.p_value}
    return out


@pytest.mark.parametrize("name", DATASETS)
def test_every_key_matches_r(name: str) -> None:
    frame, ref = load(name)
    got = compute(frame, ref)
    failures, counter = check(ref, got)
    assert not failures, f"{name}: {len(failures)} mismatches:\n" + "\n".join(failures)
    assert len(counter) == leaves(ref) and set(got) == set(ref)
    assert got["aliased"] == ref["aliased"] and got["modelled"] == ref["modelled"]


def test_both_reference_data_sets_are_committed_and_cover_the_cases() -> None:
    assert DATASETS == ["colon_single", "veteran_aliased"]
    assert (REFERENCE / "r_robustness.R").is_file()
    _, vet = load("veteran_aliased")
    assert vet["aliased"] == {"const": "constant", "large": "linear_combination",
                              "poor_karno": "linear_combination"}
    frame, colon = load("colon_single")
    assert colon["aliased"] == {"site_b": "single_group_level"} and colon["n_excluded_missing"] > 0
    res = propensity_weights(frame, "arm", colon["covariates"])
    assert "site_b = 1 occurs only among arm = 1" in res.aliased_note["site_b"]


@pytest.mark.parametrize("name", DATASETS)
def test_robust_score_is_there_when_the_weighted_cox_fit_fails(name: str) -> None:
    """No event among the treated: the weighted Cox estimate diverges (an error naming the
    cause), while the robust score test, taken at beta = 0, is R's number."""
    frame, ref = load(name)
    ps = propensity_weights(frame, "arm", ref["covariates"])
    keep = ps.weights.notna()
    data = frame.loc[keep].assign(sw=ps.weights[keep])
    data["event0"] = data["event"].where(data["arm"] == 0, 0)
    assert data.loc[data["arm"] == 1, "event0"].sum() == 0
    with pytest.raises(CoxFitError, match="diverges"):
        cox_regression(data, "time", "event0", ["arm"], weights="sw", robust=True)
    wl = weighted_logrank(data["time"], data["event0"], data["arm"], data["sw"])
    assert wl.statistic == pytest.approx(ref["noevent_cox"]["robust_score"], rel=1e-6)
    assert wl.p_value == pytest.approx(ref["noevent_cox"]["robust_score_p"], rel=1e-6)
    assert wl.df == 1 and wl.events == int(data["event0"].sum())
