"""`_defaults.yaml` means what it says: every threshold and minimum count a contract leaves out is
settled from it, once, in the contracts layer, and a changed default changes a drop's verdict.
A real drop, a real DuckDB file, real GX."""

from __future__ import annotations

import shutil

import pytest
import yaml

from haic_pipeline.contracts import ContractError, load_contracts, load_defaults
from haic_pipeline.quality.gate import run_check
from haic_pipeline.quality.suites import generate_checks
from haic_pipeline.settings import project_root

from ..dropkit import land, write_drop
from .test_quality import E1, cohort, pid


def _contracts_with(tmp_path, **defaults) -> str:
    folder = tmp_path / "contracts"
    shutil.copytree(project_root() / "data_contracts", folder)
    doc = yaml.safe_load((folder / "_defaults.yaml").read_text())
    doc["defaults"].update(defaults)
    (folder / "_defaults.yaml").write_text(yaml.safe_dump(doc))
    return str(folder)


def _rule(checks, check: str, rule: str):
    return next(r for c in checks if c.name == check for r in c.rules if r.name == rule)


def test_every_default_reaches_the_rules_it_governs(tmp_path):
    base = generate_checks(load_contracts())
    folder = _contracts_with(tmp_path, orphan_max_share=0.3, value_max_share=0.04, plausibility_max_share=0.07,
                             structural_max_share=0.01, min_count_rows=9, min_count_patients=4)
    changed = generate_checks(load_contracts(folder))
    orphan = _rule(changed, "labs_error_rules", "orphan_patient")
    assert (orphan.max_share, orphan.min_count, orphan.unit) == (0.3, 4, "patient")
    assert _rule(base, "labs_error_rules", "orphan_patient").max_share == load_defaults().orphan_max_share
    ecog = _rule(changed, "assessments_error_rules", "ecog_range")
    assert (ecog.max_share, ecog.min_count) == (0.04, 9)
    sex = _rule(changed, "patients_error_rules", "sex_code")               # one row per patient
    assert (sex.max_share, sex.min_count, sex.unit) == (0.04, 4, "patient")
    dup = _rule(changed, "labs_error_rules", "duplicate_key_conflict")
    assert (dup.max_share, dup.min_count) == (0.04, 9)
    unique = _rule(changed, "labs_error_rules", "natural_key_unique")
    assert (unique.max_share, unique.min_count) == (0.01, 9)
    death = _rule(changed, "cross_table_rules", "death_before_index_date")
    assert death.max_share == 0.05 and death.min_count == 4              # its contract sets 0.05
    # a contract's own number wins over the default
    future = _rule(changed, "labs_warn_rules", "collected_at_in_future")
    assert (future.max_share, future.min_count) == (0.05, 9)


def test_a_changed_orphan_default_changes_the_verdict(env, con, tmp_path):
    files = cohort(60)
    files["labs.csv"] += [{"patient_id": pid(i), "collected_at": "2023-05-01 08:00", "test_code": "ALB",
                           "value": "3.5", "unit": "g/dL"} for i in range(901, 904)]   # 3 orphan patients
    write_drop(env / "inbox", E1, files)
    land(con, env / "inbox")
    # 3 of 63 patients (4.8 %): above the 2 % default, at the 3-patient minimum count
    assert not run_check(con, "labs_error_rules").passed
    lenient = _contracts_with(tmp_path, orphan_max_share=0.05)
    assert run_check(con, "labs_error_rules", folder=lenient).passed
    strict_count = _contracts_with(tmp_path / "b", min_count_patients=4)
    assert run_check(con, "labs_error_rules", folder=strict_count).passed


@pytest.mark.parametrize("key, value, message", [
    ("orphan_max_shares", 0.1, "unknown key"),
    ("orphan_max_share", 1.5, "orphan_max_share is 1.5"),
    ("min_count_rows", 0, "min_count_rows is 0"),
])
def test_a_bad_default_is_refused_with_its_key(tmp_path, key, value, message):
    with pytest.raises(ContractError, match=message):
        load_contracts(_contracts_with(tmp_path, **{key: value}))
