"""Hypothesis tests against R 4.2.2 (``survdiff``, ``fisher.test``, ``chisq.test``) and
against independent computations (brute-force Fisher enumeration, lifelines log-rank)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

from haic_pipeline.stats import (
    compare_means,
    compare_proportions,
    fisher_exact_rxc,
    landmark_test,
    logrank,
)

# two groups with tied events exactly at the landmark t = 12
T_A = [3, 6, 6, 6, 9, 12, 12, 15, 18, 20]
E_A = [1, 1, 1, 0, 1, 1, 1, 0, 1, 0]
T_B = [2, 4, 6, 8, 12, 12, 12, 14, 16, 24]
E_B = [1, 0, 1, 1, 1, 1, 0, 1, 1, 0]


def test_logrank_three_plus_groups_matches_r(veteran):
    frame, _ = veteran
    res = logrank(frame["time"], frame["event"], frame["celltype"])
    # R: survdiff(Surv(time, event) ~ celltype, data = veteran)
    assert res.df == 3
    assert res.statistic == pytest.approx(25.4037003457854, rel=1e-9)
    assert res.p_value == pytest.approx(1.27124593900607e-05, rel=1e-9)
    assert sum(res.observed.values()) == frame["event"].sum()
    assert sum(res.expected.values()) == pytest.approx(frame["event"].sum())


def test_logrank_agrees_with_lifelines(lung_months):
    lifelines_stats = pytest.importorskip("lifelines.statistics")
    frame, _ = lung_months
    ours = logrank(frame["time"], frame["event"], frame["group"])
    theirs = lifelines_stats.multivariate_logrank_test(frame["time"], frame["group"], frame["event"])
    assert ours.statistic == pytest.approx(theirs.test_statistic, rel=1e-10)


def test_logrank_ties_at_landmark_and_errors():
    t = T_A + T_B
    e = E_A + E_B
    g = ["A"] * 10 + ["B"] * 10
    assert logrank(t, e, g).statistic == pytest.approx(0.00121028277433931, rel=1e-9)  # R
    with pytest.raises(ValueError, match="at least two groups"):
        logrank(T_A, E_A, ["A"] * 10)  # the other group is empty
    with pytest.raises(ValueError, match="no events"):
        logrank(t, [0] * 20, g)


def test_landmark_test_with_ties_at_the_landmark():
    t = T_A + T_B
    e = E_A + E_B
    g = ["A"] * 10 + ["B"] * 10
    res = landmark_test(t, e, g, 12)
    # events at t = 12 count (S right-continuous): S_A(12) = 0.35, S_B(12) = 0.45 (R)
    assert res.surv == {"A": pytest.approx(0.35), "B": pytest.approx(0.45)}
    assert res.statistic == pytest.approx(0.430727149104554, rel=1e-9)
    assert res.p_value == pytest.approx(0.666666775885427, rel=1e-9)
    # just before the landmark the tied events are not yet counted
    assert landmark_test(t, e, g, 11.999).surv["A"] == pytest.approx(0.5833333333)
    # group order: reversing the levels flips the sign only
    rev = landmark_test(t, e, g, 12, levels=["B", "A"])
    assert rev.statistic == pytest.approx(-res.statistic) and rev.p_value == pytest.approx(res.p_value)


def test_landmark_test_refuses_undefined_cases():
    g = ["A"] * 10 + ["B"] * 10
    with pytest.raises(ValueError, match="exactly two groups"):
        landmark_test(T_A, E_A, ["A"] * 10, 12)
    with pytest.raises(ValueError, match="0 < S < 1"):
        landmark_test(T_A + T_B, E_A + E_B, g, 1)  # S = 1 in both groups before any event


def test_compare_means_student_t_and_sign_order():
    a = [61.0, 70.5, 55.2, 66.1, 72.3]
    b = [58.4, 49.9, 63.2, 51.0]
    res = compare_means(a + b, ["x"] * 5 + ["y"] * 4)
    n1, n2 = 5, 4
    sp2 = ((n1 - 1) * np.var(a, ddof=1) + (n2 - 1) * np.var(b, ddof=1)) / (n1 + n2 - 2)
    t_manual = (np.mean(a) - np.mean(b)) / math.sqrt(sp2 * (1 / n1 + 1 / n2))
    assert res.statistic == pytest.approx(t_manual, rel=1e-12) and res.df == 7
    # Welch would give a different p; ours is Student's
    from scipy.stats import ttest_ind
    assert res.p_value != pytest.approx(ttest_ind(a, b, equal_var=False).pvalue, rel=1e-6)
    with pytest.raises(ValueError, match="two groups"):
        compare_means(a, ["x"] * 5)


def test_compare_proportions_chi2_without_correction():
    tab = np.array([[20, 15], [10, 25], [12, 18]])
    values, groups = _expand(tab)
    res = compare_proportions(values, groups)
    assert res.test == "chi2" and res.df == 2
    assert res.statistic == pytest.approx(5.93478770818672, rel=1e-9)  # R chisq.test(correct = FALSE)
    assert res.p_value == pytest.approx(0.0514371886215408, rel=1e-9)
    # 2 x 2: no Yates correction (SciPy's default would apply it)
    v2, g2 = _expand(np.array([[30, 20], [18, 32]]))
    r2 = compare_proportions(v2, g2)
    o = np.array([[30, 20], [18, 32]])
    ex = np.outer(o.sum(1), o.sum(0)) / o.sum()
    assert r2.statistic == pytest.approx(((o - ex) ** 2 / ex).sum(), rel=1e-12)


def test_compare_proportions_switches_to_exact_fisher():
    values, groups = _expand(np.array([[7, 2], [3, 9], [1, 4]]))
    res = compare_proportions(values, groups)
    assert res.test == "fisher" and res.statistic is None
    assert res.p_value == pytest.approx(0.0234406225084646, rel=1e-9)  # R fisher.test
    # booleans (ORR / DCR by group), missing values dropped
    orr = [True] * 10 + [False] * 1 + [True] * 1 + [False] * 9 + [None]
    grp = ["first_line"] * 11 + ["post_ate_beva"] * 10 + ["first_line"]
    r = compare_proportions(orr, grp)
    assert r.test == "fisher" and r.table.to_numpy().sum() == 21
    assert r.expected.to_numpy().min() < 5
    assert r.p_value == pytest.approx(0.000345887342791368, rel=1e-9)  # R fisher.test


def test_compare_proportions_needs_two_levels_and_two_groups():
    with pytest.raises(ValueError, match="2 observed levels"):
        compare_proportions([1, 1, 1, 1], ["a", "b", "a", "b"])
    with pytest.raises(ValueError, match="2 groups"):
        compare_proportions([1, 0, 1, 0], ["a", "a", "a", "a"])


@pytest.mark.parametrize("table,r_p", [
    ([[3, 1, 0, 2], [5, 2, 1, 0], [1, 4, 2, 3], [0, 2, 5, 1], [2, 0, 1, 4]], 0.0185126295901971),
    ([[8, 3, 2, 1], [6, 5, 2, 3], [2, 6, 4, 1], [1, 3, 7, 5], [4, 2, 3, 6]], 0.0548747036452359),
    ([[0, 5, 3], [4, 0, 2], [1, 1, 0]], 0.0145271395271396),
    ([[10, 2], [1, 9]], 0.00190521552750655),
])
def test_fisher_exact_rxc_matches_r(table, r_p):
    p = fisher_exact_rxc(np.array(table))
    assert p == pytest.approx(r_p, rel=1e-9)
    assert p == pytest.approx(fisher_exact_rxc(np.array(table).T), rel=1e-12)


def _brute_force_fisher(tab: np.ndarray) -> float:
    """Enumerate every table with the margins (small tables only)."""
    rows, cols = tab.sum(1), tab.sum(0)
    n = tab.sum()
    const = gammaln(rows + 1).sum() + gammaln(cols + 1).sum() - gammaln(n + 1)
    lp_obs = const - gammaln(tab + 1).sum()
    r, c = tab.shape
    total = 0.0
    ranges = [range(0, min(rows[i], cols[j]) + 1) for i in range(r - 1) for j in range(c - 1)]
    for cells in itertools.product(*ranges):
        m = np.zeros((r, c), dtype=int)
        m[: r - 1, : c - 1] = np.array(cells).reshape(r - 1, c - 1)
        m[: r - 1, c - 1] = rows[: r - 1] - m[: r - 1, : c - 1].sum(1)
        m[r - 1, :] = cols - m[: r - 1, :].sum(0)
        if (m < 0).any():
            continue
        lp = const - gammaln(m + 1).sum()
        if lp <= lp_obs + math.log1p(1e-7):
            total += math.exp(lp)
    return total


@pytest.mark.parametrize("seed", range(6))
def test_fisher_exact_rxc_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = [(2, 2), (3, 2), (2, 4), (3, 3), (4, 2), (3, 3)][seed]
    tab = rng.integers(0, 5, size=shape)
    tab[0, 0] += 1
    assert fisher_exact_rxc(tab) == pytest.approx(_brute_force_fisher(tab), rel=1e-10)


def test_fisher_is_exact_not_monte_carlo():
    tab = np.array([[3, 1, 0], [1, 3, 2], [0, 2, 4]])
    assert fisher_exact_rxc(tab) == fisher_exact_rxc(tab)  # deterministic
    assert fisher_exact_rxc([[5, 0], [0, 0]]) == 1.0  # degenerate: one observed row


def _expand(tab: np.ndarray) -> tuple[list, list]:
    values, groups = [], []
    for i, row in enumerate(tab):
        for j, k in enumerate(row):
            values += [f"v{i}"] * int(k)
            groups += [f"g{j}"] * int(k)
    return values, groups


def test_expand_helper_roundtrip():
    v, g = _expand(np.array([[1, 2], [3, 4]]))
    assert pd.crosstab(pd.Series(v), pd.Series(g)).to_numpy().tolist() == [[1, 2], [3, 4]]
