"""Cox model building of study_spec §3: univariable screening and the multivariable model.

The study layer passes a frame of the included patients with the endpoint's time / event
columns and the candidate covariates already coded as numeric 0/1 columns (NaN = missing;
:func:`binary_indicator` helps with that), the term names being the column names, e.g.::

    res = cox_screening(frame, "os_months", "os_event",
                        ["group", "age_ge_65", "sex_male", "etiology_hbv", "ecog_0",
                         "child_pugh_a", "bclc_c_d", "afp_ge_400", "multiple_tumors",
                         "tumor_size_gt_10", "portal_vein_invasion",
                         "extrahepatic_metastasis"])
    res.models     # rows for analysis.cox_models (model, term, n, events, hr, ... p_value)
    res.excluded   # rows for analysis.cox_excluded (term, reason, detail)

Rules (study_spec §3): a candidate missing for more than 20% of the frame's rows is left
out (``missing_over_20pct``); one with no variation among its complete cases (time, event
and the candidate present) is left out (``no_variation``); every other candidate gets a
univariable Cox model on its own complete cases. The multivariable model holds ``group``
plus every other candidate with univariable p < 0.1, fitted on the complete cases of its
own terms (R's ``na.omit``). ``n`` and ``events`` on every row say how many were used.
Extension: a candidate whose univariable model cannot be fitted (e.g. perfect separation)
is left out with reason ``not_estimable`` and the error in ``detail`` rather than stopping
the whole screening; ``group`` itself is subject to the same exclusion rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .cox import CoxFitError, cox_regression

MODEL_COLUMNS = ["model", "term", "n", "events", "coef", "hr", "hr_lower", "hr_upper", "p_value"]
EXCLUDED_COLUMNS = ["term", "reason", "detail"]


def binary_indicator(values: Any, positive: Any) -> pd.Series:
    """1.0 where ``values`` equals ``positive`` (or is in it, when a list/set/tuple is
    given), 0.0 elsewhere, NaN where ``values`` is missing: the 0/1 coding of §3
    ("1 = first named level"), e.g. ``binary_indicator(cohort.group, "post_ate_beva")``."""
    s = pd.Series(values)
    pos = set(positive) if isinstance(positive, (list, set, tuple, frozenset)) else {positive}
    out = s.isin(pos).astype("float64")
    out[s.isna()] = np.nan
    return out


@dataclass
class CoxScreeningResult:
    """``univariable`` and ``multivariable`` tables (columns ``MODEL_COLUMNS``),
    ``excluded`` (term, reason, detail) and ``selected`` (the multivariable terms)."""

    univariable: pd.DataFrame
    multivariable: pd.DataFrame
    excluded: pd.DataFrame
    selected: list = field(default_factory=list)

    @property
    def models(self) -> pd.DataFrame:
        """Univariable then multivariable rows, one table (``analysis.cox_models`` shape)."""
        parts = [df for df in (self.univariable, self.multivariable) if len(df)]
        if not parts:
            return pd.DataFrame(columns=MODEL_COLUMNS)
        return pd.concat(parts, ignore_index=True)


def _model_rows(model: str, fit: pd.DataFrame) -> pd.DataFrame:
    out = fit[["term", "n", "events", "coef", "hr", "hr_lower", "hr_upper", "p_value"]].copy()
    out.insert(0, "model", model)
    return out[MODEL_COLUMNS].reset_index(drop=True)


def cox_screening(
    frame: pd.DataFrame,
    time_col: str,
    event_col: str,
    candidates: Sequence[str],
    group_term: str = "group",
    entry_p: float = 0.1,
    max_missing_fraction: float = 0.2,
    ties: str = "efron",
) -> CoxScreeningResult:
    """Univariable screening and the multivariable Cox model of study_spec §3.

    Each model is :func:`cox_regression` (R ``coxph(..., ties = "efron")``, Wald CI and p)
    on the complete cases of its own terms. A candidate is left out when its missing
    fraction over ``len(frame)`` exceeds ``max_missing_fraction`` (``missing_over_20pct``)
    or when it takes a single value among its complete cases (``no_variation``). The
    multivariable model = ``group_term`` (always, first, unless itself left out) + the
    other candidates with univariable p < ``entry_p``, in the candidates' order. Raises
    :class:`CoxFitError` when there are no events at all or the multivariable model
    cannot be fitted (the message names the cause).
    """
    candidates = list(dict.fromkeys(candidates))
    if group_term not in candidates:
        candidates.insert(0, group_term)
    missing_cols = [c for c in [time_col, event_col, *candidates] if c not in frame.columns]
    if missing_cols:
        raise KeyError(f"columns not in frame: {missing_cols}")
    n_total = len(frame)
    base_ok = frame[time_col].notna() & frame[event_col].notna()
    if n_total == 0 or float(pd.to_numeric(frame.loc[base_ok, event_col]).sum()) == 0:
        raise CoxFitError("Cox screening cannot be done: no events")
    uni_rows: list[pd.DataFrame] = []
    excluded: list[dict] = []
    pvals: dict[str, float] = {}
    for term in candidates:
        col = frame[term]
        frac = float(col.isna().mean())
        if frac > max_missing_fraction:
            excluded.append({"term": term, "reason": "missing_over_20pct",
                             "detail": f"{frac:.1%} missing (limit {max_missing_fraction:.0%})"})
            continue
        cc = base_ok & col.notna()
        values = col[cc]
        if values.nunique() <= 1:
            only = values.iloc[0] if len(values) else None
            excluded.append({"term": term, "reason": "no_variation",
                             "detail": f"single value {only!r} among {int(cc.sum())} complete cases"})
            continue
        try:
            fit = cox_regression(frame, time_col, event_col, [term], ties=ties)
        except CoxFitError as exc:
            excluded.append({"term": term, "reason": "not_estimable", "detail": str(exc)})
            continue
        pvals[term] = float(fit["p_value"].iloc[0])
        uni_rows.append(_model_rows("univariable", fit))
    kept = [t for t in candidates if t in pvals]
    selected = ([group_term] if group_term in pvals else []) + [
        t for t in kept if t != group_term and pvals[t] < entry_p
    ]
    if selected:
        multi = _model_rows("multivariable",
                            cox_regression(frame, time_col, event_col, selected, ties=ties))
    else:
        multi = pd.DataFrame(columns=MODEL_COLUMNS)
    uni = pd.concat(uni_rows, ignore_index=True) if uni_rows else pd.DataFrame(columns=MODEL_COLUMNS)
    return CoxScreeningResult(
        univariable=uni,
        multivariable=multi,
        excluded=pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS),
        selected=selected,
    )
