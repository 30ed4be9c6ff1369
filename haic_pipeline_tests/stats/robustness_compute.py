"""What the statistics layer returns for the R calls of ``r_beyond.R`` sections (7)-(11)
(study_spec §5.6), as a dict with the structure of ``NAME_robustness.json``; shared by the
lung parity test and the tests on the committed references of ``reference/``."""

from __future__ import annotations

import pandas as pd

from haic_pipeline.stats import (
    balance_table,
    cox_regression,
    cox_zph,
    e_value,
    kaplan_meier,
    propensity_weights,
    rare_outcome,
    rmst_compare,
    weighted_logrank,
)


def km_block(data: pd.DataFrame, wcol: str, landmark: float) -> dict:
    out = {}
    for arm in (1, 0):
        sub = data[data["arm"] == arm]
        km = kaplan_meier(sub["time"], sub["event"], weights=sub[wcol])
        s = km.summary_at(landmark)
        out[str(arm)] = {"surv": s.surv, "lower": s.lower, "upper": s.upper, "std_err": s.std_err,
                         "median": km.median, "median_lower": km.median_lower,
                         "median_upper": km.median_upper}
    return out


def rmst_block(cmp) -> dict:
    arm1, arm0 = cmp.groups[cmp.comparator], cmp.groups[cmp.reference]
    return {
        "arm1": {"rmst": arm1.estimate, "se": arm1.se},
        "arm0": {"rmst": arm0.estimate, "se": arm0.se},
        "difference": {"estimate": cmp.difference, "se": cmp.difference_se,
                       "lower": cmp.difference_lower, "upper": cmp.difference_upper,
                       "p_value": cmp.difference_p},
        "ratio": {"estimate": cmp.ratio, "lower": cmp.ratio_lower, "upper": cmp.ratio_upper,
                  "p_value": cmp.ratio_p},
    }


def cox_block(data: pd.DataFrame, wcol: str) -> tuple[dict, pd.DataFrame]:
    cox = cox_regression(data, "time", "event", ["arm"], weights=wcol, robust=True)
    row = cox.iloc[0]
    wl = weighted_logrank(data["time"], data["event"], data["arm"], data[wcol])
    return ({"coef": row.coef, "hr": row.hr, "robust_se": row.se, "hr_lower": row.hr_lower,
             "hr_upper": row.hr_upper, "p_value": row.p_value, "robust_score": wl.statistic,
             "robust_score_p": wl.p_value}, cox)


def evalue_block(cox: pd.DataFrame, rare: bool) -> dict:
    row = cox.iloc[0]
    ev = e_value(row.hr, row.hr_lower, row.hr_upper, rare=rare)
    return {"rr": ev.rr, "e_value": ev.e_value, "e_value_ci": ev.e_value_ci}


def zph_block(data: pd.DataFrame, wcol: str, cox: pd.DataFrame) -> dict:
    z = cox_zph(data, "time", "event", ["arm"], weights=wcol, transform="km",
                coef=cox["coef"].tolist()).set_index("term")
    return {"chisq": float(z.loc["arm", "chisq"]), "df": int(z.loc["arm", "df"]),
            "p_value": float(z.loc["arm", "p_value"])}


def compute_robustness(frame: pd.DataFrame, covariates: list[str], tau: float,
                       landmark: float) -> dict:
    """Sections (7)-(11) of r_beyond.R on the modelled patients of ``frame``."""
    ate = propensity_weights(frame, "arm", covariates)
    ato = propensity_weights(frame, "arm", covariates, estimand="ATO")
    trunc = propensity_weights(frame, "arm", covariates, truncate=(0.01, 0.99))
    assert ate.ok and ato.ok and trunc.ok, (ate.reason, ato.reason, trunc.reason)
    assert ato.aliased == ate.aliased and ato.covariates == ate.covariates
    keep = ate.weights.notna()
    data = frame.loc[keep].assign(sw=ate.weights[keep], ow=ato.weights[keep])
    out: dict = {}
    s = ato.summary.set_index("treatment")
    w = data["ow"]
    out["overlap_weights"] = {"sum": float(w.sum()), "min": float(w.min()), "max": float(w.max()),
                              "ess_treated": float(s.loc[1, "ess"]),
                              "ess_control": float(s.loc[0, "ess"])}
    bal = balance_table(data, "arm", list(ato.covariates), "ow")
    out["overlap_smd"] = dict(zip(bal["covariate"], bal["smd_after"]))
    out["overlap_km"] = km_block(data, "ow", landmark)
    out["overlap_cox"], fo = cox_block(data, "ow")
    t, e, a = data["time"], data["event"], data["arm"]
    out["overlap_rmst"] = rmst_block(rmst_compare(t, e, a, tau, weights=data["ow"], reference=0))
    _, fc = cox_block(data, "sw")
    out["iptw_cox_zph"] = zph_block(data, "sw", fc)
    out["overlap_cox_zph"] = zph_block(data, "ow", fo)
    rare = rare_outcome(data["event"])
    out["outcome_rare"] = rare
    out["iptw_evalue"] = evalue_block(fc, rare)
    out["overlap_evalue"] = evalue_block(fo, rare)
    out["truncation"] = {"clipped_low": trunc.clipped[0], "clipped_high": trunc.clipped[1]}
    fu = cox_regression(data, "time", "event", ["arm"]).iloc[0]
    out["unadjusted_cox"] = {"hr": fu.hr, "p_value": fu.p_value}
    return out
