"""staging.endpoints (study_spec §2): OS, PFS, best overall response; consent withdrawal."""

from datetime import date

import pytest

from haic_pipeline.study import MONTH_DAYS

from .conftest import CUTOFF1, E2, INDEX, Drop, day

ENDPOINT_COLUMNS = ["patient_key", "group", "index_date", "os_months", "os_event", "pfs_months", "pfs_event",
                    "best_response", "objective_response", "disease_control", "last_follow_up_date"]


def months(start: str, end: str) -> float:
    return (date.fromisoformat(end) - date.fromisoformat(start)).days / MONTH_DAYS


def test_columns_types_and_only_included_patients(study, con):
    d = Drop().eligible("10000001").eligible("10000002", post_ab=True).eligible("10000003", vital=False)
    t = study(d)
    cols = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = 'staging' AND table_name = 'endpoints' ORDER BY ordinal_position").fetchall()
    assert [c for c, _ in cols] == ENDPOINT_COLUMNS + ["data_cutoff", "extract_id"]
    types = dict(cols)
    assert (types["os_event"], types["pfs_event"]) == ("INTEGER", "INTEGER")
    assert (types["objective_response"], types["disease_control"]) == ("BOOLEAN", "BOOLEAN")
    assert (types["os_months"], types["pfs_months"], types["last_follow_up_date"]) == ("DOUBLE", "DOUBLE", "DATE")
    assert t.endpoints("10000003") is None
    assert t.endpoints("10000002")["group"] == "post_ate_beva"
    assert con.execute("SELECT count(*) FROM staging.endpoints").fetchone()[0] == 2
    r = t.results[1]
    assert (r.rows, r.os_events, r.pfs_events, r.negative_times) == (2, 0, 0, 0)
    assert r.by_group == {"first_line": {"n": 1, "os_events": 0, "pfs_events": 0},
                          "post_ate_beva": {"n": 1, "os_events": 0, "pfs_events": 0}}


# pid -> (last_contact, death) -> (event, OS end date)
OS = {
    "10000001": (("2023-07-10", "2023-07-10"), (1, "2023-07-10")),     # death before the cutoff
    "10000002": ((CUTOFF1, CUTOFF1), (1, CUTOFF1)),                    # death on the cutoff: event
    "10000003": (("2024-08-05", "2024-08-05"), (0, CUTOFF1)),          # death after the cutoff: censored at cutoff
    "10000004": (("2024-06-01", "2024-08-10"), (0, "2024-06-01")),     # ... at min(last contact, cutoff)
    "10000005": (("2024-03-01", None), (0, "2024-03-01")),             # alive: last contact
    "10000006": (("2024-08-15", None), (0, CUTOFF1)),                  # last contact after the cutoff
}


def test_overall_survival(study):
    d = Drop()
    for pid, ((last, death), _) in OS.items():
        d.eligible(pid, vital=False).vital(pid, last, death)
    t = study(d)
    for pid, (_, (event, end)) in OS.items():
        e = t.endpoints(pid)
        assert e["os_event"] == event, pid
        assert e["os_months"] == pytest.approx(months(INDEX, end)), pid
        assert str(e["last_follow_up_date"]) == end, pid
    assert t.endpoints("10000001")["os_months"] == pytest.approx(181 / 30.4375)


# pid -> scans [(day offset, response)], death offset or None -> (pfs_event, pfs end offset)
PFS = {
    "10000001": ([(40, "SD"), (100, "PD"), (150, "PD")], 300, (1, 100)),   # PD before death
    "10000002": ([(40, "SD"), (120, "PD")], 80, (1, 80)),                  # death before PD
    "10000003": ([], 200, (1, 200)),                                         # death, no scans
    "10000004": ([(50, "PR"), (90, "NE")], None, (0, 50)),                  # censored at last evaluable scan
    "10000005": ([], None, (0, 0)),                                          # no scans: time 0
    "10000006": ([(30, "NE"), (60, "NE")], None, (0, 0)),                   # only NE: time 0
    "10000007": ([(0, "PD")], None, (0, 0)),                                 # scan on the index date is not "after"
    "10000008": ([(60, "SD")], None, (0, 60)),                              # + a PD after the cutoff (below)
    "10000009": ([(60, "SD")], "after_cutoff", (0, 60)),                    # death after cutoff: no event
}


def test_progression_free_survival(study):
    d = Drop()
    for pid, (scans, death, _) in PFS.items():
        d.eligible(pid, vital=False)
        if death == "after_cutoff":
            d.vital(pid, day(CUTOFF1, 3), day(CUTOFF1, 3))
        elif death is not None:
            d.vital(pid, day(INDEX, death), day(INDEX, death))
        else:
            d.vital(pid, CUTOFF1)
        for offset, resp in scans:
            if offset is not None:
                d.scan(pid, day(INDEX, offset), resp)
    d.scan("10000008", day(CUTOFF1, 1), "PD")     # PD after the data cutoff: ignored
    t = study(d)
    for pid, (_, _, (event, end)) in PFS.items():
        e = t.endpoints(pid)
        assert (e["pfs_event"], e["pfs_months"]) == (event, pytest.approx(end / MONTH_DAYS)), pid
    assert t.endpoints("10000007")["best_response"] == "NE"
    assert t.endpoints("10000008")["best_response"] == "SD"


# pid -> scans [(day offset after index, response)] -> best response
RESPONSE = {
    "10000001": ([(56, "CR"), (84, "CR")], "CR"),                     # confirmed CR (28 d)
    "10000002": ([(56, "CR"), (83, "CR")], "SD"),                     # 27 d: not confirmed; non-PD >= 42 d
    "10000003": ([(56, "CR"), (90, "PR")], "PR"),                     # CR + PR -> PR
    "10000004": ([(56, "PR"), (84, "CR")], "PR"),
    "10000005": ([(56, "PR")], "SD"),                                 # unconfirmed PR, scan >= 42 d -> SD
    "10000006": ([(30, "PR"), (60, "PD")], "PD"),                     # unconfirmed PR, nothing non-PD >= 42 d
    "10000007": ([(30, "PR"), (60, "NE")], "NE"),
    "10000008": ([(30, "SD")], "NE"),                                 # SD too early
    "10000009": ([(30, "SD"), (50, "PD")], "PD"),                     # SD too early, then PD
    "10000010": ([(42, "SD")], "SD"),                                 # SD exactly 42 d
    "10000011": ([(41, "SD")], "NE"),
    "10000012": ([(60, "PD")], "PD"),                                 # PD only
    "10000013": ([(60, "NE"), (90, "NE")], "NE"),                     # NE only
    "10000014": ([(30, "PR"), (40, "PD"), (80, "PR"), (120, "PR")], "PD"),   # scans after the first PD ignored
    "10000015": ([(0, "CR"), (30, "CR")], "NE"),                      # index-day scan is not after index
    "10000016": ([(30, "PR"), (45, "NE"), (58, "PR")], "PR"),         # NE ignored between
    "10000017": ([(50, "CR"), (70, "SD"), (90, "CR")], "CR"),         # any two CRs >= 28 d apart
    "10000018": ([(60, "PR"), (88, "PR"), (100, "PD"), (130, "CR"), (160, "CR")], "PR"),  # CRs after PD ignored
    "10000019": ([], "NE"),
}


def test_best_overall_response(study):
    d = Drop()
    for pid, (scans, _) in RESPONSE.items():
        d.eligible(pid)
        for offset, resp in scans:
            d.scan(pid, day(INDEX, offset), resp)
    # scans after the data cutoff are ignored: PR confirmed only by a scan after the cutoff
    d.eligible("10000020", index="2024-06-01").scan("10000020", "2024-06-20", "PR").scan("10000020", "2024-08-20", "PR")
    t = study(d)
    for pid, (_, best) in RESPONSE.items():
        e = t.endpoints(pid)
        assert e["best_response"] == best, pid
        assert e["objective_response"] is (best in ("CR", "PR")), pid
        assert e["disease_control"] is (best in ("CR", "PR", "SD")), pid
    assert t.endpoints("10000020")["best_response"] == "NE"
    assert t.results[1].best_response == {"CR": 2, "PR": 4, "SD": 3, "PD": 4, "NE": 7}


def test_consent_withdrawn_in_a_later_drop(study, con):
    d = Drop().eligible("10000001").eligible("10000002", post_ab=True)
    for pid in ("10000001", "10000002"):
        d.scan(pid, day(INDEX, 60), "PR").scan(pid, day(INDEX, 90), "PR").scan(pid, day(INDEX, 120), "PD")
    t1 = study(d)
    assert t1.endpoints("10000001")["best_response"] == "PR"
    withdrawal = Drop().patient("10000001", consent_status="withdrawn")
    t2 = study(withdrawal.files, extract_id=E2, data_cutoff="2024-08-31")
    assert t2.endpoints("10000001") is None
    assert t2.endpoints("10000002")["best_response"] == "PR"
    row = t2.cohort("10000001")
    assert (row["included"], row["exclusion_reason"]) == (False, "consent_withdrawn")
    carried = {c for c, v in row.items() if v is not None} - {"data_cutoff", "extract_id"}
    assert carried == {"patient_key", "included", "exclusion_reason"}
    steps = con.execute("SELECT reason, n_excluded, n_remaining FROM analysis.attrition ORDER BY step").fetchall()
    assert steps[0] == ("all_patients", None, 2) and steps[1] == ("consent_withdrawn", 1, 1)
    assert steps[-1] == ("included", None, 1)
    assert con.execute("SELECT DISTINCT data_cutoff::VARCHAR, extract_id FROM staging.endpoints").fetchall() == \
        [("2024-08-31", E2)]
