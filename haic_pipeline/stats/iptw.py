"""Propensity score, inverse-probability-of-treatment weights and covariate balance
(study_spec §5.1-5.2), with R's conventions.

* Propensity model: logistic regression of the 0/1 treatment on the covariates, complete
  cases (R ``glm(A ~ x1 + ... + xp, family = binomial)``, no penalty), fitted with
  statsmodels' GLM (Binomial, logit link, IRLS: R's algorithm). Wald se and p from the
  inverse Fisher information, as R's ``summary.glm`` (z tests).
  ps_i = 1 / (1 + exp(-x_i' beta)).
* Stabilized ATE weights: w = A p / ps + (1 - A)(1 - p) / (1 - ps), p = share treated among
  the modelled rows; unstabilized: w = A / ps + (1 - A) / (1 - ps).
* Kish effective sample size per group: (sum w)^2 / sum w^2.
* Truncation (sensitivity analysis): weights clipped to their q_lo and q_hi quantiles over
  the modelled rows, quantiles by R ``quantile(type = 3)`` (:func:`quantile_type3`; NumPy
  has no type 3).
* A fit that does not converge, or separates, gives no weights: the result's ``status`` /
  ``reason`` say why (never NaN weights). Separation is either R glm's warning rule (a
  fitted ps within 10 x machine epsilon of 0 or 1) or, exactly, a separating direction
  found by Konis' linear program (R ``detectseparation``): quasi-complete separation
  (e.g. a covariate level seen only among the treated) leaves R's glm "converged" with a
  large coefficient and se and no warning, yet the MLE is infinite and positivity fails.
* Balance (cobalt convention, signed): SMD = (m_1 - m_0) / s with m the (weighted) mean in
  each group and s = sqrt((v_1 + v_0) / 2) from the *unweighted* groups, v = p (1 - p) for a
  binary (0/1) covariate and the sample variance (n - 1) otherwise.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sps

_SEP_EPS = 10 * np.finfo(float).eps  # R glm.fit: eps <- 10 * .Machine$double.eps
_FUZZ = 4 * np.finfo(float).eps  # R quantile.default: fuzz <- 4 * .Machine$double.eps

PROPENSITY_COLUMNS = ["term", "coef", "se", "p_value", "n", "n_excluded_missing"]
SUMMARY_COLUMNS = ["treatment", "n", "sum", "min", "max", "ess"]


def quantile_type3(values: Any, probs: Any) -> np.ndarray | float:
    """Sample quantiles, as R ``quantile(x, probs, type = 3)`` (SAS definition 2: the
    nearest even order statistic).

    With x_(1) <= ... <= x_(n) and np' = n p - 1/2, j = floor(np' + 4 eps):
    Q(p) = x_(j) when np' == j and j is even, else x_(j+1); indices below 1 give x_(1),
    above n give x_(n). Missing values are an error (R's default ``na.rm = FALSE``).
    """
    x = np.sort(np.asarray(values, dtype=float))
    if np.isnan(x).any():
        raise ValueError("quantile_type3: missing values in x")
    n = len(x)
    if n == 0:
        raise ValueError("quantile_type3 needs at least one value")
    p = np.atleast_1d(np.asarray(probs, dtype=float))
    if np.any((p < 0) | (p > 1)) or np.isnan(p).any():
        raise ValueError("probs must be within [0, 1]")
    nppm = n * p - 0.5
    j = np.floor(nppm + _FUZZ).astype(np.int64)
    h = (nppm != j) | (j % 2 == 1)
    k = np.where(h, j + 1, j)  # 1-based order statistic
    out = x[np.clip(k, 1, n) - 1]
    return float(out[0]) if np.ndim(probs) == 0 else out


def _numeric_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    s = frame[name]
    if s.dtype == bool or str(s.dtype) == "boolean":
        s = s.astype("float64")
    try:
        return pd.to_numeric(s, errors="raise").to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name!r} is not numeric (code it 0/1 first)") from exc


@dataclass(frozen=True)
class PropensityResult:
    """Result of :func:`propensity_weights`.

    * ``status``: ``"ok"``, ``"separation"``, ``"not_converged"``, ``"no_variation"``
      (treatment or a covariate constant among the complete cases) or ``"too_few"``
      (fewer complete cases than parameters); ``reason`` says why in words (None if ok);
      ``ok`` is ``status == "ok"``.
    * ``coefficients``: term -> coef (intercept as ``"intercept"``); ``table``: one row per
      term with term, coef, se, p_value, n, n_excluded_missing (the
      ``analysis.propensity_model`` rows; empty when no fit was made).
    * ``ps``: fitted propensity scores and ``weights`` the (possibly truncated) weights,
      Series aligned with the input frame's index, NaN for rows left out for a missing
      value; ``weights`` is None unless ``ok``.
    * ``summary``: per treatment group (0, 1) n, sum, min, max, ess (Kish) of the weights
      (empty unless ``ok``).
    * ``n`` (modelled rows), ``n_excluded_missing``, ``p_treated`` (share treated among
      the modelled rows), ``stabilized``, ``truncation`` (None or (lower, upper) weight
      bounds used), ``truncate`` (the requested quantiles), ``converged``, ``iterations``.
    """

    status: str
    reason: str | None
    coefficients: dict
    table: pd.DataFrame = field(repr=False)
    ps: pd.Series | None = field(repr=False)
    weights: pd.Series | None = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    n: int
    n_excluded_missing: int
    p_treated: float | None
    stabilized: bool
    truncate: tuple | None
    truncation: tuple | None
    converged: bool | None
    iterations: int | None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def weight_summary(treatment: Any, weights: Any) -> pd.DataFrame:
    """Per treatment group: n, sum, min, max and Kish ESS (sum w)^2 / sum w^2 of the weights
    (rows with a missing treatment or weight are left out)."""
    a = pd.to_numeric(pd.Series(np.asarray(treatment, dtype=object)), errors="coerce").to_numpy(float)
    w = pd.to_numeric(pd.Series(np.asarray(weights, dtype=object)), errors="coerce").to_numpy(float)
    keep = ~(np.isnan(a) | np.isnan(w))
    a, w = a[keep], w[keep]
    rows = []
    for lv in (0, 1):
        ww = w[a == lv]
        if len(ww) == 0:
            rows.append({"treatment": lv, "n": 0, "sum": 0.0, "min": None, "max": None, "ess": 0.0})
            continue
        s2 = float(np.sum(ww * ww))
        rows.append({"treatment": lv, "n": int(len(ww)), "sum": float(ww.sum()),
                     "min": float(ww.min()), "max": float(ww.max()),
                     "ess": float(ww.sum()) ** 2 / s2 if s2 > 0 else 0.0})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _unique_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``m`` in lexicographic order and how often each occurs: what
    ``np.unique(m, axis=0, return_counts=True)`` returns, sorting one lexicographic key
    (``np.lexsort``) instead of the rows as structured records, which is much slower."""
    if len(m) == 0:
        return m[:0], np.zeros(0, dtype=np.int64)
    order = np.lexsort(m.T[::-1])  # the last key is the primary one: first column first
    s = m[order]
    starts = np.flatnonzero(np.r_[True, (s[1:] != s[:-1]).any(axis=1)])
    return s[starts], np.diff(np.r_[starts, len(s)])


def _separating_direction(design: np.ndarray, a: np.ndarray) -> np.ndarray | None:
    """A direction b != 0 with (2A - 1) x_i'b >= 0 for every row (complete or quasi-complete
    separation: the logistic MLE is infinite), or None.

    Linear program of Konis (2007), as R's ``detectseparation``: maximise
    sum_i (2A_i - 1) x_i'b subject to (2A_i - 1) x_i'b >= 0 and -1 <= b_j <= 1; the maximum
    is 0 exactly when the MLE exists (SciPy's HiGHS)."""
    from scipy.optimize import linprog

    ys = (2 * a - 1)[:, None] * design
    scale = np.maximum(np.abs(design).max(axis=0), 1.0)
    ys = ys / scale  # columns on a comparable scale for the solver's tolerances
    # equal rows give equal constraints: one per distinct (treatment, covariates) pattern
    rows, counts = _unique_rows(ys)
    res = linprog(-(counts @ rows), A_ub=-rows, b_ub=np.zeros(len(rows)),
                  bounds=[(-1, 1)] * design.shape[1], method="highs")
    if res.status != 0 or res.x is None or -res.fun <= 1e-7 * len(a):
        return None
    return res.x / scale


def _truncate_probs(truncate: Any) -> tuple | None:
    if truncate is None or truncate is False:
        return None
    if truncate is True:
        return (0.01, 0.99)
    if isinstance(truncate, (int, float)):
        q = float(truncate)
        if not 0 <= q < 0.5:
            raise ValueError("truncate as one number is the lower quantile, within [0, 0.5)")
        return (q, 1.0 - q)
    lo, hi = (float(v) for v in truncate)
    if not 0 <= lo < hi <= 1:
        raise ValueError("truncate must be (lower, upper) quantiles with 0 <= lower < upper <= 1")
    return (lo, hi)


def propensity_weights(df: pd.DataFrame, treatment: str, covariates: Sequence[str],
                       stabilized: bool = True, truncate: Any = None,
                       max_iter: int = 100) -> PropensityResult:
    """Propensity score and ATE weights, as R ``glm(treatment ~ covariates, family =
    binomial)`` on the complete cases followed by w = A p / ps + (1 - A)(1 - p)/(1 - ps)
    (``stabilized=True``, p = share treated) or w = A / ps + (1 - A)/(1 - ps).

    ``treatment`` is a 0/1 (or boolean) column; ``covariates`` numeric columns (0/1
    indicators). Rows missing the treatment or any covariate are left out and counted
    (``n_excluded_missing``). ``truncate``: None (no truncation), a pair of quantiles
    ``(0.01, 0.99)`` (``True`` means that pair; one number q means (q, 1 - q)): the weights
    are clipped to those quantiles of the modelled rows' weights, R ``quantile(type = 3)``.

    Fit: statsmodels GLM (Binomial, logit; IRLS to a 1e-10 relative deviance change,
    tighter than R's 1e-8 so the estimate is R's to many digits). Separation (a fitted ps
    within 10 machine epsilons of 0 or 1, or a separating direction by Konis' linear
    program: complete or quasi-complete) and non-convergence give ``status``
    ``"separation"`` / ``"not_converged"`` and no weights; see :class:`PropensityResult`.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    covariates = list(covariates)
    missing = [c for c in [treatment, *covariates] if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in frame: {missing}")
    probs = _truncate_probs(truncate)
    a_all = _numeric_column(df, treatment)
    x_all = np.column_stack([_numeric_column(df, c) for c in covariates]) if covariates \
        else np.empty((len(df), 0))
    keep = ~np.isnan(a_all) & ~np.isnan(x_all).any(axis=1)
    n = int(keep.sum())
    n_excl = int(len(df) - n)
    a, x = a_all[keep], x_all[keep]
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(f"treatment {treatment!r} must be coded 0/1")
    terms = ["intercept", *covariates]
    empty_table = pd.DataFrame(columns=PROPENSITY_COLUMNS)
    empty_summary = pd.DataFrame(columns=SUMMARY_COLUMNS)

    def failed(status: str, reason: str, table=empty_table, coefs=None, ps=None,
               converged=None, iterations=None) -> PropensityResult:
        return PropensityResult(
            status=status, reason=reason, coefficients=coefs or {}, table=table, ps=ps,
            weights=None, summary=empty_summary, n=n, n_excluded_missing=n_excl,
            p_treated=float(a.mean()) if n else None, stabilized=stabilized,
            truncate=probs, truncation=None, converged=converged, iterations=iterations)

    if n <= len(terms):
        return failed("too_few", f"{n} complete cases for {len(terms)} parameters "
                                 f"({n_excl} left out for a missing value)")
    if a.min() == a.max():
        return failed("no_variation", f"every one of the {n} complete cases has "
                                      f"{treatment} = {int(a[0])}")
    const = [c for j, c in enumerate(covariates) if x[:, j].min() == x[:, j].max()]
    if const:
        return failed("no_variation", f"covariate(s) {', '.join(map(repr, const))} constant "
                                      f"among the {n} complete cases")
    design = np.column_stack([np.ones(n), x])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return failed("no_variation", "covariates are linearly dependent (collinear) among "
                                      "the complete cases")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.GLM(a, design, family=sm.families.Binomial()).fit(
                method="IRLS", tol=1e-10, maxiter=max_iter)
        except Exception as exc:  # statsmodels raises on a singular / failed fit
            return failed("not_converged", f"logistic fit failed: {exc}")
    converged = bool(getattr(res, "converged", True))
    iterations = int(res.fit_history.get("iteration", 0)) if hasattr(res, "fit_history") else None
    coef = np.asarray(res.params, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        se = np.asarray(res.bse, dtype=float)
    z = coef / se
    table = pd.DataFrame({"term": terms, "coef": coef, "se": se,
                          "p_value": 2 * _sps.norm.sf(np.abs(z)), "n": n,
                          "n_excluded_missing": n_excl}, columns=PROPENSITY_COLUMNS)
    coefs = dict(zip(terms, coef.tolist()))
    eta = design @ coef
    ps = 1.0 / (1.0 + np.exp(-eta))
    ps_series = pd.Series(np.nan, index=df.index, dtype=float)
    ps_series[keep] = ps
    n_sep = int(np.sum((ps > 1 - _SEP_EPS) | (ps < _SEP_EPS)))
    sep_warned = any(issubclass(w.category, PerfectSeparationWarning) for w in caught)
    if n_sep or sep_warned:
        return failed("separation",
                      f"the propensity model separates: {n_sep} fitted propensity score(s) "
                      "numerically 0 or 1 (a covariate pattern predicts treatment exactly); "
                      "weights not computed",
                      table=table, coefs=coefs, ps=ps_series, converged=converged,
                      iterations=iterations)
    direction = _separating_direction(design, a)
    if direction is not None:
        involved = [t for t, b in zip(terms, direction) if abs(b) > 1e-7 and t != "intercept"]
        return failed("separation",
                      "the propensity model separates (quasi-complete): "
                      f"{', '.join(map(repr, involved)) or 'the covariates'} predict treatment "
                      "exactly for a subset of patients (no patient of the other group shares "
                      "their pattern), so their propensity score tends to 0 or 1 and the "
                      "estimate is infinite; weights not computed",
                      table=table, coefs=coefs, ps=ps_series, converged=converged,
                      iterations=iterations)
    conv_warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if not converged or conv_warned or not np.all(np.isfinite(coef)) \
            or not np.all(np.isfinite(se)):
        return failed("not_converged",
                      f"the propensity model did not converge in {max_iter} iterations; "
                      "weights not computed",
                      table=table, coefs=coefs, ps=ps_series, converged=False,
                      iterations=iterations)
    p_bar = float(a.mean())
    if stabilized:
        w = np.where(a == 1, p_bar / ps, (1 - p_bar) / (1 - ps))
    else:
        w = np.where(a == 1, 1 / ps, 1 / (1 - ps))
    bounds = None
    if probs is not None:
        lo, hi = quantile_type3(w, list(probs))
        bounds = (float(lo), float(hi))
        w = np.clip(w, lo, hi)
    w_series = pd.Series(np.nan, index=df.index, dtype=float)
    w_series[keep] = w
    return PropensityResult(
        status="ok", reason=None, coefficients=coefs, table=table, ps=ps_series,
        weights=w_series, summary=weight_summary(a, w), n=n, n_excluded_missing=n_excl,
        p_treated=p_bar, stabilized=stabilized, truncate=probs, truncation=bounds,
        converged=converged, iterations=iterations)


def _smd(diff: float, s: float) -> float:
    if s > 0:
        return diff / s
    return 0.0 if diff == 0 else math.copysign(math.inf, diff)


def balance_table(df: pd.DataFrame, treatment: str, covariates: Sequence[str],
                  weights: Any, threshold: float = 0.1) -> pd.DataFrame:
    """Standardized mean differences before and after weighting (cobalt convention).

    ``weights`` is a column name of ``df`` or values aligned with its rows. Rows missing
    the treatment, the weight or the covariate are left out (per covariate). For each
    covariate: share_control / share_treated (unweighted means, m_0 / m_1),
    share_control_weighted / share_treated_weighted (weighted means),
    smd_before = (m_1 - m_0) / s, smd_after = (m^w_1 - m^w_0) / s with
    s = sqrt((v_1 + v_0) / 2) from the unweighted groups (v = p (1 - p) for a 0/1
    covariate, the sample variance otherwise), balanced_after = |smd_after| < threshold
    (0.1), n = rows used. Signed: positive means more frequent among the treated (A = 1).
    With s = 0 (each group constant in the covariate) an SMD is 0 for no difference and
    +-inf otherwise (the covariate splits the groups completely).
    """
    a_all = _numeric_column(df, treatment)
    if isinstance(weights, str):
        w_all = _numeric_column(df, weights)
    else:
        w_all = pd.to_numeric(pd.Series(np.asarray(weights, dtype=object)),
                              errors="raise").to_numpy(dtype=float)
        if len(w_all) != len(df):
            raise ValueError("weights must have one value per row of df")
    rows = []
    for cov in covariates:
        x = _numeric_column(df, cov)
        keep = ~(np.isnan(a_all) | np.isnan(w_all) | np.isnan(x))
        a, w, xv = a_all[keep], w_all[keep], x[keep]
        t1, t0 = a == 1, a == 0
        if not t1.any() or not t0.any():
            raise ValueError(f"balance_table: {cov!r} needs rows in both treatment groups")
        m1, m0 = float(xv[t1].mean()), float(xv[t0].mean())
        q1 = float(np.sum(w[t1] * xv[t1]) / np.sum(w[t1]))
        q0 = float(np.sum(w[t0] * xv[t0]) / np.sum(w[t0]))
        binary = bool(np.all((xv == 0) | (xv == 1)))
        if binary:
            v1, v0 = m1 * (1 - m1), m0 * (1 - m0)
        else:
            v1 = float(np.var(xv[t1], ddof=1)) if t1.sum() > 1 else 0.0
            v0 = float(np.var(xv[t0], ddof=1)) if t0.sum() > 1 else 0.0
        s = math.sqrt((v1 + v0) / 2)
        before, after = _smd(m1 - m0, s), _smd(q1 - q0, s)
        rows.append({"covariate": cov, "share_control": m0, "share_treated": m1,
                     "share_control_weighted": q0, "share_treated_weighted": q1,
                     "smd_before": before, "smd_after": after,
                     "balanced_after": abs(after) < threshold, "n": int(keep.sum())})
    return pd.DataFrame(rows, columns=["covariate", "share_control", "share_treated",
                                       "share_control_weighted", "share_treated_weighted",
                                       "smd_before", "smd_after", "balanced_after", "n"])
