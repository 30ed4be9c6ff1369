"""The "beyond the paper" tables of study_spec §5, computed from a :class:`StudyData` frame and
the Cox models of §3 with haic_pipeline.stats (no statistics here: this module chooses the
populations, arranges the calls and turns the results into rows).

    analysis.propensity_model  the logistic propensity model of post_ate_beva vs first_line
    analysis.balance           standardized mean differences before / after weighting
    analysis.iptw_weights      the weights per group (n, sum, min, max, Kish ESS)
    analysis.iptw_km_summary   weighted Kaplan-Meier per endpoint x group x weighting
    analysis.iptw_km_curves    the steps of those curves (what the IPTW figures draw)
    analysis.iptw_effects      weighted Cox HR (robust se) and robust score test
    analysis.rmst              RMST at 12 months per group, difference and ratio
    analysis.ph_tests          cox.zph of every Cox model of §3

A weighted analysis that cannot be computed (the propensity fit separates, does not converge,
has too few patients; a group without patients; no events; an estimate that is not finite) is
a row with NULL numbers and a ``note`` saying why: never NaN, and never an exception that would
stop the refresh, so the paper's own analyses always publish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api  # noqa: F401  (imported with this module, so `haic run`'s preload thread pays for it)

from haic_pipeline.stats import (
    CoxFitError,
    PropensityResult,
    balance_table,
    cox_regression,
    cox_zph,
    kaplan_meier,
    propensity_weights,
    quantile_type3,
    rmst_compare,
    weight_summary,
)

from .data import COX_TERMS, ENDPOINT_COLUMNS, ENDPOINTS, GROUPS, LANDMARK_MONTHS, cox_terms

#: weightings of the weighted analyses (§5.1): the stabilized ATE weights, and the same weights
#: clipped at their 1st and 99th percentiles (R ``quantile(type = 3)``) as a sensitivity analysis
WEIGHTINGS = ("stabilized", "truncated")
TRUNCATION = (0.01, 0.99)
RMST_WEIGHTINGS = ("none", "stabilized")
RMST_TAU_MONTHS = 12.0
MAX_MISSING_FRACTION = 0.2  # §3's exclusion rule, shared with the Cox screening
BALANCE_THRESHOLD = 0.1
PS_CANDIDATES = tuple(t for t in COX_TERMS if t != "group")
_WEIGHT_COLUMN = "_w"


def _num(x) -> float | None:
    """A finite float, or None (NaN and +-inf are never stored)."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass
class BeyondTables:
    """The tables of §5.5 (plus iptw_weights and iptw_km_curves) as DataFrames without the
    provenance columns, and what the headline and the run log need: the propensity result, the
    covariates modelled, the candidates left out (term -> reason) and the problems met."""

    propensity_model: pd.DataFrame
    balance: pd.DataFrame
    iptw_weights: pd.DataFrame
    iptw_km_summary: pd.DataFrame
    iptw_km_curves: pd.DataFrame
    iptw_effects: pd.DataFrame
    rmst: pd.DataFrame
    ph_tests: pd.DataFrame
    propensity: PropensityResult
    covariates: list[str]
    left_out: dict[str, str]
    problems: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {t: getattr(self, t) for t in ("propensity_model", "balance", "iptw_weights",
                                              "iptw_km_summary", "iptw_km_curves", "iptw_effects",
                                              "rmst", "ph_tests")}


# ---------------------------------------------------------------------------------------
# propensity score and weights (§5.1)
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


def iptw_weights(terms: pd.DataFrame,
                 covariates: list[str]) -> tuple[PropensityResult, dict[str, pd.Series], tuple | None]:
    """The propensity fit (stats.propensity_weights: R ``glm(group ~ covariates, binomial)`` on
    the complete cases, stabilized ATE weights) and the weights per weighting, aligned with
    ``terms`` (NaN for a patient left out for a missing covariate); no weights unless the fit is
    ``ok``. ``truncated`` clips the stabilized weights to their 1st and 99th percentiles (R
    ``quantile(type = 3)``), propensity_weights' own ``truncate`` rule, without fitting twice;
    the third value is that pair of bounds."""
    ps = propensity_weights(terms, "group", covariates, stabilized=True)
    if not ps.ok:
        return ps, {}, None
    w = ps.weights
    lo, hi = (float(b) for b in quantile_type3(w.dropna().to_numpy(), list(TRUNCATION)))
    return ps, {"stabilized": w, "truncated": w.clip(lower=lo, upper=hi)}, (lo, hi)


def _propensity_rows(ps: PropensityResult, covariates: list[str], left_out: dict[str, str]) -> pd.DataFrame:
    rows = []
    if ps.ok:
        for _, r in ps.table.iterrows():
            rows.append({"term": r["term"], "coef": _num(r["coef"]), "se": _num(r["se"]),
                         "p_value": _num(r["p_value"]), "n": ps.n,
                         "n_excluded_missing": ps.n_excluded_missing, "status": "ok", "note": None})
    else:  # the coefficients of a separated / unconverged fit are not estimates: NULL, and why
        for term in ("intercept", *covariates):
            rows.append({"term": term, "coef": None, "se": None, "p_value": None, "n": ps.n,
                         "n_excluded_missing": ps.n_excluded_missing, "status": ps.status,
                         "note": f"propensity model not estimable: {ps.reason}"})
    for term, reason in left_out.items():
        rows.append({"term": term, "coef": None, "se": None, "p_value": None, "n": ps.n,
                     "n_excluded_missing": ps.n_excluded_missing, "status": "left_out",
                     "note": f"candidate left out of the propensity model: {reason}"})
    return pd.DataFrame(rows, columns=["term", "coef", "se", "p_value", "n", "n_excluded_missing",
                                       "status", "note"])


def _weight_rows(terms: pd.DataFrame, ps: PropensityResult, weights: dict[str, pd.Series],
                 bounds: tuple | None) -> pd.DataFrame:
    rows = []
    for weighting in WEIGHTINGS:
        if weighting not in weights:
            rows += [{"group": g, "weighting": weighting, "n": None, "sum_weights": None,
                      "weight_min": None, "weight_max": None, "ess": None, "truncated_below": None,
                      "truncated_above": None, "note": _not_weighted(ps)} for g in GROUPS]
            continue
        w = weights[weighting]
        summary = weight_summary(terms["group"], w).set_index("treatment")
        lo, hi = bounds if weighting == "truncated" else (None, None)
        for code, g in enumerate(GROUPS):
            s = summary.loc[code]
            rows.append({"group": g, "weighting": weighting, "n": int(s["n"]), "sum_weights": _num(s["sum"]),
                         "weight_min": _num(s["min"]), "weight_max": _num(s["max"]), "ess": _num(s["ess"]),
                         "truncated_below": _num(lo), "truncated_above": _num(hi), "note": None})
    return pd.DataFrame(rows)


def _not_weighted(ps: PropensityResult) -> str:
    return f"not computed: no weights, the propensity model is not estimable ({ps.status}: {ps.reason})"


# ---------------------------------------------------------------------------------------
# balance (§5.2)
# ---------------------------------------------------------------------------------------
BALANCE_COLUMNS = ["covariate", "share_first_line", "share_post_ate_beva", "smd_before", "smd_after",
                   "balanced_after", "share_first_line_weighted", "share_post_ate_beva_weighted",
                   "balanced_before", "smd_after_truncated", "n", "note"]


def balance_rows(terms: pd.DataFrame, covariates: list[str], ps: PropensityResult,
                 weights: dict[str, pd.Series]) -> pd.DataFrame:
    """analysis.balance: stats.balance_table (cobalt convention, signed, s from the unweighted
    shares) over the patients of the propensity model; smd_before without weights, smd_after
    with the stabilized weights (and smd_after_truncated with the truncated ones). Without
    weights (a failed fit) smd_before is still given and the weighted columns are NULL with the
    reason."""
    if not covariates:
        return pd.DataFrame([{c: None for c in BALANCE_COLUMNS} | {
            "note": "no covariate passed the exclusion rule: nothing to balance"}], columns=BALANCE_COLUMNS)
    modelled = terms[["group", *covariates]].notna().all(axis=1)
    data = terms.loc[modelled, ["group", *covariates]]
    try:
        if weights:
            main = balance_table(data, "group", covariates, weights["stabilized"][modelled])
            trunc = balance_table(data, "group", covariates, weights["truncated"][modelled])
        else:
            main = balance_table(data, "group", covariates, np.ones(len(data)))
            trunc = None
    except ValueError as exc:  # a group without patients among the modelled
        return pd.DataFrame([{c: None for c in BALANCE_COLUMNS} | {"covariate": c, "note": f"not computed: {exc}"}
                             for c in covariates], columns=BALANCE_COLUMNS)
    rows = []
    for i, r in main.iterrows():
        before, after = _num(r["smd_before"]), _num(r["smd_after"]) if weights else None
        notes = []
        if before is None:
            notes.append("the covariate splits the groups completely (SMD infinite)")
        if not weights:
            notes.append(_not_weighted(ps))
        rows.append({
            "covariate": r["covariate"], "share_first_line": _num(r["share_control"]),
            "share_post_ate_beva": _num(r["share_treated"]), "smd_before": before, "smd_after": after,
            "balanced_after": None if after is None else bool(abs(after) < BALANCE_THRESHOLD),
            "share_first_line_weighted": _num(r["share_control_weighted"]) if weights else None,
            "share_post_ate_beva_weighted": _num(r["share_treated_weighted"]) if weights else None,
            "balanced_before": None if before is None else bool(abs(before) < BALANCE_THRESHOLD),
            "smd_after_truncated": _num(trunc["smd_after"].iloc[i]) if trunc is not None else None,
            "n": int(r["n"]), "note": "; ".join(notes) or None})
    return pd.DataFrame(rows, columns=BALANCE_COLUMNS)


# ---------------------------------------------------------------------------------------
# IPTW Kaplan-Meier and Cox (§5.3)
# ---------------------------------------------------------------------------------------
KM_COLUMNS = ["endpoint", "group", "weighting", "n", "ess", "events", "median_months", "median_lower",
              "median_upper", "rate_12m", "rate_12m_lower", "rate_12m_upper", "sum_weights", "note"]
CURVE_COLUMNS = ["endpoint", "group", "weighting", "time_months", "n_at_risk", "n_events", "n_censored",
                 "weighted_at_risk", "weighted_events", "survival", "lower", "upper"]
EFFECT_COLUMNS = ["endpoint", "weighting", "hr", "hr_lower", "hr_upper", "p_value", "robust_score",
                  "robust_score_p", "robust_se", "n", "events", "note"]


def _analysed(terms: pd.DataFrame, endpoint: str, weights: pd.Series | None) -> pd.DataFrame:
    """The patients of one endpoint's analysis: a time and an event (a negative time is already
    missing, see StudyData) and, when weighted, a weight; columns time, event, group, weight."""
    tcol, ecol = ENDPOINT_COLUMNS[endpoint]
    df = pd.DataFrame({"time": terms[tcol], "event": terms[ecol], "group": terms["group"],
                       _WEIGHT_COLUMN: 1.0 if weights is None else weights})
    return df[df.notna().all(axis=1)]


def iptw_km_rows(terms: pd.DataFrame, ps: PropensityResult,
                 weights: dict[str, pd.Series]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """analysis.iptw_km_summary and iptw_km_curves: stats.kaplan_meier with the weights (R
    ``survfit(..., weights = w)``: robust IJ variance for non-integer weights, log CI), per
    endpoint x group x weighting; medians and 12-month rates by the rules of §3 (rate_12m NULL
    when no patient of the group was followed to 12 months). Curve steps: unweighted counts
    (patients) beside the weighted sums."""
    rows, parts = [], []
    for endpoint in ENDPOINTS:
        for weighting in WEIGHTINGS:
            if weighting not in weights:
                rows += [dict.fromkeys(KM_COLUMNS) | {"endpoint": endpoint, "group": g, "weighting": weighting,
                                                     "note": _not_weighted(ps)} for g in GROUPS]
                continue
            data = _analysed(terms, endpoint, weights[weighting])
            for code, g in enumerate(GROUPS):
                sub = data[data["group"] == code]
                row = dict.fromkeys(KM_COLUMNS) | {"endpoint": endpoint, "group": g, "weighting": weighting,
                                                   "n": len(sub), "events": int(sub["event"].sum())}
                if not len(sub):
                    row["note"] = "not computed: no patient of this group in the weighted analysis"
                    rows.append(row)
                    continue
                km = kaplan_meier(sub["time"], sub["event"], weights=sub[_WEIGHT_COLUMN])
                row.update(ess=_num(km.ess), sum_weights=_num(km.sum_weights), median_months=_num(km.median),
                           median_lower=_num(km.median_lower), median_upper=_num(km.median_upper))
                if float(sub["time"].max()) >= LANDMARK_MONTHS:
                    s12 = km.survival_at(LANDMARK_MONTHS)
                    row.update(rate_12m=_num(s12.surv), rate_12m_lower=_num(s12.lower),
                               rate_12m_upper=_num(s12.upper))
                else:
                    row["note"] = (f"rate_12m not computed: no patient of this group followed to "
                                   f"{LANDMARK_MONTHS:g} months")
                rows.append(row)
                tab = km.table
                parts.append(pd.DataFrame({
                    "endpoint": endpoint, "group": g, "weighting": weighting,
                    "time_months": tab["time"].astype(float),
                    "n_at_risk": tab["n_at_risk_unweighted"].astype(np.int64),
                    "n_events": tab["n_events_unweighted"].astype(np.int64),
                    "n_censored": tab["n_censored_unweighted"].astype(np.int64),
                    "weighted_at_risk": tab["n_at_risk"].astype(float),
                    "weighted_events": tab["n_events"].astype(float),
                    "survival": tab["survival"].astype(float),
                    "lower": tab["lower"].astype(float), "upper": tab["upper"].astype(float)}))
    curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS)
    for c in ("survival", "lower", "upper", "weighted_at_risk", "weighted_events"):
        v = curves[c].astype(float)  # NaN where S = 0 (R: NA) -> NULL
        curves[c] = v.where(np.isfinite(v), None)
    return pd.DataFrame(rows, columns=KM_COLUMNS), curves[CURVE_COLUMNS]


def iptw_effect_rows(terms: pd.DataFrame, ps: PropensityResult, weights: dict[str, pd.Series]) -> pd.DataFrame:
    """analysis.iptw_effects: stats.cox_regression on ``group`` alone with the weights and
    ``robust=True`` (R ``coxph(Surv ~ group, weights = w, robust = TRUE)``, Efron): HR of
    post_ate_beva vs first_line, robust-se Wald CI and p, and the robust score test
    (``summary(fit)$robscore``), the weighted comparison of the curves."""
    rows = []
    for endpoint in ENDPOINTS:
        for weighting in WEIGHTINGS:
            row = dict.fromkeys(EFFECT_COLUMNS) | {"endpoint": endpoint, "weighting": weighting}
            if weighting not in weights:
                rows.append(row | {"note": _not_weighted(ps)})
                continue
            data = _analysed(terms, endpoint, weights[weighting])
            row.update(n=len(data), events=int(data["event"].sum()))
            try:
                fit = cox_regression(data, "time", "event", ["group"], weights=_WEIGHT_COLUMN, robust=True)
            except (CoxFitError, ValueError) as exc:
                rows.append(row | {"note": f"not computed: {exc}"})
                continue
            r = fit.iloc[0]
            row.update(hr=_num(r["hr"]), hr_lower=_num(r["hr_lower"]), hr_upper=_num(r["hr_upper"]),
                       p_value=_num(r["p_value"]), robust_se=_num(r["se"]),
                       robust_score=_num(fit.attrs["robust_score"]), robust_score_p=_num(fit.attrs["robust_score_p"]))
            if any(row[c] is None for c in ("hr", "hr_lower", "hr_upper", "p_value")):
                row["note"] = "an estimate is not finite (the weighted model diverges): left NULL"
            rows.append(row)
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


# ---------------------------------------------------------------------------------------
# RMST (§5.4)
# ---------------------------------------------------------------------------------------
RMST_COLUMNS = ["endpoint", "weighting", "tau_months", "rmst_first_line", "rmst_first_line_se",
                "rmst_post_ate_beva", "rmst_post_ate_beva_se", "difference", "difference_lower",
                "difference_upper", "difference_p", "ratio", "ratio_lower", "ratio_upper", "ratio_p",
                "tau_requested", "tau_truncated", "n", "note"]


def rmst_rows(terms: pd.DataFrame, ps: PropensityResult, weights: dict[str, pd.Series]) -> pd.DataFrame:
    """analysis.rmst: stats.rmst_compare at tau = 12 months, post_ate_beva vs first_line
    (survRM2 ``rmst2`` contrasts). ``none``: every analysed patient, survRM2 / ``rmean``
    variance; ``stabilized``: the patients of the propensity model with their weights, IJ
    variance. tau is lowered to the smaller of the groups' largest observed times when
    follow-up is shorter (``tau_truncated``, the reason in ``note``)."""
    rows = []
    for endpoint in ENDPOINTS:
        for weighting in RMST_WEIGHTINGS:
            row = dict.fromkeys(RMST_COLUMNS) | {"endpoint": endpoint, "weighting": weighting,
                                                 "tau_requested": RMST_TAU_MONTHS}
            if weighting != "none" and weighting not in weights:
                rows.append(row | {"note": _not_weighted(ps)})
                continue
            data = _analysed(terms, endpoint, weights.get(weighting))
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
                tau_months=_num(res.tau), tau_truncated=bool(res.tau_truncated), note=res.note,
                rmst_first_line=_num(g0.estimate), rmst_first_line_se=_num(g0.se),
                rmst_post_ate_beva=_num(g1.estimate), rmst_post_ate_beva_se=_num(g1.se),
                **{c: _num(getattr(res, c)) for c in ("difference", "difference_lower", "difference_upper",
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
            for _, r in zph.iterrows():
                chisq, p = _num(r["chisq"]), _num(r["p_value"])
                rows.append(base | {"term": r["term"], "chisq": chisq, "df": int(r["df"]), "p_value": p,
                                    "n": int(zph.attrs["n"]), "events": int(zph.attrs["events"]),
                                    "note": None if chisq is not None and p is not None else
                                    "the test statistic is not finite (singular information): left NULL"})
    return pd.DataFrame(rows, columns=PH_COLUMNS)


# ---------------------------------------------------------------------------------------
# all of it
# ---------------------------------------------------------------------------------------
def beyond_tables(frame: pd.DataFrame, cox_models: pd.DataFrame) -> BeyondTables:
    """Every table of §5.5 from the analysis frame (data.load_study_data) and analysis.cox_models
    (the §3 models whose proportional hazards are tested)."""
    terms = cox_terms(frame)
    covariates, left_out = propensity_covariates(terms)
    ps, weights, bounds = iptw_weights(terms, covariates)
    km_summary, km_curves = iptw_km_rows(terms, ps, weights)
    out = BeyondTables(
        propensity_model=_propensity_rows(ps, covariates, left_out),
        balance=balance_rows(terms, covariates, ps, weights),
        iptw_weights=_weight_rows(terms, ps, weights, bounds),
        iptw_km_summary=km_summary, iptw_km_curves=km_curves,
        iptw_effects=iptw_effect_rows(terms, ps, weights),
        rmst=rmst_rows(terms, ps, weights),
        ph_tests=ph_rows(terms, cox_models),
        propensity=ps, covariates=covariates, left_out=left_out)
    if not ps.ok:
        out.problems.append(f"propensity model not estimable ({ps.status}): {ps.reason}; the weighted "
                            "analyses are rows with a note")
    else:  # an analysis left out although the weights exist (e.g. a group without patients)
        notes = [f"analysis.{t}: {n}" for t, table in out.tables().items() if "note" in table
                 for n in table["note"].dropna() if str(n).startswith("not computed")]
        out.problems += list(dict.fromkeys(notes))
    return out
