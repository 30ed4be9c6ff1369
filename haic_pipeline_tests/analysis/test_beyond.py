"""The "beyond the paper" tables (study_spec §5.5) on the demo warehouse: present in the
contract's shape with their provenance, their numbers equal to the statistics functions called
directly on the cohort (derived here again in SQL), the report section with its sentences, the
Love plot and IPTW figures; and away from the demo: a propensity model that separates, too few
patients, tau beyond follow-up, the NaN / inf check on a crafted table, and the time at
100,000 patients."""

from __future__ import annotations

import math
import re
import time

import duckdb
import numpy as np
import pandas as pd
import pytest

from haic_pipeline.analysis import BEYOND_FIGURES, BEYOND_TABLES, build_figures, build_report, render_figure
from haic_pipeline.analysis import tables as T
from haic_pipeline.analysis.beyond import beyond_tables, ph_rows
from haic_pipeline.analysis.checks import finite_values
from haic_pipeline.analysis.data import Provenance, cox_terms
from haic_pipeline.analysis.figures import figure_texts
from haic_pipeline.analysis.warehouse import write_tables
from haic_pipeline.stats import (
    balance_table,
    cox_regression,
    cox_zph,
    kaplan_meier,
    propensity_weights,
    rmst_compare,
    weight_summary,
)

from .conftest import identifiers
from .synth import analysis_frame
from .test_tables import COX_TERMS_SQL

SPEC_COLUMNS = {  # study_spec §5.5, in order (iptw_weights, iptw_km_curves: this layer's additions)
    "propensity_model": ["term", "coef", "se", "p_value", "n", "n_excluded_missing"],
    "balance": ["covariate", "share_first_line", "share_post_ate_beva", "smd_before", "smd_after",
                "balanced_after"],
    "iptw_km_summary": ["endpoint", "group", "weighting", "n", "ess", "events", "median_months", "median_lower",
                        "median_upper", "rate_12m", "rate_12m_lower", "rate_12m_upper"],
    "iptw_effects": ["endpoint", "weighting", "hr", "hr_lower", "hr_upper", "p_value", "robust_score",
                     "robust_score_p"],
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
    the weights (stabilized, and truncated by propensity_weights itself)."""
    con, _, _ = demo
    d = cohort_terms(con)
    covs = covariates(d)
    ps = propensity_weights(d, "group", covs)
    tr = propensity_weights(d, "group", covs, truncate=(0.01, 0.99))
    assert ps.ok and tr.ok, ps.reason
    d["w_stabilized"], d["w_truncated"] = ps.weights, tr.weights
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
    assert set(q(con, "SELECT DISTINCT weighting FROM analysis.iptw_km_summary").weighting) == {"stabilized",
                                                                                                 "truncated"}
    assert set(q(con, "SELECT DISTINCT weighting FROM analysis.iptw_effects").weighting) == {"stabilized",
                                                                                              "truncated"}
    assert set(q(con, "SELECT DISTINCT weighting FROM analysis.rmst").weighting) == {"none", "stabilized"}
    assert set(q(con, "SELECT DISTINCT tau_months FROM analysis.rmst").tau_months) == {12.0}


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
    for weighting, res in (("stabilized", ps), ("truncated", tr)):
        for _, s in res.summary.iterrows():
            row = weights.loc[(weighting, ("first_line", "post_ate_beva")[int(s.treatment)])]
            assert row.n == s.n
            for a, b in (("sum_weights", "sum"), ("weight_min", "min"), ("weight_max", "max"), ("ess", "ess")):
                assert row[a] == pytest.approx(s[b], rel=REL), (weighting, a)
    assert weights.loc[("truncated", "first_line"), "truncated_below"] == pytest.approx(tr.truncation[0], rel=REL)
    assert weights.loc[("truncated", "first_line"), "truncated_above"] == pytest.approx(tr.truncation[1], rel=REL)

    bal = q(con, "SELECT * FROM analysis.balance").set_index("covariate")
    expected = balance_table(d, "group", covs, "w_stabilized").set_index("covariate")
    truncated = balance_table(d, "group", covs, "w_truncated").set_index("covariate")
    assert list(bal.index) == covs
    for c in covs:
        assert bal.loc[c, "smd_before"] == pytest.approx(expected.loc[c, "smd_before"], rel=REL)
        assert bal.loc[c, "smd_after"] == pytest.approx(expected.loc[c, "smd_after"], rel=REL)
        assert bal.loc[c, "smd_after_truncated"] == pytest.approx(truncated.loc[c, "smd_after"], rel=REL)
        assert bal.loc[c, "share_first_line"] == pytest.approx(expected.loc[c, "share_control"], rel=REL)
        assert bal.loc[c, "share_post_ate_beva"] == pytest.approx(expected.loc[c, "share_treated"], rel=REL)
        assert bool(bal.loc[c, "balanced_after"]) == (abs(expected.loc[c, "smd_after"]) < 0.1)


def test_iptw_km_effects_rmst_and_ph_tests_equal_the_stats_called_directly(demo, direct):
    con, _, _ = demo
    d, covs, _, _ = direct
    km = q(con, "SELECT * FROM analysis.iptw_km_summary").set_index(["endpoint", "weighting", "group"])
    eff = q(con, "SELECT * FROM analysis.iptw_effects").set_index(["endpoint", "weighting"])
    rm = q(con, "SELECT * FROM analysis.rmst").set_index(["endpoint", "weighting"])
    for endpoint, (tcol, ecol) in ENDPOINTS.items():
        for weighting in ("stabilized", "truncated"):
            w = f"w_{weighting}"
            data = d[[tcol, ecol, "group", w]].dropna()
            for code, g in enumerate(("first_line", "post_ate_beva")):
                sub = data[data.group == code]
                fit = kaplan_meier(sub[tcol], sub[ecol], weights=sub[w])
                row = km.loc[(endpoint, weighting, g)]
                assert row.n == len(sub) and row.events == int(sub[ecol].sum())
                assert row.ess == pytest.approx(fit.ess, rel=REL)
                for a, b in (("median_months", fit.median), ("median_lower", fit.median_lower),
                             ("median_upper", fit.median_upper)):
                    assert (pd.isna(row[a]) and b is None) or row[a] == pytest.approx(b, rel=REL), (a, g)
                s12 = fit.survival_at(12.0)
                assert row.rate_12m == pytest.approx(s12.surv, rel=REL)
                assert row.rate_12m_lower == pytest.approx(s12.lower, rel=REL)
            cox = cox_regression(data, tcol, ecol, ["group"], weights=w, robust=True)
            r = eff.loc[(endpoint, weighting)]
            for c in ("hr", "hr_lower", "hr_upper", "p_value"):
                assert r[c] == pytest.approx(float(cox[c].iloc[0]), rel=REL), c
            assert r.robust_score == pytest.approx(cox.attrs["robust_score"], rel=REL)
            assert r.robust_score_p == pytest.approx(cox.attrs["robust_score_p"], rel=REL)
        for weighting in ("none", "stabilized"):
            cols = [tcol, ecol, "group"] + ([] if weighting == "none" else ["w_stabilized"])
            data = d[cols].dropna()
            res = rmst_compare(data[tcol], data[ecol], data["group"], 12.0, reference=0.0,
                               weights=None if weighting == "none" else data["w_stabilized"])
            r = rm.loc[(endpoint, weighting)]
            assert r.n == len(data) and not r.tau_truncated and pd.isna(r.note)
            for c in ("difference", "difference_lower", "difference_upper", "difference_p", "ratio",
                      "ratio_lower", "ratio_upper", "ratio_p"):
                assert r[c] == pytest.approx(getattr(res, c), rel=REL), c
            assert r.rmst_first_line == pytest.approx(res.groups[0.0].estimate, rel=REL)
            assert r.rmst_post_ate_beva_se == pytest.approx(res.groups[1.0].se, rel=REL)

    ph = q(con, "SELECT * FROM analysis.ph_tests")
    models = q(con, "SELECT * FROM analysis.cox_models")
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
    assert set(saved) == {"love", "iptw_km_os", "iptw_km_pfs"}
    for name, fig in saved.items():
        assert fig.png.is_file() and fig.svg.is_file() and ("love" in fig.png.name or "iptw" in fig.png.name)
        assert fig.width_px > 800 and fig.height_px > 500
    love = "\n".join(figure_texts(render_figure(con, "love")))
    assert "Love plot" in love and "Multiple tumours" in love and "data cutoff" in love
    assert "Before weighting" in love and "After IPTW (stabilized weights)" in love
    texts = figure_texts(render_figure(con, "iptw_km_os"))
    km = q(con, "SELECT * FROM analysis.iptw_km_summary WHERE endpoint = 'OS' AND weighting = 'stabilized'")
    for _, r in km.iterrows():
        label = {"first_line": "First-line HAIC", "post_ate_beva": "Post-ate-beva HAIC"}[r.group]
        assert any(t.startswith(f"{label} (n = {r.n}, ESS = {r.ess:.0f}): median ") for t in texts), texts
    hr = q(con, "SELECT hr FROM analysis.iptw_effects WHERE endpoint = 'OS' AND weighting = 'stabilized'").hr[0]
    assert any(t.startswith(f"IPTW HR {hr:.2f} (") for t in texts)
    assert "Overall survival by group, IPTW-adjusted" in texts


def test_report_has_the_beyond_section_with_its_sentences(demo, tmp_path):
    con, _, inbox = demo
    build_figures(con, tmp_path)
    build_report(con, tmp_path)
    md = (tmp_path / "study_report.md").read_text()
    html = (tmp_path / "study_report.html").read_text()
    for text in (md, html):
        for title in ("Beyond the paper", "Covariate balance before and after weighting",
                      "Hazard ratios, unadjusted and IPTW-adjusted",
                      "Medians and 12-month rates, unadjusted and IPTW-adjusted",
                      "Restricted mean survival time at 12 months", "Proportional-hazards tests"):
            assert title in text, title
    assert html.count('src="data:image/png;base64,') == 8 and "image/svg+xml" not in html  # 4 paper + 3 beyond + monitor
    assert all(f"figures/{n}.png" in md for n in BEYOND_FIGURES)
    section = md[md.index("## Beyond the paper"):]
    # one sentence per result, computed from the tables
    bal = q(con, "SELECT * FROM analysis.balance")
    before = int((bal.smd_before.abs() >= 0.1).sum())
    after = int((bal.smd_after.abs() >= 0.1).sum())
    assert f"Before weighting {before} of {len(bal)} covariates differ between the groups" in section
    assert (f"after weighting {after} still differ" in section if after else
            "after weighting every covariate is balanced (|SMD| < 0.1)" in section)
    eff = q(con, "SELECT * FROM analysis.iptw_effects WHERE weighting = 'stabilized'").set_index("endpoint")
    for endpoint, event in (("OS", "death"), ("PFS", "progression or death")):
        r = eff.loc[endpoint]
        word = "lower" if r.hr < 1 else "higher"
        assert (f"{endpoint}: after weighting, the hazard of {event} with post-ate-beva HAIC is "
                f"{abs(1 - r.hr) * 100:.0f}% {word} than with first-line HAIC (HR {r.hr:.2f}, 95% CI "
                f"{r.hr_lower:.2f} to {r.hr_upper:.2f}") in section
        # a refresh's p is nominal (study_spec §6): never "significant" here, whatever its value
        verdict = ("the nominal p is below 0.05, which on a nightly re-analysis is not a finding by itself"
                   if r.p_value < 0.05 else "the nominal p is not below 0.05")
        sentence = next(s for s in section.splitlines() if s.startswith(f"{endpoint}: after weighting"))
        assert verdict in sentence and "significan" not in sentence
    rm = q(con, "SELECT * FROM analysis.rmst WHERE weighting = 'stabilized'").set_index("endpoint")
    for endpoint, lived in (("OS", "lived"), ("PFS", "lived without progression")):
        r = rm.loc[endpoint]
        assert (f"{endpoint}: over the first 12 months, post-ate-beva patients {lived} on average "
                f"{abs(r.difference):.2f} months {'longer' if r.difference >= 0 else 'shorter'}") in section
    ph = q(con, "SELECT * FROM analysis.ph_tests")
    for endpoint in ENDPOINTS:
        group = ph[(ph.endpoint == endpoint) & (ph.term == "group")]
        sentence = next(s for s in section.splitlines()
                        if s.startswith(f"{endpoint}: ") and ("proportional hazards" in s or "constant" in s))
        assert ("is not constant over follow-up" in sentence) == bool((group.p_value < 0.05).any())
    for endpoint in ENDPOINTS:
        assert any(s.startswith(f"{endpoint}: weighted median ") for s in section.splitlines())
    # no identifier in the new section or its figures
    keys = {k for (k,) in con.execute("SELECT patient_key FROM staging.cohort").fetchall()}
    ids = identifiers(inbox)
    svgs = " ".join((tmp_path / "figures" / f"{n}.svg").read_text() for n in BEYOND_FIGURES)
    for text in (section, svgs):
        assert not (set(re.findall(r"[0-9a-f]{16}", text)) & keys)
        for kind in ("patient_id", "patient_name", "birth_date"):
            assert not [v for v in ids[kind] if len(v) >= 6 and v in text], kind


# ---------------------------------------------------------------------------------------
# away from the demo
# ---------------------------------------------------------------------------------------
def _beyond(frame):
    return beyond_tables(frame, T.cox_tables(frame).cox_models)


def _stored(tmp_path, res) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_tables(con, res.tables(), Provenance("20240801T020000Z", "2024-07-31"))
    return con


def test_separation_gives_rows_that_say_why_never_nan(tmp_path):
    f = analysis_frame(300, seed=4)
    # quasi-complete separation: tumours > 10 cm only among post_ate_beva patients
    f.loc[f.group == "first_line", "tumor_size_gt_10"] = False
    res = _beyond(f)
    assert res.propensity.status == "separation"
    con = _stored(tmp_path, res)
    assert finite_values(con, tuple(BEYOND_TABLES)) == {t: [] for t in BEYOND_TABLES}
    pm = q(con, "SELECT * FROM analysis.propensity_model")
    assert set(pm.status) == {"separation"} and pm.coef.isna().all() and pm.note.str.contains("separates").all()
    for table, numbers in (("iptw_km_summary", ["median_months", "rate_12m", "ess"]),
                           ("iptw_effects", ["hr", "p_value", "robust_score"]),
                           ("iptw_weights", ["sum_weights", "ess"])):
        t = q(con, f"SELECT * FROM analysis.{table}")
        assert len(t) and t[numbers].isna().all().all(), table
        assert t.note.str.contains("propensity model is not estimable").all() and t.note.str.contains(
            "separat").all(), table
    rm = q(con, "SELECT * FROM analysis.rmst").set_index("weighting")
    assert rm.loc["none", "difference"].notna().all()  # the unweighted RMST still stands
    assert rm.loc["stabilized", "difference"].isna().all() and rm.loc["stabilized", "note"].str.contains(
        "separat").all()
    bal = q(con, "SELECT * FROM analysis.balance")
    assert bal.smd_before.notna().all() and bal.smd_after.isna().all() and bal.note.str.contains("separat").all()
    assert q(con, "SELECT count(*) AS n FROM analysis.ph_tests WHERE p_value IS NOT NULL").n[0] > 0
    assert any("separation" in p for p in res.problems)


def test_too_few_patients_and_candidates_left_out_are_rows_with_reasons(tmp_path):
    f = analysis_frame(9, seed=2)
    f["portal_vein_invasion"] = False                     # no variation
    f.loc[f.index[:4], "afp_ge_400"] = None                # 33% missing
    f.loc[f.index[4], "sex"] = None                        # one patient left out for a missing covariate
    res = _beyond(f)
    assert res.propensity.status == "too_few"
    con = _stored(tmp_path, res)
    pm = q(con, "SELECT * FROM analysis.propensity_model")
    left = pm[pm.status == "left_out"].set_index("term").note
    assert "missing_over_20pct" in left["afp_ge_400"] and "no_variation" in left["portal_vein_invasion"]
    assert set(pm.n_excluded_missing) == {1}
    eff = q(con, "SELECT * FROM analysis.iptw_effects")
    assert eff.hr.isna().all() and eff.note.str.contains("too_few").all()
    assert finite_values(con, tuple(BEYOND_TABLES)) == {t: [] for t in BEYOND_TABLES}


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
    assert found["iptw_effects"] == ["hr: 2 NaN, 0 infinite"]
    assert found["iptw_weights"] == ["weight_max: 0 NaN, 2 infinite"]
    assert found["rmst"] == ["difference: 0 NaN, 4 infinite"]
    assert not found["balance"] and not found["ph_tests"]
    con.execute("DROP TABLE analysis.ph_tests")
    assert finite_values(con, ("ph_tests",)) == {"ph_tests": ["table missing"]}


def test_beyond_tables_at_100k_patients_within_budget():
    f = analysis_frame(100_000, seed=11)
    models = T.cox_tables(f).cox_models
    t0 = time.perf_counter()
    res = beyond_tables(f, models)
    elapsed = time.perf_counter() - t0
    assert res.propensity.ok and math.isfinite(float(res.iptw_effects.hr.iloc[0]))
    assert np.isfinite(res.balance.smd_after.to_numpy(float)).all()
    assert elapsed < 30, f"{elapsed:.1f} s"  # a few seconds on 2 cores; loose, as the machine is shared
