"""The analysis tables of study_spec §4, computed from a :class:`StudyData` frame with
haic_pipeline.stats (no statistics are implemented here: this module only arranges calls
and rows). Each function returns a DataFrame with exactly the columns of
:data:`haic_pipeline.analysis.warehouse.TABLES` minus the provenance columns.

Where a statistic cannot be computed on the data at hand (a group without patients, no
events, S(12) equal to 0 or 1, a single observed level), the row is still written with
NULL numbers and a ``note`` saying why (never a NaN left unexplained, never a crash of the
whole refresh). Cox: see :func:`cox_tables`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from haic_pipeline.stats import (
    CoxFitError,
    build_table1,
    compare_proportions,
    cox_screening,
    kaplan_meier,
    landmark_test,
    logrank,
    reverse_km_follow_up,
)

from .data import (
    COX_TERMS,
    ENDPOINT_COLUMNS,
    ENDPOINTS,
    GROUPS,
    LANDMARK_MONTHS,
    SUMMARY_GROUPS,
    TABLE1_CATEGORICAL,
    TABLE1_CONTINUOUS,
    cox_terms,
    table1_frame,
    table1_levels,
)


def _none(x):
    """None for missing / NaN, else a float (so DuckDB gets NULL, never NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _subset(frame: pd.DataFrame, group: str) -> pd.DataFrame:
    return frame if group == "overall" else frame[frame["group"] == group]


# ---------------------------------------------------------------------------------------
# Table 1
# ---------------------------------------------------------------------------------------
def baseline_characteristics(frame: pd.DataFrame) -> pd.DataFrame:
    """analysis.baseline_characteristics: haic_pipeline.stats.build_table1 over the paper's
    variables (data.TABLE1_*): a first row ``n``; age as mean ± SD with Student's t; the
    categorical variables as n (%) of the non-missing values with Pearson chi-square
    (uncorrected) or exact Fisher; a ``missing`` row where values are missing."""
    t1 = table1_frame(frame)
    table = build_table1(t1, continuous=list(TABLE1_CONTINUOUS), categorical=list(TABLE1_CATEGORICAL),
                         group_col="group", groups=GROUPS, levels=table1_levels(t1))
    table["p_value"] = [_none(p) for p in table["p_value"]]
    return table[["variable", "level", *GROUPS, "overall", "test", "p_value"]]


# ---------------------------------------------------------------------------------------
# Kaplan-Meier, tests, follow-up
# ---------------------------------------------------------------------------------------
@dataclass
class SurvivalTables:
    km_summary: pd.DataFrame
    km_curves: pd.DataFrame
    survival_tests: pd.DataFrame
    follow_up: pd.DataFrame


def survival_tables(frame: pd.DataFrame) -> SurvivalTables:
    """analysis.km_summary, km_curves, survival_tests, follow_up (study_spec §3).

    KM with Greenwood variance and log-scale CI (stats.kaplan_meier); medians by R's rule;
    rate_12m = S(12) with its log CI (stats.KaplanMeier.survival_at), NULL when no patient of
    the group was followed to 12 months (R ``summary(fit, times = 12)`` without ``extend``
    returns nothing there; the 12-month test is then not computed either); log-rank
    (stats.logrank, chi-square, df = k - 1); 12-month comparison (stats.landmark_test:
    statistic = z of first_line minus post_ate_beva on the cloglog scale, df NULL); median
    follow-up by reverse KM of OS time (stats.reverse_km_follow_up).
    """
    summary_rows, curve_parts, test_rows, fu_rows = [], [], [], []
    for endpoint in ENDPOINTS:
        tcol, ecol = ENDPOINT_COLUMNS[endpoint]
        analysed = frame[frame[tcol].notna() & frame[ecol].notna()]  # R na.omit
        for group in SUMMARY_GROUPS:
            sub = _subset(analysed, group)
            row = {"endpoint": endpoint, "group": group, "n": len(sub),
                   "events": int(sub[ecol].sum()) if len(sub) else 0,
                   "median_months": None, "median_lower": None, "median_upper": None,
                   "rate_12m": None, "rate_12m_lower": None, "rate_12m_upper": None}
            if len(sub):
                km = kaplan_meier(sub[tcol], sub[ecol])
                row.update(n=km.n, events=km.events, median_months=_none(km.median),
                           median_lower=_none(km.median_lower), median_upper=_none(km.median_upper))
                if float(sub[tcol].max()) >= LANDMARK_MONTHS:  # else nobody was followed to 12 months
                    s12 = km.survival_at(LANDMARK_MONTHS)
                    row.update(rate_12m=_none(s12.surv), rate_12m_lower=_none(s12.lower),
                               rate_12m_upper=_none(s12.upper))
                tab = km.table
                curve_parts.append(pd.DataFrame({
                    "endpoint": endpoint, "group": group,
                    "time_months": tab["time"].astype(float),
                    "n_at_risk": tab["n_at_risk"].astype(np.int64),
                    "n_events": tab["n_events"].astype(np.int64),
                    "n_censored": tab["n_censored"].astype(np.int64),
                    "survival": tab["survival"].astype(float),
                    "lower": tab["lower"].astype(float),
                    "upper": tab["upper"].astype(float),
                }))
            summary_rows.append(row)
        test_rows.append(_logrank_row(endpoint, frame[tcol], frame[ecol], frame["group"]))
        test_rows.append(_landmark_row(endpoint, analysed[tcol], analysed[ecol], analysed["group"]))

    tcol, ecol = ENDPOINT_COLUMNS["OS"]
    analysed = frame[frame[tcol].notna() & frame[ecol].notna()]
    for group in SUMMARY_GROUPS:
        sub = _subset(analysed, group)
        row = {"group": group, "median_months": None, "lower": None, "upper": None}
        if len(sub):
            fu = reverse_km_follow_up(sub[tcol], sub[ecol])
            row.update(median_months=_none(fu.median), lower=_none(fu.median_lower),
                       upper=_none(fu.median_upper))
        fu_rows.append(row)

    curves = (pd.concat(curve_parts, ignore_index=True) if curve_parts else
              pd.DataFrame(columns=["endpoint", "group", "time_months", "n_at_risk", "n_events",
                                    "n_censored", "survival", "lower", "upper"]))
    for c in ("lower", "upper"):  # NaN where S = 0 (R: NA) -> NULL
        curves[c] = curves[c].astype(float).where(curves[c].notna(), None)
    return SurvivalTables(
        km_summary=pd.DataFrame(summary_rows),
        km_curves=curves,
        survival_tests=pd.DataFrame(test_rows),
        follow_up=pd.DataFrame(fu_rows),
    )


def _logrank_row(endpoint, time, event, group) -> dict:
    row = {"endpoint": endpoint, "test": "logrank", "statistic": None, "df": None, "p_value": None,
           "note": None}
    try:
        res = logrank(time, event, group, levels=GROUPS)
        row.update(statistic=_none(res.statistic), df=int(res.df), p_value=_none(res.p_value))
    except ValueError as exc:
        row["note"] = f"not computed: {exc}"
    return row


def _landmark_row(endpoint, time, event, group) -> dict:
    row = {"endpoint": endpoint, "test": "rate_12m", "statistic": None, "df": None, "p_value": None,
           "note": None}
    short = [g for g in GROUPS if (group == g).any() and float(time[group == g].max()) < LANDMARK_MONTHS]
    if short:
        row["note"] = (f"not computed: no patient of {', '.join(short)} followed to "
                       f"{LANDMARK_MONTHS:g} months (S({LANDMARK_MONTHS:g}) not estimable)")
        return row
    try:
        res = landmark_test(time, event, group, t=LANDMARK_MONTHS, levels=GROUPS)
        row.update(statistic=_none(res.statistic), p_value=_none(res.p_value))
    except ValueError as exc:
        row["note"] = f"not computed: {exc}"
    return row


# ---------------------------------------------------------------------------------------
# response
# ---------------------------------------------------------------------------------------
RESPONSES = ("CR", "PR", "SD", "PD", "NE")


def response_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """analysis.response_summary: best response counts per group (and overall), ORR and DCR
    as proportions (0-1) of every included patient of the group (NE counts as neither)."""
    rows = []
    for group in SUMMARY_GROUPS:
        sub = _subset(frame, group)
        counts = sub["best_response"].value_counts()
        n = len(sub)
        row = {"group": group, "n": n}
        row.update({r.lower(): int(counts.get(r, 0)) for r in RESPONSES})
        row["orr"] = float(sub["objective_response"].astype(bool).sum()) / n if n else None
        row["dcr"] = float(sub["disease_control"].astype(bool).sum()) / n if n else None
        rows.append(row)
    return pd.DataFrame(rows)


def response_tests(frame: pd.DataFrame) -> pd.DataFrame:
    """analysis.response_tests: ORR and DCR by group, Pearson chi-square without continuity
    correction, or exact Fisher when an expected count is < 5 (stats.compare_proportions).
    statistic is NULL for Fisher; a test that cannot be done has test NULL and a note."""
    rows = []
    for measure, col in (("ORR", "objective_response"), ("DCR", "disease_control")):
        row = {"measure": measure, "test": None, "statistic": None, "p_value": None, "note": None}
        try:
            res = compare_proportions(frame[col].astype(bool), frame["group"])
            row.update(test=res.test, statistic=_none(res.statistic), p_value=_none(res.p_value))
        except ValueError as exc:
            row["note"] = f"not computed: {exc}"
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Cox
# ---------------------------------------------------------------------------------------
@dataclass
class CoxTables:
    cox_models: pd.DataFrame
    cox_excluded: pd.DataFrame
    problems: list[str] = field(default_factory=list)  # models that could not be fitted


COX_MODEL_COLUMNS = ["endpoint", "model", "term", "n", "events", "hr", "hr_lower", "hr_upper", "p_value"]
COX_EXCLUDED_COLUMNS = ["endpoint", "term", "reason", "detail"]


def cox_tables(frame: pd.DataFrame) -> CoxTables:
    """analysis.cox_models and analysis.cox_excluded for OS and PFS (study_spec §3) with
    stats.cox_screening on the 12 candidates of data.cox_terms (R coxph, Efron ties, Wald CI
    and p, complete cases per model).

    Models that cannot be fitted are recorded, not hidden:

    * a candidate whose univariable model cannot be fitted (e.g. perfect separation) is in
      cox_excluded with reason ``not_estimable`` and the error in ``detail`` (stats rule);
    * no events at all for an endpoint: every candidate in cox_excluded with reason
      ``not_estimable``, detail = the error;
    * a multivariable model that cannot be fitted: its terms are in cox_excluded with reason
      ``multivariable_not_estimable`` and the error in ``detail``, and cox_models holds the
      univariable rows only.

    Every such case is also returned in ``problems`` (logged as a warning and shown in the
    asset metadata and the report).
    """
    terms = cox_terms(frame)
    model_parts, excluded_parts, problems = [], [], []
    for endpoint in ENDPOINTS:
        tcol, ecol = ENDPOINT_COLUMNS[endpoint]
        try:
            res = cox_screening(terms, tcol, ecol, list(COX_TERMS))
            models, excluded = res.models, res.excluded
        except CoxFitError as exc:
            try:
                # Work-around (reported to the stats owner): cox_screening raises when the
                # multivariable model fails and then returns no univariable rows either. With
                # entry_p = -1 only `group` enters, a model its univariable fit already passed.
                res = cox_screening(terms, tcol, ecol, list(COX_TERMS), entry_p=-1.0)
            except CoxFitError as exc2:  # no events at all
                problems.append(f"{endpoint}: no Cox model can be fitted ({exc2})")
                excluded_parts.append(pd.DataFrame({"endpoint": endpoint, "term": list(COX_TERMS),
                                                    "reason": "not_estimable", "detail": str(exc2)}))
                continue
            wanted = [t for t in res.univariable["term"]
                      if t == "group" or float(res.univariable.loc[res.univariable["term"] == t,
                                                                   "p_value"].iloc[0]) < 0.1]
            problems.append(f"{endpoint}: multivariable model of {', '.join(wanted)} not estimable ({exc})")
            models = res.univariable
            excluded = pd.concat([res.excluded, pd.DataFrame(
                {"term": wanted, "reason": "multivariable_not_estimable", "detail": str(exc)})],
                ignore_index=True)
        if len(models):
            m = models.copy()
            m.insert(0, "endpoint", endpoint)
            model_parts.append(m[COX_MODEL_COLUMNS])
        if len(excluded):
            x = excluded.copy()
            x.insert(0, "endpoint", endpoint)
            excluded_parts.append(x[COX_EXCLUDED_COLUMNS])
        for _, r in excluded.iterrows():
            if r["reason"] == "not_estimable":
                problems.append(f"{endpoint}: univariable model of {r['term']} not estimable ({r['detail']})")
    cm = (pd.concat(model_parts, ignore_index=True) if model_parts
          else pd.DataFrame(columns=COX_MODEL_COLUMNS))
    ce = (pd.concat(excluded_parts, ignore_index=True) if excluded_parts
          else pd.DataFrame(columns=COX_EXCLUDED_COLUMNS))
    for c in ("hr", "hr_lower", "hr_upper", "p_value"):
        if len(cm) and not np.isfinite(cm[c].astype(float)).all():
            raise ValueError(f"Cox table has a non-finite {c}: refusing to store it")
    return CoxTables(cox_models=cm, cox_excluded=ce, problems=problems)


# ---------------------------------------------------------------------------------------
# refresh history
# ---------------------------------------------------------------------------------------
def history_snapshot(km_summary: pd.DataFrame) -> pd.DataFrame:
    """The headline figures of one refresh (endpoint x group): n, events, median, S(12)."""
    return km_summary[["endpoint", "group", "n", "events", "median_months", "rate_12m"]].copy()
