"""Data-quality gates: generated GX suites, thresholds, caching, drop-level checks, exception
handling, identifiers, offline GX. Real GX, real DuckDB files, real Dagster runs (no mocks)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from haic_pipeline.contracts import load_contracts
from haic_pipeline.definitions import load
from haic_pipeline.defs.resources import resources_for
from haic_pipeline.quality import frames
from haic_pipeline.quality.gate import all_checks, run_all, run_check
from haic_pipeline.quality.suites import generate_checks, suite_document, suite_fingerprint
from haic_pipeline.settings import load_settings, project_root

from ..dropkit import land, patient, write_drop

E1, E2, E3 = "20240101T020000Z", "20240201T020000Z", "20240301T020000Z"


# ---------------------------------------------------------------------------------------------
# hand-built drops


def pid(i: int) -> str:
    return f"{10000000 + i:08d}"


def cohort(n: int, start: int = 1, bad_ecog: int = 0, bad_sex: int = 0) -> dict:
    """n clean patients with one course, one assessment, two labs, a scan and vital status."""
    files = {k: [] for k in ("patients.csv", "treatments.csv", "assessments.csv", "labs.csv", "imaging.csv",
                             "vital_status.csv")}
    for i in range(start, start + n):
        p = pid(i)
        files["patients.csv"].append(patient(p, sex="X" if i - start < bad_sex else "F"))
        files["treatments.csv"].append({"patient_id": p, "regimen": "HAIC_FP", "start_date": "2023-05-01",
                                        "end_date": "2023-08-01", "cycles": "4", "stop_reason": "PD"})
        files["assessments.csv"].append({"patient_id": p, "assessment_date": "2023-04-30",
                                         "ecog": "7" if i - start < bad_ecog else "1", "ascites": "none",
                                         "encephalopathy": "none", "tumor_count": "2", "max_tumor_size_cm": "3.5",
                                         "portal_vein_invasion": "N", "extrahepatic_metastasis": "N"})
        files["labs.csv"] += [
            {"patient_id": p, "collected_at": "2023-04-28 08:00", "test_code": "AFP", "value": "12", "unit": "ng/mL"},
            {"patient_id": p, "collected_at": "2023-04-28 08:00", "test_code": "ALB", "value": "3.6", "unit": "g/dL"},
        ]
        files["imaging.csv"].append({"patient_id": p, "scan_date": "2023-07-01", "modality": "CT",
                                     "mrecist_response": "PR"})
        files["vital_status.csv"].append({"patient_id": p, "last_contact_date": "2023-12-01"})
    return files


def rule_rows(outcome) -> dict:
    out = {}
    for r in outcome.rows:
        agg = out.setdefault(r["rule"], {"evaluated": 0, "unexpected": 0, "passed": True})
        agg["evaluated"] += r["evaluated"] or 0
        agg["unexpected"] += r["unexpected"] or 0
        agg["passed"] &= r["passed"]
    return out


# ---------------------------------------------------------------------------------------------
# suites generated from the contracts


def test_suite_is_generated_from_the_contracts_and_follows_a_change(tmp_path):
    base = load_contracts()
    checks = {c.name: c for c in generate_checks(base)}
    ascites = next(r for r in checks["assessments_error_rules"].rules if r.name == "ascites_code")
    assert ascites.kwargs["value_set"] == ["none", "mild", "moderate_severe"]
    ecog = next(r for r in checks["assessments_error_rules"].rules if r.name == "ecog_range")
    assert (ecog.kwargs["min_value"], ecog.kwargs["max_value"], ecog.mostly) == (0, 4, pytest.approx(0.98))
    size = next(r for r in checks["assessments_error_rules"].rules if r.name == "max_tumor_size_cm_range")
    assert size.kwargs["strict_min"] is True and size.kwargs["min_value"] == 0
    unique = next(r for r in checks["labs_error_rules"].rules if r.name == "natural_key_unique")
    assert unique.mostly == 1.0  # structural: 0 % tolerated

    copy = tmp_path / "contracts"
    shutil.copytree(project_root() / "data_contracts", copy)
    doc = yaml.safe_load((copy / "assessments.yaml").read_text())
    next(c for c in doc["columns"] if c["name"] == "ascites")["codes"].append("massive")
    doc["columns"].append({"name": "child_pugh", "type": "integer", "min": 5, "max": 15})
    (copy / "assessments.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    changed = load_contracts(str(copy))
    checks2 = {c.name: c for c in generate_checks(changed)}
    ascites2 = next(r for r in checks2["assessments_error_rules"].rules if r.name == "ascites_code")
    assert ascites2.kwargs["value_set"][-1] == "massive"
    assert {"child_pugh_type", "child_pugh_range"} <= {r.name for r in checks2["assessments_error_rules"].rules}
    assert suite_document(checks2["assessments_error_rules"]) != suite_document(checks["assessments_error_rules"])
    assert suite_fingerprint(changed) != suite_fingerprint(base)
    # the other suites are unchanged
    assert suite_document(checks2["labs_error_rules"]) == suite_document(checks["labs_error_rules"])

    # and the real GX suite follows
    from haic_pipeline.quality.gx_runtime import open_session
    from haic_pipeline.quality.suites import build_suite

    session = open_session()
    suite = build_suite(session.gx, checks2["assessments_error_rules"], "drop")
    in_set = [e for e in suite.expectations if getattr(e, "column", None) == "ascites"]
    assert "massive" in in_set[0].value_set
    assert any(getattr(e, "column", None) == "child_pugh" for e in suite.expectations)


def test_cross_table_rules_come_from_the_contract_files(tmp_path):
    checks = {c.name: c for c in generate_checks(load_contracts())}
    xt = checks["cross_table_rules"]
    assert {r.name for r in xt.rules} == {"death_before_index_date", "treatment_after_death",
                                          "event_after_last_contact"}
    assert xt.severity == "warn" and not xt.blocking
    copy = tmp_path / "contracts"
    shutil.copytree(project_root() / "data_contracts", copy)
    text = (copy / "vital_status.yaml").read_text().replace("labs.collected_at, ", "labs.collected_at, labs.nope, ")
    (copy / "vital_status.yaml").write_text(text)
    with pytest.raises(ValueError, match="labs.nope"):   # refused with the rest of the contract
        load_contracts(str(copy))


# ---------------------------------------------------------------------------------------------
# every expectation family fires on a hand-built drop


def test_each_expectation_family_fires(env, con):
    files = cohort(3)
    p1, p2 = pid(1), pid(2)
    files["patients.csv"].append(patient(pid(50), sex="Q", birth_date="2099-01-01"))
    files["patients.csv"].append(patient(pid(51), birth_date=""))
    files["treatments.csv"] += [
        {"patient_id": p1, "regimen": "MAGIC", "start_date": "2023-09-01"},
        {"patient_id": p1, "regimen": "TACE", "start_date": "2023-10-01", "end_date": "2023-09-01", "cycles": "0"},
        {"patient_id": p2, "regimen": "TACE", "start_date": "2023-13-45"},
        {"patient_id": p2, "regimen": "SORAFENIB", "start_date": "2025-01-01"},       # future + after death
        {"patient_id": pid(99), "regimen": "TACE", "start_date": "2023-06-01"},       # orphan
    ]
    files["assessments.csv"] += [
        {"patient_id": p1, "assessment_date": "2023-06-01", "ecog": "9", "tumor_count": "-1",
         "max_tumor_size_cm": "0", "ascites": "lots"},
        {"patient_id": p2, "assessment_date": "2023-06-02", "ecog": "one"},
    ]
    files["labs.csv"] += [
        {"patient_id": p1, "collected_at": "2023-05-02 08:00", "test_code": "TBIL", "value": "2", "unit": "mmol/L"},
        {"patient_id": p1, "collected_at": "2023-05-02 08:00", "test_code": "ALB", "value": "<2", "unit": "g/dL"},
        {"patient_id": p1, "collected_at": "2023-05-03 08:00", "test_code": "PLT", "value": "abc", "unit": "10^3/uL"},
        {"patient_id": p1, "collected_at": "2099-05-03 08:00", "test_code": "AFP", "value": "3", "unit": "ng/mL"},
        {"patient_id": p1, "collected_at": "2023-05-04 08:00", "test_code": "XYZ", "value": "3", "unit": "U/L"},
    ]
    files["imaging.csv"].append({"patient_id": p1, "scan_date": "2023-08-01", "modality": "PET",
                                 "mrecist_response": ""})
    files["vital_status.csv"][1] = {"patient_id": p2, "last_contact_date": "2023-12-01", "death_date": "2023-03-01"}
    write_drop(env / "inbox", E1, files)
    land(con, env / "inbox")
    outcomes = {o.check.name: o for o in run_all(con, reports_dir=env / "reports" / "quality")}
    fired = {}
    for o in outcomes.values():
        for rule, agg in rule_rows(o).items():
            fired[(o.check.name, rule)] = agg["unexpected"]
    expected = [
        ("patients_error_rules", "sex_code"), ("patients_error_rules", "birth_date_required"),
        ("patients_error_rules", "birth_date_in_future"),
        ("treatments_error_rules", "regimen_code"), ("treatments_error_rules", "start_date_type"),
        ("treatments_error_rules", "cycles_range"), ("treatments_error_rules", "orphan_patient"),
        ("treatments_warn_rules", "end_date_before_start_date"), ("treatments_warn_rules", "start_date_in_future"),
        ("assessments_error_rules", "ecog_range"), ("assessments_error_rules", "ecog_type"),
        ("assessments_error_rules", "tumor_count_range"), ("assessments_error_rules", "max_tumor_size_cm_range"),
        ("assessments_error_rules", "ascites_code"),
        ("labs_error_rules", "unit_for_test"), ("labs_error_rules", "value_type"),
        ("labs_error_rules", "test_code_code"), ("labs_warn_rules", "censored_value_not_afp"),
        ("labs_warn_rules", "collected_at_in_future"),
        ("imaging_error_rules", "modality_code"), ("imaging_error_rules", "mrecist_response_required"),
        ("vital_status_warn_rules", "last_contact_after_death"),
        ("cross_table_rules", "death_before_index_date"), ("cross_table_rules", "treatment_after_death"),
        ("cross_table_rules", "event_after_last_contact"),
    ]
    missing = [k for k in expected if not fired.get(k)]
    assert not missing, missing
    # clean families stay at zero
    assert fired[("labs_error_rules", "patient_id_pattern")] == 0
    assert fired[("labs_error_rules", "natural_key_unique")] == 0
    # the data_cutoff / sequence checks pass for a single drop
    assert outcomes["drop_sequence"].passed
    # ops.dq_results holds one row per rule and drop
    n = con.execute("SELECT count(*) FROM ops.dq_results WHERE extract_id = ? AND check_name = 'labs_error_rules'",
                    [E1]).fetchall()[0][0]
    assert n == len([r for r in outcomes["labs_error_rules"].check.rules if r.scope in ("drop", "drop_patient")])
    # the orphan rule counts patients: one treatments row of one orphan patient
    orphan = rule_rows(outcomes["treatments_error_rules"])["orphan_patient"]
    assert (orphan["unexpected"], orphan["evaluated"]) == (1, 3 + 1)
    cols = [d[0] for d in con.execute("SELECT * FROM ops.dq_results LIMIT 0").description]
    for c in ("refresh", "check_name", "severity", "passed", "evaluated", "unexpected", "extract_id"):
        assert c in cols


def test_structural_rules_missing_column_and_duplicate_key(env, con):
    write_drop(env / "inbox", E1, cohort(5))
    land(con, env / "inbox")
    assert run_check(con, "imaging_error_rules").passed
    con.execute("ALTER TABLE staging.imaging DROP COLUMN modality")
    con.execute("ALTER TABLE staging.imaging ALTER COLUMN scan_date TYPE VARCHAR")
    con.execute("INSERT INTO staging.imaging SELECT * FROM staging.imaging LIMIT 1")  # duplicate key
    out = run_check(con, "imaging_error_rules")
    rules = rule_rows(out)
    assert not out.passed
    assert rules["columns_present"]["unexpected"] == 1 and not rules["columns_present"]["passed"]
    assert rules["column_types"]["unexpected"] == 1
    assert rules["natural_key_unique"]["unexpected"] == 2 and not rules["natural_key_unique"]["passed"]
    assert rules["modality_code"]["passed"]  # the drop itself is fine


# ---------------------------------------------------------------------------------------------
# exception_info: an expectation that raised fails loudly


def test_expectation_that_raises_is_not_a_pass(env, con, monkeypatch):
    from haic_pipeline.quality.gx_runtime import open_session
    from haic_pipeline.quality.speed.attribution import run_frame
    from haic_pipeline.quality.validate import SuiteRunner, add_chunk, exception_message, finish, new_results

    check = next(c for c in generate_checks(load_contracts()) if c.name == "assessments_error_rules")
    runner = SuiteRunner(open_session(), check, "drop")
    df = pd.DataFrame({"ecog": ["1", "2", "x"]})  # strings for a numeric range; every other column missing
    per_rule = new_results(runner.rules, "E")
    add_chunk(per_rule, run_frame(runner, df, np.zeros(3, dtype=np.int8))[0])
    results = {r.rule.name: r for r in finish(per_rule)}
    assert results["ecog_range"].exception and not results["ecog_range"].passed
    assert results["ascites_code"].exception and not results["ascites_code"].passed
    assert exception_message({"raised_exception": False, "exception_message": None}) is None
    assert exception_message({"m1": {"raised_exception": True, "exception_message": "boom"}}) == "boom"

    # through the gate: the drop frame delivers ECOG as text -> the check fails, is not cached
    write_drop(env / "inbox", E1, cohort(5))
    land(con, env / "inbox")
    original = frames.drop_frame_sql
    monkeypatch.setattr(frames, "drop_frame_sql",
                        lambda c, rules: original(c, rules).replace("t.ecog AS", "t.ecog::VARCHAR AS"))
    out = run_check(con, "assessments_error_rules")
    assert not out.passed and out.exceptions and out.severity == "error"
    assert any("ecog_range" in e for e in out.exceptions)
    monkeypatch.setattr(frames, "drop_frame_sql", original)
    again = run_check(con, "assessments_error_rules")
    assert again.passed and not again.cached and again.validated_now == [E1]


# ---------------------------------------------------------------------------------------------
# drop-level checks


def test_drop_level_warn_on_halving_and_error_on_cutoff_going_backwards(env, con):
    write_drop(env / "inbox", E1, cohort(200))
    write_drop(env / "inbox", E2, cohort(200, start=1001))
    land(con, env / "inbox")
    assert run_check(con, "drop_changes").passed
    assert run_check(con, "drop_sequence").passed
    write_drop(env / "inbox", E3, cohort(80, start=2001), data_cutoff="2024-01-15")  # E2's cutoff: 2024-02-01
    land(con, env / "inbox")
    changes = run_check(con, "drop_changes")
    assert not changes.passed and changes.severity == "warn" and changes.failing_extract_ids == [E3]
    row = next(r for r in changes.rows if r["rule"] == "row_count_change" and r["extract_id"] == E3)
    assert row["details"]["ratio"]["patients"] == 0.4 and "labs" in row["details"]["flagged_domains"]
    seq = run_check(con, "drop_sequence")
    assert not seq.passed and seq.severity == "error" and seq.check.blocking
    bad = [r for r in seq.rows if not r["passed"]]
    assert [(r["rule"], r["extract_id"]) for r in bad] == [("data_cutoff_not_backwards", E3)]
    assert bad[0]["details"]["previous_data_cutoff"] == "2024-02-01"


# ---------------------------------------------------------------------------------------------
# caching


def test_nothing_new_returns_the_stored_result_without_importing_gx(env, con):
    write_drop(env / "inbox", E1, cohort(5))
    land(con, env / "inbox")
    first = run_check(con, "labs_error_rules")
    assert not first.cached and first.validated_now == [E1]
    con.close()
    code = (
        "import sys, duckdb, os\n"
        "from haic_pipeline.quality.gate import run_check\n"
        "con = duckdb.connect(os.environ['HAIC_WAREHOUSE'])\n"
        "o = run_check(con, 'labs_error_rules')\n"
        "assert o.cached and o.passed and o.validated_now == [], o\n"
        "assert 'great_expectations' not in sys.modules\n"
        "print('ok', round(o.seconds, 3))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")


# ---------------------------------------------------------------------------------------------
# real Dagster refresh runs: thresholds, blocking, metadata, identifiers, report


def _ingest_and_refresh(instance, extract_ids):
    from haic_pipeline.defs.ingest.assets import DROPS

    defs = load()
    for eid in extract_ids:
        if not instance.has_dynamic_partition(DROPS.name, eid):
            instance.add_dynamic_partitions(DROPS.name, [eid])
        assert defs.resolve_job_def("ingest_drop").execute_in_process(
            partition_key=eid, instance=instance, resources=resources_for(load_settings())).success
    return defs.resolve_job_def("refresh").execute_in_process(
        instance=instance, resources=resources_for(load_settings()), raise_on_error=False)


def _checks(result) -> dict:
    """The evaluations of this issue's checks (other areas define checks of their own)."""
    ours = {c.name for c in all_checks()}
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.asset_check_evaluation_data.check_name in ours}


def _materialized(result) -> set:
    return {e.asset_key.to_user_string() for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}


def _metadata_text(evaluation) -> str:
    return " ".join(f"{k}={getattr(v, 'value', v)}" for k, v in evaluation.metadata.items())


IDENTIFIERS = ("홍길동", "1958-04-01")


def _one_drop_refreshed(env, files: dict) -> tuple:
    """`files` delivered as drop E1, landed and refreshed (an in-memory instance): the run and the
    evaluations of the data-quality checks."""
    write_drop(env / "inbox", E1, files)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _ingest_and_refresh(instance, [E1])
    return result, _checks(result)


def test_refresh_one_odd_row_passes_and_is_quarantined(env):
    write_drop(env / "inbox", E1, cohort(60, bad_ecog=1))
    with dg.DagsterInstance.ephemeral() as instance:
        result = _ingest_and_refresh(instance, [E1])
        checks = _checks(result)
        assert checks["assessments_error_rules"].passed
        assert checks["patients_error_rules"].passed
        assert {"staging/assessments", "staging/labs", "staging/treatments"} <= _materialized(result)
        md = checks["assessments_error_rules"].metadata
        assert "1 unexpected / 60 evaluated" in md["rule: ecog_range"].value
        report = Path(md["report"].value)
        assert report.is_file() and report.parent == Path(load_settings().reports) / "quality"

        # a second refresh with no new drop: every check answers from ops.dq_results
        again = _checks(_ingest_and_refresh(instance, []))
        assert len(again) == len(all_checks())
        assert all(ev.metadata["cached"].value for ev in again.values())
        assert "stored result" in again["labs_error_rules"].metadata["note"].value
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        q = con.execute("SELECT count(*) FROM ops.quarantine WHERE check_name = 'ecog_range'").fetchall()[0][0]
        assert q == 1
        n = con.execute("SELECT count(DISTINCT refresh) FROM ops.dq_results").fetchall()[0][0]
        assert n == 1  # the cached refresh wrote nothing new


def test_refresh_systematically_broken_drop_fails_and_blocks_downstream(env):
    pids = [pid(i) for i in range(1, 41)]
    result, checks = _one_drop_refreshed(env, cohort(40, bad_ecog=12, bad_sex=12))  # 30 % bad ECOG, 30 % bad sex
    patients = checks["patients_error_rules"]
    assert not patients.passed and patients.severity == dg.AssetCheckSeverity.ERROR
    assert "sex_code" in patients.metadata["result"].value
    assert "12 unexpected / 40 evaluated (30.00 %, max 2 %): FAILED" in patients.metadata["rule: sex_code"].value
    assert E1 in patients.metadata["extract_ids_failing"].value
    assert "sex_code" in patients.metadata["summary"].value
    # staging/patients is upstream of every other staging table: none of them is materialized
    materialized = _materialized(result)
    assert "staging/patients" in materialized
    assert not ({"staging/treatments", "staging/assessments", "staging/labs", "staging/imaging",
                 "staging/vital_status"} & materialized)
    # no identifier in any check metadata, nor in the report
    text = " ".join(_metadata_text(ev) for ev in checks.values())
    report = Path(patients.metadata["report"].value).read_text()
    for value in IDENTIFIERS + tuple(pids):
        assert value not in text and value not in report
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        rows = con.execute("SELECT passed, unexpected, severity FROM ops.dq_results WHERE rule = 'sex_code'").fetchall()
        assert rows == [(False, 12, "error")]


def test_refresh_bad_ecog_fails_the_blocking_assessments_check(env):
    _, checks = _one_drop_refreshed(env, cohort(40, bad_ecog=12))
    ev = checks["assessments_error_rules"]
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert "ecog_range" in ev.metadata["result"].value
    assert checks["patients_error_rules"].passed
    assert load().resolve_asset_graph().get_check_spec(
        dg.AssetCheckKey(dg.AssetKey(["staging", "assessments"]), "assessments_error_rules")).blocking


# ---------------------------------------------------------------------------------------------
# offline and contained


def _project_files() -> set:
    root = project_root()
    skip_dirs = {".venv", ".git", "__pycache__", ".pytest_cache", "warehouse", "node_modules"}
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs]
        for f in filenames:
            # other engineers edit sources concurrently: only look for what GX could write
            if f.endswith((".py", ".md", ".sql", ".yaml", ".toml", ".txt", ".cfg")) and "gx" not in dirpath:
                continue
            out.add(os.path.join(dirpath, f))
    return out


def test_gx_stays_offline_and_writes_nothing(env, con, monkeypatch, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    home_before = set(os.listdir(Path.home())) if Path.home().exists() else set()
    before = _project_files()
    write_drop(env / "inbox", E1, cohort(5))
    land(con, env / "inbox")
    outcomes = run_all(con, reports_dir=env / "reports" / "quality")
    assert all(o.passed for o in outcomes if o.check.name != "drop_changes")
    assert list(cwd.iterdir()) == []
    assert not (project_root() / "gx").exists()
    assert _project_files() == before
    assert set(os.listdir(Path.home())) - home_before == set()
    assert os.environ["GX_ANALYTICS_ENABLED"] == "False"
    from haic_pipeline.quality.gx_runtime import ephemeral_context

    ctx = ephemeral_context()
    assert ctx.variables.analytics_enabled is False
    assert ctx.variables.progress_bars.globally is False
    assert type(ctx).__name__ == "EphemeralDataContext"
    assert ctx.get_docs_sites_urls() == []
    assert sorted(p.name for p in (env / "reports" / "quality").iterdir()) == ["index.html"]
