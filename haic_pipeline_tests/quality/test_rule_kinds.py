"""The rule-kind matrix: for each kind of rule (an unknown code, an out-of-range value, a
duplicate key, end before start, death before index, a backwards data_cutoff, a half-size drop)
a real Dagster refresh (`ingest_drop` per drop, then `refresh`) on a small hand-built drop,

- `odd`: once as a single odd row (the five row rules' odd rows in one drop, on rows of their own;
  for the two drop-level rules: one benign second drop): the check
  passes, the run succeeds and every asset of the refresh job is materialized; the row is in
  ops.quarantine (error rules) or ops.row_flags (warn rules) under the rule's check_name and the
  Great Expectations count equals it (cross-table rules: the check lists each patient, domain
  'cross_table');
- `systematic`: once above the rule's threshold: the right check fails with the right severity
  (ERROR and blocking for error rules: nothing downstream of the checked asset is materialized
  in that run; WARN for warn rules: everything is).

Thresholds (data_contracts/_defaults.yaml): values 2 %, plausibility 5 %; a rule with a non-zero
threshold fails only from its minimum count of offences on (`min_count_rows` 5,
`min_count_patients` 3), which the odd cases of the 2 % rules rely on (1 row of 40 is 2.5 %).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from haic_pipeline.contracts import load_contracts
from haic_pipeline.definitions import load
from haic_pipeline.ingest import patient_key
from haic_pipeline.quality.gate import all_checks, run_check
from haic_pipeline.quality.suites import generate_checks, suite_fingerprint
from haic_pipeline.settings import project_root

from ..conftest import TEST_KEY
from ..dropkit import land, patient, write_drop
from .test_quality import E1, E2, _checks, _ingest_and_refresh, _materialized, cohort, pid

N = 40          # patients per drop
BAD = 10        # offending rows of a systematic case: 25 %, far above 2 % and 5 %


# ---------------------------------------------------------------------------------------------
# the asset graph of the refresh job


@functools.cache
def _graph() -> tuple[frozenset, dict]:
    defs = load()
    graph = defs.resolve_asset_graph()
    job = frozenset(k.to_user_string() for k in defs.resolve_job_def("refresh").asset_layer.selected_asset_keys)
    return job, graph


def job_assets() -> frozenset:
    return _graph()[0]


def downstream(asset: str) -> set[str]:
    graph = _graph()[1]
    out, todo = set(), [dg.AssetKey(asset.split("/"))]
    while todo:
        for child in graph.get(todo.pop()).child_keys:
            if child.to_user_string() not in out:
                out.add(child.to_user_string())
                todo.append(child)
    return out


# ---------------------------------------------------------------------------------------------
# the drops of each case: (inbox, offending rows) -> the extract_ids written, in order


def _one_drop(mutate: Callable[[dict, int], None]) -> Callable[[Path, int], list[str]]:
    def write(inbox: Path, bad: int) -> list[str]:
        files = cohort(N)
        mutate(files, bad)
        write_drop(inbox, E1, files)
        return [E1]
    return write


def _unknown_modality(files, bad):
    for row in files["imaging.csv"][:bad]:
        row["modality"] = "PET"


def _zero_cycles(files, bad):
    for row in files["treatments.csv"][:bad]:
        row["cycles"] = "0"


def _conflicting_afp(files, bad):
    labs = files["labs.csv"]                       # AFP, ALB per patient
    for i in range(bad):                           # the same AFP key again, another value: the later
        labs.append(dict(labs[2 * i], value="13"))  # row wins, the delivered one is a conflict
    labs.append(dict(labs[-1]))                    # an exact duplicate: dropped silently, no conflict


def _end_before_start(files, bad, first=0):
    for row in files["treatments.csv"][first:first + bad]:
        row["end_date"] = "2023-04-01"             # start_date 2023-05-01


def _death_before_index(files, bad, first=0):
    for row in files["vital_status.csv"][first:first + bad]:    # index = the HAIC_FP start, 2023-05-01
        row.update(last_contact_date="2023-04-15", death_date="2023-04-15")


def _every_row_kind_once(inbox: Path, bad: int) -> list[str]:
    """One drop with one odd row of each row rule, each on a patient of its own where two rules
    would meet (patient 1's treatment breaks the cycles range; patient 2's ends before it starts;
    patient 3 died before the index date; patient 1's imaging and AFP carry the other two)."""
    files = cohort(N)
    _unknown_modality(files, bad)
    _zero_cycles(files, bad)
    _conflicting_afp(files, bad)
    _end_before_start(files, bad, first=1)
    _death_before_index(files, bad, first=2)
    write_drop(inbox, E1, files)
    return [E1]


def _second_drop(first: int, second: int, cutoff: str | None = None) -> Callable[[Path, int], list[str]]:
    """Two drops of new patients each (so that only the figure under test moves)."""
    def write(inbox: Path, _bad: int) -> list[str]:
        write_drop(inbox, E1, cohort(first))
        write_drop(inbox, E2, cohort(second, start=1001), data_cutoff=cutoff)
        return [E1, E2]
    return write


# the odd case of both drop-level rules: E1's data_cutoff again (not backwards), 90 % of its size
# (flagged from x0.5 down)
_benign_second_drop = _second_drop(N, N * 9 // 10, cutoff="2024-01-01")


@dataclass(frozen=True)
class RuleKind:
    kind: str
    check: str                  # the Dagster asset check (= ops.dq_results.check_name)
    rule: str                   # the rule (= ops.quarantine / ops.row_flags check_name)
    severity: str               # error (blocking) | warn
    asset: str                  # the checked asset
    domain: str | None          # the staging domain of a row rule
    routed: str | None          # where staging puts an offending row; None: measured only
    # the drops of the systematic case; the odd case is the one every rule of its level shares
    # (row rules: _every_row_kind_once; drop-level rules: _benign_second_drop)
    systematic: Callable[[Path, int], list[str]]

    @property
    def row_rule(self) -> bool:
        return self.domain is not None


KINDS = [
    RuleKind("unknown_code", "imaging_error_rules", "modality_code", "error", "staging/imaging",
             "imaging", "ops.quarantine", _one_drop(_unknown_modality)),
    RuleKind("out_of_range", "treatments_error_rules", "cycles_range", "error", "staging/treatments",
             "treatments", "ops.quarantine", _one_drop(_zero_cycles)),
    RuleKind("duplicate_key", "labs_error_rules", "duplicate_key_conflict", "error", "staging/labs",
             "labs", "ops.quarantine", _one_drop(_conflicting_afp)),
    RuleKind("end_before_start", "treatments_warn_rules", "end_date_before_start_date", "warn",
             "staging/treatments", "treatments", "ops.row_flags",
             _one_drop(_end_before_start)),
    # cross-table rules are judged by the gate on joined staging tables: the check lists each
    # offending patient in ops.row_flags (domain 'cross_table', pointing at the vital_status row)
    RuleKind("death_before_index", "cross_table_rules", "death_before_index_date", "warn",
             "staging/vital_status", "vital_status", "ops.row_flags",
             _one_drop(_death_before_index)),
    # E1's data_cutoff is 2024-01-01: the bad second drop's is older (the benign one's the same)
    RuleKind("backwards_data_cutoff", "drop_sequence", "data_cutoff_not_backwards", "error",
             "staging/patients", None, None, _second_drop(N, N, cutoff="2023-12-15")),
    # every domain is compared, however small (40 patients = 80 lab rows): the bad drop is exactly
    # half of the first (flagged from x0.5 down, 20 rows and more apart; the benign one is 90 % of it)
    RuleKind("half_size_drop", "drop_changes", "row_count_change", "warn", "staging/patients", None, None,
             _second_drop(N, N // 2)),
]

# each systematic case a drop of its own; the odd cases shared: the row rules' odd rows in one drop
# (test_one_odd_row_of_each_row_rule_kind), the drop-level rules' in one benign second drop
# (test_one_benign_second_drop_for_each_drop_rule_kind)
CASES = [pytest.param(k, id=f"{k.kind}-systematic") for k in KINDS]
ROW_KINDS = [k for k in KINDS if k.row_rule]
DROP_KINDS = [k for k in KINDS if not k.row_rule]


# ---------------------------------------------------------------------------------------------
# what the warehouse says after the run


def _dq(con, k: RuleKind, extract_id: str) -> tuple:
    rows = con.execute(
        "SELECT passed, evaluated, unexpected, severity FROM ops.dq_results WHERE check_name = ? AND rule = ? "
        "AND extract_id = ? ORDER BY checked_at DESC", [k.check, k.rule, extract_id]).fetchall()
    assert rows, f"no ops.dq_results row for {k.check}/{k.rule}/{extract_id}"
    return rows[0]


def _routed(con, k: RuleKind, extract_id: str) -> int:
    domain = "cross_table" if k.check == "cross_table_rules" else k.domain
    return con.execute(f"SELECT count(*) FROM {k.routed} WHERE domain = ? AND check_name = ? AND extract_id = ?",
                       [domain, k.rule, extract_id]).fetchall()[0][0]


@pytest.mark.parametrize("k", CASES)
def test_rule_kind(env, k: RuleKind):
    extract_ids = k.systematic(env / "inbox", BAD)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _ingest_and_refresh(instance, extract_ids)
    _assert_run(k, "systematic", result, extract_ids[-1])
    _assert_warehouse(k, "systematic", BAD, extract_ids[-1])


def test_one_odd_row_of_each_row_rule_kind(env):
    """The `odd` case of every row rule, in one drop and one refresh: each check passes, the run
    completes, and each odd row is where its rule routes it, counted as Great Expectations counts it."""
    extract_ids = _every_row_kind_once(env / "inbox", 1)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _ingest_and_refresh(instance, extract_ids)
    for k in ROW_KINDS:
        _assert_run(k, "odd", result, extract_ids[-1])
        # patient 1's treatment (cycles out of range) is quarantined: one row fewer for the other
        # treatment rule
        others_removed = 1 if k.kind == "end_before_start" else 0
        _assert_warehouse(k, "odd", 1, extract_ids[-1], others_removed)


def test_one_benign_second_drop_for_each_drop_rule_kind(env):
    """The `odd` case of both drop-level rules, in one refresh of a benign second drop: each check
    passes with what it compared (the previous cutoff, the share of each domain), and the run completes."""
    extract_ids = _benign_second_drop(env / "inbox", 1)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _ingest_and_refresh(instance, extract_ids)
    assert {k.kind for k in DROP_KINDS} == {"backwards_data_cutoff", "half_size_drop"}
    for k in DROP_KINDS:
        _assert_run(k, "odd", result, extract_ids[-1])
        _assert_warehouse(k, "odd", 1, extract_ids[-1])


def _assert_run(k: RuleKind, scale: str, result, last: str) -> None:
    """The run: its checks, their severity and what it materialized."""
    checks = _checks(result)
    materialized = _materialized(result)
    ev = checks[k.check]
    others = {name: e.passed for name, e in checks.items() if name != k.check}
    if scale == "odd":
        # the check passes, the run completes, everything is rebuilt
        assert ev.passed, (k.kind, ev.metadata["result"].value)
        assert result.success, k.kind
        assert len(checks) == len(all_checks()) and all(others.values()), others
        assert materialized == job_assets(), sorted(job_assets() - materialized)
        if k.row_rule:
            assert ev.metadata[f"rule: {k.rule}"].value.startswith("1 unexpected / "), k.kind
        return
    # the right check fails, with the right severity, on the rule and the drop under test
    assert not ev.passed
    assert ev.severity == (dg.AssetCheckSeverity.ERROR if k.severity == "error" else dg.AssetCheckSeverity.WARN)
    assert k.rule in ev.metadata["result"].value
    assert ev.metadata[f"rule: {k.rule}"].value.endswith(": FAILED")
    assert ev.metadata["extract_ids_failing"].value == last
    assert not [n for n, ok in others.items() if not ok], others  # nothing else fails
    spec = load().resolve_asset_graph().get_check_spec(dg.AssetCheckKey(dg.AssetKey(k.asset.split("/")), k.check))
    assert spec.blocking == (k.severity == "error")
    if k.severity == "error":
        # blocking: the checked asset is written, nothing downstream of it in this run
        assert k.asset in materialized
        assert not (downstream(k.asset) & materialized), sorted(downstream(k.asset) & materialized)
        assert materialized == job_assets() - downstream(k.asset)
        assert not result.success
    else:
        assert materialized == job_assets(), sorted(job_assets() - materialized)
        assert result.success


def _assert_warehouse(k: RuleKind, scale: str, bad: int, last: str, others_removed: int = 0) -> None:
    """What the warehouse says: the check's result row of the drop, the routed rows, and the rows
    staging kept (`others_removed`: rows of the domain that other rules of the same drop quarantined)."""
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        passed, evaluated, unexpected, severity = _dq(con, k, last)
        assert severity == k.severity and passed == (scale == "odd"), k.kind
        if k.row_rule:
            assert unexpected == bad, k.kind
            if k.routed:
                # the offending rows are where the staging SQL put them, as many as GX counted
                assert _routed(con, k, last) == unexpected, k.kind
            kept = con.execute(f"SELECT count(*) FROM staging.{k.domain}").fetchall()[0][0] + others_removed
            if k.routed == "ops.row_flags" and k.check != "cross_table_rules":
                # warn: the rows stay in staging, marked
                assert con.execute(f"SELECT count(*) FROM staging.{k.domain} WHERE list_contains(dq_warnings, ?)",
                                   [k.rule]).fetchall()[0][0] == bad
                assert kept == N, k.kind
            elif k.routed is None or k.check == "cross_table_rules":
                assert kept == N, k.kind  # measured (and listed) only: every row is used
            elif k.kind != "duplicate_key":
                assert kept == N - bad, k.kind  # error: quarantined rows are not in staging
            if k.kind == "duplicate_key":
                # the later row of each key won; the exact duplicate is dropped silently
                assert kept == 2 * N
                assert evaluated == 2 * N + bad + 1
                afp = con.execute("SELECT value FROM staging.labs WHERE patient_key = ? AND test_code = 'AFP'",
                                  [patient_key(pid(1), TEST_KEY)]).fetchall()
                assert afp == [(13.0,)]
        else:
            (details,) = con.execute(
                "SELECT details FROM ops.dq_results WHERE check_name = ? AND rule = ? AND extract_id = ? "
                "ORDER BY checked_at DESC LIMIT 1", [k.check, k.rule, last]).fetchall()[0]
            details = str(details)
            if k.kind == "backwards_data_cutoff":
                assert "2024-01-01" in details  # the previous drop's cutoff
            else:
                assert ('"labs": 0.9' if scale == "odd" else '"labs": 0.5') in details.replace("'", '"')


# ---------------------------------------------------------------------------------------------
# duplicate_key_conflict: the GX count is the staging SQL's quarantine, in every domain (no Dagster)


def _conflicts_everywhere() -> dict:
    files = cohort(6)
    p2, p3, p4, p9 = pid(2), pid(3), pid(4), pid(9)
    files["patients.csv"] += [
        patient(p2, sex="F"), patient(p2, sex="M"),           # F (delivered), F, M: 2 conflicts
        patient(p9), patient(p9, consent_status="withdrawn"),   # the withdrawal wins: 1 conflict
    ]
    t = files["treatments.csv"]
    t += [dict(t[0], cycles="5"), dict(t[0])]                   # A, B, A: only B conflicts
    t += [{"patient_id": p2, "regimen": "", "start_date": "2023-05-01", "cycles": c} for c in ("1", "2")]
    #                                                             ^ incomplete key: not ranked
    a = files["assessments.csv"]
    a += [dict(a[0], ecog="2"), dict(a[1])]                     # 1 conflict, 1 exact duplicate
    labs = files["labs.csv"]                                    # [p1 AFP, p1 ALB, p2 AFP, p2 ALB, ...]
    labs.append(dict(labs[0], value=" 12 "))                    # equal once typed: a duplicate
    labs.append(dict(labs[3], value="36", unit="g/L"))          # 3.6 g/dL restated in g/L: a conflict
    labs += [{"patient_id": p9, "collected_at": "2023-04-28 08:00", "test_code": "AFP", "value": v,
              "unit": "ng/mL"} for v in ("1", "2")]             # withdrawn patient: not judged
    im = files["imaging.csv"]
    im += [dict(im[0], modality=" ct "), dict(im[1], mrecist_response="SD")]  # duplicate; 1 conflict
    vs = files["vital_status.csv"]
    vs += [dict(vs[2], last_contact_date="2023-12-02"), dict(vs[3], last_contact_date="2023-12-03")]
    assert {r["patient_id"] for r in vs[-2:]} == {p3, p4}       # 2 conflicts
    return files


def test_duplicate_key_conflict_is_generated_from_each_natural_key(tmp_path):
    base = load_contracts()
    checks = {c.name: c for c in generate_checks(base)}
    for domain, c in base.items():
        (rule,) = [r for r in checks[f"{domain}_error_rules"].rules if r.name == "duplicate_key_conflict"]
        assert (rule.severity, rule.scope, rule.max_share) == ("error", "drop", 0.02)  # values class
        (expr,) = rule.sql.values()
        assert all(f"t.{k} IS NOT NULL" in expr for k in c.staging_key)   # complete keys only
        assert f"q.domain = '{domain}' AND q.check_name = 'duplicate_key_conflict'" in expr
        assert expr.startswith("CASE WHEN ") and " ELSE " not in expr  # NULL where staging neither
        #                                          ranks nor judges a row (incomplete key)
    # a contract may set its own threshold; the suite and its fingerprint follow
    copy = tmp_path / "contracts"
    shutil.copytree(project_root() / "data_contracts", copy)
    with (copy / "labs.yaml").open("a") as f:
        f.write("duplicate_key_max_share: 0.1\n")
    changed = load_contracts(str(copy))
    labs = next(c for c in generate_checks(changed) if c.name == "labs_error_rules")
    assert next(r for r in labs.rules if r.name == "duplicate_key_conflict").mostly == pytest.approx(0.9)
    assert suite_fingerprint(changed) != suite_fingerprint(base)


EXPECTED_CONFLICTS = {"patients": 3, "treatments": 1, "assessments": 1, "labs": 1, "imaging": 1,
                      "vital_status": 2}


def _gx_and_quarantine(con, domain: str, extract_id: str) -> tuple[dict, int]:
    out = run_check(con, f"{domain}_error_rules")
    (row,) = [r for r in out.rows if r["rule"] == "duplicate_key_conflict" and r["extract_id"] == extract_id]
    q = con.execute("SELECT count(*) FROM ops.quarantine WHERE domain = ? AND extract_id = ? "
                    "AND check_name = 'duplicate_key_conflict'", [domain, extract_id]).fetchall()[0][0]
    return row, q


def test_duplicate_key_conflict_counts_what_staging_quarantines_in_every_domain(env, con):
    write_drop(env / "inbox", E1, _conflicts_everywhere())
    land(con, env / "inbox")
    rows = {}
    for domain, expected in EXPECTED_CONFLICTS.items():
        rows[domain], quarantined = _gx_and_quarantine(con, domain, E1)
        assert (rows[domain]["unexpected"], quarantined) == (expected, expected), domain
        # above 2 % everywhere, so the minimum count decides (data_contracts/_defaults.yaml): patients
        # count patients (3 of 10: fails from 3), the others rows (vital_status 2 of 8: under 5)
        minimum = 3 if domain == "patients" else 5
        assert rows[domain]["passed"] == (expected < minimum), domain
        assert rows[domain]["passed"] == (domain != "patients"), domain
        assert rows[domain]["severity"] == "error"
    # exact and normalised duplicates count as rows, not conflicts; incomplete keys and the
    # withdrawn patient's rows are not evaluated (staging neither ranks nor judges them)
    assert rows["labs"]["evaluated"] == 2 * 6 + 2
    assert rows["treatments"]["evaluated"] == 6 + 2
    assert rows["patients"]["evaluated"] == 6 + 4

    # E2 brings a conflict of its own and re-delivers a conflicting key of E1: E1 keeps the
    # result it was validated with (a drop is judged as delivered, results are stored per drop)
    # although staging no longer quarantines its superseded row
    t0 = _conflicts_everywhere()["treatments.csv"][0]
    write_drop(env / "inbox", E2, {
        "treatments.csv": [dict(t0, cycles="6")],
        "imaging.csv": [{"patient_id": pid(1), "scan_date": "2023-09-01", "modality": "MRI",
                         "mrecist_response": r} for r in ("PD", "SD")],
    })
    land(con, env / "inbox")
    row, quarantined = _gx_and_quarantine(con, "imaging", E2)
    assert (row["unexpected"], quarantined) == (1, 1)
    row, quarantined = _gx_and_quarantine(con, "treatments", E1)
    assert (row["unexpected"], quarantined) == (1, 0)
