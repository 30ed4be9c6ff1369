"""One rule catalogue, two judges that agree: every row rule of the contracts, run through Great
Expectations on its frame columns and through the staging SQL generated from the same catalogue
entry, must find the same offending rows (ops.quarantine for error rules, ops.row_flags for warn
rules). A real drop, a real DuckDB file, real GX. A warn offence of a row that is also
quarantined is in ops.row_flags too, as GX counts it (test_warn_rejudge.py)."""

from __future__ import annotations

import dataclasses

import pytest

from haic_pipeline.catalogue import SCOPE_DROP, judged_rows, lower_bound, offending_sql, row_rules
from haic_pipeline.contracts import Column, load_contracts
from haic_pipeline.quality.speed.attribution import ATTRIBUTION_FORMAT
from haic_pipeline.quality.speed.frames import fit_dtypes
from haic_pipeline.quality.suites import CheckSpec
from haic_pipeline.quality.validate import SuiteRunner, shared_session

from ..dropkit import land, patient, write_drop
from .test_quality import E1, cohort, pid

W = pid(90)   # a patient who withdrew consent: judged on the key only, nothing else of it judged


def _drop() -> dict:
    files = cohort(6)
    p1, p2, p3 = pid(1), pid(2), pid(3)
    files["patients.csv"] += [
        patient(pid(50), sex="Q"), patient(pid(51), birth_date="1958-13-01"), patient(pid(52), sex=""),
        patient(pid(53), birth_date="2030-01-01", hcc_diagnosis_date=""), patient(pid(54), etiology="NASH"),
        patient(pid(55), hcc_diagnosis_date="2030-02-01"),                       # warn: future diagnosis
        patient(pid(56), hcc_diagnosis_date="1950-01-01"),                       # warn: before birth
        patient("12AB", sex="M"), patient("", sex="F"),                           # pattern, required
        patient(W, sex="Q", consent_status="withdrawn"),                          # not judged
        patient(pid(57), consent_status="paused"),
    ]
    files["treatments.csv"] += [
        {"patient_id": p1, "regimen": "MAGIC", "start_date": "2023-09-01"},
        {"patient_id": p1, "regimen": "SORAFENIB", "start_date": "2023-10-01", "cycles": "0"},
        {"patient_id": p1, "regimen": "SORAFENIB", "start_date": "2023-11-01", "cycles": "two"},
        {"patient_id": p2, "regimen": "SORAFENIB", "start_date": "2023-13-45"},
        {"patient_id": p2, "regimen": "SORAFENIB", "start_date": ""},
        {"patient_id": p2, "regimen": "ATEZO_BEVA", "start_date": "2023-06-01", "stop_reason": "BORED"},
        {"patient_id": p3, "regimen": "ATEZO_BEVA", "start_date": "2023-07-01", "end_date": "2023-06-01"},  # warn
        {"patient_id": p3, "regimen": "SORAFENIB", "start_date": "2025-01-01"},                           # warn
        {"patient_id": pid(99), "regimen": "SORAFENIB", "start_date": "2023-06-01"},                      # orphan
        {"patient_id": W, "regimen": "MAGIC", "start_date": "2023-06-01"},                                # not judged
    ]
    files["assessments.csv"] += [
        {"patient_id": p1, "assessment_date": "2023-06-01", "ecog": "9"},
        {"patient_id": p1, "assessment_date": "2023-06-02", "ecog": "one"},
        {"patient_id": p1, "assessment_date": "2023-06-03", "tumor_count": "-1"},
        {"patient_id": p1, "assessment_date": "2023-06-04", "max_tumor_size_cm": "0"},       # min_exclusive 0
        {"patient_id": p1, "assessment_date": "2023-06-05", "max_tumor_size_cm": "0.1"},     # fine
        {"patient_id": p1, "assessment_date": "2023-06-06", "ascites": "lots"},
        {"patient_id": p2, "assessment_date": "2030-06-06", "ecog": "1"},                    # warn
    ]
    files["labs.csv"] += [
        {"patient_id": p1, "collected_at": "2023-05-02 08:00", "test_code": "TBIL", "value": "2", "unit": "mmol/L"},
        {"patient_id": p1, "collected_at": "2023-05-02 08:00", "test_code": "ALB", "value": "<2", "unit": "g/dL"},  # warn
        {"patient_id": p1, "collected_at": "2023-05-03 08:00", "test_code": "PLT", "value": "abc", "unit": "10^3/uL"},
        {"patient_id": p1, "collected_at": "2023-05-03 09:00", "test_code": "PLT", "value": "-4", "unit": "10^3/uL"},
        {"patient_id": p1, "collected_at": "2099-05-03 08:00", "test_code": "AFP", "value": "3", "unit": "ng/mL"},  # warn
        {"patient_id": p1, "collected_at": "2023-05-04 08:00", "test_code": "XYZ", "value": "3", "unit": "U/L"},
        {"patient_id": p1, "collected_at": "yesterday", "test_code": "AFP", "value": "3", "unit": "ng/mL"},
        {"patient_id": p2, "collected_at": "2023-05-04 08:00", "test_code": "AFP", "value": "", "unit": "ng/mL"},
        {"patient_id": pid(98), "collected_at": "2023-05-04 08:00", "test_code": "AFP", "value": "3", "unit": "ng/mL"},
        {"patient_id": W, "collected_at": "2023-05-04 08:00", "test_code": "TBIL", "value": "2", "unit": "mmol/L"},
    ]
    files["imaging.csv"] += [
        {"patient_id": p1, "scan_date": "2023-08-01", "modality": "PET", "mrecist_response": "SD"},
        {"patient_id": p1, "scan_date": "2023-08-02", "modality": "CT", "mrecist_response": ""},
        {"patient_id": p1, "scan_date": "2023-08-03", "modality": "CT", "mrecist_response": "NE"},
    ]
    files["vital_status.csv"][1] = {"patient_id": p2, "last_contact_date": "2023-02-01", "death_date": "2023-03-01"}
    files["vital_status.csv"][2] = {"patient_id": p3, "last_contact_date": "2023-12-01", "death_date": "sometime"}
    return files


def _gx_offending(con, contract, rule) -> set[int]:
    """The data rows GX finds unexpected for one rule, on its own frame columns, read per row."""
    per_row = dataclasses.replace(rule, scope=SCOPE_DROP, check=f"catalogue_{contract.domain}_{rule.name}",
                                  kwargs=dict(rule.kwargs), sql=dict(rule.sql))
    check = CheckSpec(name=per_row.check, asset=f"staging/{contract.domain}", severity=rule.severity,
                      rules=[per_row], description="")
    cols = ", ".join(f'{expr} AS "{name}"' for name, expr in rule.sql.items())
    judged = judged_rows(contract, "t.")
    df = con.execute(f"SELECT t._row_number, {cols} FROM raw.typed_{contract.domain} AS t WHERE t._extract_id = ?"
                     + (f" AND {judged}" if judged else "") + " ORDER BY t._row_number", [E1]).df()
    rows = df.pop("_row_number").to_numpy()
    got = SuiteRunner(shared_session(), check, SCOPE_DROP).run(fit_dtypes(df), ATTRIBUTION_FORMAT)[rule.name]
    assert got["exception"] is None, got
    assert len(got["index"]) == got["unexpected"]
    return {int(rows[i]) for i in got["index"]}


def _sql_offending(con, domain, rule) -> set[int]:
    table = "ops.quarantine" if rule.severity == "error" else "ops.row_flags"
    return {r for (r,) in con.execute(f"SELECT row_number FROM {table} WHERE domain = ? AND extract_id = ? "
                                      "AND check_name = ?", [domain, E1, rule.name]).fetchall()}


def test_every_rule_kind_finds_the_same_rows_in_gx_and_in_the_staging_sql(env, con):
    write_drop(env / "inbox", E1, _drop())
    land(con, env / "inbox")
    fired: dict[str, int] = {}
    for domain, contract in load_contracts().items():
        for rule in row_rules(contract):
            if rule.family == "duplicate_key":   # decided by the staging SQL's ranking, read back by GX
                continue
            gx, sql = _gx_offending(con, contract, rule), _sql_offending(con, domain, rule)
            assert gx == sql, (domain, rule.name, sorted(gx), sorted(sql))
            fired[rule.family] = fired.get(rule.family, 0) + len(gx)
    # not vacuous: every kind of rule found its rows
    for family in ("required", "type", "code", "range", "pattern", "date_order", "not_future", "orphan",
                   "lab_unit", "censoring"):
        assert fired.get(family), (family, fired)
    # the withdrawn patient is judged by neither (its bad sex code, regimen and lab unit)
    assert con.execute("SELECT count(*) FROM ops.quarantine WHERE patient_key = "
                       "(SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')"
                       ).fetchall()[0][0] == 0


def test_min_and_min_exclusive_together_take_the_stricter_bound():
    both = Column(name="x", type="decimal", min=0, min_exclusive=0)
    assert lower_bound(both) == (0, True)
    assert lower_bound(Column(name="x", type="decimal", min=2, min_exclusive=1)) == (2, False)
    assert lower_bound(Column(name="x", type="decimal", min_exclusive=1)) == (1, True)
    assert lower_bound(Column(name="x", type="decimal")) is None


@pytest.mark.parametrize("expectation,kwargs,expected", [
    ("ExpectColumnValuesToNotBeNull", {"column": "a"}, "((A) IS NULL)"),
    ("ExpectColumnValuesToBeInSet", {"column": "a", "value_set": [True]}, "(NOT (A))"),
    ("ExpectColumnValuesToBeInSet", {"column": "a", "value_set": ["X", "Y"]}, "((A) NOT IN ('X', 'Y'))"),
    ("ExpectColumnValuesToBeBetween", {"column": "a", "min_value": 0, "strict_min": True, "max_value": 4},
     "((A) <= 0 OR (A) > 4)"),
    ("ExpectColumnPairValuesAToBeGreaterThanB", {"column_A": "a", "column_B": "b", "or_equal": True,
                                                 "ignore_row_if": "either_value_is_missing"}, "(NOT ((A) >= (B)))"),
])
def test_offending_sql_is_the_expectations_unexpected_rows(expectation, kwargs, expected):
    from haic_pipeline.catalogue import RuleSpec

    rule = RuleSpec(check="c", domain="d", name="r", family="f", severity="error", max_share=0.02, scope=SCOPE_DROP,
                    expectation=expectation, kwargs=kwargs, sql={"a": "A", "b": "B"})
    assert offending_sql(rule) == expected
    with pytest.raises(ValueError):
        offending_sql(dataclasses.replace(rule, expectation="ExpectColumnValuesToBeUnique"))
