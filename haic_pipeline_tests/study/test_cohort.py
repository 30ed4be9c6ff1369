"""staging.cohort (study_spec §1): exclusions and their order, groups, baseline windows,
Child-Pugh, BCLC, AFP, age; on real drops through the real loader and staging models."""

import pytest

from haic_pipeline.study import EXCLUSION_ORDER

from .conftest import CUTOFF1, INDEX, Drop, day, key

COHORT_COLUMNS = [
    "patient_key", "included", "exclusion_reason", "group", "index_date", "age", "sex", "etiology", "ecog",
    "ascites", "encephalopathy", "bilirubin_mg_dl", "albumin_g_dl", "inr", "child_pugh_score", "child_pugh_class",
    "bclc_stage", "afp_ng_ml", "afp_ge_400", "tumor_count", "multiple_tumors", "max_tumor_size_cm",
    "tumor_size_gt_10", "portal_vein_invasion", "extrahepatic_metastasis",
]


def test_columns_types_and_provenance(study, con):
    study(Drop().eligible("10000001"))
    cols = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = 'staging' AND table_name = 'cohort' ORDER BY ordinal_position").fetchall()
    names = [c for c, _ in cols]
    assert names == COHORT_COLUMNS + ["data_cutoff", "extract_id"]
    types = dict(cols)
    for b in ("included", "afp_ge_400", "multiple_tumors", "tumor_size_gt_10", "portal_vein_invasion",
              "extrahepatic_metastasis"):
        assert types[b] == "BOOLEAN", b
    assert types["index_date"] == "DATE" and types["age"] == "INTEGER" and types["child_pugh_score"] == "INTEGER"
    row = con.execute("SELECT data_cutoff::VARCHAR, extract_id FROM staging.cohort").fetchone()
    assert row == (CUTOFF1, "20240801T020000Z")
    # birth_date never leaves raw
    leaked = con.execute("SELECT table_schema, table_name FROM information_schema.columns "
                         "WHERE column_name = 'birth_date' AND table_schema <> 'raw'").fetchall()
    assert leaked == []


def test_every_exclusion_reason_and_their_order(study):
    d = Drop()
    d.eligible("10000001")                                              # included
    d.eligible("10000002", consent_status="withdrawn")                  # consent_withdrawn
    d.patient("10000003").course("10000003", "TACE", "2023-01-01").vital("10000003", CUTOFF1)   # no_haic
    d.eligible("10000004", index="2022-02-28")                          # index_before_study_start
    d.eligible("10000005", index="2022-03-01")                          # on the study start: included
    d.eligible("10000006", index=day(CUTOFF1, 1))                       # index_after_cutoff
    d.eligible("10000007", index=CUTOFF1)                               # on the cutoff: included
    d.eligible("10000008", birth_date="2005-02-01")                     # 17 at 2023-01-10: age_under_18
    d.eligible("10000009").course("10000009", "SORAFENIB", "2022-06-01", "2022-12-01", "PD")  # prior_other_systemic
    d.eligible("10000010", vital=False)                                 # no_follow_up
    # ordering: a patient meeting two reasons gets the first in §1 order
    d.eligible("10000011", index="2022-01-05", birth_date="2010-01-01")  # before start AND under 18
    d.eligible("10000012", index=day(CUTOFF1, 3), vital=False)          # after cutoff AND no vital status
    d.eligible("10000013", birth_date="2010-01-01", vital=False)        # under 18, sorafenib, no vital
    d.course("10000013", "SORAFENIB", "2022-06-01", "2022-12-01", "PD")
    d.eligible("10000014", vital=False).course("10000014", "LENVATINIB", "2022-06-01", "2022-12-01", "PD")
    d.eligible("10000015", index="2021-12-01", consent_status="withdrawn")  # withdrawn beats everything
    t = study(d)
    expected = {
        "10000001": None, "10000002": "consent_withdrawn", "10000003": "no_haic",
        "10000004": "index_before_study_start", "10000005": None, "10000006": "index_after_cutoff",
        "10000007": None, "10000008": "age_under_18", "10000009": "prior_other_systemic",
        "10000010": "no_follow_up", "10000011": "index_before_study_start", "10000012": "index_after_cutoff",
        "10000013": "age_under_18", "10000014": "prior_other_systemic", "10000015": "consent_withdrawn",
    }
    for pid, reason in expected.items():
        row = t.cohort(pid)
        assert (row["included"], row["exclusion_reason"]) == (reason is None, reason), pid
    assert set(r for r in expected.values() if r) == set(EXCLUSION_ORDER)
    assert t.results[0].included == 3
    assert t.results[0].excluded == {"consent_withdrawn": 2, "no_haic": 1, "index_before_study_start": 2,
                                     "index_after_cutoff": 2, "age_under_18": 2, "prior_other_systemic": 2,
                                     "no_follow_up": 1}
    # excluded patients other than consent_withdrawn keep what is derivable
    no_haic = t.cohort("10000003")
    assert (no_haic["sex"], no_haic["etiology"], no_haic["index_date"], no_haic["age"]) == ("M", "HBV", None, None)
    late = t.cohort("10000006")
    assert late["group"] == "first_line" and late["age"] == 66 and late["child_pugh_class"] == "A"
    assert t.cohort("10000009")["group"] is None and t.cohort("10000009")["ecog"] == 0
    assert t.cohort("10000010")["group"] == "first_line"
    # withdrawn: nothing but the key, included, reason (and the table-level provenance)
    w = t.cohort("10000015")
    assert {c for c in COHORT_COLUMNS if w[c] is not None} == {"patient_key", "included", "exclusion_reason"}
    assert w["included"] is False


def test_group_rules(study):
    d = Drop()
    d.eligible("10000001", post_ab=True)                                        # ATEZO_BEVA stopped PD -> post
    d.eligible("10000002").course("10000002", "ATEZO_BEVA", "2022-05-01", "2022-12-01", "TOXICITY")
    d.eligible("10000003").course("10000003", "SORAFENIB", "2022-05-01", "2022-12-01", "PD")
    d.eligible("10000004").course("10000004", "TACE", "2022-10-01", "2022-10-01", "COMPLETED")  # TACE: first_line
    d.eligible("10000005", post_ab=True).course("10000005", "TACE", "2022-12-20", "2022-12-20", "COMPLETED")
    # latest ATEZO_BEVA decides: PD earlier, TOXICITY later -> neither; TOXICITY earlier, PD later -> post
    d.eligible("10000006").course("10000006", "ATEZO_BEVA", "2021-05-01", "2021-09-01", "PD") \
        .course("10000006", "ATEZO_BEVA", "2022-05-01", "2022-12-01", "TOXICITY")
    d.eligible("10000007").course("10000007", "ATEZO_BEVA", "2021-05-01", "2021-09-01", "TOXICITY") \
        .course("10000007", "ATEZO_BEVA", "2022-05-01", "2022-12-01", "PD")
    d.eligible("10000008", post_ab=True).course("10000008", "LENVATINIB", "2022-01-01", "2022-03-01", "PD")
    d.eligible("10000009", post_ab=True).course("10000009", "OTHER", "2022-01-01", "2022-03-01", "PD")
    d.eligible("10000010").course("10000010", "ATEZO_BEVA", "2022-05-01")     # ongoing (no stop) -> neither
    # courses on or after the index date do not count
    d.eligible("10000011").course("10000011", "ATEZO_BEVA", INDEX, day(INDEX, 60), "PD")
    d.eligible("10000012").course("10000012", "SORAFENIB", day(INDEX, 90), day(INDEX, 200), "PD")
    # index = FIRST HAIC_FP course; a later HAIC_FP does not move it
    d.eligible("10000013", post_ab=True).course("10000013", "HAIC_FP", day(INDEX, 300))
    t = study(d)
    expected = {"10000001": "post_ate_beva", "10000002": None, "10000003": None, "10000004": "first_line",
                "10000005": "post_ate_beva", "10000006": None, "10000007": "post_ate_beva", "10000008": None,
                "10000009": None, "10000010": None, "10000011": "first_line", "10000012": "first_line",
                "10000013": "post_ate_beva"}
    for pid, group in expected.items():
        row = t.cohort(pid)
        assert row["group"] == group, pid
        assert row["exclusion_reason"] == (None if group else "prior_other_systemic"), pid
    assert str(t.cohort("10000013")["index_date"]) == INDEX
    assert t.results[0].by_group == {"first_line": 3, "post_ate_beva": 4}


def test_baseline_windows(study):
    d = Drop()
    # visits: day -31 only -> missing; -31 and -30 -> -30; -30 and -5 -> -5; index day in; after index out
    d.eligible("10000001", visit=False).visit("10000001", day(INDEX, -31), ecog="1")
    d.eligible("10000002", visit=False).visit("10000002", day(INDEX, -31), ecog="1") \
        .visit("10000002", day(INDEX, -30), ecog="2")
    d.eligible("10000003", visit=False).visit("10000003", day(INDEX, -30), ecog="2") \
        .visit("10000003", day(INDEX, -5), ecog="1", tumor_count="3")
    d.eligible("10000004", visit=False).visit("10000004", day(INDEX, -10), ecog="2") \
        .visit("10000004", INDEX, ecog="1").visit("10000004", day(INDEX, 1), ecog="3")
    # labs by DATE of collected_at: day -30 00:00 in, day -31 23:59 out, index day 23:59 in,
    # day +1 00:00 out, latest collected_at wins (also within one day)
    d.eligible("10000005", labs=False)
    d.lab("10000005", day(INDEX, -31) + " 23:59", "TBIL", "5.0").lab("10000005", day(INDEX, -30) + " 00:00", "ALB", "3.0")
    d.lab("10000005", day(INDEX, -31) + " 23:59", "INR", "2.5")
    d.lab("10000005", INDEX + " 23:59", "AFP", "500").lab("10000005", day(INDEX, 1) + " 00:00", "AFP", "5")
    d.eligible("10000006", labs=False)
    d.lab("10000006", day(INDEX, -20) + " 08:00", "TBIL", "1.5").lab("10000006", day(INDEX, -2) + " 07:00", "TBIL", "2.5")
    d.lab("10000006", day(INDEX, -2) + " 18:30", "TBIL", "3.5").lab("10000006", day(INDEX, -1), "ALB", "2.5")
    d.lab("10000006", day(INDEX, -3), "ALB", "4.5")
    t = study(d)
    assert t.cohort("10000001")["ecog"] is None and t.cohort("10000001")["tumor_count"] is None
    assert t.cohort("10000001")["bclc_stage"] is None and t.cohort("10000001")["child_pugh_score"] is None
    assert t.cohort("10000002")["ecog"] == 2
    assert (t.cohort("10000003")["ecog"], t.cohort("10000003")["tumor_count"]) == (1, 3)
    assert t.cohort("10000004")["ecog"] == 1
    r5 = t.cohort("10000005")
    assert (r5["bilirubin_mg_dl"], r5["albumin_g_dl"], r5["inr"], r5["afp_ng_ml"]) == (None, 3.0, None, 500.0)
    r6 = t.cohort("10000006")
    assert (r6["bilirubin_mg_dl"], r6["albumin_g_dl"]) == (3.5, 2.5)


# (TBIL, TBIL unit, ALB, ALB unit, INR, ascites, encephalopathy) -> score, class
CHILD_PUGH = [
    (("1.99", "mg/dL", "3.51", "g/dL", "1.69", "none", "none"), 5, "A"),
    (("2", "mg/dL", "3.6", "g/dL", "1.0", "none", "none"), 6, "A"),          # bilirubin exactly 2 -> 2
    (("3", "mg/dL", "3.5", "g/dL", "1.0", "none", "none"), 7, "B"),          # bilirubin 3 -> 2, albumin 3.5 -> 2
    (("3.01", "mg/dL", "2.8", "g/dL", "1.7", "none", "none"), 9, "B"),       # 3.01 -> 3, albumin 2.8 -> 2, INR 1.7 -> 2
    (("1.0", "mg/dL", "2.79", "g/dL", "2.3", "mild", "grade_1_2"), 10, "C"),  # albumin < 2.8 -> 3, INR 2.3 -> 2
    (("1.0", "mg/dL", "4.0", "g/dL", "2.31", "moderate_severe", "grade_3_4"), 11, "C"),  # INR > 2.3 -> 3
    (("4.0", "mg/dL", "2.0", "g/dL", "3.0", "moderate_severe", "grade_3_4"), 15, "C"),
    (("1.0", "mg/dL", "4.0", "g/dL", "1.0", "mild", "grade_1_2"), 7, "B"),
    (("34.2", "umol/L", "35", "g/L", "1.0", "none", "none"), 7, "B"),        # converted: 2.0 mg/dL, 3.5 g/dL
    (("1.0", "mg/dL", "4.0", "g/dL", None, "none", "none"), None, None),      # INR missing -> missing
    (("1.0", "mg/dL", "4.0", "g/dL", "1.0", "none", ""), None, None),         # encephalopathy missing
]


def test_child_pugh_points_boundaries_and_classes(study):
    d = Drop()
    for i, ((tbil, tu, alb, au, inr, asc, enc), _, _) in enumerate(CHILD_PUGH):
        pid = f"1000{i:04d}"
        d.eligible(pid, labs=False, visit=False).visit(pid, day(INDEX, -3), ascites=asc, encephalopathy=enc)
        d.lab(pid, day(INDEX, -3), "TBIL", tbil, tu).lab(pid, day(INDEX, -3), "ALB", alb, au)
        if inr:
            d.lab(pid, day(INDEX, -3), "INR", inr)
    t = study(d)
    for i, (_, score, cls) in enumerate(CHILD_PUGH):
        row = t.cohort(f"1000{i:04d}")
        assert (row["child_pugh_score"], row["child_pugh_class"]) == (score, cls), CHILD_PUGH[i]


# visit overrides, Child-Pugh C or not -> BCLC
BCLC = [
    ({"ecog": "3"}, False, "D"),
    ({"ecog": "4", "portal_vein_invasion": "Y"}, False, "D"),
    ({"ecog": "0"}, True, "D"),                                            # Child-Pugh C
    ({"ecog": "0", "portal_vein_invasion": "Y"}, False, "C"),
    ({"ecog": "0", "extrahepatic_metastasis": "Y"}, False, "C"),
    ({"ecog": "1"}, False, "C"),
    ({"ecog": "2", "tumor_count": "1"}, False, "C"),
    ({"ecog": "0", "tumor_count": "1", "max_tumor_size_cm": "12"}, False, "A"),   # one tumour, any size
    ({"ecog": "0", "tumor_count": "3", "max_tumor_size_cm": "3.0"}, False, "A"),  # <= 3 tumours all <= 3 cm
    ({"ecog": "0", "tumor_count": "3", "max_tumor_size_cm": "3.1"}, False, "B"),
    ({"ecog": "0", "tumor_count": "4", "max_tumor_size_cm": "1.0"}, False, "B"),
    ({"ecog": "0", "tumor_count": "2", "max_tumor_size_cm": "5"}, False, "B"),
    # missing inputs: assigned only when the available inputs decide it
    ({"ecog": "3"}, None, "D"),                                             # Child-Pugh missing, ECOG decides
    ({"ecog": "0"}, None, None),                                            # Child-Pugh missing: could be D
    ({"ecog": ""}, False, None),
    ({"ecog": "0", "portal_vein_invasion": ""}, False, None),
    ({"ecog": "0", "portal_vein_invasion": "", "extrahepatic_metastasis": "Y"}, False, "C"),
    ({"ecog": "0", "tumor_count": "2", "max_tumor_size_cm": ""}, False, None),
    ({"ecog": "0", "tumor_count": "1", "max_tumor_size_cm": ""}, False, "A"),
]


def test_bclc_stages(study):
    d = Drop()
    for i, (visit, cp_c, _) in enumerate(BCLC):
        pid = f"1000{i:04d}"
        d.eligible(pid, labs=False, visit=False).visit(pid, day(INDEX, -3), **visit)
        d.lab(pid, day(INDEX, -3), "TBIL", "4.0" if cp_c else "1.0")
        d.lab(pid, day(INDEX, -3), "ALB", "2.0" if cp_c else "4.0")
        if cp_c is not None:
            d.lab(pid, day(INDEX, -3), "INR", "2.5" if cp_c else "1.0")
    t = study(d)
    for i, (visit, cp_c, stage) in enumerate(BCLC):
        row = t.cohort(f"1000{i:04d}")
        assert row["child_pugh_class"] == {True: "C", False: "A", None: None}[cp_c], BCLC[i]
        assert row["bclc_stage"] == stage, BCLC[i]


def test_afp_censoring_and_binary_covariates(study):
    d = Drop()
    for pid, afp, count, size, pvi, ehm in [
        ("10000001", ">60000", "2", "10", "Y", "N"),
        ("10000002", "<1.0", "1", "10.1", "N", "Y"),
        ("10000003", "400", "3", "4", "N", "N"),
        ("10000004", "399.9", "1", "2", "N", "N"),
    ]:
        d.eligible(pid, labs=False, visit=False, sex="F", etiology="HCV")
        d.visit(pid, day(INDEX, -2), tumor_count=count, max_tumor_size_cm=size, portal_vein_invasion=pvi,
                extrahepatic_metastasis=ehm)
        d.lab(pid, day(INDEX, -2), "AFP", afp)
    t = study(d)
    got = {pid: tuple(t.cohort(pid)[c] for c in ("afp_ng_ml", "afp_ge_400", "multiple_tumors", "tumor_size_gt_10",
                                                  "portal_vein_invasion", "extrahepatic_metastasis"))
           for pid in ("10000001", "10000002", "10000003", "10000004")}
    assert got == {
        "10000001": (60000.0, True, True, False, True, False),
        "10000002": (1.0, False, False, True, False, True),
        "10000003": (400.0, True, True, False, False, False),
        "10000004": (399.9, False, False, False, False, False),
    }
    assert (t.cohort("10000001")["sex"], t.cohort("10000001")["etiology"]) == ("F", "HCV")


@pytest.mark.parametrize("birth, index, age, included", [
    ("1990-05-10", "2023-05-09", 32, True),     # the day before the birthday
    ("1990-05-10", "2023-05-10", 33, True),     # on the birthday
    ("2005-05-10", "2023-05-09", 17, False),    # turns 18 tomorrow
    ("2005-05-10", "2023-05-10", 18, True),     # 18 today
    ("2000-02-29", "2023-02-28", 22, True),     # leap-day birthday reached on 1 March
    ("2000-02-29", "2023-03-01", 23, True),
    ("1958-12-31", "2023-01-01", 64, True),
])
def test_age_in_whole_years_at_index(study, birth, index, age, included):
    t = study(Drop().eligible("10000001", index=index, birth_date=birth))
    row = t.cohort("10000001")
    assert (row["age"], row["included"]) == (age, included)


def test_age_uses_the_newest_patients_row(study):
    d = Drop().eligible("10000001", birth_date="1990-05-10")
    study(d)
    # a later drop corrects the birth date; age follows the winning row
    t = study({"patients.csv": Drop().patient("10000001", birth_date="1980-05-10").files["patients.csv"]},
              extract_id="20240901T020000Z", data_cutoff="2024-08-31")
    assert t.cohort("10000001")["age"] == 42
    assert str(t.cohort("10000001")["data_cutoff"]) == "2024-08-31"
    assert key("10000001") == t.cohort("10000001")["patient_key"]
