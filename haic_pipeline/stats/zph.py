"""Test of proportional hazards, as R survival (>= 3.0) ``cox.zph(fit, transform = "km")``.

Why not lifelines: its ``proportional_hazard_test`` is the older Grambsch-Therneau
approximation (scaled Schoenfeld residuals with the average variance), which survival 3.0
replaced by an exact score test; the numbers differ (lifelines #997).

R's test (``cox.zph.R``, ``zph1.c``): fit the Cox model (Efron), then take the score test,
at (beta_hat, 0), of the expanded model with covariates x and g(t) x, where g is the
transformed time, centred over the events: g = f(t) - mean of f(t_i) over the event rows.
With f = ``"km"``: f(t) = 1 - S(t-), the left-continuous unweighted Kaplan-Meier of all the
model's rows; ``"identity"``: t; ``"rank"``: the average rank of t among all rows;
``"log"``: log t. At each event time t_k with g_k = g(t_k), the Efron terms
l = 0..d_k - 1 (a_l = l/d_k; Breslow a_l = 0) and mean event weight mw_k:

* U_k = sum_{events at t_k} w_i x_i - mw_k sum_l M_kl,  M_kl = (S1 - a_l e1)/D_kl,
  D_kl = S0 - a_l e0;
* I_k = mw_k sum_l [ (S2 - a_l e2)/D_kl - M_kl M_kl' ];
* score of the time-varying part U2 = sum_k g_k U_k; information of the expanded model
  J = [[sum I_k, sum g_k I_k], [sum g_k I_k, sum g_k^2 I_k]] (2p x 2p).

With u = (0, U2) (the first p elements are 0 at the estimate): per term j,
chi2_j = u_j' J_j^-1 u_j over the rows/columns (1..p, p + j) on 1 df; GLOBAL:
chi2 = u' J^-1 u on p df. p = P(chi2_df > chi2).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sps
from scipy.stats import rankdata

from .cox import CoxFitError, _fit, _prepare, _rev_cumsum, checked_model_data

TRANSFORMS = ("km", "identity", "rank", "log")


def _transformed_time(time: np.ndarray, event: np.ndarray, transform: str,
                      inv: np.ndarray | None = None) -> np.ndarray:
    """f(t) of every row (module docstring); ``inv``: each row's distinct-time index
    (:func:`~haic_pipeline.stats.cox._prepare`), so the times are not sorted again."""
    if transform == "identity":
        return time.astype(float)
    if transform == "rank":
        return rankdata(time, method="average")
    if transform == "log":
        if np.any(time <= 0):
            raise ValueError("transform 'log' needs times > 0")
        return np.log(time)
    # "km": 1 - S(t-) from the unweighted KM of all rows (R survfitKM, findInterval
    # left.open = TRUE: the curve just before t)
    if inv is None:
        inv = np.unique(time, return_inverse=True)[1].reshape(-1)
    m = int(inv.max()) + 1
    counts = np.bincount(inv, minlength=m).astype(float)
    d = np.bincount(inv, weights=event, minlength=m)
    n_risk = np.cumsum(counts[::-1])[::-1]
    surv = np.cumprod(1.0 - d / n_risk)
    s_before = np.concatenate([[1.0], surv[:-1]])
    return 1.0 - s_before[inv]


def cox_zph(df: pd.DataFrame, time: str, event: str, covariates: Sequence[str],
            transform: str = "km", weights: str | None = None, ties: str = "efron",
            max_iter: int = 60,
            coef: Sequence[float] | Mapping[str, float] | None = None) -> pd.DataFrame:
    """Proportional-hazards test of ``coxph(Surv(time, event) ~ covariates)``, as R
    ``cox.zph(fit, transform = transform)$table`` (survival >= 3.0, score test; formulas
    in the module docstring).

    ``time`` / ``event`` / ``covariates`` (and ``weights``, a column of case weights for a
    weighted fit) are columns of ``df``; complete cases, as :func:`cox_regression`. With
    ``weights``: R ``cox.zph(coxph(Surv(time, event) ~ covariates, weights = w, robust =
    TRUE), transform = "km")`` -- the score and information are the weighted ones (mean event
    weight per Efron term), the robust variance does not enter, and the "km" time transform
    stays the unweighted Kaplan-Meier of all rows, as R's.
    ``coef``: the Cox estimates of this very model (covariates' order, or term -> coef),
    e.g. ``cox_regression(...)["coef"]`` or log(hr) of the stored model, as R's cox.zph
    takes the fitted model; the model is then not fitted again, which would give the same
    estimate. They are checked: if the Newton step I^-1 U from them is not negligible
    (|step| > 1e-6 max(1, |coef|), the fit's own convergence check) they are not this
    model's estimate and a ``ValueError`` says so. Without ``coef`` the model is fitted.
    Returns one row per covariate and a last row ``GLOBAL``: term, chisq, df, p_value.
    ``DataFrame.attrs``: n, events, transform, coef (the Cox estimates). Raises
    :class:`~haic_pipeline.stats.cox.CoxFitError` when the Cox model cannot be fitted.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}")
    covariates = list(covariates)
    t, e, x, w = checked_model_data(df, time, event, covariates, weights, ties, "cox_zph")
    n, events = len(t), int(e.sum())
    P = _prepare(t, e, x, w)
    p = x.shape[0]
    if coef is None:
        beta = _fit(t, e, x, covariates, ties, max_iter, step_tol=1e-10, weights=w, prepared=P).coef
    else:
        beta = _given_coef(coef, covariates)
    ftime = _transformed_time(t, e, transform, inv=P["inv"])
    gtime = ftime - ftime[e == 1].mean()
    g_k = gtime[_first_row_of_blocks(P["inv"], P["ev_blocks"])]  # g is the same for every row of a time
    score, u2, info = _score_and_information(P, x, beta, g_k, ties)
    if coef is not None:
        try:
            step = np.linalg.solve(info[:p, :p], score)
        except np.linalg.LinAlgError as exc:
            raise CoxFitError(f"Cox model cannot be fitted: singular information matrix ({exc})") from exc
        off = np.flatnonzero(~(np.abs(step) <= 1e-6 * np.maximum(1.0, np.abs(beta))))
        if len(off):
            raise ValueError("coef is not the estimate of this model (a Newton step from it moves "
                             f"{', '.join(repr(covariates[j]) for j in off)}): pass the model's own "
                             "estimates or none")
    u = np.concatenate([np.zeros(p), u2])
    rows = []
    for j, name in enumerate(covariates):
        kk = np.r_[np.arange(p), p + j]
        uj = u[kk]
        stat = float(uj @ np.linalg.solve(info[np.ix_(kk, kk)], uj))
        rows.append((name, stat, 1))
    stat = float(u @ np.linalg.solve(info, u))
    rows.append(("GLOBAL", stat, p))
    out = pd.DataFrame(rows, columns=["term", "chisq", "df"])
    out["p_value"] = _sps.chi2.sf(out["chisq"].to_numpy(), out["df"].to_numpy())
    out.attrs.update(n=n, events=events, transform=transform,
                     coef=dict(zip(covariates, beta.tolist())))
    return out


def _given_coef(coef: Sequence[float] | Mapping[str, float], covariates: list[str]) -> np.ndarray:
    """The caller's estimates in the covariates' order, as floats (finite)."""
    if isinstance(coef, Mapping):
        missing = [c for c in covariates if c not in coef]
        if missing:
            raise ValueError(f"coef has no estimate for {missing}")
        coef = [coef[c] for c in covariates]
    beta = np.asarray(coef, dtype=float).reshape(-1)
    if len(beta) != len(covariates):
        raise ValueError(f"coef has {len(beta)} estimates for {len(covariates)} covariates")
    if not np.all(np.isfinite(beta)):
        raise ValueError("coef must be finite")
    return beta


def _score_and_information(P: dict, xt: np.ndarray, beta: np.ndarray, g_k: np.ndarray,
                           ties: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At beta: the model's score U = sum_k U_k, the time-varying score U2 = sum_k g_k U_k and
    the 2p x 2p information J of the expanded model (module docstring).

    Summed per distinct event time, never per event, and the S2 parts never per time (as the
    fit, :func:`~haic_pipeline.stats.cox._loglik_derivs`): with h_k one of 1, g_k, g_k^2,
    c_k = mw_k sum_l 1/D_kl, b_k = mw_k sum_l a_l/D_kl,
    sum_k h_k I_k = X' W_h X - sum_k h_k mw_k sum_l M_kl M_kl' with
    w_i = r_i (sum_{t_k <= t_i} h_k c_k - delta_i h_k(i) b_k(i)), and
    mw sum_l M M' = S1 S1' c2 - (S1 e1' + e1 S1') c2a + e1 e1' c2aa, c2, c2a, c2aa the sums of
    mw/D^2, mw a/D^2, mw a^2/D^2; U_k = sum_{events at t_k} w x - (c_k S1_k - b_k e1_k). So the
    cost is a few passes over the rows and three n x p x p products, whatever the ties."""
    inv, nb, evb, kb, d = P["inv"], P["nb"], P["ev_blocks"], P["kb"], P["d"]
    e = P["event"]
    p = xt.shape[0]
    K = len(evb)
    eta = beta @ xt
    r = np.exp(eta - eta.max())  # the scale cancels in every ratio below
    risk = r if P["w"] is None else r * P["w"]
    re = risk * e
    we = P["we"]  # case weight of an event row, 0 for a censored row
    g1 = np.empty((p, nb))
    e1 = np.empty((p, K))
    ux = np.empty((p, K))  # sum of w x over the events at t_k
    for j in range(p):
        g1[j] = np.bincount(inv, weights=risk * xt[j], minlength=nb)
        e1[j] = np.bincount(inv, weights=re * xt[j], minlength=nb)[evb]
        ux[j] = np.bincount(inv, weights=we * xt[j], minlength=nb)[evb]
    s0 = _rev_cumsum(np.bincount(inv, weights=risk, minlength=nb))[evb]
    s1 = _rev_cumsum(g1)[:, evb]
    e0 = np.bincount(inv, weights=re, minlength=nb)[evb]
    a = P["l_idx"] / d[kb] if ties == "efron" else np.zeros(len(kb))
    den = s0[kb] - a * e0[kb]
    mwt = np.ones(len(kb)) if P["mw"] is None else P["mw"][kb]
    inv_d = mwt / den
    inv_d2 = inv_d / den
    c = np.bincount(kb, weights=inv_d, minlength=K)
    b = np.bincount(kb, weights=a * inv_d, minlength=K)
    c2 = np.bincount(kb, weights=inv_d2, minlength=K)
    c2a = np.bincount(kb, weights=a * inv_d2, minlength=K)
    c2aa = np.bincount(kb, weights=a * a * inv_d2, minlength=K)
    u_k = ux - (s1 * c - e1 * b)
    info = np.empty((2 * p, 2 * p))
    blocks = []
    for h in (np.ones(K), g_k, g_k * g_k):
        full = np.zeros(nb)
        full[evb] = h * c
        wrow = risk * np.cumsum(full)[inv]
        full = np.zeros(nb)
        full[evb] = h * b
        wrow -= re * full[inv]
        cross = (s1 * (h * c2a)) @ e1.T
        mm = (s1 * (h * c2)) @ s1.T - cross - cross.T + (e1 * (h * c2aa)) @ e1.T
        blocks.append((xt * wrow) @ xt.T - mm)
    info[:p, :p] = blocks[0]
    info[:p, p:] = blocks[1]
    info[p:, :p] = blocks[1].T
    info[p:, p:] = blocks[2]
    return u_k.sum(axis=1), u_k @ g_k, info


def _first_row_of_blocks(inv: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Index of one row in each of the given distinct-time blocks."""
    first = np.full(int(inv.max()) + 1, -1)
    first[inv[::-1]] = np.arange(len(inv))[::-1]
    return first[blocks]
