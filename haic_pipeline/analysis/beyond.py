"""The "beyond the paper" tables of study_spec §5, computed from a :class:`StudyData` frame and
the Cox models of §3 with haic_pipeline.stats (no statistics here: this module chooses the
populations, arranges the calls and turns the results into rows).

    analysis.propensity_model      the logistic propensity model of post_ate_beva vs first_line
    analysis.propensity_overlap    positivity: the propensity scores per group (quartiles, range)
    analysis.propensity_histogram  their distribution in bins (what the propensity figure draws)
    analysis.balance               standardized mean differences before / after weighting
    analysis.iptw_weights          the weights per group (n, sum, min, max, Kish ESS, clipped)
    analysis.iptw_km_summary       Kaplan-Meier per endpoint x group x weighting
    analysis.iptw_km_curves        the steps of those curves (what the IPTW figures draw)
    analysis.iptw_effects          Cox HR (robust se), robust score test and E-values
    analysis.rmst                  RMST at 12 months per group, difference and ratio
    analysis.ph_tests              cox.zph of every Cox model of §3 and of the weighted ones

Every contrast is on the modelled patients (the complete cases of the propensity covariates,
study_spec §5.6): weighting ``none`` is the unweighted analysis of those same patients,
``stabilized`` / ``truncated`` the ATE weights, ``overlap`` the ATO weights.

A weighted analysis that cannot be computed (the propensity fit separates, does not converge,
has too few patients; a group without patients; no events; an estimate that is not finite) is
a row with NULL numbers and a ``note`` saying why: never NaN, and never an exception that would
stop the refresh, so the paper's own analyses always publish.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from haic_pipeline.stats import (
    CoxFitError,
    PropensityResult,
    balance_table,
    cox_regression,
    cox_zph,
    e_value,
    kaplan_meier,
    propensity_weights,
    quantile_type3,
    rmst_compare,
    weight_summary,
    weighted_logrank,
)

from .checks import EXACT_BALANCE_TOLERANCE
from .data import (
    COX_TERMS,
    ENDPOINT_COLUMNS,
    ENDPOINTS,
    GROUPS,
    LANDMARK_MONTHS,
    cox_terms,
    finite_or_none,
)

#: weightings (§5.1, §5.6): ``none`` = unweighted on the modelled patients; ``stabilized`` = the
#: stabilized ATE weights; ``truncated`` = those clipped at their 1st and 99th percentiles (R
#: ``quantile(type = 3)``), a sensitivity analysis; ``overlap`` = the overlap (ATO) weights
WEIGHTINGS = ("none", "stabilized", "truncated", "overlap")
#: the estimand of each weighting (the population the contrast is about)
ESTIMANDS = {"none": None, "stabilized": "ATE", "truncated": "ATE", "overlap": "ATO"}
TRUNCATION = (0.01, 0.99)
RMST_WEIGHTINGS = ("none", "stabilized", "overlap")
#: the weighted Cox fits whose proportional hazards are tested, and their ph_tests model name
PH_WEIGHTINGS = {"stabilized": "iptw_stabilized", "overlap": "iptw_overlap"}
#: the multivariable Cox HR of group (analysis.cox_models) is an iptw_effects row of this name,
#: so its E-value stands beside those of the weighted HRs
MULTIVARIABLE = "multivariable"
RMST_TAU_MONTHS = 12.0
MAX_MISSING_FRACTION = 0.2  # §3's exclusion rule, shared with the Cox screening
BALANCE_THRESHOLD = 0.1
#: an outcome in fewer than this share of the patients is rare: the E-value takes HR as RR
RARE_OUTCOME_SHARE = 0.15
PS_HISTOGRAM_BINS = 20
PS_CANDIDATES = tuple(t for t in COX_TERMS if t != "group")
_WEIGHT_COLUMN = "_w"


@dataclass
class Weights:
    """The propensity fit and the weights of every weighting, aligned with the analysis frame:
    ``ps`` the ATE fit (stabilized weights), ``modelled`` the patients of the propensity model
    (complete cases of its covariates), ``weights`` weighting -> weight on those patients (NaN
    elsewhere; ``none`` = 1 always, the other weightings only when the fit is ``ok``),
    ``bounds`` / ``clipped`` the truncation bounds and how many weights they clipped (low,
    high), ``left_out`` the covariates the fit left out (aliased, or alone separating the
    groups) -> why, in the fit's order."""

    ps: PropensityResult
    modelled: pd.Series
    weights: dict[str, pd.Series]
    bounds: tuple | None = None
    clipped: tuple | None = None
    left_out: dict[str, str] = field(default_factory=dict)


@dataclass
class BeyondTables:
    """The tables of §5.5 and §5.7 (plus iptw_weights, iptw_km_curves and
    propensity_histogram) as DataFrames without the provenance columns, and what the headline
    and the run log need: the propensity fit and weights, the candidate covariates, the
    candidates left out by the exclusion rule (term -> reason) and the problems met."""

    propensity_model: pd.DataFrame
    propensity_overlap: pd.DataFrame
    propensity_histogram: pd.DataFrame
    balance: pd.DataFrame
    iptw_weights: pd.DataFrame
    iptw_km_summary: pd.DataFrame
    iptw_km_curves: pd.DataFrame
    iptw_effects: pd.DataFrame
    rmst: pd.DataFrame
    ph_tests: pd.DataFrame
    weighting: Weights
    covariates: list[str]
    left_out: dict[str, str]
    problems: list[str] = field(default_factory=list)

    @property
    def propensity(self) -> PropensityResult:
        return self.weighting.ps

    def tables(self) -> dict[str, pd.DataFrame]:
        return {t: getattr(self, t) for t in ("propensity_model", "propensity_overlap", "propensity_histogram",
                                              "balance", "iptw_weights", "iptw_km_summary", "iptw_km_curves",
                                              "iptw_effects", "rmst", "ph_tests")}


# ---------------------------------------------------------------------------------------
# propensity score and weights (§5.1, §5.6)
# ---------------------------------------------------------------------------------------
def propensity_covariates(terms: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The Cox candidates of §3 other than ``group`` that pass §3's exclusion rule over the
    included patients: missing for at most 20% (else ``missing_over_20pct``) and more than one
    value among the patients who have it (else ``no_variation``). Returns (covariates, left out
    as term -> reason with its detail)."""
    covariates, left_out = [], {}
    n = len(terms)
    for term in PS_CANDIDATES:
        col = terms[term]
        frac = float(col.isna().mean()) if n else 0.0
        if frac > MAX_MISSING_FRACTION:
            left_out[term] = f"missing_over_20pct ({frac:.1%} missing)"
        elif col.dropna().nunique() <= 1:
            left_out[term] = "no_variation (a single value among the patients who have it)"
        else:
            covariates.append(term)
    return covariates, left_out


def iptw_weights(terms: pd.DataFrame, covariates: list[str]) -> Weights:
    """The propensity fit (stats.propensity_weights: R ``glm(group ~ covariates, binomial)`` on
    the complete cases, a covariate that is aliased or alone separates the groups left out and
    named) and the weights of every weighting: stabilized ATE, the same truncated at their 1st
    and 99th percentiles (R ``quantile(type = 3)``; how many were clipped, low and high), and
    overlap (ATO). No weights but ``none`` unless the fit is ``ok``."""
    ps = propensity_weights(terms, "group", covariates, stabilized=True)
    modelled = terms[["group", *covariates]].notna().all(axis=1)
    if ps.ps is not None:
        modelled = ps.ps.notna()
    left_out = {t: ": ".join(str(x) for x in (ps.aliased_reason.get(t), ps.aliased_note.get(t)) if x)
                for t in ps.aliased}
    out = Weights(ps=ps, modelled=modelled, left_out=left_out,
                  weights={"none": pd.Series(np.where(modelled, 1.0, np.nan), index=terms.index)})
    if not ps.ok:
        return out
    overlap = propensity_weights(terms, "group", covariates, estimand="ATO")
    # truncation: propensity_weights' own rule (R quantile(type = 3), clipped = R sum(w < q[1]),
    # sum(w > q[2])) applied to the stabilized weights of the one ATE fit, not a third fit
    w = ps.weights
    lo, hi = (float(b) for b in quantile_type3(w.dropna().to_numpy(), list(TRUNCATION)))
    out.weights.update(stabilized=w, truncated=w.clip(lower=lo, upper=hi), overlap=overlap.weights)
    out.bounds, out.clipped = (lo, hi), (int((w < lo).sum()), int((w > hi).sum()))
    return out


def _propensity_rows(w: Weights, covariates: list[str], left_out: dict[str, str]) -> pd.DataFrame:
    ps = w.ps
    rows = []
    if ps.ok:
        for _, r in ps.table.iterrows():
            if r["term"] in w.left_out:
                continue
            rows.append({"term": r["term"], "coef": finite_or_none(r["coef"]), "se": finite_or_none(r["se"]),
                         "p_value": finite_or_none(r["p_value"]), "n": ps.n,
                         "n_excluded_missing": ps.n_excluded_missing, "status": "ok", "note": None})
    else:  # the coefficients of a separated / unconverged fit are not estimates: NULL, and why
        for term in ("intercept", *[c for c in covariates if c not in w.left_out]):
            rows.append({"term": term, "coef": None, "se": None, "p_value": None, "n": ps.n,
                         "n_excluded_missing": ps.n_excluded_missing, "status": ps.status,
                         "note": f"propensity model not estimable: {ps.reason}"})
    for term, reason in w.left_out.items():
        rows.append({"term": term, "coef": None, "se": None, "p_value": None, "n": ps.n,
                     "n_excluded_missing": ps.n_excluded_missing, "status": "left_out",
                     "note": f"left out of the propensity model, as R glm does: {reason}"})
    for term, reason in left_out.items():
        rows.append({"term": term, "coef": None, "se": None, "p_value": None, "n": ps.n,
                     "n_excluded_missing": ps.n_excluded_missing, "status": "left_out",
                     "note": f"candidate left out of the propensity model: {reason}"})
    return pd.DataFrame(rows, columns=["term", "coef", "se", "p_value", "n", "n_excluded_missing",
                                       "status", "note"])


WEIGHT_COLUMNS = ["group", "weighting", "n", "sum_weights", "weight_min", "weight_max", "ess",
                  "truncated_below", "truncated_above", "clipped_low", "clipped_high", "estimand", "note"]


def _clipped_note(w: Weights) -> str | None:
    """What truncation did: how many weights it clipped, low and high; when none, that the
    truncated rows repeat the stabilized ones (no conclusion can be drawn from them)."""
    if w.clipped is None:
        return None
    low, high = (int(c) for c in w.clipped)
    if not low and not high:
        return ("truncation clipped no weight (0 low, 0 high): the truncated rows repeat the stabilized ones "
                "and say nothing about extreme weights")
    return f"truncation clipped {low} weight(s) low and {high} high"


def _weight_rows(terms: pd.DataFrame, w: Weights) -> pd.DataFrame:
    rows = []
    for weighting in WEIGHTINGS:
        base = {"weighting": weighting, "estimand": ESTIMANDS[weighting]}
        if weighting not in w.weights:
            rows += [dict.fromkeys(WEIGHT_COLUMNS) | base | {"group": g, "note": _not_weighted(w.ps)}
                     for g in GROUPS]
            continue
        summary = weight_summary(terms["group"], w.weights[weighting]).set_index("treatment")
        truncated = weighting == "truncated"
        lo, hi = w.bounds if truncated and w.bounds else (None, None)
        low, high = w.clipped if truncated and w.clipped else (None, None)
        for code, g in enumerate(GROUPS):
            s = summary.loc[code]
            rows.append(base | {"group": g, "n": int(s["n"]), "sum_weights": finite_or_none(s["sum"]),
                                "weight_min": finite_or_none(s["min"]), "weight_max": finite_or_none(s["max"]), "ess": finite_or_none(s["ess"]),
                                "truncated_below": finite_or_none(lo), "truncated_above": finite_or_none(hi),
                                "clipped_low": None if low is None else int(low),
                                "clipped_high": None if high is None else int(high),
                                "note": _clipped_note(w) if truncated else None})
    return pd.DataFrame(rows, columns=WEIGHT_COLUMNS)


def _not_weighted(ps: PropensityResult) -> str:
    return f"not computed: no weights, the propensity model is not estimable ({ps.status}: {ps.reason})"


# ---------------------------------------------------------------------------------------
# positivity (§5.6)
# ---------------------------------------------------------------------------------------
OVERLAP_COLUMNS = ["group", "n", "ps_min", "ps_q1", "ps_median", "ps_q3", "ps_max", "n_outside_other_range",
                   "note"]
HISTOGRAM_COLUMNS = ["group", "bin_lower", "bin_upper", "n"]


def propensity_overlap_rows(terms: pd.DataFrame, w: Weights) -> tuple[pd.DataFrame, pd.DataFrame]:
    """analysis.propensity_overlap: per group the propensity scores' minimum, quartiles (R
    ``quantile()``'s default type 7, NumPy's ``linear``) and maximum, and how many of the
    group's patients lie outside the other group's range (below its minimum or above its
    maximum); analysis.propensity_histogram: how many patients of each group fall in each of
    20 bins of width 0.05 on [0, 1] (the last bin closed), what the mirrored histogram draws.
    Without a fit (``ok``) the rows are NULL with the reason."""
    ps = w.ps
    if not ps.ok:
        return (pd.DataFrame([dict.fromkeys(OVERLAP_COLUMNS) | {"group": g, "note": _not_weighted(ps)}
                              for g in GROUPS], columns=OVERLAP_COLUMNS),
                pd.DataFrame(columns=HISTOGRAM_COLUMNS))
    scores = {code: ps.ps[w.modelled & (terms["group"] == code)].to_numpy(float) for code in (0, 1)}
    edges = np.linspace(0.0, 1.0, PS_HISTOGRAM_BINS + 1)
    rows, bins = [], []
    for code, g in enumerate(GROUPS):
        x, other = scores[code], scores[1 - code]
        counts = np.histogram(x, bins=edges)[0]
        bins += [{"group": g, "bin_lower": float(edges[i]), "bin_upper": float(edges[i + 1]), "n": int(c)}
                 for i, c in enumerate(counts)]
        if not len(x):
            rows.append(dict.fromkeys(OVERLAP_COLUMNS) | {"group": g, "n": 0, "note": "no modelled patient"})
            continue
        q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
        outside = int(((x < other.min()) | (x > other.max())).sum()) if len(other) else len(x)
        rows.append({"group": g, "n": len(x), "ps_min": float(x.min()), "ps_q1": float(q1), "ps_median": float(med),
                     "ps_q3": float(q3), "ps_max": float(x.max()), "n_outside_other_range": outside,
                     "note": None})
    return pd.DataFrame(rows, columns=OVERLAP_COLUMNS), pd.DataFrame(bins, columns=HISTOGRAM_COLUMNS)


# ---------------------------------------------------------------------------------------
# balance (§5.2)
# ---------------------------------------------------------------------------------------
BALANCE_COLUMNS = ["covariate", "share_first_line", "share_post_ate_beva", "smd_before", "smd_after",
                   "balanced_after", "share_first_line_weighted", "share_post_ate_beva_weighted",
                   "balanced_before", "smd_after_truncated", "smd_after_overlap", "in_propensity_model", "n",
                   "note"]


def balance_rows(terms: pd.DataFrame, covariates: list[str], w: Weights) -> pd.DataFrame:
    """analysis.balance: stats.balance_table (cobalt convention, signed, s from the unweighted
    shares) over the modelled patients, for every covariate offered to the propensity model;
    smd_before without weights, smd_after with the stabilized weights, smd_after_truncated and
    smd_after_overlap with the truncated and the overlap weights. ``in_propensity_model``: the
    fit kept the covariate (the overlap weights balance exactly those). Without weights (a
    failed fit) smd_before is still given and the weighted columns are NULL with the reason."""
    if not covariates:
        return pd.DataFrame([{c: None for c in BALANCE_COLUMNS} | {
            "note": "no covariate passed the exclusion rule: nothing to balance"}], columns=BALANCE_COLUMNS)
    ps, weights = w.ps, {k: v for k, v in w.weights.items() if k != "none"}
    modelled = w.modelled
    data = terms.loc[modelled, ["group", *covariates]]
    try:
        tables = {k: balance_table(data, "group", covariates, v[modelled]) for k, v in weights.items()} \
            or {"none": balance_table(data, "group", covariates, np.ones(len(data)))}
    except ValueError as exc:  # a group without patients among the modelled
        return pd.DataFrame([{c: None for c in BALANCE_COLUMNS} | {"covariate": c, "note": f"not computed: {exc}"}
                             for c in covariates], columns=BALANCE_COLUMNS)
    main = tables.get("stabilized", tables.get("none"))

    def after(weighting: str, i: int) -> float | None:
        return finite_or_none(tables[weighting]["smd_after"].iloc[i]) if weighting in tables else None

    rows = []
    for i, r in main.iterrows():
        before, smd = finite_or_none(r["smd_before"]), after("stabilized", i)
        in_model = bool(ps.ok and r["covariate"] not in w.left_out)
        notes = []
        if before is None:
            notes.append("the covariate splits the groups completely (SMD infinite)")
        if r["covariate"] in w.left_out:
            notes.append(f"not in the propensity model: {w.left_out[r['covariate']]}")
        if not weights:
            notes.append(_not_weighted(ps))
        overlap = after("overlap", i)
        if in_model and overlap is not None and abs(overlap) > EXACT_BALANCE_TOLERANCE:
            notes.append(f"overlap weights should balance this modelled covariate exactly, |SMD| = {abs(overlap):.2g}")
        rows.append({
            "covariate": r["covariate"], "share_first_line": finite_or_none(r["share_control"]),
            "share_post_ate_beva": finite_or_none(r["share_treated"]), "smd_before": before, "smd_after": smd,
            "balanced_after": None if smd is None else bool(abs(smd) < BALANCE_THRESHOLD),
            "share_first_line_weighted": finite_or_none(r["share_control_weighted"]) if weights else None,
            "share_post_ate_beva_weighted": finite_or_none(r["share_treated_weighted"]) if weights else None,
            "balanced_before": None if before is None else bool(abs(before) < BALANCE_THRESHOLD),
            "smd_after_truncated": after("truncated", i), "smd_after_overlap": overlap,
            "in_propensity_model": in_model, "n": int(r["n"]), "note": "; ".join(notes) or None})
    return pd.DataFrame(rows, columns=BALANCE_COLUMNS)


def overlap_balance_problems(balance: pd.DataFrame) -> list[str]:
    """The modelled covariates the overlap weights leave unbalanced beyond rounding (|SMD| >
    1e-6): with an intercept in the logistic model they balance every modelled covariate
    exactly (the fit's score equations), so any is a defect of the fit or the weights."""
    if not len(balance) or "smd_after_overlap" not in balance:
        return []
    smd = pd.to_numeric(balance["smd_after_overlap"], errors="coerce")
    bad = balance[balance["in_propensity_model"].eq(True) & (smd.abs() > EXACT_BALANCE_TOLERANCE)]
    return [f"analysis.balance: overlap weights leave {r['covariate']} unbalanced (SMD {float(r['smd_after_overlap']):.3g}; "
            f"they balance every modelled covariate exactly, to {EXACT_BALANCE_TOLERANCE:g})"
            for _, r in bad.iterrows()]


# ---------------------------------------------------------------------------------------
# IPTW Kaplan-Meier and Cox (§5.3)
# ---------------------------------------------------------------------------------------
KM_COLUMNS = ["endpoint", "group", "weighting", "n", "ess", "events", "median_months", "median_lower",
              "median_upper", "rate_12m", "rate_12m_lower", "rate_12m_upper", "sum_weights", "note"]
CURVE_COLUMNS = ["endpoint", "group", "weighting", "time_months", "n_at_risk", "n_events", "n_censored",
                 "weighted_at_risk", "weighted_events", "survival", "lower", "upper"]
EFFECT_COLUMNS = ["endpoint", "weighting", "hr", "hr_lower", "hr_upper", "p_value", "robust_score",
                  "robust_score_p", "e_value", "e_value_ci", "e_value_rr", "outcome_rare", "estimand",
                  "robust_se", "n", "events", "note"]


def _analysed(terms: pd.DataFrame, endpoint: str, weights: pd.Series) -> pd.DataFrame:
    """The patients of one endpoint's analysis: a time, an event (a negative time is already
    missing, see StudyData) and a weight (NaN outside the modelled patients); columns time,
    event, group, weight."""
    tcol, ecol = ENDPOINT_COLUMNS[endpoint]
    df = pd.DataFrame({"time": terms[tcol], "event": terms[ecol], "group": terms["group"],
                       _WEIGHT_COLUMN: weights})
    return df[df.notna().all(axis=1)]


def _join(*notes) -> str | None:
    return "; ".join(n for n in notes if n) or None


def iptw_km_rows(terms: pd.DataFrame, w: Weights) -> tuple[pd.DataFrame, pd.DataFrame]:
    """analysis.iptw_km_summary and iptw_km_curves: stats.kaplan_meier per endpoint x group x
    weighting on the modelled patients; ``none`` unweighted (R ``survfit``, Greenwood), the
    others with the weights (R ``survfit(..., weights = w)``: robust IJ variance for
    non-integer weights), log CI; medians and 12-month rates by the rules of §3 (rate_12m NULL
    when no patient of the group was followed to 12 months). Curve steps: unweighted counts
    (patients) beside the weighted sums."""
    rows, parts = [], []
    for endpoint in ENDPOINTS:
        for weighting in WEIGHTINGS:
            if weighting not in w.weights:
                rows += [dict.fromkeys(KM_COLUMNS) | {"endpoint": endpoint, "group": g, "weighting": weighting,
                                                     "note": _not_weighted(w.ps)} for g in GROUPS]
                continue
            data = _analysed(terms, endpoint, w.weights[weighting])
            clipped = _clipped_note(w) if weighting == "truncated" else None
            for code, g in enumerate(GROUPS):
                sub = data[data["group"] == code]
                row = dict.fromkeys(KM_COLUMNS) | {"endpoint": endpoint, "group": g, "weighting": weighting,
                                                   "n": len(sub), "events": int(sub["event"].sum())}
                if not len(sub):
                    row["note"] = _join("not computed: no modelled patient of this group", clipped)
                    rows.append(row)
                    continue
                km = kaplan_meier(sub["time"], sub["event"],
                                  weights=None if weighting == "none" else sub[_WEIGHT_COLUMN])
                row.update(ess=finite_or_none(km.ess), sum_weights=finite_or_none(km.sum_weights), median_months=finite_or_none(km.median),
                           median_lower=finite_or_none(km.median_lower), median_upper=finite_or_none(km.median_upper))
                if weighting == "none":
                    row.update(ess=float(len(sub)), sum_weights=float(len(sub)))
                if float(sub["time"].max()) >= LANDMARK_MONTHS:
                    s12 = km.survival_at(LANDMARK_MONTHS)
                    row.update(rate_12m=finite_or_none(s12.surv), rate_12m_lower=finite_or_none(s12.lower),
                               rate_12m_upper=finite_or_none(s12.upper), note=clipped)
                else:
                    row["note"] = _join(f"rate_12m not computed: no patient of this group followed to "
                                        f"{LANDMARK_MONTHS:g} months", clipped)
                rows.append(row)
                tab = km.table
                unweighted = "n_at_risk_unweighted" in tab
                parts.append(pd.DataFrame({
                    "endpoint": endpoint, "group": g, "weighting": weighting,
                    "time_months": tab["time"].astype(float),
                    "n_at_risk": tab["n_at_risk_unweighted" if unweighted else "n_at_risk"].astype(np.int64),
                    "n_events": tab["n_events_unweighted" if unweighted else "n_events"].astype(np.int64),
                    "n_censored": tab["n_censored_unweighted" if unweighted else "n_censored"].astype(np.int64),
                    "weighted_at_risk": tab["n_at_risk"].astype(float),
                    "weighted_events": tab["n_events"].astype(float),
                    "survival": tab["survival"].astype(float),
                    "lower": tab["lower"].astype(float), "upper": tab["upper"].astype(float)}))
    curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS)
    for c in ("survival", "lower", "upper", "weighted_at_risk", "weighted_events"):
        v = curves[c].astype(float)  # NaN where S = 0 (R: NA) -> NULL
        curves[c] = v.where(np.isfinite(v), None)
    return pd.DataFrame(rows, columns=KM_COLUMNS), curves[CURVE_COLUMNS]


def _e_values(row: dict) -> dict:
    """E-value columns of an effects row with an HR and its CI (stats.e_value: the HR as a risk
    ratio, directly when the outcome is rare, in < 15% of the row's patients, else by
    VanderWeele's common-outcome conversion)."""
    if any(row.get(c) is None for c in ("hr", "hr_lower", "hr_upper")) or not row.get("n"):
        return {}
    rare = bool(row["events"] / row["n"] < RARE_OUTCOME_SHARE)
    ev = e_value(row["hr"], row["hr_lower"], row["hr_upper"], rare=rare)
    return {"e_value": finite_or_none(ev.e_value), "e_value_ci": finite_or_none(ev.e_value_ci), "e_value_rr": finite_or_none(ev.rr),
            "outcome_rare": rare}


def iptw_effect_rows(terms: pd.DataFrame, w: Weights, cox_models: pd.DataFrame | None = None) -> pd.DataFrame:
    """analysis.iptw_effects per endpoint x weighting, on the modelled patients: stats.cox_regression
    on ``group`` alone, HR of post_ate_beva vs first_line. ``none``: unweighted (R ``coxph``,
    model-based se). Weighted: ``robust=True`` (R ``coxph(Surv ~ group, weights = w, robust =
    TRUE)``, Efron), robust-se Wald CI and p, and the robust score test
    (``summary(fit)$robscore``), the weighted comparison of the curves; when the fit fails (e.g.
    no event in one group) the score test, taken at beta = 0, is still given
    (stats.weighted_logrank) with the HR NULL and a note. E-values (stats.e_value) for every
    weighted HR and, in a row ``multivariable``, for the multivariable Cox HR of group of
    analysis.cox_models (its own patients and events)."""
    rows = []
    for endpoint in ENDPOINTS:
        for weighting in WEIGHTINGS:
            row = dict.fromkeys(EFFECT_COLUMNS) | {"endpoint": endpoint, "weighting": weighting,
                                                   "estimand": ESTIMANDS[weighting]}
            if weighting not in w.weights:
                rows.append(row | {"note": _not_weighted(w.ps)})
                continue
            weighted = weighting != "none"
            data = _analysed(terms, endpoint, w.weights[weighting])
            row.update(n=len(data), events=int(data["event"].sum()))
            clipped = _clipped_note(w) if weighting == "truncated" else None
            try:
                fit = cox_regression(data, "time", "event", ["group"], weights=_WEIGHT_COLUMN if weighted else None,
                                     robust=weighted)
            except (CoxFitError, ValueError) as exc:
                note = f"HR not computed: {exc}"
                if weighted:
                    try:
                        score = weighted_logrank(data["time"], data["event"], data["group"], data[_WEIGHT_COLUMN])
                        row.update(robust_score=finite_or_none(score.statistic), robust_score_p=finite_or_none(score.p_value))
                        note += "; the robust score test is taken at beta = 0 and needs no fit"
                    except ValueError as exc2:
                        note += f"; robust score test not computed: {exc2}"
                rows.append(row | {"note": _join(note, clipped)})
                continue
            r = fit.iloc[0]
            row.update(hr=finite_or_none(r["hr"]), hr_lower=finite_or_none(r["hr_lower"]), hr_upper=finite_or_none(r["hr_upper"]),
                       p_value=finite_or_none(r["p_value"]), robust_se=finite_or_none(r["se"]) if weighted else None)
            if weighted:
                row.update(robust_score=finite_or_none(fit.attrs["robust_score"]), robust_score_p=finite_or_none(fit.attrs["robust_score_p"]))
                row.update(_e_values(row))
            if any(row[c] is None for c in ("hr", "hr_lower", "hr_upper", "p_value")):
                note = "an estimate is not finite (the model diverges): left NULL"
            else:
                note = None if weighted else "unweighted, on the modelled patients (model-based se)"
            rows.append(row | {"note": _join(note, clipped)})
        rows.append(_multivariable_row(endpoint, cox_models))
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _multivariable_row(endpoint: str, cox_models: pd.DataFrame | None) -> dict:
    """The multivariable Cox HR of group (analysis.cox_models) with its E-value."""
    row = dict.fromkeys(EFFECT_COLUMNS) | {"endpoint": endpoint, "weighting": MULTIVARIABLE}
    m = cox_models if cox_models is not None and len(cox_models) else pd.DataFrame(columns=["endpoint", "model", "term"])
    m = m[(m["endpoint"] == endpoint) & (m["model"] == "multivariable") & (m["term"] == "group")]
    if not len(m):
        return row | {"note": "no multivariable Cox model with group (see analysis.cox_excluded)"}
    r = m.iloc[0]
    row.update(hr=finite_or_none(r["hr"]), hr_lower=finite_or_none(r["hr_lower"]), hr_upper=finite_or_none(r["hr_upper"]),
               p_value=finite_or_none(r["p_value"]), n=int(r["n"]), events=int(r["events"]),
               note="the multivariable Cox model of group (analysis.cox_models): its own complete cases, "
                    "model-based se")
    return row | _e_values(row)


# ---------------------------------------------------------------------------------------
# RMST (§5.4)
# ---------------------------------------------------------------------------------------
RMST_COLUMNS = ["endpoint", "weighting", "tau_months", "rmst_first_line", "rmst_first_line_se",
                "rmst_post_ate_beva", "rmst_post_ate_beva_se", "difference", "difference_lower",
                "difference_upper", "difference_p", "ratio", "ratio_lower", "ratio_upper", "ratio_p",
                "tau_requested", "tau_truncated", "n", "note"]


def rmst_rows(terms: pd.DataFrame, w: Weights) -> pd.DataFrame:
    """analysis.rmst: stats.rmst_compare at tau = 12 months, post_ate_beva vs first_line
    (survRM2 ``rmst2`` contrasts), on the modelled patients. ``none``: unweighted, survRM2 /
    ``rmean`` variance; ``stabilized`` / ``overlap``: with those weights, IJ variance. tau is
    lowered to the smaller of the groups' largest observed times when follow-up is shorter
    (``tau_truncated``, the reason in ``note``)."""
    rows = []
    for endpoint in ENDPOINTS:
        for weighting in RMST_WEIGHTINGS:
            row = dict.fromkeys(RMST_COLUMNS) | {"endpoint": endpoint, "weighting": weighting,
                                                 "tau_requested": RMST_TAU_MONTHS}
            if weighting not in w.weights:
                rows.append(row | {"note": _not_weighted(w.ps)})
                continue
            data = _analysed(terms, endpoint, w.weights[weighting])
            row["n"] = len(data)
            group = np.where(data["group"] == 1, GROUPS[1], GROUPS[0])
            try:
                res = rmst_compare(data["time"], data["event"], group, RMST_TAU_MONTHS,
                                   weights=None if weighting == "none" else data[_WEIGHT_COLUMN],
                                   reference=GROUPS[0])
            except ValueError as exc:
                rows.append(row | {"note": f"not computed: {exc}"})
                continue
            g0, g1 = res.groups[GROUPS[0]], res.groups[GROUPS[1]]
            row.update(
                tau_months=finite_or_none(res.tau), tau_truncated=bool(res.tau_truncated), note=res.note,
                rmst_first_line=finite_or_none(g0.estimate), rmst_first_line_se=finite_or_none(g0.se),
                rmst_post_ate_beva=finite_or_none(g1.estimate), rmst_post_ate_beva_se=finite_or_none(g1.se),
                **{c: finite_or_none(getattr(res, c)) for c in ("difference", "difference_lower", "difference_upper",
                                                      "difference_p", "ratio", "ratio_lower", "ratio_upper",
                                                      "ratio_p")})
            rows.append(row)
    return pd.DataFrame(rows, columns=RMST_COLUMNS)


# ---------------------------------------------------------------------------------------
# proportional hazards (§5.4)
# ---------------------------------------------------------------------------------------
PH_COLUMNS = ["endpoint", "model", "term", "chisq", "df", "p_value", "model_terms", "n", "events", "note"]


def cox_model_terms(cox_models: pd.DataFrame, endpoint: str) -> list[tuple[str, list[str], list[float] | None]]:
    """The Cox models of §3 for ``endpoint`` as analysis.cox_models holds them: each
    univariable model (one term), then the multivariable model (its terms in order), each with
    its estimates log(hr) (None unless every hr is finite and > 0)."""
    if not len(cox_models):
        return []
    m = cox_models[cox_models["endpoint"] == endpoint]
    uni, multi = m[m["model"] == "univariable"], m[m["model"] == "multivariable"]
    models = [("univariable", uni.iloc[[i]]) for i in range(len(uni))]
    if len(multi):
        models.append(("multivariable", multi))
    return [(model, list(rows["term"]), _log_hr(rows["hr"])) for model, rows in models]


def _log_hr(hr: pd.Series) -> list[float] | None:
    """log(hr): the model's estimates, or None when an hr is missing, 0 or not finite."""
    v = pd.to_numeric(hr, errors="coerce").to_numpy(dtype=float)
    if not (np.isfinite(v).all() and (v > 0).all()):
        return None
    return np.log(v).tolist()


def ph_rows(terms: pd.DataFrame, cox_models: pd.DataFrame) -> pd.DataFrame:
    """analysis.ph_tests: stats.cox_zph (R ``cox.zph(fit, transform = "km")``, survival >= 3
    score test) for every Cox model of analysis.cox_models, on the complete cases of its terms:
    one row per term and a ``GLOBAL`` row per model (for a one-term model GLOBAL is the same
    test). ``model_terms`` names the model's terms, so the univariable models stay apart.
    cox_zph is given each model's estimates, log(hr) from analysis.cox_models, as R's cox.zph is
    given the fit: the models are not fitted a second time (cox_zph checks that they are this
    model's estimates)."""
    rows = []
    for endpoint in ENDPOINTS:
        tcol, ecol = ENDPOINT_COLUMNS[endpoint]
        models = cox_model_terms(cox_models, endpoint)
        if not models:
            rows.append(dict.fromkeys(PH_COLUMNS) | {"endpoint": endpoint, "note": (
                "not computed: no Cox model of this endpoint was fitted (see analysis.cox_excluded)")})
            continue
        for model, model_terms, coef in models:
            base = dict.fromkeys(PH_COLUMNS) | {"endpoint": endpoint, "model": model,
                                                "model_terms": ", ".join(model_terms)}
            try:
                zph = cox_zph(terms, tcol, ecol, model_terms, transform="km", coef=coef)
            except (CoxFitError, ValueError, np.linalg.LinAlgError) as exc:
                rows += [base | {"term": t, "note": f"not computed: {exc}"} for t in (*model_terms, "GLOBAL")]
                continue
            rows += _zph_rows(base, zph)
    return pd.DataFrame(rows, columns=PH_COLUMNS)


def _zph_rows(base: dict, zph: pd.DataFrame) -> list[dict]:
    """analysis.ph_tests rows of one cox_zph result (per term and GLOBAL); a statistic that is not
    finite is NULL with a note."""
    rows = []
    for _, r in zph.iterrows():
        chisq, p = finite_or_none(r["chisq"]), finite_or_none(r["p_value"])
        rows.append(base | {"term": r["term"], "chisq": chisq, "df": int(r["df"]), "p_value": p,
                            "n": int(zph.attrs["n"]), "events": int(zph.attrs["events"]),
                            "note": None if chisq is not None and p is not None else
                            "the test statistic is not finite (singular information): left NULL"})
    return rows


def weighted_ph_rows(terms: pd.DataFrame, w: Weights, effects: pd.DataFrame) -> pd.DataFrame:
    """analysis.ph_tests rows of the weighted Cox fits of group (models ``iptw_stabilized``,
    ``iptw_overlap``): stats.cox_zph with the weights (R ``cox.zph(fit, transform = "km")`` of
    ``coxph(Surv ~ group, weights = w, robust = TRUE)``), given the fit's estimate log(hr) from
    analysis.iptw_effects (fitted here when that HR is missing)."""
    rows = []
    for endpoint in ENDPOINTS:
        for weighting, model in PH_WEIGHTINGS.items():
            base = dict.fromkeys(PH_COLUMNS) | {"endpoint": endpoint, "model": model, "model_terms": "group"}
            if weighting not in w.weights:
                rows += [base | {"term": t, "note": _not_weighted(w.ps)} for t in ("group", "GLOBAL")]
                continue
            data = _analysed(terms, endpoint, w.weights[weighting])
            eff = effects[(effects["endpoint"] == endpoint) & (effects["weighting"] == weighting)]
            coef = _log_hr(eff["hr"]) if len(eff) else None
            try:
                zph = cox_zph(data, "time", "event", ["group"], transform="km", weights=_WEIGHT_COLUMN, coef=coef)
            except (CoxFitError, ValueError, np.linalg.LinAlgError) as exc:
                rows += [base | {"term": t, "note": f"not computed: {exc}"} for t in ("group", "GLOBAL")]
                continue
            rows += _zph_rows(base, zph)
    return pd.DataFrame(rows, columns=PH_COLUMNS)


# ---------------------------------------------------------------------------------------
# all of it
# ---------------------------------------------------------------------------------------
def beyond_tables(frame: pd.DataFrame, cox_models: pd.DataFrame) -> BeyondTables:
    """Every table of §5.5 and §5.7 from the analysis frame (data.load_study_data) and
    analysis.cox_models (the §3 models whose proportional hazards are tested, and whose
    multivariable HR of group gets an E-value)."""
    terms = cox_terms(frame)
    covariates, left_out = propensity_covariates(terms)
    w = iptw_weights(terms, covariates)
    km_summary, km_curves = iptw_km_rows(terms, w)
    effects = iptw_effect_rows(terms, w, cox_models)
    overlap, histogram = propensity_overlap_rows(terms, w)
    out = BeyondTables(
        propensity_model=_propensity_rows(w, covariates, left_out),
        propensity_overlap=overlap, propensity_histogram=histogram,
        balance=balance_rows(terms, covariates, w),
        iptw_weights=_weight_rows(terms, w),
        iptw_km_summary=km_summary, iptw_km_curves=km_curves,
        iptw_effects=effects,
        rmst=rmst_rows(terms, w),
        ph_tests=pd.DataFrame([*ph_rows(terms, cox_models).to_dict("records"),
                               *weighted_ph_rows(terms, w, effects).to_dict("records")], columns=PH_COLUMNS),
        weighting=w, covariates=covariates, left_out=left_out)
    if not w.ps.ok:
        out.problems.append(f"propensity model not estimable ({w.ps.status}): {w.ps.reason}; the weighted "
                            "analyses are rows with a note")
    else:  # an analysis left out although the weights exist (e.g. a group without patients)
        notes = [f"analysis.{t}: {n}" for t, table in out.tables().items() if "note" in table
                 for n in table["note"].dropna() if str(n).startswith(("not computed", "HR not computed"))]
        out.problems += list(dict.fromkeys(notes))
        out.problems += overlap_balance_problems(out.balance)
    return out
