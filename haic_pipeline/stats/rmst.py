"""Restricted mean survival time (RMST) with R's variances, and two-group contrasts.

RMST(tau) = integral_0^tau S(t) dt, the area under the Kaplan-Meier step function up to tau:
with the distinct observed times t_1 < ... < t_m <= tau (events and censorings, as R's
``survfit`` ``time``), t_0 = 0, S(t_0) = 1 and t_{m+1} = tau,
RMST = sum_{j=0..m} (t_{j+1} - t_j) S(t_j). G_j = sum_{j' >= j} (t_{j'+1} - t_{j'}) S(t_{j'})
is the area from t_j to tau.

* Unweighted (R ``survRM2::rmst1``, equal to survival's ``rmean`` variance):
  var = sum_{j=1..m} G_j^2 d_j / (n_j (n_j - d_j)), a term with n_j = d_j counting 0 (as
  survRM2). Why not lifelines: its ``restricted_mean_survival_time(..., return_variance=True)``
  is the variance of the survival time truncated at tau, not of the estimator
  (lifelines #1682).
* Weighted (IPTW; the influence of each row on the weighted KM, R
  ``survfit(..., weights = w, influence = TRUE)``): A_k = sum_j (t_{j+1} - t_j) U_k(t_j), with
  U_k(t) = w_k dS(t)/dw_k the IJ influence of :mod:`haic_pipeline.stats.km`, and
  var = sum_k A_k^2. Exchanging the sums, A_k = w_k [C(min(t_k, tau)) - delta_k 1(t_k <= tau)
  a(t_k) G(t_k)], C(t) = sum_{event times s <= t} b(s) G(s), a(s) = 1/(Y(s) - dw(s)),
  b(s) = dw(s)/(Y(s)(Y(s) - dw(s))): running sums, O(n log n), no rows x times matrix.
  (R's ``influence = TRUE`` uses the IJ variance even when every weight is an integer; so
  does this module whenever ``weights`` is given.)
* CI: RMST -+ z se (survRM2).
* Contrasts (survRM2 ``rmst2``, non-reference minus / over reference):
  difference D = R_1 - R_0, se = sqrt(se_1^2 + se_0^2), CI D -+ z se, p = 2 Phi(-|D|/se);
  ratio on the log scale: log(R_1/R_0), se = sqrt(se_1^2/R_1^2 + se_0^2/R_0^2), CI and p
  likewise, reported as exp().

tau beyond follow-up (study_spec §5.4): the KM is not defined past the largest observed
time, so when tau exceeds it (for a contrast: the smaller of the groups' largest observed
times) that bound is used instead, ``tau_truncated`` is True and ``note`` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _sps

from ._common import as_float_array, clean_survival, group_levels


@dataclass(frozen=True)
class RMSTResult:
    """One group's RMST: ``estimate``, ``se``, ``lower``/``upper`` (estimate -+ z se),
    ``tau`` (the bound used), ``tau_requested``, ``tau_truncated`` (True when tau was
    lowered to the largest observed time), ``note`` (None or why tau was lowered),
    ``n`` / ``events`` (row counts), ``weighted``, ``variance`` (``"rmean"`` unweighted,
    ``"robust_ij"`` weighted), ``conf_level``."""

    estimate: float
    se: float
    lower: float
    upper: float
    tau: float
    tau_requested: float
    tau_truncated: bool
    note: str | None
    n: int
    events: int
    weighted: bool
    variance: str
    conf_level: float


@dataclass(frozen=True)
class RMSTComparison:
    """Two-group RMST contrast (survRM2 ``rmst2``), ``comparator`` vs ``reference``.

    ``difference`` (comparator - reference) with ``difference_se``, ``difference_lower``,
    ``difference_upper``, ``difference_p``; ``ratio`` (comparator / reference, on the log
    scale) with ``ratio_se_log``, ``ratio_lower``, ``ratio_upper``, ``ratio_p``; ``groups``
    (the per-group :class:`RMSTResult`, keyed by level), ``tau``, ``tau_requested``,
    ``tau_truncated``, ``note``, ``weighted``."""

    reference: Any
    comparator: Any
    difference: float
    difference_se: float
    difference_lower: float
    difference_upper: float
    difference_p: float
    ratio: float
    ratio_se_log: float
    ratio_lower: float
    ratio_upper: float
    ratio_p: float
    tau: float
    tau_requested: float
    tau_truncated: bool
    note: str | None
    weighted: bool
    groups: dict = field(repr=False)


def _clean(time: Any, event: Any, weights: Any, *others: Any):
    if weights is None:
        t, e, *rest = clean_survival(time, event, *others)
        return t, e, None, rest
    t, e, w, *rest = clean_survival(time, event, weights, *others)
    w = as_float_array(w, "weights")
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    return t, e, w, rest


def _rmst_core(t: np.ndarray, e: np.ndarray, w: np.ndarray | None, tau: float) -> tuple[float, float]:
    """(RMST, se) at tau <= max(t) for clean arrays (formulas in the module docstring)."""
    uniq, inv = np.unique(t, return_inverse=True)
    inv = inv.reshape(-1)
    m = len(uniq)
    ww = np.ones(len(t)) if w is None else w
    d_count = np.bincount(inv, weights=e, minlength=m)
    wc = np.bincount(inv, weights=ww, minlength=m)
    wd = np.bincount(inv, weights=ww * e, minlength=m)
    y = np.cumsum(wc[::-1])[::-1]
    evt = (d_count > 0) & (wd > 0)
    left = y - wd
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(np.where(evt, left / y, 1.0))
    keep = uniq <= tau
    nxt = np.append(uniq[1:], tau)
    delta = np.where(keep, np.minimum(nxt, tau) - uniq, 0.0)  # t_{j+1} - t_j on the grid
    first = uniq[0] if keep[0] else tau
    area = surv * delta
    estimate = float(first + area.sum())  # [0, t_1) with S = 1, then the steps
    g = np.cumsum(area[::-1])[::-1]  # G_j: area from t_j to tau (0 beyond tau)
    if w is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            v_j = np.where(evt & keep & (left > 0), wd / (y * left), 0.0)
        var = float(np.sum(g * g * v_j))
    else:
        live = evt & (left > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(live, 1.0 / left, 0.0)
            b = np.where(live, wd / (y * left), 0.0)
        c = np.cumsum(b * g)
        infl = ww * (c[inv] - e * a[inv] * g[inv])
        var = float(np.sum(infl * infl))
    return estimate, math.sqrt(var)


def _result(t, e, w, tau_used, tau, truncated, note, conf_level) -> RMSTResult:
    est, se = _rmst_core(t, e, w, tau_used)
    z = float(_sps.norm.ppf(1 - (1 - conf_level) / 2))
    return RMSTResult(
        estimate=est, se=se, lower=est - z * se, upper=est + z * se, tau=float(tau_used),
        tau_requested=float(tau), tau_truncated=truncated, note=note, n=len(t),
        events=int(e.sum()), weighted=w is not None,
        variance="rmean" if w is None else "robust_ij", conf_level=conf_level,
    )


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a positive number, got {tau!r}")
    return tau


def rmst(time: Any, event: Any, tau: float, weights: Any = None,
         conf_level: float = 0.95) -> RMSTResult:
    """RMST up to ``tau`` with its standard error, as R ``survRM2::rmst1`` (unweighted; the
    variance equals survival's ``rmean``) or the IJ variance of the weighted KM (R
    ``survfit(..., weights = w, influence = TRUE)``, integrated over [0, tau]).

    Formulas in the module docstring. Rows with a missing time, event or weight are
    dropped. tau above the largest observed time is lowered to it (``tau_truncated``,
    ``note``). Raises ``ValueError`` for tau <= 0, no rows, or invalid weights.
    """
    if not 0 < conf_level < 1:
        raise ValueError("conf_level must be within (0, 1)")
    tau = _check_tau(tau)
    t, e, w, _ = _clean(time, event, weights)
    if len(t) == 0:
        raise ValueError("rmst needs at least one observation")
    bound = float(t.max())
    truncated = tau > bound
    note = None
    if truncated:
        note = (f"tau = {tau:g} exceeds the largest observed time {bound:g}; "
                f"RMST restricted to {bound:g} instead")
    if min(tau, bound) <= 0:
        raise ValueError("rmst undefined: the largest observed time is 0")
    return _result(t, e, w, min(tau, bound), tau, truncated, note, conf_level)


def rmst_compare(time: Any, event: Any, group: Any, tau: float, weights: Any = None,
                 reference: Any = None, conf_level: float = 0.95) -> RMSTComparison:
    """RMST difference and ratio between two groups, as R ``survRM2::rmst2`` (unweighted)
    or with the IJ variances of the weighted KMs (IPTW).

    ``reference`` is the group subtracted / divided by (default: the first level in R's
    factor order, i.e. sorted); the other group is the ``comparator``. Formulas in the
    module docstring. tau above the smaller of the two groups' largest observed times is
    lowered to it (``tau_truncated``, ``note``). Raises ``ValueError`` unless exactly two
    groups have data, or when an RMST is 0 (the ratio's log scale is undefined).
    """
    if not 0 < conf_level < 1:
        raise ValueError("conf_level must be within (0, 1)")
    tau = _check_tau(tau)
    t, e, w, (g,) = _clean(time, event, weights, np.asarray(group, dtype=object))
    levs = [lv for lv in group_levels(g) if np.any(g == lv)]
    if len(levs) != 2:
        raise ValueError(f"rmst_compare needs exactly two groups with data; found {levs!r}")
    if reference is None:
        reference = levs[0]
    if reference not in levs:
        raise ValueError(f"reference {reference!r} is not among the groups {levs!r}")
    comparator = levs[1] if reference == levs[0] else levs[0]
    masks = {lv: (g == lv) for lv in (reference, comparator)}
    bound = min(float(t[mk].max()) for mk in masks.values())
    truncated = tau > bound
    note = None
    if truncated:
        note = (f"tau = {tau:g} exceeds the follow-up of both groups (the smaller of their "
                f"largest observed times is {bound:g}); RMST restricted to {bound:g} instead")
    tau_used = min(tau, bound)
    if tau_used <= 0:
        raise ValueError("rmst_compare undefined: a group's largest observed time is 0")
    res = {lv: _result(t[mk], e[mk], None if w is None else w[mk], tau_used, tau, truncated,
                       note, conf_level) for lv, mk in masks.items()}
    r1, r0 = res[comparator], res[reference]
    if r1.estimate <= 0 or r0.estimate <= 0:
        raise ValueError("rmst_compare: an RMST is 0, the ratio is undefined")
    z = float(_sps.norm.ppf(1 - (1 - conf_level) / 2))
    dif = r1.estimate - r0.estimate
    se_d = math.sqrt(r1.se ** 2 + r0.se ** 2)
    lr = math.log(r1.estimate / r0.estimate)
    se_lr = math.sqrt(r1.se ** 2 / r1.estimate ** 2 + r0.se ** 2 / r0.estimate ** 2)

    def p_of(est: float, se: float) -> float:
        if se == 0:
            return 1.0 if est == 0 else 0.0
        return float(2 * _sps.norm.sf(abs(est) / se))

    return RMSTComparison(
        reference=reference, comparator=comparator,
        difference=dif, difference_se=se_d, difference_lower=dif - z * se_d,
        difference_upper=dif + z * se_d, difference_p=p_of(dif, se_d),
        ratio=math.exp(lr), ratio_se_log=se_lr, ratio_lower=math.exp(lr - z * se_lr),
        ratio_upper=math.exp(lr + z * se_lr), ratio_p=p_of(lr, se_lr),
        tau=float(tau_used), tau_requested=tau, tau_truncated=truncated, note=note,
        weighted=w is not None, groups=res,
    )


