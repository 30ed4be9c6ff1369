"""Edge cases of the analysis layer on synthetic frames and small warehouses: candidates left
out, models that cannot be fitted (recorded, never NaN), tests that cannot be done, an empty
cohort, refresh_history semantics, the input guards, and the speed at 100,000 patients."""

from __future__ import annotations


import duckdb
import numpy as np
import pandas as pd
import pytest

from haic_pipeline.analysis import AnalysisInputError, build_analysis, load_study_data
from haic_pipeline.analysis import tables as T
from haic_pipeline.analysis.data import COX_TERMS, Provenance, cox_terms
from haic_pipeline.analysis.warehouse import append_history, write_tables

from .synth import analysis_frame


def test_cox_terms_derivation_keeps_missing_missing():
    f = analysis_frame(50)
    f.loc[0, ["age", "ecog", "sex", "bclc_stage"]] = [65.0, 0.0, "F", "D"]
    f.loc[1, ["age", "ecog", "child_pugh_class", "afp_ge_400"]] = [np.nan, np.nan, None, None]
    t = cox_terms(f)
    assert list(t.columns[4:]) == list(COX_TERMS)
    assert t.loc[0, ["age_ge_65", "ecog_0", "sex_male", "bclc_c_d"]].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert t.loc[1, ["age_ge_65", "ecog_0", "child_pugh_a", "afp_ge_400"]].isna().all()
    assert set(t["group"].unique()) == {0.0, 1.0}
    assert ((t["group"] == 1.0) == (f["group"] == "post_ate_beva")).all()


def test_candidates_left_out_are_listed_with_the_spec_reasons():
    f = analysis_frame(300, seed=3)
    f.loc[f.index[:100], "afp_ge_400"] = None           # 33% missing
    f["portal_vein_invasion"] = False                    # no variation
    res = T.cox_tables(f)
    ex = res.cox_excluded
    for endpoint in ("OS", "PFS"):
        e = ex[ex.endpoint == endpoint].set_index("term")["reason"].to_dict()
        assert e == {"afp_ge_400": "missing_over_20pct", "portal_vein_invasion": "no_variation"}
    assert not res.cox_models.term.isin(["afp_ge_400", "portal_vein_invasion"]).any()
    assert np.isfinite(res.cox_models[["hr", "hr_lower", "hr_upper", "p_value"]].to_numpy(float)).all()


def test_a_multivariable_model_that_cannot_be_fitted_is_recorded_not_nan():
    f = analysis_frame(400, seed=5)
    # multiple_tumors = 1 - ecog_0: both predictive (univariable p < 0.1), jointly collinear
    f["multiple_tumors"] = (f["ecog"] != 0).astype(object)
    res = T.cox_tables(f)
    ex = res.cox_excluded
    failed = ex[ex.reason == "multivariable_not_estimable"]
    assert {"OS"} <= set(failed.endpoint)
    assert {"group", "ecog_0", "multiple_tumors"} <= set(failed[failed.endpoint == "OS"].term)
    assert "collinear" in failed.detail.iloc[0] or "linearly dependent" in failed.detail.iloc[0]
    os_models = res.cox_models[res.cox_models.endpoint == "OS"]
    assert set(os_models.model) == {"univariable"} and len(os_models) == len(COX_TERMS)
    assert any("multivariable" in p for p in res.problems)


def test_no_events_gives_notes_and_not_estimable_rows():
    f = analysis_frame(60, seed=7)
    f["pfs_event"] = 0.0
    surv = T.survival_tables(f)
    pfs_tests = surv.survival_tests[surv.survival_tests.endpoint == "PFS"]
    assert pfs_tests.p_value.isna().all() and pfs_tests.note.str.startswith("not computed").all()
    pfs = surv.km_summary[surv.km_summary.endpoint == "PFS"]
    assert (pfs.events == 0).all() and pfs.median_months.isna().all()
    cox = T.cox_tables(f)
    pfs_ex = cox.cox_excluded[cox.cox_excluded.endpoint == "PFS"]
    assert set(pfs_ex.term) == set(COX_TERMS) and set(pfs_ex.reason) == {"not_estimable"}
    assert not (cox.cox_models.endpoint == "PFS").any()


def test_one_group_only():
    f = analysis_frame(80, seed=2)
    f["group"] = "first_line"
    surv = T.survival_tables(f)
    assert surv.survival_tests.p_value.isna().all()
    post = surv.km_summary[surv.km_summary.group == "post_ate_beva"]
    assert (post.n == 0).all() and post.median_months.isna().all()
    resp = T.response_tests(f)
    assert resp.test.isna().all() and resp.note.notna().all()
    cox = T.cox_tables(f)
    assert "group" in set(cox.cox_excluded.term)  # no_variation
    t1 = T.baseline_characteristics(f)
    assert t1.post_ate_beva.iloc[0] == "0"


def _warehouse_from_frame(con, frame: pd.DataFrame) -> None:
    """staging.cohort / staging.endpoints with these patients (as the study SQL would write them)."""
    f = frame.copy()
    f["patient_key"] = [f"{i:016x}" for i in range(len(f))]
    f["data_cutoff"] = pd.Timestamp("2024-07-31")
    f["extract_id"] = "20240801T020000Z"
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    con.register("f", f)
    con.execute("""CREATE OR REPLACE TABLE staging.cohort AS SELECT patient_key, true AS included,
        NULL::VARCHAR AS exclusion_reason, "group", DATE '2023-06-01' AS index_date, age::INTEGER AS age, sex, etiology, ecog::INTEGER AS ecog,
        child_pugh_class, bclc_stage, afp_ge_400::BOOLEAN AS afp_ge_400, multiple_tumors::BOOLEAN AS multiple_tumors,
        tumor_size_gt_10::BOOLEAN AS tumor_size_gt_10, portal_vein_invasion::BOOLEAN AS portal_vein_invasion,
        extrahepatic_metastasis::BOOLEAN AS extrahepatic_metastasis, data_cutoff::DATE AS data_cutoff, extract_id FROM f""")
    con.execute("""CREATE OR REPLACE TABLE staging.endpoints AS SELECT patient_key, "group", os_months,
        os_event::INTEGER AS os_event, pfs_months, pfs_event::INTEGER AS pfs_event, best_response,
        objective_response, disease_control, data_cutoff::DATE AS data_cutoff, extract_id FROM f""")
    con.unregister("f")


def test_empty_cohort_builds_empty_tables_and_placeholder_figures(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    _warehouse_from_frame(con, analysis_frame(5).iloc[0:0])
    res = build_analysis(con, tmp_path / "reports")
    assert con.execute("SELECT count(*) FROM analysis.km_curves").fetchall()[0][0] == 0
    assert con.execute("SELECT sum(n) FROM analysis.km_summary").fetchall()[0][0] == 0
    assert res["refresh_history"].tables["refresh_history"] == 0  # no drop: nothing recorded
    assert (tmp_path / "reports" / "figures" / "km_os.png").exists()
    assert (tmp_path / "reports" / "study_report.html").exists()


def test_negative_times_are_left_out_and_inconsistent_staging_refused(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    f = analysis_frame(60)
    f.loc[3, ["os_months", "os_event"]] = [-0.5, 0.0]   # censored before index (no follow-up)
    f.loc[4, ["os_months", "os_event"]] = [-0.2, 1.0]   # death before index (data error)
    _warehouse_from_frame(con, f)
    data = load_study_data(con)
    assert data.left_out["OS"] == {"censored": 1, "events": 1} and data.left_out["PFS"] == {"censored": 0, "events": 0}
    assert len(data.problems()) == 2 and data.frame["os_months"].isna().sum() == 2
    surv = T.survival_tables(data.frame)
    overall = surv.km_summary[(surv.km_summary.endpoint == "OS") & (surv.km_summary.group == "overall")].iloc[0]
    assert overall.n == 58 and overall.events == int(f.os_event.sum()) - 1
    res = build_analysis(con, tmp_path / "reports")
    assert any("censored before the index date" in p for p in res["survival"].problems)
    from haic_pipeline.analysis.checks import km_summary_matches_endpoints

    assert km_summary_matches_endpoints(con)[0]
    assert "censored before the index date" in (tmp_path / "reports" / "study_report.md").read_text()

    _warehouse_from_frame(con, analysis_frame(30))
    con.execute("DELETE FROM staging.endpoints WHERE patient_key = (SELECT min(patient_key) FROM staging.endpoints)")
    with pytest.raises(AnalysisInputError, match="no staging.endpoints row"):
        load_study_data(con)


def test_refresh_history_appends_once_per_extract_id(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    snap = T.history_snapshot(T.survival_tables(analysis_frame(100)).km_summary)
    p1 = Provenance("20240401T020000Z", "2024-03-31")
    p2 = Provenance("20240801T020000Z", "2024-07-31")
    assert append_history(con, snap, p1) == 6
    assert append_history(con, snap, p1) == 0
    assert append_history(con, snap, p2) == 6
    assert append_history(con, snap, Provenance(None, None)) == 0
    rows = con.execute("SELECT extract_id, data_cutoff::VARCHAR, count(*) FROM analysis.refresh_history "
                       "GROUP BY ALL ORDER BY 1").fetchall()
    assert rows == [("20240401T020000Z", "2024-03-31", 6), ("20240801T020000Z", "2024-07-31", 6)]


def test_writes_are_one_transaction(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    prov = Provenance("20240801T020000Z", "2024-07-31")
    resp = T.response_summary(analysis_frame(40))
    write_tables(con, {"response_summary": resp}, prov)
    bad = T.response_tests(analysis_frame(40)).drop(columns=["p_value"])
    with pytest.raises(KeyError):
        write_tables(con, {"response_summary": resp.iloc[0:1], "response_tests": bad}, prov)
    assert con.execute("SELECT count(*) FROM analysis.response_summary").fetchall()[0][0] == 3


def test_analysis_tables_at_100k_patients():
    """The paper's tables compute at 100,000 patients (their seconds: benchmarks/bench_stats.py)."""
    f = analysis_frame(100_000, seed=11)
    assert len(T.baseline_characteristics(f))
    assert len(T.survival_tables(f).km_summary) == 6   # OS and PFS: overall and per group
    assert len(T.response_summary(f)) == 3 and len(T.response_tests(f))   # overall and per group
    cox = T.cox_tables(f).cox_models
    assert len(cox) and cox["hr"].notna().all()


def test_no_12_month_rate_before_anyone_is_followed_to_12_months():
    f = analysis_frame(80, seed=9)
    f["os_months"] = f["os_months"].clip(upper=9.0)
    surv = T.survival_tables(f)
    os_rows = surv.km_summary[surv.km_summary.endpoint == "OS"]
    assert os_rows[["rate_12m", "rate_12m_lower", "rate_12m_upper"]].isna().all().all()
    test = surv.survival_tests[(surv.survival_tests.endpoint == "OS") & (surv.survival_tests.test == "rate_12m")].iloc[0]
    assert pd.isna(test.p_value) and "followed to 12 months" in test.note
    for _, r in surv.km_summary[surv.km_summary.endpoint == "PFS"].iterrows():
        sub = f if r.group == "overall" else f[f.group == r.group]
        assert pd.notna(r.rate_12m) == (sub.pfs_months.max() >= 12)
