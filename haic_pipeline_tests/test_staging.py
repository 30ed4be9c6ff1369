"""staging.<domain>: typing, normalisation, units, latest-wins, quarantine, orphans, consent."""

import pytest

from haic_pipeline.ingest import find_complete_drops, load_drop, patient_key
from haic_pipeline.warehouse import compile as compile_mod
from haic_pipeline.warehouse.staging import build_staging

from .conftest import TEST_KEY, all_text_values
from .dropkit import patient, write_drop

E1, E2, E3 = "20240101T020000Z", "20240201T020000Z", "20240301T020000Z"
K1 = patient_key("10000001", TEST_KEY)


def _refresh(con, env, contracts):
    loaded = {e for (e,) in con.execute("SELECT extract_id FROM ops.drops WHERE status = 'loaded'").fetchall()} \
        if con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ops'").fetchall()[0][0] else set()
    for drop in find_complete_drops(env / "inbox"):
        if drop.extract_id not in loaded:
            load_drop(con, drop, contracts, TEST_KEY)
    return {d: build_staging(con, d) for d in contracts}


def _lab(pid, when, code, value, unit):
    return {"patient_id": pid, "collected_at": when, "test_code": code, "value": value, "unit": unit}


def test_committed_sql_models_match_the_contracts():
    assert compile_mod.main(["--check"]) == 0, "run: python -m haic_pipeline.warehouse.compile"


def test_types_codes_units_and_censoring(env, con, contracts):
    write_drop(env / "inbox", E1, {
        "patients.csv": [patient("10000001", sex=" m ", etiology="Hbv")],
        "treatments.csv": [{"patient_id": "10000001", "regimen": " haic_fp", "start_date": "2023-05-01",
                            "end_date": "2023-08-01", "cycles": "3", "stop_reason": "pd "}],
        "labs.csv": [
            _lab("10000001", "2023-04-28 08:00", "TBIL", "34.2", "umol/L"),
            _lab("10000001", "2023-04-28 08:00", "ALB", "35", "g/L"),
            _lab("10000001", "2023-04-28 08:00", "afp", ">60000", "ng/mL"),
            _lab("10000001", "2023-04-29 08:00", "AFP", "<1.0", "ng/mL"),
            _lab("10000001", "2023-04-28 08:00", "INR", "1.12", ""),
        ],
    })
    _refresh(con, env, contracts)
    assert con.execute("SELECT sex, etiology FROM staging.patients").fetchall() == [("M", "HBV")]
    t = con.execute("SELECT regimen, start_date::VARCHAR, cycles, stop_reason FROM staging.treatments").fetchall()
    assert t == [("HAIC_FP", "2023-05-01", 3, "PD")]
    labs = dict(
        ((code, str(when)), (value, cens, unit)) for code, when, value, cens, unit in con.execute(
            "SELECT test_code, collected_at::DATE, value, value_censoring, unit FROM staging.labs").fetchall())
    assert labs[("TBIL", "2023-04-28")] == (2.0, None, "mg/dL")
    assert labs[("ALB", "2023-04-28")] == (3.5, None, "g/dL")
    assert labs[("AFP", "2023-04-28")] == (60000.0, ">", "ng/mL")
    assert labs[("AFP", "2023-04-29")] == (1.0, "<", "ng/mL")
    assert labs[("INR", "2023-04-28")] == (1.12, None, "ratio")
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchall()[0][0] == 0


def test_exact_duplicates_dropped_and_latest_drop_wins(env, con, contracts):
    vs = {"patient_id": "10000001", "last_contact_date": "2023-12-01"}
    write_drop(env / "inbox", E1, {"patients.csv": [patient("10000001")], "vital_status.csv": [vs, vs]})
    write_drop(env / "inbox", E2, {"vital_status.csv": [{"patient_id": "10000001", "last_contact_date": "2024-01-15",
                                                         "death_date": "2024-01-15"}]})
    _refresh(con, env, contracts)
    rows = con.execute("SELECT last_contact_date::VARCHAR, death_date::VARCHAR, _extract_id FROM staging.vital_status").fetchall()
    assert rows == [("2024-01-15", "2024-01-15", E2)]
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchall()[0][0] == 0


def test_conflicting_key_within_one_drop_is_quarantined(env, con, contracts):
    write_drop(env / "inbox", E1, {
        "patients.csv": [patient("10000001")],
        "imaging.csv": [{"patient_id": "10000001", "scan_date": "2023-07-01", "modality": "CT", "mrecist_response": "PR"},
                        {"patient_id": "10000001", "scan_date": "2023-07-01", "modality": "CT", "mrecist_response": "SD"}],
    })
    _refresh(con, env, contracts)
    assert con.execute("SELECT mrecist_response FROM staging.imaging").fetchall() == [("SD",)]
    q = con.execute("SELECT row_number, check_name, reason FROM ops.quarantine").fetchall()
    assert q == [(1, "duplicate_key_conflict",
                  "same natural key as data row 2 of this drop, with different values; that later row was kept")]


@pytest.mark.parametrize("row, check, reason_part", [
    ({"ecog": "7"}, "ecog_range", "ecog 7 outside the allowed range"),
    ({"ecog": "1.5"}, "ecog_type", "ecog 1.5 is not an integer"),
    ({"ascites": "severe"}, "ascites_code", "ascites severe is not one of none, mild, moderate_severe"),
    ({"max_tumor_size_cm": "0"}, "max_tumor_size_cm_range", "outside the allowed range (> 0)"),
    ({"tumor_count": "-1"}, "tumor_count_range", "tumor_count -1 outside"),
    ({"assessment_date": "2023-02-30"}, "assessment_date_type", "is not a YYYY-MM-DD date"),
])
def test_contract_violations_go_to_quarantine_with_their_check(env, con, contracts, row, check, reason_part):
    base = {"patient_id": "10000001", "assessment_date": "2023-04-30", "ecog": "1", "ascites": "none",
            "encephalopathy": "none", "tumor_count": "2", "max_tumor_size_cm": "4.5",
            "portal_vein_invasion": "N", "extrahepatic_metastasis": "N"}
    write_drop(env / "inbox", E1, {"patients.csv": [patient("10000001")],
                                   "assessments.csv": [base | {"assessment_date": "2023-03-01"}, base | row]})
    _refresh(con, env, contracts)
    assert con.execute("SELECT count(*) FROM staging.assessments").fetchall()[0][0] == 1
    (q,) = con.execute("SELECT domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json "
                       "FROM ops.quarantine").fetchall()
    assert q[:6] == ("assessments", E1, 2, K1, check, "error")
    assert reason_part in q[6]
    assert '"patient_key"' in q[7] and "10000001" not in q[7]


def test_plausibility_rules_flag_and_keep_the_row(env, con, contracts):
    write_drop(env / "inbox", E1, {
        "patients.csv": [patient("10000001")],
        "treatments.csv": [{"patient_id": "10000001", "regimen": "HAIC_FP", "start_date": "2023-05-01",
                            "end_date": "2023-04-01", "cycles": "1", "stop_reason": "OTHER"}],
        "imaging.csv": [{"patient_id": "10000001", "scan_date": "2031-01-01", "modality": "CT", "mrecist_response": "SD"}],
    })
    _refresh(con, env, contracts)
    assert con.execute("SELECT dq_warnings FROM staging.treatments").fetchall() == [(["end_date_before_start_date"],)]
    assert con.execute("SELECT dq_warnings FROM staging.imaging").fetchall() == [(["scan_date_in_future"],)]
    flags = con.execute("SELECT domain, check_name, severity FROM ops.row_flags ORDER BY 1").fetchall()
    assert flags == [("imaging", "scan_date_in_future", "warn"), ("treatments", "end_date_before_start_date", "warn")]


def test_orphans_are_quarantined_then_released_when_their_patient_arrives(env, con, contracts):
    write_drop(env / "inbox", E1, {
        "patients.csv": [patient("10000001")],
        "labs.csv": [_lab("10000002", "2023-04-28 08:00", "AFP", "12", "ng/mL")],
    })
    _refresh(con, env, contracts)
    assert con.execute("SELECT check_name FROM ops.quarantine").fetchall() == [("orphan_patient",)]
    assert con.execute("SELECT count(*) FROM staging.labs").fetchall()[0][0] == 0

    write_drop(env / "inbox", E2, {"patients.csv": [patient("10000002")]})
    _refresh(con, env, contracts)
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchall()[0][0] == 0
    assert con.execute("SELECT value FROM staging.labs").fetchall() == [(12.0,)]


def test_withdrawn_consent_removes_the_patient_from_staging(env, con, contracts):
    write_drop(env / "inbox", E1, {
        "patients.csv": [patient("10000001"), patient("10000002")],
        "vital_status.csv": [{"patient_id": "10000001", "last_contact_date": "2023-12-01"},
                             {"patient_id": "10000002", "last_contact_date": "2023-12-01"}],
        "labs.csv": [_lab("10000001", "2023-04-28 08:00", "AFP", "badvalue", "ng/mL")],
    })
    _refresh(con, env, contracts)
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchall()[0][0] == 1
    write_drop(env / "inbox", E2, {"patients.csv": [patient("10000001", consent_status="withdrawn")]})
    _refresh(con, env, contracts)
    rows = con.execute("SELECT consent_status, sex, etiology, hcc_diagnosis_date FROM staging.patients "
                       "WHERE patient_key = ?", [K1]).fetchall()
    assert rows == [("withdrawn", None, None, None)]
    assert con.execute("SELECT count(*) FROM staging.vital_status WHERE patient_key = ?", [K1]).fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM staging.vital_status").fetchall()[0][0] == 1
    assert con.execute("SELECT count(*) FROM ops.quarantine WHERE patient_key = ?", [K1]).fetchall()[0][0] == 0


def test_birth_date_stays_in_raw_only(env, con, contracts):
    write_drop(env / "inbox", E1, {"patients.csv": [patient("10000001", birth_date="1961-07-19", sex="X")]})
    _refresh(con, env, contracts)
    assert con.execute("SELECT count(*) FROM raw.patients WHERE birth_date = '1961-07-19'").fetchall()[0][0] == 1
    non_raw = {v for v in all_text_values(con)} - {
        v for (v,) in con.execute("SELECT birth_date FROM raw.patients").fetchall()}
    assert not any("1961-07-19" in v for v in non_raw)  # not even in the quarantine's row_json
    cols = con.execute("SELECT DISTINCT table_schema FROM information_schema.columns WHERE column_name = 'birth_date'").fetchall()
    assert cols == [("raw",)]


def test_staging_rebuild_is_idempotent(env, con, contracts):
    write_drop(env / "inbox", E1, {"patients.csv": [patient("10000001")],
                                   "labs.csv": [_lab("10000001", "2023-04-28 08:00", "AFP", "12", "ng/mL")]})
    _refresh(con, env, contracts)
    first = con.execute("SELECT * FROM staging.labs").fetchall()
    _refresh(con, env, contracts)
    assert con.execute("SELECT * FROM staging.labs").fetchall() == first
