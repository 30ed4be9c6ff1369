"""Every kind of messiness that extract_spec.md lists is present in the default drop set,
and the drops behave as deltas."""


import pandas as pd

import synthetic_study_helpers as h
from haic_pipeline.synthetic import simulate


def _all(raw_drops, domain):
    parts = []
    for k, (man, data) in enumerate(raw_drops):
        if domain in data:
            df = data[domain].copy()
            df["_drop"] = k
            parts.append(df)
    return pd.concat(parts, ignore_index=True)


def test_lab_units_from_another_system(raw_drops):
    labs = _all(raw_drops, "labs")
    assert ((labs.test_code == "TBIL") & (labs.unit == "umol/L")).sum() >= 3
    assert ((labs.test_code == "ALB") & (labs.unit == "g/L")).sum() >= 3
    usual = ((labs.test_code == "TBIL") & (labs.unit == "mg/dL")).sum()
    assert ((labs.test_code == "TBIL") & (labs.unit == "umol/L")).sum() < 0.02 * usual


def test_censored_afp(raw_drops):
    afp = _all(raw_drops, "labs").query("test_code == 'AFP'").value
    assert (afp == ">60000").any()
    assert (afp == "<1.0").any()
    assert afp.str.match(r"^[<>]").mean() < 0.15


def test_exact_duplicate_rows_within_a_file(raw_drops):
    domains = set()
    for man, data in raw_drops:
        for d, df in data.items():
            if df.duplicated().any():
                domains.add(d)
    assert {"labs", "assessments", "imaging", "treatments", "vital_status"} <= domains


def test_orphans_never_in_patients(raw_drops):
    known = set(_all(raw_drops, "patients").patient_id)
    orphan_domains = {d for d in ("labs", "imaging", "vital_status", "treatments", "assessments")
                      if not set(_all(raw_drops, d).patient_id) <= known}
    assert {"labs", "treatments"} <= orphan_domains


def test_patient_row_arrives_in_a_later_drop(raw_drops):
    pats = _all(raw_drops, "patients").groupby("patient_id")._drop.min()
    labs = _all(raw_drops, "labs").groupby("patient_id")._drop.min()
    both = pd.concat([pats.rename("p"), labs.rename("l")], axis=1).dropna()
    assert (both.l < both.p).sum() >= 1


def test_dates_out_of_order_and_future(raw_drops):
    trt = _all(raw_drops, "treatments")
    assert (pd.to_datetime(trt.end_date) < pd.to_datetime(trt.start_date)).any()
    vit = _all(raw_drops, "vital_status")
    haic = trt[trt.regimen == "HAIC_FP"].groupby("patient_id").start_date.min()
    v = vit[vit.death_date != ""].join(haic, on="patient_id").dropna(subset=["start_date"])
    assert (pd.to_datetime(v.death_date) < pd.to_datetime(v.start_date)).any()
    future = False
    for man, data in raw_drops:
        extracted = pd.Timestamp(man["extracted_at"][:10])
        for df in data.values():
            for col in df.columns:
                if col.endswith(("_date", "_at")):
                    s = pd.to_datetime(df[col].replace("", None), errors="coerce")
                    future |= bool((s > extracted).any())
    assert future


def test_codes_case_spaces_and_outside_lists(raw_drops):
    pats, img, trt = _all(raw_drops, "patients"), _all(raw_drops, "imaging"), _all(raw_drops, "treatments")
    labs, ass = _all(raw_drops, "labs"), _all(raw_drops, "assessments")
    assert (pats.etiology == "Hbv").any()
    assert (trt.stop_reason == "pd").any()
    assert (img.mrecist_response == " PR ").any()
    assert (~img.mrecist_response.str.strip().str.upper().isin(h.CODES["mrecist_response"])).any()
    assert (~trt.regimen.isin(h.CODES["regimen"])).any()
    assert (~labs.test_code.str.upper().isin(h.CODES["test_code"])).any()
    assert (~ass.ascites.str.lower().isin(h.CODES["ascites"])).any()
    # only a few rows are messy
    assert (~img.mrecist_response.isin(h.CODES["mrecist_response"])).mean() < 0.05


def test_column_order_extra_column_absent_and_empty_file(raw_drops):
    headers = {d: set() for d in h.KEYS}
    extra = []
    absent = []
    empty = []
    for k, (man, data) in enumerate(raw_drops):
        for d in h.KEYS:
            if d not in data:
                absent.append((k, d))
                continue
            headers[d].add(tuple(data[d].columns))
            if set(data[d].columns) - set(h.CODES) - {"patient_id", "patient_name", "birth_date",
                                                       "hcc_diagnosis_date", "start_date", "end_date",
                                                       "cycles", "assessment_date", "ecog", "tumor_count",
                                                       "max_tumor_size_cm", "collected_at", "value", "unit",
                                                       "scan_date", "last_contact_date", "death_date"}:
                extra.append((k, d))
            if man["files"][d + ".csv"]["rows"] == 0:
                empty.append((k, d))
    assert all(len(v) >= 2 for v in headers.values())  # column order differs between drops
    assert len(extra) == 1
    assert len(absent) == 1 and absent[0][0] > 0
    assert len(empty) >= 1
    assert set(absent).isdisjoint(empty)


def test_delta_semantics(raw_drops):
    # new patients, labs and vital updates in every drop
    for k, (man, data) in enumerate(raw_drops):
        assert man["files"]["patients.csv"]["rows"] > 0
        assert man["files"]["labs.csv"]["rows"] > 0
        assert man["files"]["vital_status.csv"]["rows"] > 0
    vit = _all(raw_drops, "vital_status").drop_duplicates()
    multi = vit.groupby("patient_id").size()
    assert (multi >= 3).sum() >= 10  # follow-up updated over several drops
    # a treatment course is sent open, then again with end_date / stop_reason filled in
    trt = _all(raw_drops, "treatments").drop_duplicates()
    g = trt.groupby(["patient_id", "regimen", "start_date"])
    filled = g.apply(lambda x: (x.end_date == "").any() and (x.end_date != "").any(), include_groups=False)
    assert filled.sum() >= 5
    # corrections: the same lab key in two drops with different values
    labs = _all(raw_drops, "labs").drop_duplicates()
    key = ["patient_id", "collected_at", "test_code"]
    again = labs[labs.duplicated(key, keep=False)]
    assert again._drop.nunique() >= 2 and again.groupby(key).value.nunique().max() == 2
    # consent withdrawn later
    pats = _all(raw_drops, "patients")
    w = pats[pats.consent_status == "withdrawn"]
    assert len(w) == 1
    earlier = pats[(pats.patient_id == w.patient_id.iloc[0]) & (pats._drop < w._drop.iloc[0])]
    assert (earlier.consent_status == "active").all() and len(earlier) == 1
    # scans grow: more imaging rows in the second half of the drops than in the first
    n_img = [man["files"].get("imaging.csv", {"rows": 0})["rows"] for man, _ in raw_drops]
    assert sum(n_img[3:]) > sum(n_img[:3])


def test_notes_list_every_kind():
    ex = simulate(100, 6, 1)
    assert {"empty_file", "absent_file", "late_patient_row", "withdrawn", "correction", "code_case",
            "code_invalid", "code_spaces", "end_before_start", "death_before_haic", "future_date",
            "orphan", "duplicate", "lab_units"} <= set(ex.notes)
