"""analysis.* on the demo data: filled, in the contract's shape, and consistent with
staging.cohort / staging.endpoints (numbers recomputed here independently with plain pandas,
SQL, SciPy and lifelines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test
from scipy import stats as sps

from haic_pipeline.analysis import TABLES

SPEC_COLUMNS = {  # study_spec §4, in order
    "baseline_characteristics": ["variable", "level", "first_line", "post_ate_beva", "overall", "test", "p_value"],
    "km_summary": ["endpoint", "group", "n", "events", "median_months", "median_lower", "median_upper",
                   "rate_12m", "rate_12m_lower", "rate_12m_upper"],
    "km_curves": ["endpoint", "group", "time_months", "n_at_risk", "n_events", "n_censored", "survival",
                  "lower", "upper"],
    "survival_tests": ["endpoint", "test", "statistic", "df", "p_value"],
    "follow_up": ["group", "median_months", "lower", "upper"],
    "response_summary": ["group", "n", "cr", "pr", "sd", "pd", "ne", "orr", "dcr"],
    "response_tests": ["measure", "test", "statistic", "p_value"],
    "cox_models": ["endpoint", "model", "term", "n", "events", "hr", "hr_lower", "hr_upper", "p_value"],
    "cox_excluded": ["endpoint", "term", "reason"],
    "refresh_history": ["extract_id", "data_cutoff", "endpoint", "group", "n", "events", "median_months",
                        "rate_12m"],
}

#: the §3 Cox terms derived again in SQL from staging.cohort `c` (not with analysis.data.cox_terms),
#: for the tests that recompute the analysis independently
COX_TERMS_SQL = """(c."group" = 'post_ate_beva')::DOUBLE AS "group",
               (c.age >= 65)::DOUBLE AS age_ge_65, (c.sex = 'M')::DOUBLE AS sex_male,
               (c.etiology = 'HBV')::DOUBLE AS etiology_hbv, (c.ecog = 0)::DOUBLE AS ecog_0,
               (c.child_pugh_class = 'A')::DOUBLE AS child_pugh_a,
               (c.bclc_stage IN ('C', 'D'))::DOUBLE AS bclc_c_d, c.afp_ge_400::DOUBLE AS afp_ge_400,
               c.multiple_tumors::DOUBLE AS multiple_tumors, c.tumor_size_gt_10::DOUBLE AS tumor_size_gt_10,
               c.portal_vein_invasion::DOUBLE AS portal_vein_invasion,
               c.extrahepatic_metastasis::DOUBLE AS extrahepatic_metastasis"""


def q(con, sql, *params) -> pd.DataFrame:
    return con.execute(sql, list(params)).df()


def endpoints(con) -> pd.DataFrame:
    return q(con, "SELECT * FROM staging.endpoints")


def test_every_table_has_the_contract_columns_and_rows(demo):
    con, _, _ = demo
    assert set(SPEC_COLUMNS) == set(TABLES)
    for table, spec in SPEC_COLUMNS.items():
        cols = [c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analysis' "
            "AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()]
        assert cols[:len(spec)] == spec, table
        if table != "refresh_history":
            assert cols[-2:] == ["data_cutoff", "extract_id"], table
        n = con.execute(f"SELECT count(*) FROM analysis.{table}").fetchall()[0][0]
        if table == "cox_excluded":
            continue  # nothing is left out on the demo data (tested in test_edge_cases)
        assert n > 0, f"analysis.{table} is empty"


def test_provenance_is_the_newest_drop_everywhere(demo):
    con, _, _ = demo
    newest, cutoff = con.execute(
        "SELECT max(extract_id), max(data_cutoff) FROM ops.drops WHERE status = 'loaded'").fetchall()[0]
    for table in TABLES:
        rows = con.execute(f"SELECT DISTINCT extract_id, data_cutoff FROM analysis.{table}").fetchall()
        if table == "cox_excluded" and not rows:
            continue
        assert rows == [(newest, cutoff)], table


def test_no_nan_and_codes_as_specified(demo):
    con, _, _ = demo
    for table, cols in TABLES.items():
        for c, t in cols:
            if t == "DOUBLE":
                assert con.execute(f'SELECT count(*) FROM analysis.{table} WHERE isnan("{c}")').fetchall()[0][0] == 0
    assert set(q(con, "SELECT DISTINCT endpoint FROM analysis.km_summary")["endpoint"]) == {"OS", "PFS"}
    assert set(q(con, 'SELECT DISTINCT "group" FROM analysis.km_summary')["group"]) == {
        "overall", "first_line", "post_ate_beva"}
    assert sorted(q(con, "SELECT test FROM analysis.survival_tests WHERE endpoint = 'OS'")["test"]) == [
        "logrank", "rate_12m"]
    assert set(q(con, "SELECT DISTINCT model FROM analysis.cox_models")["model"]) == {"univariable", "multivariable"}
    assert set(q(con, "SELECT measure FROM analysis.response_tests")["measure"]) == {"ORR", "DCR"}
    assert set(q(con, "SELECT test FROM analysis.response_tests")["test"]) <= {"chi2", "fisher"}


def test_event_counts_and_medians_match_an_independent_km(demo):
    con, _, _ = demo
    e = endpoints(con)
    summary = q(con, "SELECT * FROM analysis.km_summary")
    for endpoint, (tcol, ecol) in {"OS": ("os_months", "os_event"), "PFS": ("pfs_months", "pfs_event")}.items():
        for group in ("overall", "first_line", "post_ate_beva"):
            sub = e if group == "overall" else e[e["group"] == group]
            row = summary[(summary.endpoint == endpoint) & (summary.group == group)].iloc[0]
            assert row.n == len(sub) and row.events == int(sub[ecol].sum())
            kmf = KaplanMeierFitter().fit(sub[tcol], sub[ecol])
            sf = kmf.survival_function_.iloc[:, 0]
            # R's median: the first time S(t) < 0.5 (no exact-0.5 plateau on these data)
            assert not np.isclose(sf, 0.5).any()
            below = sf[sf < 0.5]
            expected = float(below.index[0]) if len(below) else None
            if expected is None:
                assert pd.isna(row.median_months)
            else:
                assert row.median_months == pytest.approx(expected, abs=1e-9)
            s12 = float(kmf.survival_function_at_times(12.0).iloc[0])
            assert row.rate_12m == pytest.approx(s12, rel=1e-9)


def test_curve_steps_match_lifelines(demo):
    con, _, _ = demo
    e = endpoints(con)
    curve = q(con, "SELECT * FROM analysis.km_curves WHERE endpoint = 'PFS' AND \"group\" = 'first_line' "
                   "ORDER BY time_months")
    sub = e[e["group"] == "first_line"]
    kmf = KaplanMeierFitter().fit(sub["pfs_months"], sub["pfs_event"])
    table = kmf.event_table.drop(index=0.0, errors="ignore")
    assert np.allclose(curve["time_months"], table.index.to_numpy())
    assert list(curve["n_at_risk"]) == list(table["at_risk"].astype(int))
    assert list(curve["n_events"]) == list(table["observed"].astype(int))
    assert list(curve["n_censored"]) == list(table["censored"].astype(int))
    assert np.allclose(curve["survival"], kmf.survival_function_at_times(curve["time_months"]).to_numpy())
    assert (curve["lower"].dropna() <= curve["survival"][curve["lower"].notna()] + 1e-12).all()
    assert (curve["upper"].dropna() <= 1.0).all()


def test_logrank_matches_lifelines(demo):
    con, _, _ = demo
    e = endpoints(con)
    tests = q(con, "SELECT * FROM analysis.survival_tests WHERE test = 'logrank'").set_index("endpoint")
    for endpoint, (tcol, ecol) in {"OS": ("os_months", "os_event"), "PFS": ("pfs_months", "pfs_event")}.items():
        a, b = e[e["group"] == "first_line"], e[e["group"] == "post_ate_beva"]
        res = logrank_test(a[tcol], b[tcol], a[ecol], b[ecol])
        assert tests.loc[endpoint, "p_value"] == pytest.approx(res.p_value, rel=1e-8)
        assert tests.loc[endpoint, "df"] == 1


def test_response_summary_and_orr_test_recomputed(demo):
    con, _, _ = demo
    rs = q(con, "SELECT * FROM analysis.response_summary").set_index("group")
    counts = q(con, """SELECT "group", count(*) AS n,
                              count(*) FILTER (WHERE best_response IN ('CR', 'PR')) AS responders,
                              count(*) FILTER (WHERE best_response IN ('CR', 'PR', 'SD')) AS controlled
                       FROM staging.endpoints GROUP BY ALL""").set_index("group")
    for g in ("first_line", "post_ate_beva"):
        assert rs.loc[g, "n"] == counts.loc[g, "n"]
        assert rs.loc[g, "orr"] == pytest.approx(counts.loc[g, "responders"] / counts.loc[g, "n"])
        assert rs.loc[g, "dcr"] == pytest.approx(counts.loc[g, "controlled"] / counts.loc[g, "n"])
    assert rs.loc["overall", "n"] == counts["n"].sum()
    assert rs.loc["overall", ["cr", "pr", "sd", "pd", "ne"]].sum() == counts["n"].sum()
    table = np.array([[counts.loc[g, "responders"], counts.loc[g, "n"] - counts.loc[g, "responders"]]
                      for g in ("first_line", "post_ate_beva")])
    orr = q(con, "SELECT * FROM analysis.response_tests WHERE measure = 'ORR'").iloc[0]
    if orr.test == "chi2":
        chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
        assert orr.p_value == pytest.approx(p, rel=1e-9) and orr.statistic == pytest.approx(chi2, rel=1e-9)
    else:
        assert orr.p_value == pytest.approx(sps.fisher_exact(table).pvalue, rel=1e-6)


def test_table1_age_and_multiple_tumours_recomputed(demo):
    con, _, _ = demo
    c = q(con, "SELECT * FROM staging.cohort WHERE included")
    t1 = q(con, "SELECT * FROM analysis.baseline_characteristics")
    age = t1[t1.variable == "age"].iloc[0]
    a = c.loc[c.group == "first_line", "age"].dropna()
    b = c.loc[c.group == "post_ate_beva", "age"].dropna()
    assert age.p_value == pytest.approx(sps.ttest_ind(a, b, equal_var=True).pvalue, rel=1e-9)
    assert age.first_line == f"{a.mean():.2f} \u00b1 {a.std():.2f}"
    mt = t1[(t1.variable == "multiple_tumors") & (t1.level == "yes")].iloc[0]
    n_yes = int(c.loc[c.group == "post_ate_beva", "multiple_tumors"].fillna(False).astype(bool).sum())
    n_known = int(c.loc[c.group == "post_ate_beva", "multiple_tumors"].notna().sum())
    assert mt.post_ate_beva == f"{n_yes} ({100 * n_yes / n_known:.1f})"
    n_row = t1[t1.variable == "n"].iloc[0]
    assert int(n_row.overall) == len(c)


def test_cox_multivariable_matches_lifelines_with_terms_derived_in_sql(demo):
    """The terms are derived here again in SQL (not with analysis.data.cox_terms) and the
    multivariable model is refitted with lifelines (Efron, tight convergence)."""
    con, _, _ = demo
    d = q(con, f"""
        SELECT e.os_months, e.os_event, e.pfs_months, e.pfs_event,
               {COX_TERMS_SQL}
        FROM staging.endpoints AS e JOIN staging.cohort AS c USING (patient_key)""")
    models = q(con, "SELECT * FROM analysis.cox_models")
    for endpoint, (tcol, ecol) in {"OS": ("os_months", "os_event"), "PFS": ("pfs_months", "pfs_event")}.items():
        uni = models[(models.endpoint == endpoint) & (models.model == "univariable")]
        multi = models[(models.endpoint == endpoint) & (models.model == "multivariable")]
        # the selection rule: group + every other candidate with univariable p < 0.1
        expected_terms = ["group"] + [t for t, p in zip(uni.term, uni.p_value) if t != "group" and p < 0.1]
        assert list(multi.term) == expected_terms
        data = d[[tcol, ecol, *expected_terms]].dropna()
        assert set(multi.n) == {len(data)} and set(multi.events) == {int(data[ecol].sum())}
        cph = CoxPHFitter().fit(data, tcol, ecol, fit_options={"precision": 1e-12, "max_steps": 200})
        for _, r in multi.iterrows():
            assert r.hr == pytest.approx(float(np.exp(cph.params_[r.term])), rel=1e-5)
            assert r.p_value == pytest.approx(float(cph.summary.loc[r.term, "p"]), rel=1e-4)
        # one univariable row too, e.g. ECOG 0 on its own complete cases
        ecog = uni[uni.term == "ecog_0"].iloc[0]
        one = d[[tcol, ecol, "ecog_0"]].dropna()
        assert ecog.n == len(one)
        hr = float(np.exp(CoxPHFitter().fit(one, tcol, ecol, fit_options={"precision": 1e-12}).params_["ecog_0"]))
        assert ecog.hr == pytest.approx(hr, rel=1e-5)


def test_follow_up_is_the_reverse_km_median(demo):
    con, _, _ = demo
    e = endpoints(con)
    fu = q(con, "SELECT * FROM analysis.follow_up").set_index("group")
    kmf = KaplanMeierFitter().fit(e["os_months"], 1 - e["os_event"])
    sf = kmf.survival_function_.iloc[:, 0]
    assert fu.loc["overall", "median_months"] == pytest.approx(float(sf[sf < 0.5].index[0]))
    assert fu.loc["overall", "lower"] <= fu.loc["overall", "median_months"] <= fu.loc["overall", "upper"]


def test_refresh_history_holds_one_snapshot_of_the_headline_figures(demo):
    con, _, _ = demo
    hist = q(con, "SELECT * FROM analysis.refresh_history")
    summary = q(con, "SELECT * FROM analysis.km_summary")
    assert len(hist) == 6 and hist.extract_id.nunique() == 1
    merged = hist.merge(summary, on=["endpoint", "group"], suffixes=("", "_s"))
    assert (merged.n == merged.n_s).all() and (merged.events == merged.events_s).all()
    assert np.allclose(merged.median_months, merged.median_months_s, equal_nan=True)
