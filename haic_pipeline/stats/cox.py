"""Cox proportional-hazards regression with R ``coxph`` conventions (own NumPy fit).

Why not lifelines: its ``CoxPHFitter`` (Efron) reaches R's estimates only with tightened
convergence (by default it stops one Newton step short, so a p-value near |z| = 10 is off
by ~2e-4 relative), and it is too slow for the 1,000,000-row benchmark. This module is a
vectorised Newton-Raphson that is run to full convergence; the test suite checks it against
R's reference numbers and against lifelines with tight tolerances.

Model (R ``coxph(Surv(time, event) ~ x1 + ... + xp, ties = "efron")``):
with risk score r_i = exp(x_i' beta), at each distinct event time t_k with d_k events D_k,
risk set R_k = {i: time_i >= t_k}, S0 = sum_{R_k} r, S1 = sum_{R_k} r x,
S2 = sum_{R_k} r x x', and the event sums e0, e1, e2 over D_k, Efron's
a_l = l / d_k (l = 0..d_k - 1; Breslow: a_l = 0):

* log L = sum_k [ sum_{D_k} x' beta - sum_l log(S0 - a_l e0) ]
* U = sum_k [ sum_{D_k} x - sum_l M_kl ],   M_kl = (S1 - a_l e1) / (S0 - a_l e0)
* I = sum_k sum_l [ (S2 - a_l e2) / (S0 - a_l e0) - M_kl M_kl' ]

The S2 part is never formed per time: sum_k sum_l (S2 - a_l e2)/D_kl = X' W X with
w_i = r_i (sum_{k: t_k <= time_i} c_k - delta_i b_{k(i)}), c_k = sum_l 1/D_kl,
b_k = sum_l a_l/D_kl, so an iteration costs p + 1 (Efron with tied events: 2p + 2)
``np.bincount`` passes that sum the rows per distinct time, reverse cumulative sums over
the distinct times for the risk sets, and one n x p x p product; the rows are never
sorted or copied. Newton steps beta <- beta + I^-1 U from beta = 0, halved when log L
drops (as R), until the next step is below 1e-10 x max(1, |beta|) -- converged, not one
step short as R's own 1e-9 log-likelihood rule and lifelines' default leave it. If log L
stops changing while the next Newton step I^-1 U is still not small (R's "coefficient
may be infinite" check), the estimate diverges: perfect separation, reported as an error.
Wald: se = sqrt(diag I^-1), z = coef/se, p = 2 (1 - Phi(|z|)), CI = exp(coef -+ z se).

Case weights w_i (R ``coxph(..., weights = w)``, ``coxfit6.c``): r_i becomes w_i exp(x_i'b)
in every risk-set and event sum, the event term sum_{D_k} x' beta becomes
sum_{D_k} w x' beta, and each of the d_k Efron terms (l = 0..d_k - 1; their count stays
the number of events) is multiplied by mw_k, the mean weight of the events at t_k.

Robust variance (R ``robust = TRUE``): V = D'D with D_i = w_i L_i I^-1, the weighted
dfbeta residuals, L_i the score residuals (``coxscore2.c``, formula at
:func:`_score_residuals`); the robust score test (R ``summary(fit)$robscore``) is
u'(T'T)^-1 u with T_i = w_i L_i(0), u = sum T_i: no fit is needed for it, and it is
:func:`weighted_logrank` for a group term. lifelines' robust se differs from R on tied
times (its score residuals ignore the Efron weighting of tied risk sets); the test suite
shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sps

from ._common import clean_survival, group_levels


class CoxFitError(ValueError):
    """A Cox model that cannot be fitted; the message names the cause."""


@dataclass
class _Fit:
    coef: np.ndarray
    var: np.ndarray
    loglik: float
    loglik_null: float
    iterations: int


def _prepare(time: np.ndarray, event: np.ndarray, xt: np.ndarray,
             weights: np.ndarray | None = None) -> dict:
    """Tie / event-time bookkeeping; the covariates are used in the given row order.

    Rows are mapped to their distinct time (``inv``); per-time sums come from
    ``np.bincount`` and risk sets from reverse cumulative sums over the distinct times.
    Efron's l = 0..d_k - 1 depend only on the count d_k of events at the time, not on
    which event gets which l, so the per-event terms are built from d_k alone."""
    uniq, inv = np.unique(time, return_inverse=True)
    inv = inv.reshape(-1)
    nb = len(uniq)
    d_block = np.bincount(inv, weights=event, minlength=nb)
    ev_blocks = np.flatnonzero(d_block > 0)  # distinct event times, ascending
    d = d_block[ev_blocks]
    d_int = d.astype(np.int64)
    K = len(ev_blocks)
    kb = np.repeat(np.arange(K), d_int)  # event time of each (k, l) term
    l_idx = np.arange(len(kb)) - np.repeat(np.cumsum(d_int) - d_int, d_int)
    if weights is None:
        return dict(xt=xt, event=event, inv=inv, nb=nb, ev_blocks=ev_blocks, kb=kb, d=d,
                    l_idx=l_idx, any_ties=bool(np.any(d > 1)), sum_x_events=xt @ event,
                    w=None, mw=None, we=event)
    we = weights * event
    # R coxfit6: each of the d_k Efron terms is weighted by the mean weight of the events
    mw = np.bincount(inv, weights=we, minlength=nb)[ev_blocks] / d
    return dict(xt=xt, event=event, inv=inv, nb=nb, ev_blocks=ev_blocks, kb=kb, d=d,
                l_idx=l_idx, any_ties=bool(np.any(d > 1)), sum_x_events=xt @ we,
                w=weights, mw=mw, we=we)


def _rev_cumsum(a: np.ndarray) -> np.ndarray:
    """sum over positions i..end, along the last axis."""
    return np.cumsum(a[..., ::-1], axis=-1)[..., ::-1]


def _loglik_derivs(beta: np.ndarray, P: dict, ties: str):
    """log L, score U and information I at beta (formulas in the module docstring).

    Covariates are held transposed (p x n, rows contiguous); every pass over the n rows
    is a contiguous vector operation, a ``bincount`` or one matrix product."""
    xt, e, inv, nb, evb, kb = P["xt"], P["event"], P["inv"], P["nb"], P["ev_blocks"], P["kb"]
    eta = beta @ xt
    shift = eta.max()
    r = np.exp(eta - shift)
    if P["w"] is not None:
        r = r * P["w"]  # case weights enter every risk-set sum
    re = r * e
    p = xt.shape[0]
    g0 = np.bincount(inv, weights=r, minlength=nb)
    g1 = np.empty((p, nb))
    for j in range(p):
        g1[j] = np.bincount(inv, weights=r * xt[j], minlength=nb)
    # risk-set sums at each event time (time >= t_k)
    s0 = _rev_cumsum(g0)[evb]
    s1 = _rev_cumsum(g1)[:, evb]  # p x K
    efron = ties == "efron" and P["any_ties"]
    e0 = np.bincount(inv, weights=re, minlength=nb)[evb]
    if efron:  # sums over the events of each event time
        e1 = np.empty((p, len(evb)))
        for j in range(p):
            e1[j] = np.bincount(inv, weights=re * xt[j], minlength=nb)[evb]
        a = P["l_idx"] / P["d"][kb]
    else:
        e1 = None
        a = np.zeros(len(kb))
    den = s0[kb] - a * e0[kb]
    K = len(evb)
    inv_d = 1.0 / den
    if P["mw"] is None:
        loglik = float(eta @ e - (np.log(den) + shift).sum())
    else:  # weighted: sum w delta eta - sum_kl mw_k log D_kl; every kl term times mw_k
        mwt = P["mw"][kb]
        loglik = float(eta @ P["we"] - (mwt * (np.log(den) + shift)).sum())
        inv_d = inv_d * mwt
    c = np.bincount(kb, weights=inv_d, minlength=K)  # sum_l 1/D
    b = np.bincount(kb, weights=a * inv_d, minlength=K)  # sum_l a/D
    # U = sum x_events - sum_k (c_k S1_k - b_k e1_k)
    score = P["sum_x_events"] - s1 @ c
    if efron:
        score = score + e1 @ b
    # I = X' W X - sum_kl M M',  M_kl = (S1 - a e1)/D:
    #   sum_l M M' = S1 S1' sum 1/D^2 - (S1 e1' + e1 S1') sum a/D^2 + e1 e1' sum a^2/D^2
    inv2 = inv_d * inv_d if P["mw"] is None else inv_d / den  # (mw) / D^2
    c2 = np.bincount(kb, weights=inv2, minlength=K)
    mm = (s1 * c2) @ s1.T
    if efron:
        c2a = np.bincount(kb, weights=a * inv2, minlength=K)
        c2aa = np.bincount(kb, weights=a * a * inv2, minlength=K)
        cross = (s1 * c2a) @ e1.T
        mm = mm - cross - cross.T + (e1 * c2aa) @ e1.T
    # X' W X with w_i = r_i (sum_{t_k <= t_i} c_k - delta_i b_k(i))
    cfull = np.zeros(nb)
    cfull[evb] = c
    wblock = np.cumsum(cfull)
    w = r * wblock[inv]
    if efron:
        bfull = np.zeros(nb)
        bfull[evb] = b
        w -= re * bfull[inv]
    info = (xt * w) @ xt.T - mm
    return loglik, score, info


def checked_model_data(frame, time_col, event_col, covariates: list, weights, ties: str, caller: str):
    """(time, event, x, w) of a Cox model's complete cases, after checking the ties method, the
    covariates and the design (`_check_design`); `caller` names the function in the messages."""
    if ties not in ("efron", "breslow"):
        raise ValueError("ties must be 'efron' or 'breslow'")
    if not covariates:
        raise ValueError(f"{caller} needs at least one covariate")
    time, event, x, w = _model_data(frame, time_col, event_col, covariates, weights)
    _check_design(x, covariates, len(time), int(event.sum()))
    return time, event, x, w


def _check_design(xt: np.ndarray, names: Sequence[str], n: int, events: int) -> None:
    """Clear errors for designs that cannot be fitted (xt: centred covariates, p x n)."""
    if n == 0:
        raise CoxFitError("Cox model cannot be fitted: no complete cases")
    if events == 0:
        raise CoxFitError(f"Cox model cannot be fitted: no events among the {n} complete cases")
    const = np.flatnonzero(xt.max(axis=1) == xt.min(axis=1))
    if len(const):
        name = names[const[0]]
        raise CoxFitError(
            f"Cox model cannot be fitted: covariate {name!r} is constant "
            f"(no variation among the {n} complete cases)"
        )
    if xt.shape[0] > 1:
        gram = xt @ xt.T
        scale = np.sqrt(np.diag(gram))
        corr = gram / np.outer(scale, scale)
        vals, vecs = np.linalg.eigh(corr)
        if vals[0] < 1e-10 * vals[-1]:
            involved = [names[j] for j in np.flatnonzero(np.abs(vecs[:, 0]) > 1e-6)]
            raise CoxFitError(
                "Cox model cannot be fitted: covariates are linearly dependent "
                f"(collinear: {', '.join(map(repr, involved))})"
            )


def _fit(time: np.ndarray, event: np.ndarray, x: np.ndarray, names: Sequence[str],
         ties: str, max_iter: int, step_tol: float,
         weights: np.ndarray | None = None, prepared: dict | None = None) -> _Fit:
    """Newton-Raphson to the estimate (module docstring). ``prepared``: :func:`_prepare` of
    the same time, event, x and weights, when the caller needs it too (it is made once)."""
    P = _prepare(time, event, x, weights) if prepared is None else prepared  # x: centred, p x n
    p = x.shape[0]
    beta = np.zeros(p)
    ll, u, info = _loglik_derivs(beta, P, ties)
    ll_null = ll
    it = 0
    flat_runs = 0
    for _ in range(max_iter):
        try:
            step = np.linalg.solve(info, u)
        except np.linalg.LinAlgError as exc:
            raise CoxFitError(f"Cox model cannot be fitted: singular information matrix ({exc})") from exc
        if np.all(np.abs(step) <= step_tol * np.maximum(1.0, np.abs(beta))):
            break  # converged: the next Newton step would not move the estimate
        new = beta + step
        ll_new, u_new, info_new = _loglik_derivs(new, P, ties)
        halvings = 0
        while not np.isfinite(ll_new) or ll_new < ll - 1e-12 * abs(ll):
            halvings += 1
            if halvings > 30:
                raise CoxFitError("Cox model cannot be fitted: step halving failed to increase the likelihood")
            new = (new + beta) / 2
            ll_new, u_new, info_new = _loglik_derivs(new, P, ties)
        flat_runs = flat_runs + 1 if ll_new - ll <= 1e-13 * abs(ll) else 0
        beta, ll, u, info = new, ll_new, u_new, info_new
        it += 1
        if flat_runs >= 3:
            break  # log L no longer changes: a coefficient runs to infinity (checked below)
    # converged? R's check for infinite coefficients: |I^-1 U| not small at the end
    try:
        var = np.linalg.inv(info)
    except np.linalg.LinAlgError as exc:
        raise CoxFitError(f"Cox model cannot be fitted: singular information matrix ({exc})") from exc
    next_step = var @ u
    moving = np.abs(next_step) > 1e-6 * np.maximum(1.0, np.abs(beta))
    diag = np.diag(var)
    if moving.any() or not np.all(np.isfinite(diag)) or np.any(diag <= 0):
        bad = [names[j] for j in np.flatnonzero(moving | ~np.isfinite(diag) | (diag <= 0))]
        if not bad:
            bad = list(names)
        raise CoxFitError(
            "Cox model cannot be fitted: the estimate for "
            f"{', '.join(map(repr, bad))} diverges (monotone likelihood / perfect "
            "separation: the covariate predicts the event ordering; coefficient infinite)"
        )
    return _Fit(coef=beta, var=var, loglik=ll, loglik_null=ll_null, iterations=it)


def _score_residuals(time: np.ndarray, event: np.ndarray, xt: np.ndarray, beta: np.ndarray,
                     ties: str, weights: np.ndarray | None = None) -> np.ndarray:
    """Unweighted score residuals (n x p), as R ``residuals(fit, type = "score")``
    (``coxscore2.c``), in O(n p) per pass.

    With risk r_i = exp(x_i' beta), weighted risk-set sums as in the fit, and per event
    time k the Efron terms l = 0..d_k - 1 (a_l = l/d_k; Breslow a_l = 0):
    D_kl = S0_k - a_l e0_k, xbar_kl = (S1_k - a_l e1_k)/D_kl, hazard h_kl = mw_k/D_kl
    (mw_k = mean weight of the events). CH(t) = sum_{t_k <= t} sum_l h_kl and
    XH(t) = sum sum xbar_kl h_kl. Row i:
    L_i = -r_i (x_i CH(t_i) - XH(t_i))
          + delta_i [ x_i - (1/d_k) sum_l xbar_kl + r_i sum_l a_l h_kl (x_i - xbar_kl) ],
    the last term giving back the share of the tied risk sets an event is not in (Efron).
    """
    P = _prepare(time, event, xt, weights)
    inv, nb, evb, kb, d = P["inv"], P["nb"], P["ev_blocks"], P["kb"], P["d"]
    p = xt.shape[0]
    K = len(evb)
    eta = beta @ xt
    r = np.exp(eta - eta.max())  # the scale cancels in r_i h_kl
    risk = r if weights is None else r * weights
    e = event
    g0 = np.bincount(inv, weights=risk, minlength=nb)
    g1 = np.empty((p, nb))
    e1 = np.empty((p, K))
    for j in range(p):
        g1[j] = np.bincount(inv, weights=risk * xt[j], minlength=nb)
        e1[j] = np.bincount(inv, weights=risk * e * xt[j], minlength=nb)[evb]
    s0 = _rev_cumsum(g0)[evb]
    s1 = _rev_cumsum(g1)[:, evb]
    e0 = np.bincount(inv, weights=risk * e, minlength=nb)[evb]
    a = P["l_idx"] / d[kb] if ties == "efron" else np.zeros(len(kb))
    den = s0[kb] - a * e0[kb]
    mw = np.ones(K) if P["mw"] is None else P["mw"]
    haz = mw[kb] / den
    xbar = (s1[:, kb] - a * e1[:, kb]) / den  # p x (terms)
    kblock = np.full(nb, -1)
    kblock[evb] = np.arange(K)
    ch = np.zeros(nb)
    ch[evb] = np.bincount(kb, weights=haz, minlength=K)
    ch = np.cumsum(ch)
    xh = np.zeros((p, nb))
    xmean = np.empty((p, K))
    hax = np.empty((p, K))
    for j in range(p):
        xh[j, evb] = np.bincount(kb, weights=xbar[j] * haz, minlength=K)
        xmean[j] = np.bincount(kb, weights=xbar[j], minlength=K) / d
        hax[j] = np.bincount(kb, weights=a * haz * xbar[j], minlength=K)
    xh = np.cumsum(xh, axis=1)
    ha = np.bincount(kb, weights=a * haz, minlength=K)
    resid = -(r * (xt * ch[inv] - xh[:, inv]))  # p x n
    ev = np.flatnonzero(e == 1)
    k_ev = kblock[inv[ev]]
    resid[:, ev] += (xt[:, ev] - xmean[:, k_ev]
                     + r[ev] * (xt[:, ev] * ha[k_ev] - hax[:, k_ev]))
    return resid.T


def _robust_score_test(time: np.ndarray, event: np.ndarray, xt: np.ndarray, ties: str,
                       weights: np.ndarray | None) -> tuple[float, int, float]:
    """R's robust score test (``summary(coxph(..., robust = TRUE))$robscore``): with the
    weighted score residuals at beta = 0, T_i = w_i L_i(0), u = sum_i T_i,
    chi2 = u' (T'T)^-1 u on p df."""
    p = xt.shape[0]
    res0 = _score_residuals(time, event, xt, np.zeros(p), ties, weights)
    t0 = res0 if weights is None else res0 * weights[:, None]
    u = t0.sum(axis=0)
    stat = float(u @ np.linalg.solve(t0.T @ t0, u))
    return stat, p, float(_sps.chi2.sf(stat, p))


def _numeric_matrix(frame: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    data = np.empty((len(cols), len(frame)))
    for j, c in enumerate(cols):
        s = frame[c]
        if s.dtype == bool or str(s.dtype) == "boolean":
            s = s.astype("float64")
        try:
            data[j] = pd.to_numeric(s, errors="raise").to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise CoxFitError(
                f"Cox model cannot be fitted: column {c!r} is not numeric (dummy-code it)"
            ) from exc
    return data


def _model_data(frame: pd.DataFrame, time_col: str, event_col: str, covariates: list,
                weights: str | None):
    """Complete cases: (time, event, centred x (p x n), weights or None)."""
    extra = [] if weights is None else [weights]
    missing = [c for c in [time_col, event_col, *covariates, *extra] if c not in frame.columns]
    if missing:
        raise KeyError(f"columns not in frame: {missing}")
    data = _numeric_matrix(frame, [time_col, event_col, *covariates, *extra])
    keep = ~np.isnan(data).any(axis=0)
    if not keep.all():
        data = data[:, keep]
    if data.shape[1] == 0:
        raise CoxFitError("Cox model cannot be fitted: no complete cases")
    time, event = data[0], data[1]
    p = len(covariates)
    x = data[2:2 + p]
    x -= x.mean(axis=1, keepdims=True)  # centred: same coefficients, safer exp()
    w = None
    if weights is not None:
        w = data[2 + p]
        if np.any(~np.isfinite(w)) or np.any(w <= 0):
            raise CoxFitError(f"Cox model cannot be fitted: weights {weights!r} must be > 0 "
                              "and finite (R coxph)")
    if np.any(time < 0):
        raise ValueError("time must be >= 0")
    if not np.all((event == 0) | (event == 1)):
        raise ValueError("event must be coded 0/1")
    return time, event, x, w


def cox_regression(
    frame: pd.DataFrame,
    time_col: str,
    event_col: str,
    covariates: Sequence[str],
    weights: str | None = None,
    robust: bool = False,
    ties: str = "efron",
    conf_level: float = 0.95,
    max_iter: int = 60,
) -> pd.DataFrame:
    """Cox model, as R ``coxph(Surv(time, event) ~ covariates, ties = "efron")``, optionally
    with case weights and R's robust variance:
    ``coxph(..., weights = w, robust = TRUE)``.

    ``covariates`` are numeric columns of ``frame`` (booleans become 0/1; dummy-code
    categorical variables first). Complete cases of time, event, every covariate and the
    weight (R's ``na.omit``). Returns one row per covariate: term, coef, hr = exp(coef),
    hr_lower/hr_upper = exp(coef -+ z se) (Wald), p_value (Wald, 2(1 - Phi(|coef/se|))),
    n, events, se, z; with ``robust=True`` also naive_se (the model-based se) while se,
    z, the CI and p use the robust se. ``DataFrame.attrs`` holds n, events, loglik (final,
    as R's ``fit$loglik[2]``), loglik_null, iterations, ties, weights, robust, and with
    ``robust=True`` robust_score, robust_score_df, robust_score_p (R
    ``summary(fit)$robscore``).

    Efron partial likelihood: log L = sum_k [sum_{D_k} x'b - sum_{l<d_k} log(S0_k - (l/d_k)
    e0_k)] (Breslow: without the l/d_k term), maximised by Newton-Raphson to full
    convergence; se = sqrt(diag I^-1). The score / information formulas are in the module
    docstring. Weights (``weights``: a column name, values > 0): every risk-set sum uses
    w_i exp(x_i'b), the event terms w_i x_i, and each of the d_k Efron terms of an event
    time counts with the mean weight of its events (R ``coxfit6.c``).

    Robust variance (R ``robust = TRUE``, no cluster): V_rob = D'D with the weighted dfbeta
    residuals D = diag(w) L I^-1, L the score residuals at the estimate (Efron ties:
    :func:`_score_residuals`, R ``coxscore2.c``). lifelines' robust se ignores the Efron
    share of tied risk sets in its score residuals and differs from R on tied times.

    Raises :class:`CoxFitError` (a ``ValueError``) naming the cause when the model cannot
    be fitted: no complete cases, no events, a constant covariate, collinear covariates,
    a diverging (infinite) coefficient from perfect separation, or weights <= 0.
    """
    covariates = list(covariates)
    time, event, x, w = checked_model_data(frame, time_col, event_col, covariates, weights, ties, "cox_regression")
    n, events = len(time), int(event.sum())
    fit = _fit(time, event, x, covariates, ties, max_iter, step_tol=1e-10, weights=w)
    naive_se = np.sqrt(np.diag(fit.var))
    var = fit.var
    if robust:
        resid = _score_residuals(time, event, x, fit.coef, ties, w)
        dfbeta = (resid if w is None else resid * w[:, None]) @ fit.var
        var = dfbeta.T @ dfbeta
    se = np.sqrt(np.diag(var))
    z = fit.coef / se
    zq = _sps.norm.ppf(1 - (1 - conf_level) / 2)
    out = pd.DataFrame(
        {
            "term": covariates,
            "coef": fit.coef,
            "hr": np.exp(fit.coef),
            "hr_lower": np.exp(fit.coef - zq * se),
            "hr_upper": np.exp(fit.coef + zq * se),
            "p_value": 2 * _sps.norm.sf(np.abs(z)),
            "n": n,
            "events": events,
            "se": se,
            "z": z,
        }
    )
    out.attrs.update(n=n, events=events, loglik=fit.loglik, loglik_null=fit.loglik_null,
                     iterations=fit.iterations, ties=ties, weights=weights, robust=robust)
    if robust:
        out["naive_se"] = naive_se
        stat, df, p = _robust_score_test(time, event, x, ties, w)
        out.attrs.update(robust_score=stat, robust_score_df=df, robust_score_p=p,
                         var=var)
    return out


@dataclass(frozen=True)
class WeightedLogrankResult:
    """Robust score test of a weighted Cox model on the group: chi-square ``statistic``,
    ``df`` (groups - 1), ``p_value``, ``groups`` (R's level order; the first is the
    reference of the dummy coding, which the statistic does not depend on), ``n``,
    ``events``."""

    statistic: float
    df: int
    p_value: float
    groups: tuple
    n: int
    events: int


def weighted_logrank(time: Any, event: Any, group: Any, weights: Any,
                     ties: str = "efron", levels: Sequence | None = None) -> WeightedLogrankResult:
    """Weighted comparison of survival curves: the robust score test of
    R ``coxph(Surv(time, event) ~ group, weights = w, robust = TRUE)``
    (``summary(fit)$robscore``).

    The group is dummy-coded (one 0/1 column per non-first level); with T_i = w_i L_i(0)
    the weighted score residuals at beta = 0 (Efron ties), u = sum T_i and
    chi2 = u' (T'T)^-1 u on (groups - 1) df. With unit weights and no ties this is the
    log-rank score statistic with a robust (sandwich) variance, not survdiff's. Needs no
    model fit, so it exists even where the Cox estimate diverges (e.g. no event in one group:
    :func:`cox_regression` raises :class:`CoxFitError`, while R's coxph warns that the
    coefficient may be infinite and still reports this ``robscore``, computed by ``coxph``
    from the score residuals at linear predictor 0). Rows with a missing time, event, group
    or weight are dropped; weights must be > 0; at least one event overall.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError("ties must be 'efron' or 'breslow'")
    t, e, g, w = clean_survival(time, event, np.asarray(group, dtype=object),
                                np.asarray(weights, dtype=object))
    w = pd.to_numeric(pd.Series(w), errors="raise").to_numpy(dtype=float)
    if np.any(~np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be > 0 and finite (R coxph)")
    levs = group_levels(g, levels)
    present = [lv for lv in levs if np.any(g == lv)]
    if len(present) < 2:
        raise ValueError(f"weighted_logrank needs at least two groups with data; found {present!r}")
    if e.sum() == 0:
        raise ValueError("weighted_logrank undefined: no events")
    xt = np.vstack([(g == lv).astype(float) for lv in present[1:]])
    xt -= xt.mean(axis=1, keepdims=True)
    stat, df, p = _robust_score_test(t, e, xt, ties, w)
    return WeightedLogrankResult(statistic=stat, df=df, p_value=p, groups=tuple(present),
                                 n=len(t), events=int(e.sum()))
