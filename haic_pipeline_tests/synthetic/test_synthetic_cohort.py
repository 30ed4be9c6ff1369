"""The synthetic cohort, read back independently, resembles the study (study_spec, paper)."""


import pandas as pd

import synthetic_study_helpers as h
from haic_pipeline.synthetic import write_drops
from haic_pipeline.synthetic.model import EXCLUSION_KINDS


def test_default_cohort_counts_and_exclusions(merged_default):
    m, coh, ep = merged_default
    assert coh.included.sum() == 100
    reasons = coh.exclusion_reason.value_counts()
    for r in EXCLUSION_KINDS + ["consent_withdrawn"]:
        assert reasons.get(r, 0) >= 1, r
    assert len(coh) == 100 + 6 + 1
    groups = coh[coh.included].group.value_counts()
    assert groups["first_line"] == 66 and groups["post_ate_beva"] == 34
    idx = coh[coh.included].index_date
    assert idx.min() >= pd.Timestamp("2022-03-01") and idx.max() <= pd.Timestamp("2024-07-31")


def test_default_baseline_within_window(merged_default):
    m, coh, _ = merged_default
    inc = coh[coh.included].set_index("patient_id")
    ass = m["assessments"].copy()
    ass["d"] = pd.to_datetime(ass.assessment_date)
    ass = ass.join(inc.index_date, on="patient_id", how="inner")
    win = ass[(ass.d <= ass.index_date) & (ass.d >= ass.index_date - pd.Timedelta(days=30))]
    assert win.patient_id.nunique() == len(inc)
    labs = m["labs"].copy()
    labs["d"] = pd.to_datetime(labs.collected_at).dt.normalize()
    labs = labs.join(inc.index_date, on="patient_id", how="inner")
    lw = labs[(labs.d <= labs.index_date) & (labs.d >= labs.index_date - pd.Timedelta(days=30))]
    per = lw.groupby("patient_id").test_code.nunique()
    assert (per == 8).mean() >= 0.9


def test_default_outcomes_resemble_paper(merged_default):
    _, coh, ep = merged_default
    assert 30 <= ep.os_event.sum() <= 65  # heavy censoring (paper: 47 deaths of 100)
    br = ep.groupby("group").best_response.value_counts().unstack(fill_value=0)
    for g in ("first_line", "post_ate_beva"):
        assert br.loc[g, "PR"] >= 3 and br.loc[g, "SD"] >= 5
    # post-ate-beva does better on PFS; disease control higher
    fl, ab = ep[ep.group == "first_line"], ep[ep.group == "post_ate_beva"]
    assert h.km_median(ab.pfs_months, ab.pfs_event) > h.km_median(fl.pfs_months, fl.pfs_event)
    dcr = ep.best_response.isin(["CR", "PR", "SD"]).groupby(ep.group).mean()
    assert dcr["post_ate_beva"] > dcr["first_line"]
    assert (ep.best_response == "NE").sum() <= 10
    # unconfirmed responses exist (a PR/CR scan after index but best response not PR/CR)
    img = merged_default[0]["imaging"].join(coh.set_index("patient_id").index_date, on="patient_id")
    resp = img[(pd.to_datetime(img.scan_date) > img.index_date) & img.mrecist_response.isin(["PR", "CR"])]
    had = set(resp.patient_id)
    unconf = ep[ep.patient_id.isin(had) & ~ep.best_response.isin(["PR", "CR"])]
    assert 1 <= len(unconf) < (ep.best_response.isin(["PR", "CR"])).sum()


def test_n2000_calibrated(tmp_path):
    folders = write_drops(tmp_path, patients=2000, seed=3)
    m = h.merged(folders)
    coh = h.cohort(m)
    inc = coh[coh.included]
    assert len(inc) == 2000
    assert (coh.exclusion_reason.value_counts().reindex(EXCLUSION_KINDS) == 20).all()
    assert 0.30 <= (inc.group == "post_ate_beva").mean() <= 0.38
    pats = m["patients"].set_index("patient_id").loc[inc.patient_id]
    assert 0.80 <= (pats.sex == "M").mean() <= 0.90
    assert 0.60 <= (pats.etiology == "HBV").mean() <= 0.76
    age = (inc.set_index("patient_id").index_date - pd.to_datetime(pats.birth_date)).dt.days / 365.25
    grp = inc.set_index("patient_id").group
    assert 60 <= age.mean() <= 70 and 9 <= age.std() <= 15
    assert age[grp == "first_line"].mean() > age[grp == "post_ate_beva"].mean()
    ep = h.endpoints(m, coh)
    fl, ab = ep[ep.group == "first_line"], ep[ep.group == "post_ate_beva"]
    os_fl, os_ab = h.km_median(fl.os_months, fl.os_event), h.km_median(ab.os_months, ab.os_event)
    pfs_fl, pfs_ab = h.km_median(fl.pfs_months, fl.pfs_event), h.km_median(ab.pfs_months, ab.pfs_event)
    assert 5 <= os_fl <= 10 and (os_ab is None or os_ab > os_fl * 1.3)
    assert 2 <= pfs_fl <= 5 and 5 <= pfs_ab <= 11
    assert 0.35 <= ep.os_event.mean() <= 0.55
    br = ep.groupby("group").best_response.value_counts(normalize=True).unstack(fill_value=0)
    assert br.loc["first_line", "PD"] > 2 * br.loc["post_ate_beva", "PD"]
    assert br.loc["post_ate_beva", "PR"] > br.loc["first_line", "PR"]
    assert br.loc["first_line", "PR"] + br.loc["first_line", "CR"] >= 0.08
