"""A live study never freezes: rules judged by their unit with a minimum count, a block that lifts
by itself when a later drop supersedes the offending rows, and the data engineer's recorded ways
out (retract, waive), each through real Dagster refreshes on real drops and a real DuckDB file."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from haic_pipeline.cli.main import main
from haic_pipeline.defs.ingest.assets import RAW_KEYS
from haic_pipeline.settings import load_settings

from ..conftest import local_instance
from ..dropkit import write_drop
from .test_quality import E1, E2, _checks, _ingest_and_refresh, _materialized, cohort, pid

DOWNSTREAM = {"staging/cohort", "staging/endpoints"}


def _orphan_labs(first: int, n_patients: int, per_patient: int) -> list[dict]:
    return [{"patient_id": pid(i), "collected_at": f"2023-05-{1 + k:02d} 08:00", "test_code": "ALB",
             "value": "3.5", "unit": "g/dL"} for i in range(first, first + n_patients) for k in range(per_patient)]


def _truncated(n: int, kept: int) -> dict:
    """n patients' rows in every domain, but patients.csv cut after `kept` rows."""
    files = cohort(n)
    files["patients.csv"] = files["patients.csv"][:kept]
    return files


def _wh(read_only=True):
    return duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=read_only)


def _orphan_rows(extract_id: str) -> list[tuple]:
    with _wh() as con:
        return con.execute("SELECT passed, unexpected, evaluated, details->>'rejudged' IS NOT NULL FROM ops.dq_results "
                           "WHERE check_name = 'treatments_error_rules' AND rule = 'orphan_patient' "
                           "AND extract_id = ? ORDER BY checked_at", [extract_id]).fetchall()


def test_two_orphan_patients_pass_with_their_rows_quarantined(env):
    files = cohort(60)
    files["labs.csv"] += _orphan_labs(901, 2, 12)      # 24 lab rows of 2 patients in no patients.csv
    write_drop(env / "inbox", E1, files)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _ingest_and_refresh(instance, [E1])
        labs = _checks(result)["labs_error_rules"]
        assert labs.passed
        # 2 of 62 patients is above 2 %, but under the 3-patient minimum count; counted in patients
        assert "2 unexpected / 62 evaluated" in labs.metadata["rule: orphan_patient"].value
        assert result.success and DOWNSTREAM <= _materialized(result)
    with _wh() as con:
        assert con.execute("SELECT count(*) FROM ops.quarantine WHERE domain = 'labs' "
                           "AND check_name = 'orphan_patient'").fetchall()[0][0] == 24


def test_truncated_patients_file_blocks_and_the_block_lifts_when_the_patients_arrive(env):
    write_drop(env / "inbox", E1, _truncated(40, kept=10))     # 30 of 40 patients orphaned
    with dg.DagsterInstance.ephemeral() as instance:
        result = _ingest_and_refresh(instance, [E1])
        checks = _checks(result)
        assert not checks["treatments_error_rules"].passed
        assert "30 unexpected / 40 evaluated" in checks["treatments_error_rules"].metadata["rule: orphan_patient"].value
        assert not result.success and not (DOWNSTREAM & _materialized(result))

        # nothing changes: the next refresh is blocked the same way
        assert not _checks(_ingest_and_refresh(instance, []))["treatments_error_rules"].passed

        # the missing patients' rows arrive in a later drop: E1's orphans are released in staging
        # and E1 is judged again on what it still contributes (nothing): the block lifts by itself
        write_drop(env / "inbox", E2, {"patients.csv": cohort(40)["patients.csv"][10:]})
        result = _ingest_and_refresh(instance, [E2])
        checks = _checks(result)
        assert checks["treatments_error_rules"].passed, checks["treatments_error_rules"].metadata
        assert result.success and DOWNSTREAM <= _materialized(result)
    # the history stays: the failed validation, then the judgment on what E1 still contributes
    assert _orphan_rows(E1) == [(False, 30, 40, False), (True, 0, 40, True)]
    with _wh() as con:
        assert con.execute("SELECT count(*) FROM staging.cohort").fetchall()[0][0] > 0


def test_block_lifts_when_a_later_drop_supersedes_the_offending_rows(env):
    files = cohort(40)
    for row in files["labs.csv"][:10]:
        row["unit"] = "furlongs"                          # 10 of 80 lab rows: unit_for_test
    write_drop(env / "inbox", E1, files)
    with dg.DagsterInstance.ephemeral() as instance:
        assert not _checks(_ingest_and_refresh(instance, [E1]))["labs_error_rules"].passed
        fixed = [dict(r, unit="g/dL" if r["test_code"] == "ALB" else "ng/mL") for r in files["labs.csv"][:10]]
        write_drop(env / "inbox", E2, {"labs.csv": fixed})       # the same keys, delivered again
        result = _ingest_and_refresh(instance, [E2])
        assert _checks(result)["labs_error_rules"].passed
        assert result.success
    with _wh() as con:
        rows = con.execute("SELECT passed, unexpected FROM ops.dq_results WHERE rule = 'unit_for_test' "
                           "AND extract_id = ? ORDER BY checked_at", [E1]).fetchall()
        assert rows == [(False, 10), (True, 0)]


@contextmanager
def _blocked_study(blocked, env):
    """A copy of the study blocked by its first `haic run` (conftest.refreshed_blocked: a clean
    first drop E1, then a delta drop E2 with 10 of 20 ECOG values out of range), opened with that
    run's history as the Dagster instance."""
    assert blocked.code == 1 and "check failed: assessments_error_rules (blocking)" in blocked.stdout, blocked.stdout
    blocked.copy_into(env)
    with local_instance(temp_dir=str(env / "dagster_home")) as instance:
        yield instance


def _status(capsys) -> str:
    capsys.readouterr()
    assert main(["status"]) == 0
    return capsys.readouterr().out


def _report() -> str:
    return (Path(load_settings().reports) / "study_report.md").read_text()


def test_retract_unblocks_is_recorded_and_shows_everywhere(refreshed_blocked, env, capsys):
    with _blocked_study(refreshed_blocked, env) as instance:
        out = _status(capsys)
        assert "STUDY BLOCKED" in out and "assessments_error_rules" in out and E2 in out
        assert "haic drop retract" in out and "haic check waive" in out

        with pytest.raises(SystemExit, match="reason"):
            main(["drop", "retract", E2, "--reason", "  "])
        with pytest.raises(SystemExit, match="patient_id"):
            main(["drop", "retract", E2, "--reason", "patient 10000041 is wrong"])
        assert main(["drop", "retract", E2, "--reason", "ECOG exported as a code list"]) == 0
        result = _ingest_and_refresh(instance, [])
        assert _checks(result)["assessments_error_rules"].passed
        assert result.success and DOWNSTREAM <= _materialized(result)

        # the Dagster partition says retracted (an observation the UI shows with the drop's events)
        obs = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=RAW_KEYS["assessments"], asset_partitions=[E2]), limit=1).records
        assert obs and obs[0].asset_observation.metadata["status"].value == "retracted"
    with _wh() as con:
        assert con.execute("SELECT count(*) FROM staging.assessments WHERE _extract_id = ?", [E2]).fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM raw.assessments WHERE _extract_id = ?", [E2]).fetchall()[0][0] == 20
        assert con.execute("SELECT count(*) FROM staging.cohort").fetchall()[0][0] == 40
        assert con.execute("SELECT DISTINCT status FROM ops.drops WHERE extract_id = ?", [E2]).fetchall() == [
            ("retracted",)]
        assert ("retracted",) in con.execute("SELECT status FROM ops.load_log WHERE extract_id = ?", [E2]).fetchall()
        assert con.execute("SELECT action, reason FROM ops.interventions").fetchall() == [
            ("retract", "ECOG exported as a code list")]
    out = _status(capsys)
    assert "STUDY BLOCKED" not in out and f"retracted: drop {E2}" in out
    report = _report()
    assert "drop retracted" in report and "ECOG exported as a code list" in report and "1 drop(s) retracted" in report

    # a re-delivery of the retracted extract_id is refused, with the way to undo the retraction
    shutil.rmtree(env / "inbox" / E2)
    write_drop(env / "inbox", E2, cohort(20, start=41))
    with dg.DagsterInstance.ephemeral() as instance:
        from haic_pipeline.defs.ingest.assets import DROPS
        from haic_pipeline.definitions import load
        from haic_pipeline.defs.resources import resources_for

        instance.add_dynamic_partitions(DROPS.name, [E2])
        run = load().resolve_job_def("ingest_drop").execute_in_process(
            partition_key=E2, instance=instance, resources=resources_for(load_settings()), raise_on_error=False)
        assert not run.success
        failure = next(e for e in run.all_events if e.is_step_failure)
        assert "retracted" in failure.event_specific_data.error.message
        assert f"haic drop restore {E2}" in failure.event_specific_data.error.message

    # restoring it brings the drop (as first delivered) and the block back
    assert main(["drop", "restore", E2, "--reason", "retracted by mistake"]) == 0
    with dg.DagsterInstance.ephemeral() as instance:
        assert not _checks(_ingest_and_refresh(instance, []))["assessments_error_rules"].passed
    assert "STUDY BLOCKED" in _status(capsys)


def test_waive_unblocks_is_recorded_and_shows_everywhere(refreshed_blocked, env, capsys):
    with _blocked_study(refreshed_blocked, env) as instance:
        assert "STUDY BLOCKED" in _status(capsys)
        with pytest.raises(SystemExit, match="does not fail"):
            main(["check", "waive", "assessments_error_rules", E1, "--reason", "nothing to waive"])
        with pytest.raises(SystemExit, match="no check"):
            main(["check", "waive", "assesments_error_rules", E2, "--reason", "typo"])
        assert main(["check", "waive", "assessments_error_rules", E2, "--reason", "ECOG 7 rows known, vendor ticket"]) == 0
        result = _ingest_and_refresh(instance, [])
        check = _checks(result)["assessments_error_rules"]
        assert check.passed and "waived" in check.metadata["result"].value
        assert "vendor ticket" in check.metadata["waivers"].value and E2 in check.metadata["waivers"].value
        assert result.success and DOWNSTREAM <= _materialized(result)
    with _wh() as con:
        (check_name, eid, reason, rules, by, _at), = con.execute("SELECT * FROM ops.waivers").fetchall()
        # the engineer's words as typed; the failing rules in their own column
        assert (check_name, eid, reason, rules) == ("assessments_error_rules", E2, "ECOG 7 rows known, vendor ticket",
                                                    ["ecog_range"]) and by
        # the failure itself stays on record
        assert con.execute("SELECT count(*) FROM ops.dq_results WHERE extract_id = ? AND rule = 'ecog_range' "
                           "AND NOT passed", [E2]).fetchall()[0][0] >= 1
        assert con.execute("SELECT count(*) FROM staging.cohort").fetchall()[0][0] == 60
    out = _status(capsys)
    assert "STUDY BLOCKED" not in out and f"waived: assessments_error_rules for drop {E2} (rules ecog_range)" in out
    report = _report()
    assert "check waived" in report and "vendor ticket" in report and "1 check waiver(s) in force" in report

    # revoking the waiver blocks the study again at the next refresh
    assert main(["check", "revoke", "assessments_error_rules", E2, "--reason", "vendor fixed nothing"]) == 0
    with dg.DagsterInstance.ephemeral() as instance:
        assert not _checks(_ingest_and_refresh(instance, []))["assessments_error_rules"].passed
    assert "STUDY BLOCKED" in _status(capsys)
