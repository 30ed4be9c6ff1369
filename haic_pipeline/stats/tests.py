"""Hypothesis tests with R's answers: log-rank, landmark (12-month) test, Student's t,
Pearson chi-square / exact Fisher for r x c tables.

Which implementation does what:

* ``logrank``: NumPy (vectorised ``survdiff``); lifelines' ``multivariate_logrank_test``
  gives the same number (checked in the test suite) but is several times slower at
  1,000,000 rows.
* ``landmark_test``: NumPy over :func:`haic_pipeline.stats.km.kaplan_meier` (lifelines'
  fixed-time test interpolates the variance, which is not the Greenwood variance at t).
* ``compare_means``: ``scipy.stats.ttest_ind(equal_var=True)`` (Student, as R
  ``t.test(var.equal = TRUE)``).
* ``compare_proportions``: ``scipy.stats.chi2_contingency(correction=False)`` for the
  chi-square; :func:`fisher_exact_rxc` (own network-style exact enumeration) for Fisher,
  because SciPy's r x c Fisher is a Monte-Carlo approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import special as _spspecial
from scipy import stats as _sps

from ._common import clean_survival, group_levels
from .km import kaplan_meier


# ---------------------------------------------------------------------------------------
# log-rank
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogrankResult:
    """R ``survdiff`` result: chi-square ``statistic``, ``df``, ``p_value``, and per group
    ``observed``/``expected`` events (dicts keyed by group level, R's level order)."""

    statistic: float
    df: int
    p_value: float
    groups: tuple
    observed: dict
    expected: dict


def logrank(time: Any, event: Any, group: Any, levels: Sequence | None = None) -> LogrankResult:
    """Log-rank test for any number of groups, as R ``survdiff(Surv(time, event) ~ group)``.

    At each distinct event time t with n at risk and d events (n_g, d_g in group g):
    O_g = sum d_g, E_g = sum d n_g / n,
    V_gh = sum d (n - d) / (n^2 (n - 1)) * n_g (n delta_gh - n_h)   (times with n > 1).
    With the groups of E_g > 0, dropping the first: chi2 = (O - E)' V^-1 (O - E),
    df = (number of groups with E_g > 0) - 1, p = P(chi2_df > chi2). Rows with a missing
    time, event or group are dropped. Raises ``ValueError`` with fewer than two groups or
    no events.
    """
    t, e, g = clean_survival(time, event, np.asarray(group, dtype=object))
    levs = group_levels(g, levels)
    if len(pd.unique(pd.Series(g))) < 2:
        raise ValueError(f"log-rank needs at least two groups with data; found {list(pd.unique(pd.Series(g)))}")
    if e.sum() == 0:
        raise ValueError("log-rank test undefined: no events")
    k = len(levs)
    code = pd.Categorical(pd.Series(g), categories=levs).codes.astype(np.int64)
    uniq, ti = np.unique(t, return_inverse=True)
    m = len(uniq)
    at_time = np.bincount(ti * k + code, minlength=m * k).reshape(m, k)
    ev_time = np.bincount(ti * k + code, weights=e, minlength=m * k).reshape(m, k)
    # number at risk: subjects with time >= t (reverse cumulative counts)
    n_g = np.cumsum(at_time[::-1], axis=0)[::-1].astype(float)
    d_g = ev_time
    n = n_g.sum(axis=1)
    d = d_g.sum(axis=1)
    sel = d > 0
    n_g, d_g, n, d = n_g[sel], d_g[sel], n[sel], d[sel]
    observed = d_g.sum(axis=0)
    expected = (d[:, None] * n_g / n[:, None]).sum(axis=0)
    ok = n > 1
    w = np.zeros_like(n)
    w[ok] = d[ok] * (n[ok] - d[ok]) / (n[ok] ** 2 * (n[ok] - 1))
    # V = sum_t w_t (n_t diag(n_g) - n_g n_g')
    var = np.diag((w * n) @ n_g) - (n_g * w[:, None]).T @ n_g
    use = np.flatnonzero(expected > 0)
    df = len(use) - 1
    if df < 1:
        raise ValueError("log-rank needs at least two groups with expected events > 0")
    diff = (observed - expected)[use][1:]
    vv = var[np.ix_(use, use)][1:, 1:]
    stat = float(diff @ np.linalg.solve(vv, diff))
    p = float(_sps.chi2.sf(stat, df))
    return LogrankResult(
        statistic=stat, df=int(df), p_value=p, groups=tuple(levs),
        observed=dict(zip(levs, observed.tolist())),
        expected=dict(zip(levs, expected.tolist())),
    )


def logrank_z(time: Any, event: Any, group: Any, levels: Sequence, level: Any) -> float:
    """Signed two-group log-rank statistic of ``level``: z = (O - E) / sqrt(V), as from R
    ``fit <- survdiff(Surv(time, event) ~ group)``: ``(fit$obs[2] - fit$exp[2]) / sqrt(fit$var[2, 2])``
    with ``level`` the second of ``levels``. With two groups chi2 = (O - E)^2 / V, so
    z = sign(O - E) sqrt(chi2): negative when ``level`` has fewer events than expected. Raises
    ``ValueError`` as :func:`logrank` (fewer than two groups, no events)."""
    levs = list(levels)
    if len(levs) != 2 or level not in levs:
        raise ValueError(f"logrank_z compares two groups, one of them {level!r}; got levels {levs}")
    res = logrank(time, event, group, levels=levs)
    diff = res.observed[level] - res.expected[level]
    return float(math.copysign(math.sqrt(max(res.statistic, 0.0)), diff)) if diff else 0.0


# ---------------------------------------------------------------------------------------
# landmark (fixed-time) comparison
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LandmarkResult:
    """Fixed-time comparison of two KM curves: z ``statistic``, two-sided ``p_value``,
    ``t``, and per group S(t) (``surv``, a dict keyed by group level)."""

    statistic: float
    p_value: float
    t: float
    groups: tuple
    surv: dict


def landmark_test(time: Any, event: Any, group: Any, t: float,
                  levels: Sequence | None = None) -> LandmarkResult:
    """Two-group comparison of S(t) on the complementary log-log scale (Klein et al. 2007).

    For each group, S = KM S(t) and v = Greenwood var(log S(t)) = sum d/(n(n-d)) over event
    times <= t (events exactly at t included, S right-continuous; beyond the last time the
    last value is carried, as R ``summary(fit, times = t, extend = TRUE)``). With
    c = log(-log S), var(c) = v / (log S)^2 and
    z = (c_1 - c_2) / sqrt(var(c_1) + var(c_2)), p = 2 (1 - Phi(|z|)).
    Group 1 is the first level in R's factor order (sorted) unless ``levels`` says
    otherwise. Raises ``ValueError`` unless there are exactly two groups, or if S(t) is
    0 or 1 in a group (the transform is undefined).
    """
    tt, e, g = clean_survival(time, event, np.asarray(group, dtype=object))
    levs = group_levels(g, levels)
    present = [lv for lv in levs if np.any(g == lv)]
    if len(levs) != 2 or len(present) != 2:
        raise ValueError(f"landmark_test needs exactly two groups with data; found {present!r}")
    cll, var = [], []
    surv = {}
    for lv in levs:
        km = kaplan_meier(tt[g == lv], e[g == lv])
        s = km.summary_at(t).surv
        v = km.log_variance_at(t)
        surv[lv] = s
        if not 0 < s < 1:
            raise ValueError(
                f"landmark_test undefined: S({t}) = {s} in group {lv!r} "
                "(log(-log S) needs 0 < S < 1)"
            )
        ls = math.log(s)
        cll.append(math.log(-ls))
        var.append(v / ls**2)
    z = (cll[0] - cll[1]) / math.sqrt(var[0] + var[1])
    p = float(2 * _sps.norm.sf(abs(z)))
    return LandmarkResult(statistic=float(z), p_value=p, t=float(t), groups=tuple(levs), surv=surv)


# ---------------------------------------------------------------------------------------
# Student's t
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TTestResult:
    """Student's two-sample t-test: ``statistic``, ``df``, ``p_value``; ``groups`` in the
    order used for the sign (mean of groups[0] minus mean of groups[1]); ``means``."""

    statistic: float
    df: float
    p_value: float
    groups: tuple
    means: dict


def compare_means(values: Any, group: Any, levels: Sequence | None = None) -> TTestResult:
    """Student's t-test with pooled variance, as R ``t.test(values ~ group, var.equal = TRUE)``.

    t = (mean_1 - mean_2) / (s_p sqrt(1/n_1 + 1/n_2)),
    s_p^2 = ((n_1 - 1) s_1^2 + (n_2 - 1) s_2^2) / (n_1 + n_2 - 2), df = n_1 + n_2 - 2.
    Group 1 is the first level in R's factor order (sorted) unless ``levels`` is given.
    Missing values are dropped. Raises ``ValueError`` unless two groups have data.
    """
    v = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="raise").astype(float)
    gs = pd.Series(np.asarray(group, dtype=object))
    keep = v.notna().to_numpy() & gs.notna().to_numpy()
    v, gs = v.to_numpy()[keep], gs.to_numpy()[keep]
    levs = group_levels(gs, levels)
    if len(levs) != 2 or any(np.sum(gs == lv) == 0 for lv in levs):
        raise ValueError(f"compare_means needs exactly two groups with data; found {sorted(map(str, set(gs)))}")
    a, b = v[gs == levs[0]], v[gs == levs[1]]
    if len(a) + len(b) < 3:
        raise ValueError("compare_means needs at least three observations")
    res = _sps.ttest_ind(a, b, equal_var=True)
    return TTestResult(
        statistic=float(res.statistic), df=float(len(a) + len(b) - 2),
        p_value=float(res.pvalue), groups=tuple(levs),
        means={levs[0]: float(a.mean()), levs[1]: float(b.mean())},
    )


# ---------------------------------------------------------------------------------------
# chi-square / Fisher
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProportionTestResult:
    """``test`` ('chi2' or 'fisher'), ``statistic`` (Pearson X^2; None for Fisher),
    ``df`` (None for Fisher), ``p_value``, ``table`` (the observed contingency table,
    values x groups) and ``expected`` (expected counts under independence)."""

    test: str
    statistic: float | None
    df: int | None
    p_value: float
    table: pd.DataFrame
    expected: pd.DataFrame


def contingency_table(values: Any, group: Any) -> pd.DataFrame:
    """Counts of values (rows) by group (columns), as R ``table(values, group)`` on the
    complete pairs, with unobserved levels dropped; rows and columns sorted."""
    v = pd.Series(np.asarray(values, dtype=object))
    gs = pd.Series(np.asarray(group, dtype=object))
    keep = v.notna() & gs.notna()
    tab = pd.crosstab(v[keep].to_numpy(), gs[keep].to_numpy())
    tab = tab.loc[tab.sum(axis=1) > 0, tab.sum(axis=0) > 0]
    try:
        tab = tab.sort_index(axis=0).sort_index(axis=1)
    except TypeError:
        pass
    return tab


def compare_proportions(values: Any, group: Any, min_expected: float = 5.0) -> ProportionTestResult:
    """Categorical comparison, as R ``chisq.test(table, correct = FALSE)`` or
    ``fisher.test(table)``.

    Table = values (rows) x group (columns), complete pairs, unobserved levels dropped.
    Expected E_ij = r_i c_j / N. If any E_ij < ``min_expected`` (5): Fisher's exact test
    (exact for any r x c, :func:`fisher_exact_rxc`); otherwise Pearson
    X^2 = sum (O - E)^2 / E with (r - 1)(c - 1) df, no continuity correction.
    Raises ``ValueError`` unless at least two values and two groups are observed.
    """
    tab = contingency_table(values, group)
    if tab.shape[0] < 2 or tab.shape[1] < 2:
        raise ValueError(
            f"compare_proportions needs >= 2 observed levels and >= 2 groups; table is "
            f"{tab.shape[0]} x {tab.shape[1]}"
        )
    obs = tab.to_numpy(dtype=float)
    expected = np.outer(obs.sum(axis=1), obs.sum(axis=0)) / obs.sum()
    exp_df = pd.DataFrame(expected, index=tab.index, columns=tab.columns)
    if (expected < min_expected).any():
        p = fisher_exact_rxc(tab.to_numpy(dtype=np.int64))
        return ProportionTestResult("fisher", None, None, p, tab, exp_df)
    stat, p, dof, _ = _sps.chi2_contingency(obs, correction=False)
    return ProportionTestResult("chi2", float(stat), int(dof), float(p), tab, exp_df)


def _batch_fills(caps: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``caps`` (m x r), every integer vector x with 0 <= x <= caps and
    sum x = total. Returns (parent row index, fills), grouped by parent in order."""
    caps = np.asarray(caps, dtype=np.int64)
    m, r = caps.shape
    room_after = np.zeros_like(caps)  # sum of the caps after position i
    if r > 1:
        room_after[:, :-1] = np.cumsum(caps[:, ::-1], axis=1)[:, ::-1][:, 1:]
    parent = np.arange(m)
    part = np.zeros((m, 0), dtype=np.int64)
    left = np.full(m, int(total), dtype=np.int64)
    for i in range(r):
        cap_i = caps[parent, i]
        if i == r - 1:
            ok = left <= cap_i
            return parent[ok], np.hstack([part[ok], left[ok][:, None]])
        lo = np.maximum(0, left - room_after[parent, i])
        hi = np.minimum(cap_i, left)
        k = np.maximum(hi - lo + 1, 0)
        rep = np.repeat(np.arange(len(left)), k)
        x = lo[rep] + (np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k))
        parent, part, left = parent[rep], np.hstack([part[rep], x[:, None]]), left[rep] - x
    return parent, part  # pragma: no cover (r >= 1 always returns above)


def _lgf(x: np.ndarray) -> float:
    return float(-_spspecial.gammaln(np.asarray(x, dtype=float) + 1).sum())


def _group_starts(sorted_ids: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])


def fisher_exact_rxc(table: Any, rel_err: float = 1e-7, chunk: int = 2_000_000) -> float:
    """Exact two-sided Fisher test p-value for an r x c table (R ``fisher.test(table)``).

    Conditional on the margins, P(table) = prod r_i! prod c_j! / (N! prod x_ij!); the
    p-value is the total probability of the tables with P <= P(observed) (1 + 1e-7)
    (R's relative tolerance). Exact, no Monte-Carlo: an enumeration organised as Mehta &
    Patel's network algorithm, vectorised with NumPy. Columns are filled one at a time; a
    node of stage j is the multiset of the remaining row sums (sorted), so equal partial
    tables merge there. Each node gets its exact longest and shortest remaining path
    (max / min of sum -log x! over its completions, by a backward pass over the graph) and
    the closed-form total of its completions, N'!/(prod r'! prod c'!). The forward pass
    carries, per node, the distinct past values sum -log x! with their multiplicities;
    a past value whose every completion is at or below the observed probability is counted
    at once, one with none is dropped, the rest go on to the next column.
    """
    tab = np.asarray(table, dtype=np.int64)
    if tab.ndim != 2 or (tab < 0).any():
        raise ValueError("table must be a 2-D array of non-negative counts")
    tab = tab[tab.sum(axis=1) > 0][:, tab.sum(axis=0) > 0]
    if tab.shape[0] < 2 or tab.shape[1] < 2:
        return 1.0
    if tab.shape[0] > tab.shape[1]:
        tab = tab.T  # rows = the smaller dimension: short column vectors, few nodes
    lg = _spspecial.gammaln
    rows = tab.sum(axis=1)
    cols = np.sort(tab.sum(axis=0))[::-1]  # columns are exchangeable; big ones first
    ncol = len(cols)
    big_n = int(rows.sum())
    const = float(lg(rows + 1.0).sum() + lg(cols + 1.0).sum() - lg(big_n + 1.0))
    thr = _lgf(tab) + math.log1p(rel_err)  # log P(table) = const + sum -log x!
    lg_cols_after = np.concatenate([np.cumsum(lg(cols[::-1] + 1.0))[::-1], [0.0]])

    base = int(rows.max()) + 1
    radix_ok = len(rows) * math.log2(base) < 62
    radix = base ** np.arange(len(rows) - 1, -1, -1, dtype=np.int64) if radix_ok else None
    # forward: the graph of nodes, stage by stage
    nodes = [np.sort(rows)[::-1][None, :]]
    edges = []  # per stage: (parent, child, value, start index per parent)
    for j in range(ncol - 1):
        parent, fills = _batch_fills(nodes[j], int(cols[j]))
        kids = np.sort(nodes[j][parent] - fills, axis=1)[:, ::-1]
        if radix_ok:  # one integer per node: a much faster unique than rows
            codes = kids @ radix
            _, first, inv = np.unique(codes, return_index=True, return_inverse=True)
            uniq = kids[first]
        else:
            uniq, inv = np.unique(kids, axis=0, return_inverse=True)
        starts = _group_starts(parent)
        edges.append((parent, inv.reshape(-1), -lg(fills + 1.0).sum(axis=1), starts))
        nodes.append(uniq)
    # backward: longest / shortest remaining path, log total of the completions
    hi = [None] * ncol
    lo = [None] * ncol
    ltot = [None] * ncol
    last = -lg(nodes[-1] + 1.0).sum(axis=1)
    hi[-1], lo[-1] = last, last
    for j in range(ncol - 1, -1, -1):
        nj = nodes[j]
        ltot[j] = lg(nj.sum(axis=1) + 1.0) - lg(nj + 1.0).sum(axis=1) - lg_cols_after[j]
        if j < ncol - 1:
            parent, child, val, starts = edges[j]
            hi[j] = np.maximum.reduceat(val + hi[j + 1][child], starts)
            lo[j] = np.minimum.reduceat(val + lo[j + 1][child], starts)

    p_total = 0.0
    node_id = np.zeros(1, dtype=np.int64)
    vals = np.zeros(1)
    cnts = np.ones(1)
    for j in range(ncol):
        done = vals + hi[j][node_id] <= thr
        if done.any():
            p_total += float(np.sum(cnts[done] * np.exp(vals[done] + ltot[j][node_id[done]] + const)))
        keep = ~done & (vals + lo[j][node_id] <= thr)
        if j == ncol - 1 or not keep.any():
            break
        node_id, vals, cnts = node_id[keep], vals[keep], cnts[keep]
        parent, child, val, starts = edges[j]
        # A = the best completion through an edge; a past value v with v + A <= thr has
        # every completion through that edge "in": count them all by one prefix sum.
        a_key = val + hi[j + 1][child]
        order = np.lexsort((a_key, parent))  # parents stay grouped; A ascending within
        child, val, a_key = child[order], val[order], a_key[order]
        w_log = val + ltot[j + 1][child]
        offset = np.maximum.reduceat(w_log, starts)  # per node (every node has an edge)
        n_in, w_in = _prefix_join(node_id, thr - vals, parent, a_key,
                                  np.exp(w_log - offset[parent]))
        p_total += float(np.sum(cnts * np.exp(vals + offset[node_id] + const) * w_in))
        if j == ncol - 2:
            break  # the last column is forced: past the prefix nothing is in
        # the node's remaining edges (A ascending): undecided, or out
        n_edges = np.diff(np.r_[starts, len(parent)])
        per = n_edges[node_id] - n_in
        pieces = []
        cuts = np.r_[0, np.flatnonzero(np.diff(np.cumsum(per) // chunk)) + 1, len(per)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            k = per[a:b]
            if k.sum() == 0:
                continue
            rep = np.repeat(np.arange(a, b), k)
            eidx = (starts[node_id[rep]] + n_in[rep]
                    + (np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)))
            nid = child[eidx]
            nv = vals[rep] + val[eidx]
            kp = nv + lo[j + 1][nid] <= thr
            pieces.append(_merge_past(nid[kp], nv[kp], cnts[rep][kp]))
        if not pieces:
            break
        node_id, vals, cnts = _merge_past(*(np.concatenate(x) for x in zip(*pieces)))
    return float(min(1.0, p_total))


def _prefix_join(q_node: np.ndarray, q_val: np.ndarray, e_node: np.ndarray,
                 e_key: np.ndarray, e_weight: np.ndarray) -> tuple:
    """For each query (node, value): how many of that node's edges have key <= value, and
    the sum of their weights. Edges come grouped by node with keys ascending in a node."""
    n_e = len(e_node)
    nodes_ = np.concatenate([e_node, q_node])
    keyv = np.concatenate([e_key, q_val])
    kind = np.concatenate([np.zeros(n_e, np.int8), np.ones(len(q_node), np.int8)])
    order = np.lexsort((kind, keyv, nodes_))  # edges first at equal keys: "<=" inclusive
    is_edge = order < n_e
    w_sorted = np.where(is_edge, np.concatenate([e_weight, np.zeros(len(q_node))])[order], 0.0)
    cw = np.r_[0.0, np.cumsum(w_sorted)]  # cw[i] = sum of the first i sorted entries
    cc = np.r_[0, np.cumsum(is_edge)]
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))
    # start of each node's block in sorted order = the smallest position of its entries
    m = int(nodes_.max()) + 1
    block = np.full(m, len(order), dtype=np.int64)
    np.minimum.at(block, nodes_, pos)
    q = pos[n_e:]
    b = block[q_node]
    return (cc[q + 1] - cc[b]).astype(np.int64), cw[q + 1] - cw[b]


def _merge_past(nid: np.ndarray, vals: np.ndarray, cnts: np.ndarray) -> tuple:
    """Merge entries with the same node and the same past value (to ~1e-9 on the log scale)."""
    if len(nid) == 0:
        return nid, vals, cnts
    keys = np.round(vals * 1e9)
    order = np.lexsort((keys, nid))
    nid, vals, cnts, keys = nid[order], vals[order], cnts[order], keys[order]
    new = np.r_[True, (nid[1:] != nid[:-1]) | (keys[1:] != keys[:-1])]
    st = np.flatnonzero(new)
    return nid[st], vals[st], np.add.reduceat(cnts, st)
