"""The "beyond the paper" tables (study_spec §5.5, §5.7) on the demo warehouse: present in the
contract's shape with their provenance, their numbers equal to the statistics functions called
directly on the cohort (derived here again in SQL), the report section with its sentences and
its wording, the Love plot, propensity and IPTW figures; and away from the demo: covariates
aliased or seen in one group only left out and named, a propensity model that still separates,
a treatment constant among the modelled patients, no event in one group, tau beyond follow-up,
the NaN / inf check on a crafted table, and the time at 100,000 patients."""

from __future__ import annotations

import math
import re

import duckdb
import numpy as np
import pandas as pd
import pytest

from haic_pipeline.analysis import BEYOND_FIGURES, BEYOND_TABLES, build_figures, build_report, render_figure
from haic_pipeline.analysis import tables as T
from haic_pipeline.analysis.beyond import beyond_tables, overlap_balance_problems, ph_rows
from haic_pipeline.analysis.checks import finite_values, overlap_balance
from haic_pipeline.analysis.data import Provenance, cox_terms
from haic_pipeline.analysis.figures import figure_texts, propensity_figure
from haic_pipeline.analysis.report import beyond_sections, render_markdown
from haic_pipeline.analysis.warehouse import write_tables
from haic_pipeline.stats import (
    balance_table,
    cox_regression,
    cox_zph,
    e_value,
    kaplan_meier,
    propensity_weights,
    rmst_compare,
    weight_summary,
    weighted_logrank,
)

from .conftest import identifiers
from .synth import analysis_frame
from .test_tables import COX_TERMS_SQL

SPEC_COLUMNS = {  # study_spec §5.5 and §5.7, in order (iptw_weights, iptw_km_curves, propensity_histogram:
    # this layer's additions)
    "propensity_model": ["term", "coef", "se", "p_value", "n", "n_excluded_missing"],
    "propensity_overlap": ["group", "n", "ps_min", "ps_q1", "ps_median", "ps_q3", "ps_max", "n_outside_other_range"],
    "propensity_histogram": ["group", "bin_lower", "bin_upper", "n"],
    "balance": ["covariate", "share_first_line", "share_post_ate_beva", "smd_before", "smd_after",
                "balanced_after"],
    "iptw_km_summary": ["endpoint", "group", "weighting", "n", "ess", "events", "median_months", "median_lower",
                        "median_upper", "rate_12m", "rate_12m_lower", "rate_12m_upper"],
    "iptw_effects": ["endpoint", "weighting", "hr", "hr_lower", "hr_upper", "p_value", "robust_score",
                     "robust_score_p", "e_value", "e_value_ci"],
    "rmst": ["endpoint", "weighting", "tau_months", "rmst_first_line", "rmst_first_line_se", "rmst_post_ate_beva",
             "rmst_post_ate_beva_se", "difference", "difference_lower", "difference_upper", "difference_p",
             "ratio", "ratio_lower", "ratio_upper", "ratio_p"],
    "ph_tests": ["endpoint", "model", "term", "chisq", "df", "p_value"],
    "iptw_weights": ["group", "weighting", "n", "sum_weights", "weight_min", "weight_max", "ess"],
    "iptw_km_curves": ["endpoint", "group", "weighting", "time_months", "n_at_risk", "n_events", "n_censored"],
}
CANDIDATES = ["age_ge_65", "sex_male", "etiology_hbv", "ecog_0", "child_pugh_a", "bclc_c_d", "afp_ge_400",
              "multiple_tumors", "tumor_size_gt_10", "portal_vein_invasion", "extrahepatic_metastasis"]
ENDPOINTS = {"OS": ("os_months", "os_event"), "PFS": ("pfs_months", "pfs_event")}
REL = 1e-9


def q(con, sql, *params) -> pd.DataFrame:
    return con.execute(sql, list(params)).df()


def cohort_terms(con) -> pd.DataFrame:
    """The §3 terms derived again in SQL from staging (not with analysis.data.cox_terms); a
    negative time is missing, as the analysis layer reads it."""
    return q(con, f"""
        SELECT CASE WHEN e.os_months >= 0 THEN e.os_months END AS os_months, e.os_event::DOUBLE AS os_event,
               CASE WHEN e.pfs_months >= 0 THEN e.pfs_months END AS pfs_months, e.pfs_event::DOUBLE AS pfs_event,
               {COX_TERMS_SQL}
        FROM staging.cohort AS c JOIN staging.endpoints AS e USING (patient_key)
        WHERE c.included ORDER BY c.patient_key""")


def covariates(d: pd.DataFrame) -> list[str]:
    return [c for c in CANDIDATES if d[c].isna().mean() <= 0.2 and d[c].dropna().nunique() > 1]


@pytest.fixture(scope="module")
def direct(demo):
    """The statistics called directly on the demo cohort: the terms, the covariates, the fit and
    the weights (stabilized, truncated by propensity_weights itself, overlap), ``modelled``
    marking the patients of the propensity model."""
    con, _, _ = demo
    d = cohort_terms(con)
    covs = covariates(d)
    ps = propensity_weights(d, "group", covs)
    tr = propensity_weights(d, "group", covs, truncate=(0.01, 0.99))
    ov = propensity_weights(d, "group", covs, estimand="ATO")
    assert ps.ok and tr.ok and ov.ok, ps.reason
    d["w_stabilized"], d["w_truncated"], d["w_overlap"] = ps.weights, tr.weights, ov.weights
    d["w_none"] = np.where(d[["group", *covs]].notna().all(axis=1), 1.0, np.nan)
    d["ps"] = ps.ps
    return d, covs, ps, tr


def test_every_beyond_table_has_the_spec_columns_rows_and_provenance(demo):
    con, _, _ = demo
    assert set(SPEC_COLUMNS) == set(BEYOND_TABLES)
    newest, cutoff = con.execute(
        "SELECT max(extract_id), max(data_cutoff) FROM ops.drops WHERE status = 'loaded'").fetchall()[0]
    for table, spec in SPEC_COLUMNS.items():
        cols = [c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analysis' "
            "AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()]
        assert cols[:len(spec)] == spec, table
        assert cols[-2:] == ["data_cutoff", "extract_id"], table
        n, bad = con.execute(f"SELECT count(*), count(*) FILTER (WHERE extract_id IS DISTINCT FROM ? OR "
                             f"data_cutoff IS DISTINCT FROM ?) FROM analysis.{table}", [newest, cutoff]).fetchall()[0]
        assert n > 0 and bad == 0, table
    assert finite_values(con, tuple(BEYOND_TABLES)) == {t: [] for t in BEYOND_TABLES}
    weightings = {"none", "stabilized", "truncated", "overlap"}
    assert set(q(con, "SELECT DISTINCT weighting FROM analysis.iptw_km_summary").weighting) == weightings
    assert set(q(con, "SELECT DISTINCT weighting FROM analysis.iptw_km_curves").weighting) == weightings
    assert set(q(con, "SELECT DISTINCT weighting FROM analysis.iptw_weights").weighting) == weightings
    assert set(q(con, "SELECT DISTINCT weighting FROM analysis.iptw_effects").weighting) == {*weightings,
                                                                                              "multivariable"}
    assert set(q(con, "SELECT DISTINCT weighting FROM analysis.rmst").weighting) == {"none", "stabilized", "overlap"}
    assert set(q(con, "SELECT DISTINCT tau_months FROM analysis.rmst").tau_months) == {12.0}
    assert set(q(con, "SELECT DISTINCT model FROM analysis.ph_tests").model) == {
        "univariable", "multivariable", "iptw_stabilized", "iptw_overlap"}
    est = q(con, "SELECT DISTINCT weighting, estimand FROM analysis.iptw_effects").set_index("weighting").estimand
    assert est["stabilized"] == est["truncated"] == "ATE" and est["overlap"] == "ATO"


def test_propensity_model_weights_and_balance_equal_the_stats_called_directly(demo, direct):
    con, _, _ = demo
    d, covs, ps, tr = direct
    pm = q(con, "SELECT * FROM analysis.propensity_model WHERE status = 'ok'").set_index("term")
    assert list(pm.index) == ["intercept", *covs]
    for _, r in ps.table.iterrows():
        for c in ("coef", "se", "p_value"):
            assert pm.loc[r.term, c] == pytest.approx(r[c], rel=REL), (r.term, c)
    assert set(pm.n) == {ps.n} and set(pm.n_excluded_missing) == {ps.n_excluded_missing}
    assert ps.n_excluded_missing == int(d[covs].isna().any(axis=1).sum())  # patients left out are counted

    weights = q(con, "SELECT * FROM analysis.iptw_weights").set_index(["weighting", "group"])
    for weighting in ("none", "stabilized", "truncated", "overlap"):
        for code, g in enumerate(("first_line", "post_ate_beva")):
            s = weight_summary(d["group"], d[f"w_{weighting}"]).set_index("treatment").loc[code]
            row = weights.loc[(weighting, g)]
            assert row.n == s.n
            for a, b in (("sum_weights", "sum"), ("weight_min", "min"), ("weight_max", "max"), ("ess", "ess")):
                assert row[a] == pytest.approx(s[b], rel=REL), (weighting, a)
    assert weights.loc[("truncated", "first_line"), "truncated_below"] == pytest.approx(tr.truncation[0], rel=REL)
    assert weights.loc[("truncated", "first_line"), "truncated_above"] == pytest.approx(tr.truncation[1], rel=REL)
    # how many weights truncation clipped: the counts of propensity_weights(truncate=...) itself
    for g in ("first_line", "post_ate_beva"):
        row = weights.loc[("truncated", g)]
        assert (row.clipped_low, row.clipped_high) == tr.clipped
        assert ("clipped no weight" in row.note) == (sum(tr.clipped) == 0)
    assert weights.loc[("overlap", "first_line"), "estimand"] == "ATO"

    bal = q(con, "SELECT * FROM analysis.balance").set_index("covariate")
    expected = balance_table(d, "group", covs, "w_stabilized").set_index("covariate")
    truncated = balance_table(d, "group", covs, "w_truncated").set_index("covariate")
    overlap = balance_table(d, "group", covs, "w_overlap").set_index("covariate")
    assert list(bal.index) == covs
    for c in covs:
        assert bal.loc[c, "smd_before"] == pytest.approx(expected.loc[c, "smd_before"], rel=REL)
        assert bal.loc[c, "smd_after"] == pytest.approx(expected.loc[c, "smd_after"], rel=REL)
        assert bal.loc[c, "smd_after_truncated"] == pytest.approx(truncated.loc[c, "smd_after"], rel=REL)
        assert bal.loc[c, "smd_after_overlap"] == pytest.approx(overlap.loc[c, "smd_after"], abs=1e-12)
        assert abs(bal.loc[c, "smd_after_overlap"]) < 1e-6 and bal.loc[c, "in_propensity_model"]  # exact balance
        assert bal.loc[c, "share_first_line"] == pytest.approx(expected.loc[c, "share_control"], rel=REL)
        assert bal.loc[c, "share_post_ate_beva"] == pytest.approx(expected.loc[c, "share_treated"], rel=REL)
        assert bool(bal.loc[c, "balanced_after"]) == (abs(expected.loc[c, "smd_after"]) < 0.1)


def test_propensity_overlap_equals_duckdb_quantiles_of_the_fitted_scores(demo, direct):
    """Positivity: each group's quartiles of the fitted ps are DuckDB's quantile_cont (R type 7),
    the range and the patients outside the other group's range counted in SQL; the histogram
    holds every modelled patient once."""
    con, _, _ = demo
    d = direct[0]
    scores = d.loc[d.ps.notna(), ["group", "ps"]]
    want = duckdb.sql("""
        WITH s AS (SELECT CASE WHEN "group" = 1 THEN 'post_ate_beva' ELSE 'first_line' END AS g, ps FROM scores)
        SELECT g, count(*) AS n, min(ps) AS ps_min, quantile_cont(ps, 0.25) AS ps_q1, median(ps) AS ps_median,
               quantile_cont(ps, 0.75) AS ps_q3, max(ps) AS ps_max,
               count(*) FILTER (WHERE ps < (SELECT min(ps) FROM s o WHERE o.g <> s.g)
                                   OR ps > (SELECT max(ps) FROM s o WHERE o.g <> s.g)) AS n_outside_other_range
        FROM s GROUP BY g ORDER BY g""").df().set_index("g")
    got = q(con, "SELECT * FROM analysis.propensity_overlap").set_index("group")
    assert list(got.index) == ["first_line", "post_ate_beva"]
    for g in got.index:
        assert got.loc[g, "n"] == want.loc[g, "n"] and got.loc[g, "n_outside_other_range"] == \
            want.loc[g, "n_outside_other_range"]
        for c in ("ps_min", "ps_q1", "ps_median", "ps_q3", "ps_max"):
            assert got.loc[g, c] == pytest.approx(want.loc[g, c], rel=REL), (g, c)
    hist = q(con, "SELECT \"group\", sum(n) AS n, count(*) AS bins, min(bin_lower) AS lo, max(bin_upper) AS hi "
                  "FROM analysis.propensity_histogram GROUP BY ALL ORDER BY 1").set_index("group")
    assert (hist.n == got.n).all() and set(hist.bins) == {20} and set(hist.lo) == {0.0} and set(hist.hi) == {1.0}


def _rare(data, ecol) -> bool:
    return bool(data[ecol].mean() < 0.15)


def test_iptw_km_effects_rmst_and_ph_tests_equal_the_stats_called_directly(demo, direct):
    con, _, _ = demo
    d, covs, _, _ = direct
    km = q(con, "SELECT * FROM analysis.iptw_km_summary").set_index(["endpoint", "weighting", "group"])
    eff = q(con, "SELECT * FROM analysis.iptw_effects").set_index(["endpoint", "weighting"])
    rm = q(con, "SELECT * FROM analysis.rmst").set_index(["endpoint", "weighting"])
    ph = q(con, "SELECT * FROM analysis.ph_tests")
    models = q(con, "SELECT * FROM analysis.cox_models")
    for endpoint, (tcol, ecol) in ENDPOINTS.items():
        for weighting in ("none", "stabilized", "truncated", "overlap"):
            w = f"w_{weighting}"
            weighted = weighting != "none"
            data = d[[tcol, ecol, "group", w]].dropna()  # the modelled patients, also for "none"
            for code, g in enumerate(("first_line", "post_ate_beva")):
                sub = data[data.group == code]
                fit = kaplan_meier(sub[tcol], sub[ecol], weights=sub[w] if weighted else None)
                row = km.loc[(endpoint, weighting, g)]
                assert row.n == len(sub) and row.events == int(sub[ecol].sum())
                if weighted:
                    assert row.ess == pytest.approx(fit.ess, rel=REL)
                for a, b in (("median_months", fit.median), ("median_lower", fit.median_lower),
                             ("median_upper", fit.median_upper)):
                    assert (pd.isna(row[a]) and b is None) or row[a] == pytest.approx(b, rel=REL), (a, g)
                s12 = fit.survival_at(12.0)
                assert row.rate_12m == pytest.approx(s12.surv, rel=REL)
                assert row.rate_12m_lower == pytest.approx(s12.lower, rel=REL)
            cox = cox_regression(data, tcol, ecol, ["group"], weights=w if weighted else None, robust=weighted)
            r = eff.loc[(endpoint, weighting)]
            assert r.n == len(data) and r.events == int(data[ecol].sum())
            for c in ("hr", "hr_lower", "hr_upper", "p_value"):
                assert r[c] == pytest.approx(float(cox[c].iloc[0]), rel=REL), c
            if weighted:
                assert r.robust_score == pytest.approx(cox.attrs["robust_score"], rel=REL)
                assert r.robust_score_p == pytest.approx(cox.attrs["robust_score_p"], rel=REL)
                ev = e_value(float(cox.hr.iloc[0]), float(cox.hr_lower.iloc[0]), float(cox.hr_upper.iloc[0]),
                             rare=_rare(data, ecol))
                assert r.e_value == pytest.approx(ev.e_value, rel=REL) and r.e_value_ci == pytest.approx(
                    ev.e_value_ci, rel=REL) and r.outcome_rare == _rare(data, ecol)
            else:
                assert pd.isna(r.robust_score) and pd.isna(r.e_value)
        # the multivariable HR of group with its E-value (its own patients and events)
        mv = models[(models.endpoint == endpoint) & (models.model == "multivariable") & (models.term == "group")].iloc[0]
        r = eff.loc[(endpoint, "multivariable")]
        assert (r.hr, r.hr_lower, r.hr_upper, r.n, r.events) == (mv.hr, mv.hr_lower, mv.hr_upper, mv.n, mv.events)
        ev = e_value(mv.hr, mv.hr_lower, mv.hr_upper, rare=bool(mv.events / mv.n < 0.15))
        assert r.e_value == pytest.approx(ev.e_value, rel=REL) and r.e_value_ci == pytest.approx(ev.e_value_ci, rel=REL)
        for weighting in ("none", "stabilized", "overlap"):
            w = f"w_{weighting}"
            data = d[[tcol, ecol, "group", w]].dropna()
            res = rmst_compare(data[tcol], data[ecol], data["group"], 12.0, reference=0.0,
                               weights=None if weighting == "none" else data[w])
            r = rm.loc[(endpoint, weighting)]
            assert r.n == len(data) and not r.tau_truncated and pd.isna(r.note)
            for c in ("difference", "difference_lower", "difference_upper", "difference_p", "ratio",
                      "ratio_lower", "ratio_upper", "ratio_p"):
                assert r[c] == pytest.approx(getattr(res, c), rel=REL), c
            assert r.rmst_first_line == pytest.approx(res.groups[0.0].estimate, rel=REL)
            assert r.rmst_post_ate_beva_se == pytest.approx(res.groups[1.0].se, rel=REL)
        # the weighted Cox fits' proportional hazards: cox.zph with the weights
        for weighting, model in (("stabilized", "iptw_stabilized"), ("overlap", "iptw_overlap")):
            w = f"w_{weighting}"
            data = d[[tcol, ecol, "group", w]].dropna()
            want = cox_zph(data, tcol, ecol, ["group"], weights=w).set_index("term")
            got = ph[(ph.endpoint == endpoint) & (ph.model == model)].set_index("term")
            assert list(got.index) == ["group", "GLOBAL"] and set(got.n) == {len(data)}
            for t in want.index:
                assert got.loc[t, "chisq"] == pytest.approx(want.loc[t, "chisq"], rel=1e-7)
                assert got.loc[t, "p_value"] == pytest.approx(want.loc[t, "p_value"], rel=1e-7)

    for endpoint, (tcol, ecol) in ENDPOINTS.items():
        multi = list(models[(models.endpoint == endpoint) & (models.model == "multivariable")].term)
        uni = list(models[(models.endpoint == endpoint) & (models.model == "univariable")].term)
        got = ph[(ph.endpoint == endpoint) & (ph.model == "multivariable")].set_index("term")
        want = cox_zph(d, tcol, ecol, multi).set_index("term")
        assert list(got.index) == [*multi, "GLOBAL"]
        for t in want.index:
            assert got.loc[t, "chisq"] == pytest.approx(want.loc[t, "chisq"], rel=REL)
            assert got.loc[t, "p_value"] == pytest.approx(want.loc[t, "p_value"], rel=REL)
            assert got.loc[t, "df"] == want.loc[t, "df"]
        one = ph[(ph.endpoint == endpoint) & (ph.model == "univariable")]
        assert sorted(set(one.model_terms)) == sorted(uni) and len(one) == 2 * len(uni)  # term + GLOBAL each
        ecog = one[(one.model_terms == "ecog_0") & (one.term == "ecog_0")].iloc[0]
        assert ecog.p_value == pytest.approx(float(cox_zph(d, tcol, ecol, ["ecog_0"]).p_value.iloc[0]), rel=REL)


def test_beyond_figures_show_the_tables(demo, tmp_path):
    con, _, _ = demo
    saved = build_figures(con, tmp_path, BEYOND_FIGURES)
    assert set(saved) == {"love", "propensity_overlap", "iptw_km_os", "iptw_km_pfs"}
    for name, fig in saved.items():
        assert fig.png.is_file() and fig.svg.is_file()
        assert any(k in fig.png.name for k in ("love", "iptw", "propensity"))
        assert fig.width_px > 800 and fig.height_px > 500
    love = "\n".join(figure_texts(render_figure(con, "love")))
    assert "Love plot" in love and "Multiple tumours" in love and "data cutoff" in love
    assert "Before weighting" in love and "After IPTW (stabilized weights)" in love and "After overlap weights" in love
    ps = "\n".join(figure_texts(render_figure(con, "propensity_overlap")))
    ov = q(con, "SELECT * FROM analysis.propensity_overlap").set_index("group")
    assert "Propensity scores by group (positivity)" in ps and "data cutoff" in ps
    for g, label in (("first_line", "First-line HAIC"), ("post_ate_beva", "Post-ate-beva HAIC")):
        r = ov.loc[g]
        assert (f"{label}: n = {r.n}, ps {r.ps_min:.3f} to {r.ps_max:.3f} (median {r.ps_median:.3f}); "
                f"{r.n_outside_other_range} outside the other group's range.") in ps
    texts = figure_texts(render_figure(con, "iptw_km_os"))
    km = q(con, "SELECT * FROM analysis.iptw_km_summary WHERE endpoint = 'OS' AND weighting = 'stabilized'")
    for _, r in km.iterrows():
        label = {"first_line": "First-line HAIC", "post_ate_beva": "Post-ate-beva HAIC"}[r.group]
        assert any(t.startswith(f"{label} (n = {r.n}, ESS = {r.ess:.0f}): median ") for t in texts), texts
    eff = q(con, "SELECT * FROM analysis.iptw_effects WHERE endpoint = 'OS'").set_index("weighting")
    box = next(t for t in texts if t.startswith(f"IPTW HR {eff.hr['stabilized']:.2f} ("))
    assert "nominal p" in box and f"Overlap-weighted HR {eff.hr['overlap']:.2f} (" in box
    assert "Overall survival by group, IPTW-adjusted" in texts


def _section(md: str) -> str:
    return md[md.index("## Beyond the paper"):md.index("## How the estimates moved") if "## How the estimates moved"
              in md else len(md)]


def test_report_has_the_beyond_section_with_its_sentences(demo, tmp_path):
    con, _, inbox = demo
    build_figures(con, tmp_path)
    build_report(con, tmp_path)
    md = (tmp_path / "study_report.md").read_text()
    html = (tmp_path / "study_report.html").read_text()
    for text in (md, html):
        for title in ("Beyond the paper", "Positivity: the propensity scores of the two groups",
                      "Covariate balance before and after weighting", "Hazard ratios, unadjusted and weighted",
                      "Medians and 12-month rates, unweighted and weighted (modelled patients)",
                      "Restricted mean survival time at 12 months", "Proportional-hazards tests"):
            assert title in text, title
    assert html.count('src="data:image/png;base64,') == 9 and "image/svg+xml" not in html  # 4 paper + 4 beyond + monitor
    assert all(f"figures/{n}.png" in md for n in BEYOND_FIGURES)
    section = _section(md)
    # one population: the modelled patients, and how many included patients the §3 results have beyond them
    n_model = int(q(con, "SELECT any_value(n) AS n FROM analysis.propensity_model WHERE status = 'ok'").n[0])
    n_incl = int(q(con, "SELECT count(*) AS n FROM staging.cohort WHERE included").n[0])
    assert (f"Every comparison in this section is on the {n_model} modelled patients" in section and
            f"use all {n_incl} included patients, {n_incl - n_model} more than the modelled ones" in section)
    # one sentence per result, computed from the tables
    bal = q(con, "SELECT * FROM analysis.balance")
    before = int((bal.smd_before.abs() >= 0.1).sum())
    after = int((bal.smd_after.abs() >= 0.1).sum())
    assert f"Before weighting {before} of {len(bal)} covariates differ between the groups" in section
    assert (f"after the stabilized weights {after} still differ" in section if after else
            "after the stabilized weights every one is balanced (|SMD| < 0.1)" in section)
    assert f"the overlap weights balance the {len(bal)} modelled covariates exactly" in section
    eff = q(con, "SELECT * FROM analysis.iptw_effects").set_index(["endpoint", "weighting"])
    for endpoint, event in (("OS", "death"), ("PFS", "progression or death")):
        r, o, u = (eff.loc[(endpoint, w)] for w in ("stabilized", "overlap", "none"))
        word = "lower" if r.hr < 1 else "higher"
        sentence = next(s for s in section.splitlines() if s.startswith(f"{endpoint}: with stabilized weights"))
        assert (f"{endpoint}: with stabilized weights (ATE), the hazard of {event} with post-ate-beva HAIC is "
                f"{abs(1 - r.hr) * 100:.0f}% {word} than with first-line HAIC (HR {r.hr:.2f}, 95% CI "
                f"{r.hr_lower:.2f} to {r.hr_upper:.2f}, nominal p") in sentence
        assert f"with overlap weights (ATO) HR {o.hr:.2f}, 95% CI {o.hr_lower:.2f} to {o.hr_upper:.2f}" in sentence
        assert f"unweighted on the same {u.n} patients HR {u.hr:.2f}" in sentence
        assert f"E-value {r.e_value:.2f}: an unmeasured confounder" in sentence
        assert "significant" not in sentence
    rm = q(con, "SELECT * FROM analysis.rmst WHERE weighting = 'stabilized'").set_index("endpoint")
    for endpoint, lived in (("OS", "lived"), ("PFS", "lived without progression")):
        r = rm.loc[endpoint]
        assert (f"{endpoint}: over the first 12 months, post-ate-beva patients {lived} on average "
                f"{abs(r.difference):.2f} months {'longer' if r.difference >= 0 else 'shorter'}") in section
    ph = q(con, "SELECT * FROM analysis.ph_tests")
    for endpoint in ENDPOINTS:
        group = ph[(ph.endpoint == endpoint) & (ph.term == "group")]
        assert set(group.model) >= {"univariable", "iptw_stabilized", "iptw_overlap"}
        sentence = next(s for s in section.splitlines()
                        if s.startswith(f"{endpoint}: ") and "proportional hazards" in s)
        assert ("there is evidence that the hazard ratio" in sentence) == bool((group.p_value < 0.05).any())
        if not (group.p_value < 0.05).any():
            events = int(group[group.model == "univariable"].events.iloc[0])
            assert f"with {events} events this test has little power" in sentence
    for endpoint in ENDPOINTS:
        assert any(s.startswith(f"{endpoint}: weighted (ATE) median ") for s in section.splitlines())
    # truncation: a conclusion only when it clipped weights
    clipped = q(con, "SELECT clipped_low + clipped_high AS k FROM analysis.iptw_weights WHERE weighting = 'truncated'").k
    assert ("clipped no weight, so the truncated rows repeat the stabilized ones and no conclusion is drawn"
            in section) == (clipped.iloc[0] == 0)
    assert ("the clipped weights" in section) == (clipped.iloc[0] > 0)
    # no identifier in the new section or its figures
    keys = {k for (k,) in con.execute("SELECT patient_key FROM staging.cohort").fetchall()}
    ids = identifiers(inbox)
    svgs = " ".join((tmp_path / "figures" / f"{n}.svg").read_text() for n in BEYOND_FIGURES)
    for text in (section, svgs):
        assert not (set(re.findall(r"[0-9a-f]{16}", text)) & keys)
        for kind in ("patient_id", "patient_name", "birth_date"):
            assert not [v for v in ids[kind] if len(v) >= 6 and v in text], kind


def assert_beyond_wording(section: str) -> None:
    """study_spec §5.6's wording of the "Beyond the paper" section: balance is never "not
    confounded"; no p-value is "statistically significant" (a refresh's p-values are nominal);
    an E-value, an overlap-weighted result and the estimands (ATE, ATO) are there; the
    assumptions are stated once; no claim about extreme weights unless truncation clipped some."""
    low = section.lower()
    assert "not confounded" not in low and "unconfounded" not in low
    assert "statistically significant" not in low and "nominal p" in low
    assert re.search(r"E-value \d+\.\d\d", section)
    assert re.search(r"with overlap weights \(ATO\) HR \d", section)
    assert "(ATE)" in section and "(ATO)" in section
    assert section.count("What the weighted comparisons assume") == 1
    for words in ("no unmeasured confounding", "positivity", "consistency", "treated as known in the variances"):
        assert section.count(words) >= 1, words
    assert "p-value in this section is nominal" in section
    if "clipped no weight" in section:
        assert "do not drive the result" not in section and "move the result" not in section


def test_report_beyond_section_wording(demo, tmp_path):
    con, _, _ = demo
    build_report(con, tmp_path)
    assert_beyond_wording(_section((tmp_path / "study_report.md").read_text()))


# ---------------------------------------------------------------------------------------
# away from the demo
# ---------------------------------------------------------------------------------------
def _beyond(frame):
    return beyond_tables(frame, T.cox_tables(frame).cox_models)


def _stored(tmp_path, res) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_tables(con, res.tables(), Provenance("20240801T020000Z", "2024-07-31"))
    return con


def _beyond_markdown(con) -> str:
    return render_markdown(beyond_sections(con), "test")


def test_aliased_and_single_group_covariates_are_left_out_and_named_and_the_section_still_runs(tmp_path):
    """R's glm drops an aliased covariate and carries on: bclc_c_d equal to portal vein invasion
    (a linear combination), multiple tumours constant among the modelled patients (it varies only
    among patients left out for a missing AFP), and tumours > 10 cm seen in the post-ate-beva
    group only (it alone separates the groups) are left out, each named with its reason; every
    weighted analysis is computed on the rest, and the report says what was left out."""
    f = analysis_frame(300, seed=4)
    f["bclc_stage"] = np.where(f.portal_vein_invasion.astype(bool), "C", "B")
    f.loc[f.index[:15], "afp_ge_400"] = None                                  # 5% missing: left out
    f["multiple_tumors"] = True
    f.loc[f.index[:15], "multiple_tumors"] = False                           # varies only among them
    f.loc[f.group == "first_line", "tumor_size_gt_10"] = False               # one group only
    res = _beyond(f)
    assert res.propensity.ok, res.propensity.reason
    con = _stored(tmp_path, res)
    assert finite_values(con, tuple(BEYOND_TABLES)) == {t: [] for t in BEYOND_TABLES}
    pm = q(con, "SELECT * FROM analysis.propensity_model")
    left = pm[pm.status == "left_out"].set_index("term").note
    assert set(left.index) == {"portal_vein_invasion", "multiple_tumors", "tumor_size_gt_10"}, left
    assert "linear_combination" in left["portal_vein_invasion"] and "bclc_c_d" in left["portal_vein_invasion"]
    assert "constant" in left["multiple_tumors"]
    assert "single_group_level" in left["tumor_size_gt_10"] and "only among" in left["tumor_size_gt_10"]
    ok = pm[pm.status == "ok"]
    assert ok.coef.notna().all() and not (set(ok.term) & set(left.index)) and set(ok.n) == {285}
    for table, numbers in (("iptw_effects", ["hr", "robust_score", "e_value"]), ("iptw_km_summary", ["ess"]),
                           ("rmst", ["difference"]), ("propensity_overlap", ["ps_median"])):
        t = q(con, f"SELECT * FROM analysis.{table}")
        if "weighting" in t:
            t = t[t.weighting.isin(["stabilized", "overlap"])]
        assert len(t) and t[numbers].notna().all().all(), table
    bal = q(con, "SELECT * FROM analysis.balance").set_index("covariate")
    modelled = bal[bal.in_propensity_model.astype(bool)]
    assert set(bal.index) - set(modelled.index) == set(left.index)
    assert (modelled.smd_after_overlap.abs() < 1e-6).all()  # exact balance on every modelled covariate
    assert bal.loc["tumor_size_gt_10", "note"].startswith("not in the propensity model: single_group_level")
    assert not [p for p in res.problems if "overlap weights leave" in p or "separat" in p]
    section = _beyond_markdown(con)
    assert "Left out of the propensity model: " in section
    for term in left.index:
        assert f"({term}): " in section
    assert_beyond_wording(section)


def test_joint_separation_gives_rows_that_say_why_never_nan(tmp_path):
    """Two covariates that together, not alone, predict treatment for some patients (each level
    of each seen in both groups): the fit still separates, so the weighted analyses are rows
    with a note; the unweighted rows of the modelled patients still stand."""
    f = analysis_frame(300, seed=4)
    x1, x2 = f.afp_ge_400.astype(bool), f.multiple_tumors.astype(bool)
    treated = f.group == "post_ate_beva"
    f.loc[treated & ~x1 & x2, "multiple_tumors"] = False   # treated: never (0, 1)
    f.loc[~treated & x1 & ~x2, "multiple_tumors"] = True   # control: never (1, 0)
    res = _beyond(f)
    assert res.propensity.status == "separation" and not res.weighting.left_out
    con = _stored(tmp_path, res)
    assert finite_values(con, tuple(BEYOND_TABLES)) == {t: [] for t in BEYOND_TABLES}
    pm = q(con, "SELECT * FROM analysis.propensity_model")
    assert set(pm.status) == {"separation"} and pm.coef.isna().all() and pm.note.str.contains("separates").all()
    for table, numbers in (("iptw_km_summary", ["median_months", "rate_12m", "ess"]),
                           ("iptw_effects", ["hr", "p_value", "robust_score"]),
                           ("iptw_weights", ["sum_weights", "ess"]),
                           ("propensity_overlap", ["ps_min", "ps_median"])):
        t = q(con, f"SELECT * FROM analysis.{table}")
        if "weighting" in t:
            t = t[t.weighting.isin(["stabilized", "truncated", "overlap"])]
        assert len(t) and t[numbers].isna().all().all(), table
        assert t.note.str.contains("propensity model is not estimable").all() and t.note.str.contains(
            "separat").all(), table
    rm = q(con, "SELECT * FROM analysis.rmst").set_index("weighting")
    assert rm.loc["none", "difference"].notna().all()  # the unweighted RMST still stands
    assert rm.loc[["stabilized", "overlap"], "difference"].isna().all()
    eff = q(con, "SELECT * FROM analysis.iptw_effects").set_index("weighting")
    assert eff.loc["none", "hr"].notna().all()  # so does the unweighted Cox of the same patients
    bal = q(con, "SELECT * FROM analysis.balance")
    assert bal.smd_before.notna().all() and bal.smd_after.isna().all() and bal.smd_after_overlap.isna().all()
    assert q(con, "SELECT count(*) AS n FROM analysis.ph_tests WHERE p_value IS NOT NULL").n[0] > 0
    assert any("separation" in p for p in res.problems)
    assert "The propensity model could not be estimated (separation" in _beyond_markdown(con)
    fig = propensity_figure(*(q(con, f"SELECT * FROM analysis.{t}") for t in (
        "propensity_histogram", "propensity_overlap", "propensity_model")), Provenance("20240801T020000Z", "2024-07-31"))
    texts = " ".join(figure_texts(fig))
    assert "Not drawn: not computed: no weights, the propensity model is not estimable (separation" in texts


def test_treatment_constant_among_modelled_and_candidates_left_out_are_rows_with_reasons(tmp_path):
    f = analysis_frame(20, seed=2)
    f["group"] = ["post_ate_beva"] * 3 + ["first_line"] * 17
    f.loc[f.index[:3], "ecog"] = None                      # every post-ate-beva patient misses a covariate
    f["portal_vein_invasion"] = False                     # no variation
    f.loc[f.index[3:8], "afp_ge_400"] = None               # 25% missing
    res = _beyond(f)
    assert res.propensity.status == "no_variation"
    con = _stored(tmp_path, res)
    pm = q(con, "SELECT * FROM analysis.propensity_model")
    left = pm[pm.status == "left_out"].set_index("term").note
    assert "missing_over_20pct" in left["afp_ge_400"] and "no_variation" in left["portal_vein_invasion"]
    assert set(pm.n_excluded_missing) == {3} and set(pm.n) == {17}
    eff = q(con, "SELECT * FROM analysis.iptw_effects")
    weighted = eff[eff.weighting.isin(["stabilized", "truncated", "overlap"])]
    assert weighted.hr.isna().all() and weighted.note.str.contains("no_variation").all()
    assert finite_values(con, tuple(BEYOND_TABLES)) == {t: [] for t in BEYOND_TABLES}


def test_no_event_in_one_group_reports_the_robust_score_test_with_the_hr_null(tmp_path):
    """The weighted Cox estimate diverges when one group has no event; the robust score test is
    taken at beta = 0 and needs no fit, so it is reported (equal to stats.weighted_logrank), with
    the HR NULL and a note, and the report says so."""
    f = analysis_frame(300, seed=3)
    f.loc[f.group == "post_ate_beva", "os_event"] = 0.0
    res = _beyond(f)
    con = _stored(tmp_path, res)
    assert finite_values(con, tuple(BEYOND_TABLES)) == {t: [] for t in BEYOND_TABLES}
    eff = q(con, "SELECT * FROM analysis.iptw_effects WHERE endpoint = 'OS'").set_index("weighting")
    terms = cox_terms(f)
    for weighting in ("stabilized", "truncated", "overlap"):
        r = eff.loc[weighting]
        assert pd.isna(r.hr) and pd.isna(r.hr_lower) and pd.isna(r.p_value) and pd.isna(r.e_value)
        assert "HR not computed" in r.note and "robust score test is taken at beta = 0" in r.note
        w = res.weighting.weights[weighting]
        keep = w.notna() & terms.os_months.notna()
        want = weighted_logrank(terms.os_months[keep], terms.os_event[keep], terms.group[keep], w[keep])
        assert r.robust_score == pytest.approx(want.statistic, rel=REL)
        assert r.robust_score_p == pytest.approx(want.p_value, rel=REL) and r.robust_score_p < 0.05
    pfs = q(con, "SELECT * FROM analysis.iptw_effects WHERE endpoint = 'PFS' AND weighting = 'overlap'")
    assert pfs.hr.notna().all()  # the other endpoint is unaffected
    zph = q(con, "SELECT * FROM analysis.ph_tests WHERE endpoint = 'OS' AND model LIKE 'iptw_%'")
    assert len(zph) == 4 and zph.p_value.isna().all() and zph.note.str.startswith("not computed").all()
    section = _beyond_markdown(con)
    sentence = next(s for s in section.splitlines() if s.startswith("OS: the IPTW-adjusted hazard ratio is not computed"))
    assert "the robust score test, which needs no fitted hazard ratio, compares the weighted curves: nominal p" \
        in sentence


def test_overlap_weights_that_do_not_balance_a_modelled_covariate_are_a_problem(tmp_path):
    """Overlap weights balance every modelled covariate exactly; an |SMD| above 1e-6 on one is
    a defect, named in the run's problems and failing the (warning) asset check's query on the
    stored table; left-out covariates are not held to it."""
    res = _beyond(analysis_frame(300, seed=3))
    assert overlap_balance_problems(res.balance) == []
    con = _stored(tmp_path, res)
    passed, details = overlap_balance(con)
    assert passed and details["covariates_checked"] == 11 and details["largest_abs_smd"] < 1e-12
    bad = res.balance.copy()
    bad.loc[bad.covariate == "ecog_0", "smd_after_overlap"] = 2e-6
    bad.loc[bad.covariate == "sex_male", ["smd_after_overlap", "in_propensity_model"]] = [0.3, False]
    problems = overlap_balance_problems(bad)
    assert len(problems) == 1 and "overlap weights leave ecog_0 unbalanced (SMD 2e-06" in problems[0]
    con.execute("UPDATE analysis.balance SET smd_after_overlap = 2e-6 WHERE covariate = 'ecog_0'")
    con.execute("UPDATE analysis.balance SET smd_after_overlap = 0.3, in_propensity_model = false "
                "WHERE covariate = 'sex_male'")
    passed, details = overlap_balance(con)
    assert not passed and details["unbalanced"] == ["ecog_0: SMD 2e-06"] and details["covariates_checked"] == 10


def test_ph_tests_take_the_stored_estimates_and_refit_only_without_them():
    """ph_rows gives cox_zph each model's log(hr) from cox_models (no second fit): the same
    numbers as fitting the model again; a model without a usable hr is fitted; an hr that
    is not the model's estimate is a row with a note, not a wrong test."""
    f = analysis_frame(2000, seed=5)
    terms, models = cox_terms(f), T.cox_tables(f).cox_models
    got = ph_rows(terms, models)
    refit = ph_rows(terms, models.assign(hr=np.nan))  # no estimates: every model fitted
    pd.testing.assert_frame_equal(got.drop(columns=["chisq", "p_value"]), refit.drop(columns=["chisq", "p_value"]))
    for c in ("chisq", "p_value"):
        np.testing.assert_allclose(got[c].to_numpy(float), refit[c].to_numpy(float), rtol=1e-12, atol=0)
    bad = models.copy()
    bad.loc[(bad.endpoint == "OS") & (bad.model == "univariable") & (bad.term == "group"), "hr"] = 0.2
    rows = ph_rows(terms, bad)
    wrong = rows[(rows.endpoint == "OS") & (rows.model_terms == "group")]
    assert wrong.chisq.isna().all() and wrong.note.str.contains("not the estimate of this model").all()
    assert rows.drop(wrong.index).note.isna().all()


def test_tau_beyond_follow_up_is_lowered_and_said():
    f = analysis_frame(300, seed=6)
    for c in ("os_months", "pfs_months"):
        f[c] = f[c].clip(upper=9.0)
    res = _beyond(f)
    rm = res.rmst.set_index(["endpoint", "weighting"])
    for key, r in rm.iterrows():
        assert r.tau_truncated and r.tau_months == pytest.approx(9.0) and r.tau_requested == 12.0, key
        assert "RMST restricted to 9" in r.note
    assert res.iptw_km_summary.rate_12m.isna().all()
    assert res.iptw_km_summary.note.str.contains("followed to 12 months").all()


def test_the_nan_check_fails_on_a_crafted_table(tmp_path):
    res = _beyond(analysis_frame(200, seed=8))
    con = _stored(tmp_path, res)
    assert finite_values(con, tuple(BEYOND_TABLES)) == {t: [] for t in BEYOND_TABLES}
    con.execute("UPDATE analysis.iptw_effects SET hr = 'NaN'::DOUBLE WHERE endpoint = 'OS'")
    con.execute("UPDATE analysis.iptw_weights SET weight_max = 'inf'::DOUBLE WHERE \"group\" = 'first_line'")
    con.execute("UPDATE analysis.rmst SET difference = '-inf'::DOUBLE")
    found = finite_values(con, tuple(BEYOND_TABLES))
    assert found["iptw_effects"] == ["hr: 5 NaN, 0 infinite"]  # none, 3 weightings, multivariable
    assert found["iptw_weights"] == ["weight_max: 0 NaN, 4 infinite"]
    assert found["rmst"] == ["difference: 0 NaN, 6 infinite"]
    con.execute("UPDATE analysis.propensity_overlap SET ps_q1 = 'NaN'::DOUBLE")
    assert finite_values(con, ("propensity_overlap",)) == {"propensity_overlap": ["ps_q1: 2 NaN, 0 infinite"]}
    assert not found["balance"] and not found["ph_tests"]
    con.execute("DROP TABLE analysis.ph_tests")
    assert finite_values(con, ("ph_tests",)) == {"ph_tests": ["table missing"]}


def test_beyond_tables_at_100k_patients():
    """The whole section computes at 100,000 patients (its seconds: benchmarks/bench_beyond.py)."""
    f = analysis_frame(100_000, seed=11)
    models = T.cox_tables(f).cox_models
    res = beyond_tables(f, models)
    assert res.propensity.ok and math.isfinite(float(res.iptw_effects.hr.iloc[0]))
    assert np.isfinite(res.balance.smd_after.to_numpy(float)).all()
