"""Propensity score, inverse-probability-of-treatment weights and covariate balance
(study_spec §5.1-5.2), with R's conventions.

* Propensity model: logistic regression of the 0/1 treatment on the covariates, complete
  cases (R ``glm(A ~ x1 + ... + xp, family = binomial)``, no penalty), fitted with
  statsmodels' GLM (Binomial, logit link, IRLS: R's algorithm). Wald se and p from the
  inverse Fisher information, as R's ``summary.glm`` (z tests).
  ps_i = 1 / (1 + exp(-x_i' beta)).
* Covariates left out of the model (``PropensityResult.aliased``, candidates' order): a
  covariate constant among the modelled rows, or a linear combination of the intercept and
  earlier kept covariates (R ``glm`` gives it an ``NA`` coefficient: its QR, LINPACK
  ``dqrdc2``, has limited pivoting, the columns in order, and moves a column to the end when
  the norm of what is left of it after the earlier Householder steps is below tol x its own
  norm; :func:`_dqrdc2_aliased`), and a covariate that alone separates the groups (one of
  the levels of a 0/1 indicator occurs in only one group: its coefficient is infinite).
  The model is fitted without them. Tolerance 1e-7 (study_spec §5.6; R ``lm``'s and
  ``qr()``'s default); R's ``glm.fit`` passes min(1e-7, epsilon / 1000) = 1e-11 to the same
  QR, which keeps a covariate within 1e-11..1e-7 of collinear and gives it a coefficient of
  order 1e14; on 0/1 indicators the two agree (``alias_tol=1e-11`` reproduces glm there).
* Stabilized ATE weights: w = A p / ps + (1 - A)(1 - p) / (1 - ps), p = share treated among
  the modelled rows; unstabilized: w = A / ps + (1 - A) / (1 - ps).
* Overlap weights (ATO, Li, Morgan & Zaslavsky 2018): w = A (1 - ps) + (1 - A) ps; with an
  intercept in the logistic model the weighted means of every modelled covariate are equal
  in the two groups (the score equations of the fit), so their SMD after weighting is 0.
* Kish effective sample size per group: (sum w)^2 / sum w^2.
* Truncation (sensitivity analysis): weights clipped to their q_lo and q_hi quantiles over
  the modelled rows, quantiles by R ``quantile(type = 3)`` (:func:`quantile_type3`; NumPy
  has no type 3). ``clipped`` = (number of weights < the lower bound, number > the upper),
  as R ``sum(w < q[1])``, ``sum(w > q[2])``.
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
from statsmodels.genmod.families import Binomial
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

_SEP_EPS = 10 * np.finfo(float).eps  # R glm.fit: eps <- 10 * .Machine$double.eps
_FUZZ = 4 * np.finfo(float).eps  # R quantile.default: fuzz <- 4 * .Machine$double.eps

ESTIMANDS = ("ATE", "ATO")
#: reasons a covariate is left out of the propensity model (``PropensityResult.aliased_reason``)
ALIAS_CONSTANT = "constant"
ALIAS_LINEAR_COMBINATION = "linear_combination"
ALIAS_SINGLE_GROUP_LEVEL = "single_group_level"
#: tolerance for the rank of the design (study_spec §5.6; R ``lm``'s 1e-7; glm.fit's is 1e-11)
ALIAS_TOL = 1e-7

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
      (treatment constant among the complete cases) or ``"too_few"`` (no more complete
      cases than parameters); ``reason`` says why in words (None if ok); ``ok`` is
      ``status == "ok"``.
    * ``estimand``: ``"ATE"`` (stabilized or not) or ``"ATO"`` (overlap weights).
    * ``covariates``: the covariates in the model (candidates' order); ``aliased``: the
      candidates left out (candidates' order), ``aliased_reason`` name -> one of
      ``"constant"``, ``"linear_combination"``, ``"single_group_level"`` and
      ``aliased_note`` name -> the same in words (which covariates, which level, which group).
    * ``coefficients``: term -> coef (intercept as ``"intercept"``) of the modelled terms;
      ``table``: one row per modelled term with term, coef, se, p_value, n,
      n_excluded_missing (empty when no fit was made).
    * ``ps``: fitted propensity scores and ``weights`` the (possibly truncated) weights,
      Series aligned with the input frame's index, NaN for rows left out for a missing
      value; ``weights`` is None unless ``ok``.
    * ``summary``: per treatment group (0, 1) n, sum, min, max, ess (Kish) of the weights
      (empty unless ``ok``).
    * ``n`` (modelled rows), ``n_excluded_missing``, ``p_treated`` (share treated among
      the modelled rows), ``stabilized`` (the argument; it applies to ATE weights only),
      ``truncation`` (None or (lower, upper) weight
      bounds used), ``clipped`` (None or (number of weights raised to the lower bound,
      number lowered to the upper)), ``truncate`` (the requested quantiles), ``converged``,
      ``iterations``.
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
    estimand: str = "ATE"
    covariates: tuple = ()
    aliased: tuple = ()
    aliased_reason: dict = field(default_factory=dict)
    aliased_note: dict = field(default_factory=dict)
    clipped: tuple | None = None

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


def _dqrdc2_aliased(x: np.ndarray, tol: float = ALIAS_TOL) -> list[int]:
    """Indices of the columns of ``x`` (n x p) that R's QR leaves out as aliased: a port of
    LINPACK ``dqrdc2`` (R's modified version, used by ``lm`` and ``glm.fit``): Householder
    steps on the columns in order with limited pivoting. Before step l, a column whose
    remaining norm (the part orthogonal to the columns kept so far) is below tol x its
    original norm is moved to the end and not used as a pivot; the remaining norms are
    downdated after each step and recomputed when they lose more than 1e-6 of their square
    (R's modification of 9/99). Columns beyond the rank (the moved ones, and any beyond n)
    are aliased; their coefficients are R's ``NA``."""
    x = np.array(x, dtype=float, copy=True, order="F")  # columns contiguous
    n, p = x.shape
    jpvt = list(range(p))
    qraux = np.sqrt(np.sum(x * x, axis=0))
    work1 = qraux.copy()
    work2 = np.where(qraux == 0, 1.0, qraux)
    k = p  # columns k.. are the moved ones (0-based)
    for l in range(min(n, p)):
        while l < k and qraux[l] < work2[l] * tol:
            order = list(range(l)) + list(range(l + 1, p)) + [l]
            x = np.asfortranarray(x[:, order])
            jpvt = [jpvt[i] for i in order]
            qraux, work1, work2 = qraux[order], work1[order], work2[order]
            k -= 1
        if l == n - 1:
            continue
        col = x[l:, l]
        nrmxl = float(np.sqrt(col @ col))
        if nrmxl == 0.0:
            continue
        if x[l, l] != 0.0:
            nrmxl = math.copysign(nrmxl, x[l, l])
        x[l:, l] /= nrmxl
        x[l, l] += 1.0
        for j in range(l + 1, p):
            t = -float(x[l:, l] @ x[l:, j]) / x[l, l]
            x[l:, j] += t * x[l:, l]
            if qraux[j] != 0.0:
                tt = max(1.0 - (abs(x[l, j]) / qraux[j]) ** 2, 0.0)
                if abs(tt) < 1e-6:
                    qraux[j] = float(np.sqrt(x[l + 1:, j] @ x[l + 1:, j]))
                    work1[j] = qraux[j]
                else:
                    qraux[j] = qraux[j] * math.sqrt(tt)
        qraux[l] = x[l, l]
        x[l, l] = -nrmxl
    rank = min(k, n)
    return sorted(jpvt[rank:])


def _compressed(m: np.ndarray) -> np.ndarray:
    """A p x p matrix with the same cross-product M'M as ``m`` (n x p): its R factor from
    LAPACK's Householder QR (``numpy.linalg.qr``, blocked, fast at any n). R's QR of it has the
    same R factor up to signs, so :func:`_dqrdc2_aliased` finds the same aliased columns;
    used when n > 8 p, where the column-by-column port would cost seconds at 10^6 rows."""
    n, p = m.shape
    if n <= 8 * p:
        return m
    return np.linalg.qr(m, mode="r")


def _single_variable_separation(x: np.ndarray, a: np.ndarray) -> tuple[str, float, int] | None:
    """Whether one (non-constant) covariate alone separates the groups: its values in one
    group all lie at or beyond every value in the other (quasi-complete separation by that
    column and the intercept; for a 0/1 indicator: one of its levels occurs in only one
    group). Returns (which side, the value seen in one group only, that group) or None."""
    x1, x0 = x[a == 1], x[a == 0]
    if x0.max() <= x1.min():  # values above max(x0) only among the treated, x0.max() maybe shared
        only = x1.max() if x1.max() > x0.max() else x0.min()
        return ("above", float(only), 1 if x1.max() > x0.max() else 0)
    if x1.max() <= x0.min():
        only = x0.max() if x0.max() > x1.max() else x1.min()
        return ("below", float(only), 0 if x0.max() > x1.max() else 1)
    return None


def _fmt_level(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


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
                       max_iter: int = 100, estimand: str = "ATE",
                       alias_tol: float = ALIAS_TOL) -> PropensityResult:
    """Propensity score and weights, as R ``glm(treatment ~ covariates, family = binomial)``
    on the complete cases followed by, for ``estimand="ATE"``,
    w = A p / ps + (1 - A)(1 - p)/(1 - ps) (``stabilized=True``, p = share treated) or
    w = A / ps + (1 - A)/(1 - ps); for ``estimand="ATO"`` the overlap weights
    w = A (1 - ps) + (1 - A) ps (Li, Morgan & Zaslavsky 2018; R:
    ``ifelse(A == 1, 1 - fitted(fit), fitted(fit))``; ``stabilized`` does not apply).

    ``treatment`` is a 0/1 (or boolean) column; ``covariates`` numeric columns (0/1
    indicators). Rows missing the treatment or any covariate are left out and counted
    (``n_excluded_missing``). ``truncate`` (ATE only; overlap weights lie in (0, 1) and are
    not truncated): None (no truncation), a pair of quantiles ``(0.01, 0.99)`` (``True``
    means that pair; one number q means (q, 1 - q)): the weights are clipped to those
    quantiles of the modelled rows' weights, R ``quantile(type = 3)``; ``clipped`` counts
    the weights below / above the bounds (R ``sum(w < q[1])``, ``sum(w > q[2])``).

    Covariates left out before the fit, in the candidates' order (``aliased``, with
    ``aliased_reason`` / ``aliased_note``): constant among the complete cases, or a linear
    combination of the intercept and earlier covariates (R's pivoted QR, ``dqrdc2``, with
    ``alias_tol``: the coefficients R ``glm`` reports as ``NA``), then any covariate that
    alone separates the groups (a level of a 0/1 indicator seen in one group only, where R's
    ``glm`` would "converge" to a huge coefficient). The model is fitted without them.

    Fit: statsmodels GLM (Binomial, logit; IRLS to a 1e-10 relative deviance change,
    tighter than R's 1e-8 so the estimate is R's to many digits). Separation by the kept
    covariates jointly (a fitted ps within 10 machine epsilons of 0 or 1, or a separating
    direction by Konis' linear program: complete or quasi-complete) and non-convergence
    give ``status`` ``"separation"`` / ``"not_converged"`` and no weights; see
    :class:`PropensityResult`.
    """
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {ESTIMANDS}, got {estimand!r}")
    covariates = list(covariates)
    missing = [c for c in [treatment, *covariates] if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in frame: {missing}")
    probs = _truncate_probs(truncate)
    if probs is not None and estimand == "ATO":
        raise ValueError("truncate applies to ATE weights only: overlap (ATO) weights are bounded "
                         "by 0 and 1 and are not truncated")
    a_all = _numeric_column(df, treatment)
    x_all = np.column_stack([_numeric_column(df, c) for c in covariates]) if covariates \
        else np.empty((len(df), 0))
    keep = ~np.isnan(a_all) & ~np.isnan(x_all).any(axis=1)
    n = int(keep.sum())
    n_excl = int(len(df) - n)
    a, x = a_all[keep], x_all[keep]
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(f"treatment {treatment!r} must be coded 0/1")
    empty_table = pd.DataFrame(columns=PROPENSITY_COLUMNS)
    empty_summary = pd.DataFrame(columns=SUMMARY_COLUMNS)
    reason_of: dict[str, str] = {}
    note_of: dict[str, str] = {}
    modelled = list(covariates)

    def failed(status: str, reason: str, table=empty_table, coefs=None, ps=None,
               converged=None, iterations=None) -> PropensityResult:
        return PropensityResult(
            status=status, reason=reason, coefficients=coefs or {}, table=table, ps=ps,
            weights=None, summary=empty_summary, n=n, n_excluded_missing=n_excl,
            p_treated=float(a.mean()) if n else None, stabilized=stabilized,
            truncate=probs, truncation=None, converged=converged, iterations=iterations,
            estimand=estimand, covariates=tuple(modelled),
            aliased=tuple(c for c in covariates if c in reason_of),
            aliased_reason={c: reason_of[c] for c in covariates if c in reason_of},
            aliased_note={c: note_of[c] for c in covariates if c in note_of}, clipped=None)

    if n == 0:
        return failed("too_few", f"no complete cases ({n_excl} left out for a missing value)")
    if a.min() == a.max():
        return failed("no_variation", f"every one of the {n} complete cases has "
                                      f"{treatment} = {int(a[0])}")
    # aliased (R glm's NA coefficients): QR of [1, x] with the columns in order
    full = np.column_stack([np.ones(n), x])
    for j in _dqrdc2_aliased(_compressed(full), alias_tol):
        if j == 0:
            continue  # the intercept comes first and is never aliased unless n = 0
        name = covariates[j - 1]
        col = x[:, j - 1]
        if col.min() == col.max():
            reason_of[name] = ALIAS_CONSTANT
            note_of[name] = (f"constant among the {n} modelled patients "
                             f"({name} = {_fmt_level(col[0])} for all)")
        else:
            reason_of[name] = ALIAS_LINEAR_COMBINATION
            reason_of_kept = [i for i in range(j) if i == 0 or covariates[i - 1] not in reason_of]
            coef, *_ = np.linalg.lstsq(full[:, reason_of_kept], col, rcond=None)
            terms_in = [("intercept" if i == 0 else covariates[i - 1])
                        for i, b in zip(reason_of_kept, coef) if abs(b) > 1e-8]
            note_of[name] = ("a linear combination of " + ", ".join(terms_in)
                             + f" among the {n} modelled patients (R glm: coefficient NA)")
    # a covariate that alone separates the groups
    for j, name in enumerate(covariates):
        if name in reason_of:
            continue
        sep = _single_variable_separation(x[:, j], a)
        if sep is not None:
            _, level, group = sep
            reason_of[name] = ALIAS_SINGLE_GROUP_LEVEL
            note_of[name] = (f"{name} = {_fmt_level(level)} occurs only among {treatment} = "
                             f"{group} (the covariate alone separates the groups: infinite "
                             "coefficient)")
    cols = [j for j, c in enumerate(covariates) if c not in reason_of]
    modelled = [covariates[j] for j in cols]
    terms = ["intercept", *modelled]
    if n <= len(terms):
        return failed("too_few", f"{n} complete cases for {len(terms)} parameters "
                                 f"({n_excl} left out for a missing value)")
    design = np.column_stack([np.ones(n), x[:, cols]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = GLM(a, design, family=Binomial()).fit(
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
                      f"{', '.join(map(repr, involved)) or 'the covariates'} together predict "
                      "treatment exactly for a subset of patients (no patient of the other group "
                      "shares their pattern), so their propensity score tends to 0 or 1 and the "
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
    if estimand == "ATO":
        w = np.where(a == 1, 1 - ps, ps)
    elif stabilized:
        w = np.where(a == 1, p_bar / ps, (1 - p_bar) / (1 - ps))
    else:
        w = np.where(a == 1, 1 / ps, 1 / (1 - ps))
    bounds = None
    clipped = None
    if probs is not None:
        lo, hi = quantile_type3(w, list(probs))
        bounds = (float(lo), float(hi))
        clipped = (int(np.sum(w < lo)), int(np.sum(w > hi)))
        w = np.clip(w, lo, hi)
    w_series = pd.Series(np.nan, index=df.index, dtype=float)
    w_series[keep] = w
    return PropensityResult(
        status="ok", reason=None, coefficients=coefs, table=table, ps=ps_series,
        weights=w_series, summary=weight_summary(a, w), n=n, n_excluded_missing=n_excl,
        p_treated=p_bar, stabilized=stabilized, truncate=probs, truncation=bounds,
        converged=converged, iterations=iterations, estimand=estimand,
        covariates=tuple(modelled), aliased=tuple(c for c in covariates if c in reason_of),
        aliased_reason=dict((c, reason_of[c]) for c in covariates if c in reason_of),
        aliased_note=dict((c, note_of[c]) for c in covariates if c in note_of), clipped=clipped)


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
