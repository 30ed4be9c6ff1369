"""The "beyond the paper" statistics away from lung: R's numbers on a second data set with
many tied times, a weighted curve that reaches 0, independent re-implementations of R's
algorithms, and the edge cases (separation, non-convergence, tau beyond follow-up, unit
weights, R's type-3 quantile by hand).

R numbers below: R 4.2.2, survival 3.5-3, from this script (``VET`` = the shared
``reference/r_survival/veteran.csv``)::

    v <- read.csv(VET)
    d <- data.frame(time = v$time, event = v$event, arm = v$test_arm,
                    karno60 = as.integer(v$karno >= 60), age60 = as.integer(v$age >= 60),
                    prior = as.integer(v$prior == 1))
    d$w <- 0.5 + ((seq_len(nrow(d)) - 1) %% 7) / 4
    f <- survfit(Surv(time, event) ~ 1, data = d[d$arm == a, ], weights = w)   # a = 1, 0
    summary(f, times = c(30, 100, 200), extend = TRUE); quantile(f, 0.5, conf.int = TRUE)
    fc <- coxph(Surv(time, event) ~ arm + karno60 + prior, data = d, weights = w,
                robust = TRUE)            # and ties = "breslow"
    coef(fc); sqrt(diag(fc$var)); sqrt(diag(fc$naive.var)); summary(fc)$robscore
    fu <- coxph(Surv(time, event) ~ arm + karno60, data = d, robust = TRUE)
    rmst_ij(d[d$arm == a, ], 200)         # as r_beyond.R
    summary(survfit(Surv(time, event) ~ 1, data = d[d$arm == a, ]), rmean = 200)$table
    cox.zph(coxph(Surv(time, event) ~ arm + karno60 + age60 + prior, data = d),
            transform = tr)$table         # tr = "km", "rank", "identity"
    cox.zph(coxph(Surv(time, event) ~ arm + karno60, data = d, weights = w))$table
    cox.zph(coxph(Surv(time, event) ~ arm + karno60, data = d, ties = "breslow"))$table
    quantile(d$w, c(0, .01, .05, .1, .37, .5, .9, .99, 1), type = 3)
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from haic_pipeline.stats import (
    CoxFitError,
    balance_table,
    cox_regression,
    cox_zph,
    kaplan_meier,
    propensity_weights,
    quantile_type3,
    rmst,
    rmst_compare,
    weighted_logrank,
)
from haic_pipeline.stats.cox import _loglik_derivs, _prepare, _score_residuals

from .stats_reference import reference_dir, skip_message

REL = 1e-6
COX_REL = 1e-5


@pytest.fixture
def vet() -> pd.DataFrame:
    path = reference_dir() / "veteran.csv"
    if not path.is_file():
        pytest.skip(skip_message())
    v = pd.read_csv(path)
    d = pd.DataFrame({"time": v["time"], "event": v["event"], "arm": v["test_arm"],
                      "karno60": (v["karno"] >= 60).astype(int),
                      "age60": (v["age"] >= 60).astype(int),
                      "prior": (v["prior"] == 1).astype(int)})
    d["w"] = 0.5 + (np.arange(len(d)) % 7) / 4
    return d


R_VET = {
    "km1_surv": [0.676557863501484, 0.324982880620863, 0.235093998747007],
    "km1_se": [0.0609102919214587, 0.0620635954277462, 0.0579862156925079],
    "km1_lower": [0.567115527822692, 0.223512746889726, 0.144974515266413],
    "km1_upper": [0.807120454668278, 0.472518342538828, 0.38123381992547],
    "km1_median": [52, 43, 95],
    "km0_surv": [0.718445912351729, 0.473671934121303, 0.14050544432157],
    "km0_se": [0.0580676121548124, 0.065135924298323, 0.0417506702999843],
    "km0_lower": [0.61319222004013, 0.361765042491947, 0.0784805032667447],
    "km0_upper": [0.841766271824403, 0.620195637557243, 0.251550118338335],
    "km0_median": [95, 54, 126],
    "cox_coef": [0.0415074289553247, -0.964597512923698, -0.243871762349024],
    "cox_robust_se": [0.192744620714898, 0.207074817555786, 0.234672615843904],
    "cox_naive_se": [0.165564474683365, 0.170602716955804, 0.184592141405401],
    "cox_robscore": [26.3039480075521, 3, 8.23718377881438e-06],
    "breslow_coef": [0.0377607946390385, -0.960522765509748, -0.241210101832214],
    "breslow_robust_se": [0.191277031127479, 0.205562996657846, 0.233156950766041],
    "breslow_robscore": [26.5344179812319, 3, 7.37051500477032e-06],
    "unw_robust_se": [0.192500417835447, 0.214367212546296],
    "unw_robscore": [24.6678322568868, 2, 4.39995551005023e-06],
    "rmst_ij1": [85.40819651995, 9.6797273460435],
    "rmean1": [86.0385273109243, 8.76995256286503],
    "rmst_ij0": [95.0868059674159, 8.83093179978127],
    "rmean0": [99.6230015263778, 8.66425986841733],
    "zph_km_chisq": [1.5419416614393, 16.5988455154344, 3.58145226003156, 2.47333623236001,
                     28.4935173618023],
    "zph_km_p": [0.214329023998609, 4.6179123117647e-05, 0.0584280508998239, 0.11579191303363,
                 9.90578383208943e-06],
    "zph_rank_chisq": [1.5405667777324, 17.1276425640774, 3.5786649506173, 2.51406650610568,
                       29.0173055885425],
    "zph_rank_p": [0.214533461150025, 3.4949916009647e-05, 0.0585261692854148,
                   0.11283443215354, 7.75436473658178e-06],
    "zph_identity_chisq": [2.66150532155546, 7.26280148108282, 2.32458761601793,
                           2.31547222664179, 21.0198328187374],
    "zph_identity_p": [0.102803401085847, 0.0070397391920051, 0.127343964450574,
                       0.128092394663198, 0.000313814833227414],
    "zph_weighted_chisq": [4.09566077904235, 16.8649107729723, 24.4456861641501],
    "zph_breslow_chisq": [1.68436615065251, 15.8270154357085, 19.9548979582141],
    "q3": [0.5, 0.5, 0.5, 0.5, 1, 1.25, 2, 2, 2],
}


# ---------------------------------------------------------------------------------------
# R on veteran (137 rows, 31 tied event times), non-integer weights
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("arm", [1, 0])
def test_weighted_km_matches_r_on_tied_data(vet, arm):
    sub = vet[vet["arm"] == arm]
    km = kaplan_meier(sub["time"], sub["event"], weights=sub["w"])
    assert km.weighted and km.variance == "robust_ij"
    got = [km.summary_at(t) for t in (30, 100, 200)]
    np.testing.assert_allclose([s.surv for s in got], R_VET[f"km{arm}_surv"], rtol=REL)
    np.testing.assert_allclose([s.std_err for s in got], R_VET[f"km{arm}_se"], rtol=REL)
    np.testing.assert_allclose([s.lower for s in got], R_VET[f"km{arm}_lower"], rtol=REL)
    np.testing.assert_allclose([s.upper for s in got], R_VET[f"km{arm}_upper"], rtol=REL)
    assert [km.median, km.median_lower, km.median_upper] == R_VET[f"km{arm}_median"]
    assert km.n == len(sub) and km.sum_weights == pytest.approx(sub["w"].sum())


@pytest.mark.parametrize("ties,key", [("efron", "cox"), ("breslow", "breslow")])
def test_weighted_robust_cox_matches_r_on_tied_data(vet, ties, key):
    res = cox_regression(vet, "time", "event", ["arm", "karno60", "prior"], weights="w",
                         robust=True, ties=ties)
    np.testing.assert_allclose(res["coef"], R_VET[f"{key}_coef"], rtol=COX_REL)
    np.testing.assert_allclose(res["se"], R_VET[f"{key}_robust_se"], rtol=COX_REL)
    if ties == "efron":
        np.testing.assert_allclose(res["naive_se"], R_VET["cox_naive_se"], rtol=COX_REL)
    stat, df, p = R_VET[f"{key}_robscore"]
    assert res.attrs["robust_score"] == pytest.approx(stat, rel=COX_REL)
    assert res.attrs["robust_score_df"] == df
    assert res.attrs["robust_score_p"] == pytest.approx(p, rel=COX_REL)
    # CI and p use the robust se
    z = res["coef"] / res["se"]
    np.testing.assert_allclose(res["hr_lower"], np.exp(res["coef"] - 1.959963984540054 * res["se"]),
                               rtol=1e-12)
    np.testing.assert_allclose(res["z"], z, rtol=1e-12)


def test_unweighted_robust_cox_matches_r(vet):
    res = cox_regression(vet, "time", "event", ["arm", "karno60"], robust=True)
    np.testing.assert_allclose(res["se"], R_VET["unw_robust_se"], rtol=COX_REL)
    assert res.attrs["robust_score"] == pytest.approx(R_VET["unw_robscore"][0], rel=COX_REL)
    plain = cox_regression(vet, "time", "event", ["arm", "karno60"])
    np.testing.assert_allclose(res["coef"], plain["coef"], rtol=1e-12)
    np.testing.assert_allclose(res["naive_se"], plain["se"], rtol=1e-12)
    assert not np.allclose(res["se"], plain["se"], rtol=1e-3)


@pytest.mark.parametrize("arm", [1, 0])
def test_rmst_matches_r_on_tied_data(vet, arm):
    sub = vet[vet["arm"] == arm]
    ij = rmst(sub["time"], sub["event"], 200, weights=sub["w"])
    plain = rmst(sub["time"], sub["event"], 200)
    np.testing.assert_allclose([ij.estimate, ij.se], R_VET[f"rmst_ij{arm}"], rtol=REL)
    np.testing.assert_allclose([plain.estimate, plain.se], R_VET[f"rmean{arm}"], rtol=REL)
    assert ij.variance == "robust_ij" and plain.variance == "rmean"
    assert plain.lower == pytest.approx(plain.estimate - 1.959963984540054 * plain.se, rel=1e-12)


@pytest.mark.parametrize("transform", ["km", "rank", "identity"])
def test_cox_zph_transforms_match_r(vet, transform):
    res = cox_zph(vet, "time", "event", ["arm", "karno60", "age60", "prior"], transform=transform)
    assert res["term"].tolist() == ["arm", "karno60", "age60", "prior", "GLOBAL"]
    assert res["df"].tolist() == [1, 1, 1, 1, 4]
    np.testing.assert_allclose(res["chisq"], R_VET[f"zph_{transform}_chisq"], rtol=COX_REL)
    np.testing.assert_allclose(res["p_value"], R_VET[f"zph_{transform}_p"], rtol=COX_REL)


def test_cox_zph_weighted_and_breslow_match_r(vet):
    w = cox_zph(vet, "time", "event", ["arm", "karno60"], weights="w")
    np.testing.assert_allclose(w["chisq"], R_VET["zph_weighted_chisq"], rtol=COX_REL)
    b = cox_zph(vet, "time", "event", ["arm", "karno60"], ties="breslow")
    np.testing.assert_allclose(b["chisq"], R_VET["zph_breslow_chisq"], rtol=COX_REL)


def test_quantile_type3_matches_r(vet):
    probs = [0, 0.01, 0.05, 0.1, 0.37, 0.5, 0.9, 0.99, 1]
    np.testing.assert_array_equal(quantile_type3(vet["w"], probs), R_VET["q3"])


# ---------------------------------------------------------------------------------------
# a weighted curve that reaches 0 (R: influences 0 there, CI NA)
# ---------------------------------------------------------------------------------------
ZERO = pd.DataFrame({"time": [1, 2, 2, 3, 3, 4, 5, 5, 6, 6],
                     "event": [1, 1, 0, 1, 1, 0, 1, 1, 1, 1],
                     "w": [0.5, 1.25, 2, 0.75, 1.5, 1, 0.8, 1.1, 2.5, 0.3]})


def test_weighted_km_reaching_zero_matches_r():
    km = kaplan_meier(ZERO["time"], ZERO["event"], weights=ZERO["w"])
    tab = km.table
    assert tab["time"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(tab["n_at_risk"], [11.7, 11.2, 7.95, 5.7, 4.7, 2.8], rtol=1e-12)
    np.testing.assert_allclose(tab["n_events"], [0.5, 1.25, 2.25, 0, 1.9, 2.8], rtol=1e-12)
    assert tab["n_at_risk_unweighted"].tolist() == [10, 9, 7, 5, 4, 2]
    np.testing.assert_allclose(
        tab["survival"], [0.957264957264957, 0.85042735042735, 0.609740364457346,
                          0.609740364457346, 0.363249578825653, 0], rtol=1e-12)
    np.testing.assert_allclose(
        tab["std_err"], [0.0436791211986868, 0.110413851827216, 0.179946603654485,
                         0.179946603654485, 0.221104102539201, 0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        tab["lower"][:5], [0.875371929366586, 0.659360385525636, 0.341930867790308,
                           0.341930867790308, 0.110177421229506], rtol=1e-12)
    assert (tab["upper"][:5] == 1).all()
    assert math.isnan(tab["lower"].iloc[5]) and math.isnan(tab["upper"].iloc[5])
    assert tuple(km.quantile(0.25)) == (3, 2, None)
    assert tuple(km.quantile(0.5)) == (5, 3, None)
    r = rmst(ZERO["time"], ZERO["event"], 5.5, weights=ZERO["w"])
    assert r.estimate == pytest.approx(4.20879782601983, rel=1e-12)
    assert r.se == pytest.approx(0.516735728555799, rel=1e-12)


# ---------------------------------------------------------------------------------------
# independent implementations
# ---------------------------------------------------------------------------------------
def _r_ij_recursion(t, e, w):
    """Direct port of R survfitkm.c (type 1, one cluster per row): the rows x times
    influence matrix U[k, j] = w_k dS(t_j)/dw_k, built the way R builds it."""
    uniq = np.unique(t)
    inf1 = np.zeros(len(t))
    km = 1.0
    cols = []
    for time in uniq:
        at_risk = t >= time
        y = w[at_risk].sum()
        dead = (t == time) & (e == 1)
        dw = w[dead].sum()
        if dead.any() and dw > 0:
            haz = dw / y
            inf1 = inf1 * (1 - haz) + np.where(at_risk, w, 0.0) * km * haz / y
            inf1[dead] -= km * w[dead] / y
            km *= 1 - haz
        cols.append(inf1.copy())
    return uniq, np.array(cols).T


def _random_data(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    t = rng.integers(1, 60, n).astype(float)  # many ties
    e = (rng.random(n) < 0.7).astype(float)
    w = rng.uniform(0.2, 3.0, n)
    return t, e, w


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ij_running_sums_equal_rs_recursion(seed):
    t, e, w = _random_data(seed)
    uniq, infl = _r_ij_recursion(t, e, w)
    km = kaplan_meier(t, e, weights=w)
    np.testing.assert_array_equal(km.table["time"], uniq)
    np.testing.assert_allclose(km.table["std_err"], np.sqrt((infl ** 2).sum(axis=0)),
                               rtol=1e-10, atol=1e-14)
    tau = 40.5
    keep = uniq <= tau
    grid = np.concatenate([[0.0], uniq[keep], [tau]])
    a_k = infl[:, keep] @ np.diff(grid)[1:]
    res = rmst(t, e, tau, weights=w)
    assert res.se == pytest.approx(math.sqrt(np.sum(a_k ** 2)), rel=1e-10)
    surv = np.concatenate([[1.0], km.table["survival"].to_numpy()[keep]])
    assert res.estimate == pytest.approx(float(np.sum(np.diff(grid) * surv)), rel=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_weighted_score_residuals_sum_to_the_score(ties):
    """sum_i w_i L_i(beta) is the score U(beta) of the weighted partial likelihood, at any
    beta (the residuals and the fit are separate code)."""
    t, e, w = _random_data(7)
    rng = np.random.default_rng(8)
    x = np.vstack([rng.integers(0, 2, len(t)), rng.normal(size=len(t))]).astype(float)
    x -= x.mean(axis=1, keepdims=True)
    beta = np.array([0.4, -0.3])
    resid = _score_residuals(t, e, x, beta, ties, w)
    _, score, _ = _loglik_derivs(beta, _prepare(t, e, x, w), ties)
    np.testing.assert_allclose((resid * w[:, None]).sum(axis=0), score, rtol=1e-9)


# ---------------------------------------------------------------------------------------
# propensity model: separation, non-convergence, missing values, truncation
# ---------------------------------------------------------------------------------------
def _ps_frame(n=200, seed=0, index=None):
    rng = np.random.default_rng(seed)
    x1 = rng.integers(0, 2, n)
    x2 = rng.integers(0, 2, n)
    lin = -0.3 + 0.8 * x1 - 0.5 * x2
    a = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    return pd.DataFrame({"a": a, "x1": x1.astype(float), "x2": x2.astype(float)}, index=index)


def _joint_separation_frame() -> pd.DataFrame:
    """Each level of x1 and of x2 occurs in both groups, yet x1 - x2 separates them: the
    pattern (x1, x2) = (1, 0) only among the treated, (0, 1) only among the controls."""
    rows = [(0, 0, 0)] * 20 + [(0, 0, 1)] * 10 + [(1, 1, 0)] * 12 + [(1, 1, 1)] * 9 \
        + [(1, 0, 1)] * 15 + [(0, 1, 0)] * 18
    return pd.DataFrame(rows, columns=["x1", "x2", "a"]).assign(
        x1=lambda f: f["x1"].astype(float), x2=lambda f: f["x2"].astype(float))


def test_complete_separation_is_a_status_not_nan():
    df = _ps_frame()
    df["x3"] = df["a"].astype(float)  # predicts treatment exactly: left out, alone
    res = propensity_weights(df, "a", ["x1", "x2", "x3"])
    assert res.ok and res.aliased == ("x3",)
    assert res.aliased_reason == {"x3": "single_group_level"}
    assert "x3 = 1 occurs only among a = 1" in res.aliased_note["x3"]
    assert res.covariates == ("x1", "x2")
    np.testing.assert_allclose(res.weights, propensity_weights(df, "a", ["x1", "x2"]).weights,
                               rtol=1e-12)
    # jointly separating covariates (no single one does) still stop the weights
    joint = propensity_weights(_joint_separation_frame(), "a", ["x1", "x2"])
    assert joint.status == "separation" and not joint.ok and joint.aliased == ()
    assert "separat" in joint.reason and "'x1', 'x2'" in joint.reason
    assert joint.weights is None and joint.summary.empty


def test_quasi_complete_separation_by_one_level_leaves_the_covariate_out():
    df = _ps_frame(seed=3)
    df["x3"] = 0.0
    df.loc[df.index[:15], "x3"] = 1.0
    df.loc[df.index[:15], "a"] = 1  # x3 = 1 only among the treated
    df["x4"] = 1.0
    df.loc[df.index[df["a"] == 0][:7], "x4"] = 0.0  # x4 = 0 only among the controls
    res = propensity_weights(df, "a", ["x1", "x3", "x2", "x4"])
    assert res.ok and res.aliased == ("x3", "x4") and res.covariates == ("x1", "x2")
    assert res.aliased_reason == {"x3": "single_group_level", "x4": "single_group_level"}
    assert "x3 = 1 occurs only among a = 1" in res.aliased_note["x3"]
    assert "x4 = 0 occurs only among a = 0" in res.aliased_note["x4"]
    assert res.table["term"].tolist() == ["intercept", "x1", "x2"]


def test_non_convergence_is_a_status():
    res = propensity_weights(_ps_frame(), "a", ["x1", "x2"], max_iter=1)
    assert res.status == "not_converged" and res.weights is None
    assert "converge" in res.reason
    ok = propensity_weights(_ps_frame(), "a", ["x1", "x2"])
    assert ok.ok and ok.converged and ok.reason is None


def test_missing_covariates_are_counted_and_weights_keep_the_index():
    idx = pd.Index([f"p{i}" for i in range(200)])
    df = _ps_frame(index=idx)
    df.loc[["p3", "p10", "p50"], "x2"] = np.nan
    df.loc["p7", "a"] = np.nan
    res = propensity_weights(df, "a", ["x1", "x2"])
    assert res.ok and res.n == 196 and res.n_excluded_missing == 4
    assert res.weights.index.equals(idx) and res.ps.index.equals(idx)
    assert res.weights[["p3", "p7", "p10", "p50"]].isna().all()
    assert res.weights.drop(["p3", "p7", "p10", "p50"]).notna().all()
    assert (res.table["n"] == 196).all() and (res.table["n_excluded_missing"] == 4).all()
    assert res.table["term"].tolist() == ["intercept", "x1", "x2"]
    assert res.summary["n"].sum() == 196


def test_weights_formulas_and_truncation():
    df = _ps_frame(n=400, seed=5)
    df["x3"] = np.random.default_rng(6).normal(size=400)
    covs = ["x1", "x2", "x3"]
    st = propensity_weights(df, "a", covs)
    un = propensity_weights(df, "a", covs, stabilized=False)
    a, ps = df["a"], st.ps
    pbar = a.mean()
    np.testing.assert_allclose(st.weights, np.where(a == 1, pbar / ps, (1 - pbar) / (1 - ps)))
    np.testing.assert_allclose(un.weights, np.where(a == 1, 1 / ps, 1 / (1 - ps)))
    tr = propensity_weights(df, "a", covs, truncate=True)
    lo, hi = quantile_type3(st.weights, [0.01, 0.99])
    assert tr.truncation == (lo, hi) and tr.truncate == (0.01, 0.99)
    np.testing.assert_allclose(tr.weights, st.weights.clip(lo, hi))
    assert (tr.weights < st.weights).any() and (tr.weights > st.weights).any()
    s = st.summary.set_index("treatment")
    w1 = st.weights[a == 1]
    assert s.loc[1, "ess"] == pytest.approx(w1.sum() ** 2 / (w1 ** 2).sum())
    assert s.loc[1, "max"] == pytest.approx(w1.max())


def test_constant_and_collinear_covariates_are_left_out_in_order():
    df = _ps_frame()
    df["c"] = 1.0
    df["both"] = df["x1"] + df["x2"]  # a linear combination of earlier ones
    df["not_x1"] = 1.0 - df["x1"]  # of the intercept and x1
    res = propensity_weights(df, "a", ["x1", "c", "x2", "both", "not_x1"])
    assert res.ok and res.aliased == ("c", "both", "not_x1")
    assert res.aliased_reason == {"c": "constant", "both": "linear_combination",
                                  "not_x1": "linear_combination"}
    assert "x1, x2" in res.aliased_note["both"] and "intercept, x1" in res.aliased_note["not_x1"]
    plain = propensity_weights(df, "a", ["x1", "x2"])
    assert res.coefficients == pytest.approx(plain.coefficients, rel=1e-12)
    # the order of the candidates decides which one of a dependent set is aliased (as R)
    flipped = propensity_weights(df, "a", ["both", "x1", "x2"])
    assert flipped.aliased == ("x2",) and flipped.covariates == ("both", "x1")
    np.testing.assert_allclose(flipped.ps, plain.ps, rtol=1e-10)


def test_no_variation_and_too_few_are_statuses():
    df2 = _ps_frame()
    df2["a"] = 1
    assert propensity_weights(df2, "a", ["x1"]).status == "no_variation"
    tiny = pd.DataFrame({"a": [1, 0, 1, 0], "x1": [0.0, 0.0, 1.0, 1.0], "x2": [0.0, 1.0, 1.0, 0.0],
                         "x3": [1.0, 0.0, 0.0, 1.0], "x5": [0.3, 0.1, 0.9, 0.5]})
    res = propensity_weights(tiny, "a", ["x1", "x2", "x3", "x5"])
    assert res.status == "too_few" and res.aliased == ("x3",)  # x3 = 1 - x2
    empty = propensity_weights(tiny.assign(x1=np.nan), "a", ["x1"])
    assert empty.status == "too_few" and empty.n_excluded_missing == 4


# ---------------------------------------------------------------------------------------
# quantile type 3 by hand
# ---------------------------------------------------------------------------------------
def test_quantile_type3_hand_computed():
    x = np.arange(1, 11, dtype=float)[::-1]  # order does not matter
    # n p - 1/2 = j exactly and j even -> x_(j); else x_(j+1); clamped to x_(1), x_(n)
    assert quantile_type3(x, 0.25) == 2.0  # 2.0: j = 2 even -> x_(2)
    assert quantile_type3(x, 0.35) == 4.0  # 3.0: j = 3 odd -> x_(4)
    assert quantile_type3(x, 0.5) == 5.0  # 4.5: j = 4 -> x_(5)
    assert quantile_type3(x, 0.45) == 4.0  # 4.0: j = 4 even -> x_(4)
    assert quantile_type3(x, 0.01) == 1.0  # -0.4 -> x_(0) -> x_(1)
    assert quantile_type3(x, 0.99) == 10.0  # 9.4 -> x_(10)
    assert quantile_type3(x, 0.0) == 1.0 and quantile_type3(x, 1.0) == 10.0
    np.testing.assert_array_equal(quantile_type3([3, 1, 2, 2], [0.25, 0.5, 0.75]), [1, 2, 2])
    # NumPy's "closest_observation" (type-3-like) differs at exact halves: R's rule is tested
    assert quantile_type3(np.arange(1, 5), 0.625) == 2.0  # 2.0: j = 2 even -> x_(2)
    with pytest.raises(ValueError):
        quantile_type3([1.0, np.nan], 0.5)


# ---------------------------------------------------------------------------------------
# balance
# ---------------------------------------------------------------------------------------
def test_balance_table_by_hand():
    df = pd.DataFrame({"a": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
                       "x": [1, 1, 1, 0, 1, 0, 0, 0, 0, 0],
                       "w": [1, 1, 1, 3, 1, 1, 1, 1, 1, 1.0]})
    row = balance_table(df, "a", ["x"], "w").iloc[0]
    p1, p0 = 0.75, 1 / 6
    s = math.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
    assert row.share_treated == p1 and row.share_control == pytest.approx(p0)
    assert row.smd_before == pytest.approx((p1 - p0) / s)
    assert row.share_treated_weighted == pytest.approx(0.5)
    assert row.smd_after == pytest.approx((0.5 - p0) / s)  # s stays the unweighted one
    assert not row.balanced_after
    ones = balance_table(df, "a", ["x"], np.ones(10)).iloc[0]
    assert ones.smd_after == pytest.approx(ones.smd_before)


def test_balance_table_complete_split_is_infinite_not_nan():
    df = pd.DataFrame({"a": [1, 1, 0, 0], "x": [1, 1, 0, 0], "w": [1.0] * 4})
    row = balance_table(df, "a", ["x"], "w").iloc[0]
    assert row.smd_before == math.inf


# ---------------------------------------------------------------------------------------
# tau beyond follow-up
# ---------------------------------------------------------------------------------------
def test_tau_beyond_follow_up_uses_the_bound_and_says_so(vet):
    t, e, a = vet["time"], vet["event"], vet["arm"]
    bound = min(t[a == 0].max(), t[a == 1].max())
    far = rmst_compare(t, e, a, 5000, weights=vet["w"])
    assert far.tau_truncated and far.tau == bound and far.tau_requested == 5000
    assert far.note and str(int(bound)) in far.note
    at = rmst_compare(t, e, a, bound, weights=vet["w"])
    assert not at.tau_truncated and at.note is None
    assert far.difference == at.difference and far.ratio_p == at.ratio_p
    for g in (0, 1):
        assert far.groups[g].tau_truncated and far.groups[g].tau == bound
    one = rmst(t[a == 1], e[a == 1], 5000)
    assert one.tau_truncated and one.tau == t[a == 1].max()
    assert not math.isnan(one.se) and one.note
    with pytest.raises(ValueError):
        rmst(t, e, 0)


def test_rmst_reference_sets_the_direction(vet):
    t, e, a = vet["time"], vet["event"], vet["arm"]
    c0 = rmst_compare(t, e, a, 200, reference=0)
    c1 = rmst_compare(t, e, a, 200, reference=1)
    assert (c0.reference, c0.comparator) == (0, 1)
    assert c1.difference == pytest.approx(-c0.difference)
    assert c1.ratio == pytest.approx(1 / c0.ratio)
    assert c1.difference_p == pytest.approx(c0.difference_p)
    assert c0.difference == pytest.approx(c0.groups[1].estimate - c0.groups[0].estimate)


# ---------------------------------------------------------------------------------------
# unit weights = the unweighted analyses
# ---------------------------------------------------------------------------------------
def test_unit_weights_equal_unweighted_results(vet):
    ones = np.ones(len(vet))
    plain = kaplan_meier(vet["time"], vet["event"])
    unit = kaplan_meier(vet["time"], vet["event"], weights=ones)
    assert unit.variance == "greenwood"  # R: integer weights keep Greenwood
    for col in ("survival", "std_err", "lower", "upper", "n_at_risk", "n_events"):
        np.testing.assert_allclose(unit.table[col], plain.table[col], rtol=1e-12)
    assert (unit.median, unit.median_lower, unit.median_upper) == \
        (plain.median, plain.median_lower, plain.median_upper)
    frame = vet.assign(one=1.0)
    cw = cox_regression(frame, "time", "event", ["arm", "karno60"], weights="one")
    cp = cox_regression(frame, "time", "event", ["arm", "karno60"])
    np.testing.assert_allclose(cw["coef"], cp["coef"], rtol=1e-10)
    np.testing.assert_allclose(cw["se"], cp["se"], rtol=1e-10)
    assert cw.attrs["loglik"] == pytest.approx(cp.attrs["loglik"], rel=1e-12)
    rw = rmst(vet["time"], vet["event"], 200, weights=ones)
    rp = rmst(vet["time"], vet["event"], 200)
    assert rw.estimate == pytest.approx(rp.estimate, rel=1e-12)
    # the IJ se with unit weights is a different (sandwich) estimator, close to rmean's
    assert rw.se == pytest.approx(rp.se, rel=0.05)
    wl = weighted_logrank(vet["time"], vet["event"], vet["arm"], ones)
    rc = cox_regression(frame, "time", "event", ["arm"], robust=True)
    assert wl.statistic == pytest.approx(rc.attrs["robust_score"], rel=1e-12)


def test_weighted_cox_rejects_non_positive_weights(vet):
    with pytest.raises(CoxFitError, match="weights"):
        cox_regression(vet.assign(w0=0.0), "time", "event", ["arm"], weights="w0")
    with pytest.raises(ValueError):
        weighted_logrank(vet["time"], vet["event"], vet["arm"], np.zeros(len(vet)))


def test_weighted_logrank_does_not_depend_on_the_reference_level(vet):
    a = weighted_logrank(vet["time"], vet["event"], vet["arm"], vet["w"])
    b = weighted_logrank(vet["time"], vet["event"], vet["arm"], vet["w"], levels=[1, 0])
    assert a.statistic == pytest.approx(b.statistic, rel=1e-10) and a.df == 1
    labels = vet["arm"].map({0: "first_line", 1: "post_ate_beva"})
    c = weighted_logrank(vet["time"], vet["event"], labels, vet["w"])
    assert c.statistic == pytest.approx(a.statistic, rel=1e-10)
    assert c.groups == ("first_line", "post_ate_beva")


# ---------------------------------------------------------------------------------------
# scale: the IJ variances never build a rows x times matrix
# ---------------------------------------------------------------------------------------
def test_ij_variances_use_memory_linear_in_rows():
    rng = np.random.default_rng(11)
    n = 200_000
    t = np.round(rng.exponential(20.0, n), 3)  # tens of thousands of distinct times
    e = (rng.random(n) < 0.6).astype(float)
    w = rng.uniform(0.5, 2.0, n)
    assert len(np.unique(t)) > 20_000  # a rows x times matrix would be > 30 GB
    tracemalloc.start()
    try:
        km = kaplan_meier(t, e, weights=w)
        r = rmst(t, e, 12.0, weights=w)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert km.variance == "robust_ij" and r.se > 0
    assert peak < 400e6


def test_rmst_at_an_observed_time_and_where_the_curve_reaches_zero():
    """R (rmst_plain / rmst_ij of r_beyond.R): tau = 310, an observed lung time, and
    tau = 6, where the weighted curve of ZERO reaches 0 (every weight at risk dies)."""
    path = reference_dir().parent / "r_beyond"
    if not (path / "lung.csv").is_file():
        pytest.skip(f"R reference folder not found: {path}")
    d = pd.read_csv(path / "lung.csv")
    sw = pd.read_csv(path / "lung_weights.csv")["sw"]
    assert 310 in set(d["time"])
    plain = rmst(d["time"], d["event"], 310)
    ij = rmst(d["time"], d["event"], 310, weights=sw)
    np.testing.assert_allclose([plain.estimate, plain.se], [242.83220707850188, 6.38407444840918],
                               rtol=1e-12)
    np.testing.assert_allclose([ij.estimate, ij.se], [243.79762437858548, 6.32646778959355],
                               rtol=1e-12)
    zi = rmst(ZERO["time"], ZERO["event"], 6, weights=ZERO["w"])
    zp = rmst(ZERO["time"], ZERO["event"], 6)
    np.testing.assert_allclose([zi.estimate, zi.se], [4.39042261543265, 0.60574222647195], rtol=1e-12)
    np.testing.assert_allclose([zp.estimate, zp.se], [4.128571428571428, 0.561035589730818],
                               rtol=1e-12)
    assert not zi.tau_truncated


def test_lifelines_robust_se_differs_from_r_on_tied_times(vet):
    """Why the robust variance is our own: lifelines' score residuals leave out the Efron
    share of tied risk sets, so its robust se misses R's by ~2e-3 here; ours is R's."""
    import warnings

    from lifelines import CoxPHFitter

    data = vet[["time", "event", "arm", "karno60", "prior", "w"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = CoxPHFitter().fit(data, "time", "event", weights_col="w", robust=True)
    theirs = fit.standard_errors_[["arm", "karno60", "prior"]].to_numpy()
    r = np.array(R_VET["cox_robust_se"])
    assert np.max(np.abs(theirs / r - 1)) > 1e-3
    ours = cox_regression(vet, "time", "event", ["arm", "karno60", "prior"], weights="w",
                          robust=True)["se"].to_numpy()
    assert np.max(np.abs(ours / r - 1)) < COX_REL
