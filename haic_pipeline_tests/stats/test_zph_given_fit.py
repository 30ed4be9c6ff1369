"""cox_zph given the fitted model (``coef``) against cox_zph fitting it: the same numbers; the
given estimates are checked; and its score and information, summed per distinct event time,
against a plain loop over the event times and their Efron terms (R ``zph1.c``'s sums)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from haic_pipeline.stats import cox_regression, cox_zph
from haic_pipeline.stats.cox import _prepare
from haic_pipeline.stats.zph import _score_and_information

from .stats_reference import reference_dir


def _tied_frame(n=600, seed=3, p=10) -> tuple[pd.DataFrame, list[str]]:
    """Binary covariates acting on the hazard, times on a coarse grid (many ties), some
    censoring and a missing value or two, and case weights."""
    rng = np.random.default_rng(seed)
    cols = [f"x{j}" for j in range(p)]
    x = (rng.random((n, p)) < rng.uniform(0.2, 0.7, p)).astype(float)
    lin = x @ rng.normal(0, 0.4, p)
    t = rng.exponential(np.exp(-lin))
    c = rng.uniform(0.2, 3, n)
    d = pd.DataFrame(x, columns=cols)
    d["time"] = np.round(np.minimum(t, c) * 20) / 20
    d["event"] = (t <= c).astype(float)
    d["w"] = rng.uniform(0.3, 3, n)
    d.loc[rng.choice(n, 5, replace=False), "x1"] = np.nan
    return d, cols


def _frames():
    d, cols = _tied_frame()
    out = [("tied", d, cols)]
    path = reference_dir() / "veteran.csv"
    if path.is_file():  # the R parity data of test_beyond_edges
        v = pd.read_csv(path)
        vet = pd.DataFrame({"time": v["time"], "event": v["event"], "arm": v["test_arm"],
                            "karno60": (v["karno"] >= 60).astype(int),
                            "age60": (v["age"] >= 60).astype(int), "prior": (v["prior"] == 1).astype(int)})
        vet["w"] = 0.5 + (np.arange(len(vet)) % 7) / 4
        out.append(("veteran", vet, ["arm", "karno60", "age60", "prior"]))
    return out


@pytest.mark.parametrize("transform", ["km", "rank", "identity", "log"])
@pytest.mark.parametrize("ties,weights", [("efron", None), ("efron", "w"), ("breslow", None), ("breslow", "w")])
def test_given_fit_equals_refit(transform, ties, weights):
    for name, d, cols in _frames():
        if transform == "log" and (d["time"] <= 0).any():
            d = d[d["time"] > 0]
        for terms in (cols[:1], cols):
            refit = cox_zph(d, "time", "event", terms, transform=transform, weights=weights, ties=ties)
            fit = cox_regression(d, "time", "event", terms, weights=weights, ties=ties)
            given = cox_zph(d, "time", "event", terms, transform=transform, weights=weights, ties=ties,
                            coef=fit["coef"])
            # the same estimate (the same fit, bit for bit), hence the same numbers
            pd.testing.assert_frame_equal(given, refit, check_exact=True, obj=name)
            assert given.attrs == refit.attrs
            # log(hr) of a stored model: the estimate to the last bit or so
            stored = cox_zph(d, "time", "event", terms, transform=transform, weights=weights, ties=ties,
                             coef=dict(zip(fit["term"], np.log(fit["hr"]))))
            np.testing.assert_allclose(stored["chisq"], refit["chisq"], rtol=1e-12, atol=0, err_msg=name)
            np.testing.assert_allclose(stored["p_value"], refit["p_value"], rtol=1e-12, atol=0, err_msg=name)


def test_given_coef_is_checked():
    d, cols = _tied_frame()
    fit = cox_regression(d, "time", "event", cols)
    wrong = fit["coef"].to_numpy().copy()
    wrong[3] += 0.05
    with pytest.raises(ValueError, match="not the estimate of this model.*'x3'"):
        cox_zph(d, "time", "event", cols, coef=wrong)
    with pytest.raises(ValueError, match="not the estimate"):  # the estimate of another model
        cox_zph(d, "time", "event", cols[:3], coef=cox_regression(d, "time", "event", cols[:3],
                                                                 weights="w")["coef"])
    with pytest.raises(ValueError, match="2 estimates for 10 covariates"):
        cox_zph(d, "time", "event", cols, coef=[0.1, 0.2])
    with pytest.raises(ValueError, match="no estimate for"):
        cox_zph(d, "time", "event", cols, coef={"x0": 0.1})
    with pytest.raises(ValueError, match="finite"):
        cox_zph(d, "time", "event", cols[:1], coef=[np.inf])


def _per_event_loop(t, e, xt, w, beta, g, ties):
    """U = sum_k U_k, U2 = sum_k g_k U_k and J, one event time and one Efron term at a time."""
    p = xt.shape[0]
    r = w * np.exp(beta @ xt)
    score, u2 = np.zeros(p), np.zeros(p)
    J = np.zeros((2 * p, 2 * p))
    for tk in np.unique(t[e == 1]):
        risk, dead = t >= tk, (t == tk) & (e == 1)
        dk = int(dead.sum())
        s0, s1, s2 = r[risk].sum(), xt[:, risk] @ r[risk], (xt[:, risk] * r[risk]) @ xt[:, risk].T
        e0, e1, e2 = r[dead].sum(), xt[:, dead] @ r[dead], (xt[:, dead] * r[dead]) @ xt[:, dead].T
        mw = w[dead].mean()
        uk = xt[:, dead] @ w[dead]
        ik = np.zeros((p, p))
        for l in range(dk):
            a = l / dk if ties == "efron" else 0.0
            den = s0 - a * e0
            m = (s1 - a * e1) / den
            uk = uk - mw * m
            ik += mw * ((s2 - a * e2) / den - np.outer(m, m))
        gk = g[np.flatnonzero(t == tk)[0]]
        score += uk
        u2 += gk * uk
        J[:p, :p] += ik
        J[:p, p:] += gk * ik
        J[p:, p:] += gk * gk * ik
    J[p:, :p] = J[:p, p:].T
    return score, u2, J


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("weighted", [False, True])
def test_per_time_sums_equal_the_per_event_loop(ties, weighted):
    d, cols = _tied_frame(n=300, seed=9, p=4)
    d = d.dropna()
    t, e = d["time"].to_numpy(float), d["event"].to_numpy(float)
    xt = d[cols].to_numpy(float).T
    xt = xt - xt.mean(axis=1, keepdims=True)
    w = d["w"].to_numpy(float) if weighted else None
    beta = np.array([0.3, -0.5, 0.2, 0.7])  # any beta, not only the estimate
    g = np.sin(t)  # any function of time
    P = _prepare(t, e, xt, w)
    g_k = g[[np.flatnonzero(P["inv"] == b)[0] for b in P["ev_blocks"]]]
    got = _score_and_information(P, xt, beta, g_k, ties)
    want = _per_event_loop(t, e, xt, np.ones(len(t)) if w is None else w, beta, g, ties)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
