"""The gate: which drops a check must judge, their verdicts, the record and the report.

`run_checks(con, names, ...)` is what each Dagster step calls for its group of checks
(`CheckSpec.group`: a domain's error and warn checks), `run_all` what the benchmark calls,
`run_check(con, name)` one check alone (tests). To answer "why did drop X fail rule Y", read in
this order:

1. `catalogue.py`: the rule, its expectation and SQL (its threshold and minimum count settled
   in `contracts.py` from `data_contracts/`);
2. `quality/suites.py`: the check the rule belongs to;
3. this module's `run_checks`: plan (what is pending) -> validate -> re-judge -> write once;
4. `quality/validate.py`: `validate`, the one dispatch of a drop's frames by scope, and
   `verdict`, the one judge (`quality/frames.py` holds the queries the frames come from);
5. `quality/drops.py`: the drop-level checks (`drop_sequence`, `drop_changes`);
6. `quality/store.py`: `ops.dq_results`, where every result and re-judgment is kept.

For a suite check:

1. the loaded drops (ops.drops) not yet validated by this check under the current suite
   fingerprint (ops.dq_results) are validated, each drop counted on its own (the speed layer
   quality/speed/ reads and runs the frames faster, with the same counts); staging-wide rules
   (schema, natural-key uniqueness) are validated when the staging state changed;
2. a drop that failed is judged again on what it still contributes (`rejudge`);
3. every new result and re-judgment is written to ops.dq_results at once (one row per rule
   and drop);
4. the verdict covers every loaded drop: the check fails while any loaded drop fails a rule and
   no waiver stands for it (a bad drop keeps failing until it is dealt with: a later drop, a
   retraction or a waiver);
5. the HTML report is rewritten from ops.dq_results.

When nothing is new the stored results are returned as they are (`cached`), without importing
Great Expectations.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from haic_pipeline import preload
from haic_pipeline.contracts import Contract, load_contracts
from haic_pipeline.quality import drops as drop_level
from haic_pipeline.quality import store
from haic_pipeline.quality.gx_runtime import load_gx
from haic_pipeline.quality.report import write_report
from haic_pipeline.quality.suites import (
    SCOPE_DROP,
    SCOPE_DROP_PATIENT,
    SCOPE_PATIENT,
    SCOPE_SCHEMA,
    SCOPE_STAGING,
    CheckSpec,
    generate_checks,
    suite_fingerprint,
)
from haic_pipeline.quality.validate import (
    FrameSource,
    finish,
    new_results,
    validate,
    verdict,
)
from haic_pipeline.settings import quality_settings
from haic_pipeline.warehouse import interventions
from haic_pipeline.warehouse.refresh import staging_fingerprint
from haic_pipeline.warehouse.schema import ensure_ops

log = logging.getLogger(__name__)

#: scopes whose results are per drop
DROP_SCOPES = {SCOPE_DROP, SCOPE_DROP_PATIENT, SCOPE_PATIENT}


def all_checks(contracts: dict[str, Contract] | None = None, folder: str | None = None) -> list[CheckSpec]:
    contracts = contracts or load_contracts(folder)
    return drop_level.drop_checks() + generate_checks(contracts)


@dataclass
class CheckOutcome:
    check: CheckSpec
    passed: bool
    cached: bool
    rows: list[dict]
    validated_now: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None
    refresh: str = ""
    #: extract_id -> {reason, waived_by, waived_at}: this check's standing waivers
    waivers: dict = field(default_factory=dict)

    @property
    def waived_extract_ids(self) -> list[str]:
        """Drops that fail this check and pass only by a standing waiver."""
        return [e for e in self.failing_extract_ids if e in self.waivers]

    @property
    def exceptions(self) -> list[str]:
        return [f"{r['rule']} ({r['extract_id'] or 'staging'}): {r['exception']}" for r in self.rows if r["exception"]]

    @property
    def severity(self) -> str:
        """error when the check is blocking or when an expectation raised (not measured)."""
        return "error" if (self.check.severity == "error" or self.exceptions) else "warn"

    @property
    def extract_ids(self) -> list[str]:
        return sorted({r["extract_id"] for r in self.rows if r["extract_id"]})

    @property
    def failing_extract_ids(self) -> list[str]:
        return sorted({r["extract_id"] for r in self.rows if r["extract_id"] and not r["passed"]})

    def per_rule(self) -> list[dict]:
        out: dict[str, dict] = {}
        for r in self.rows:
            agg = out.setdefault(r["rule"], {
                "rule": r["rule"], "expectation": r["expectation"], "severity": r["severity"],
                "max_share_pct": round(100 * (r["max_share"] or 0), 3), "evaluated": 0, "unexpected": 0,
                "passed": True, "failing_extract_ids": [], "exception": None})
            agg["evaluated"] += r["evaluated"] or 0
            agg["unexpected"] += r["unexpected"] or 0
            if not r["passed"]:
                agg["passed"] = False
                agg["failing_extract_ids"].append(r["extract_id"] or "staging")
            if r["exception"] and not agg["exception"]:
                agg["exception"] = r["exception"][:300]
        for agg in out.values():
            agg["unexpected_pct"] = round(100 * agg["unexpected"] / agg["evaluated"], 3) if agg["evaluated"] else 0.0
        return list(out.values())

    def markdown(self) -> str:
        lines = ["| rule | evaluated | unexpected | % | max % | result | failing drops |",
                 "|---|---:|---:|---:|---:|---|---|"]
        for a in sorted(self.per_rule(), key=lambda a: (a["passed"], a["rule"])):
            result = "passed" if a["passed"] else ("**not measured**" if a["exception"] else "**FAILED**")
            drops = ", ".join(a["failing_extract_ids"][:4]) + (" ..." if len(a["failing_extract_ids"]) > 4 else "")
            lines.append(f"| {a['rule']} | {a['evaluated']:,} | {a['unexpected']:,} | {a['unexpected_pct']:.2f} "
                         f"| {a['max_share_pct']:g} | {result} | {drops} |")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------


def staging_state(con, domain: str) -> str:
    """The state of staging.<domain> the staging-wide rules were judged on: the loaded drops and
    staging models (warehouse.refresh), plus the table's actual columns, types and row count."""
    schema = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'staging' "
        "AND table_name = ? ORDER BY ordinal_position", [domain]).fetchall()
    rows = con.execute(f"SELECT count(*) FROM staging.{domain}").fetchall()[0][0] if schema else -1
    return hashlib.sha256(f"{staging_fingerprint(con, domain)}|{schema}|{rows}".encode()).hexdigest()


def _suite_pending(con, check: CheckSpec, suite_fp, drops) -> tuple[dict, list, list]:
    scopes = {r.scope for r in check.rules}
    keys_drop = [(eid, sha) for eid, sha, *_ in drops] if scopes & DROP_SCOPES else []
    keys_staging = []
    if scopes & {SCOPE_SCHEMA, SCOPE_STAGING}:
        keys_staging = [(None, staging_state(con, check.asset.split("/")[1]))]
    stored = store.latest_rows(con, check.name, suite_fp, keys_drop + keys_staging)
    pending_drop = [k for k in keys_drop if not store.usable(stored.get(k))]
    pending_staging = [k for k in keys_staging if not store.usable(stored.get(k))]
    return stored, pending_drop, pending_staging


def _validate_suites(con, checks: list[CheckSpec], contracts, suite_fp, refresh,
                     pending: dict[str, tuple[list, list]]) -> dict[str, list[dict]]:
    """Validate every pending frame of `checks` (checks of one group: a domain's error and warn
    rules; pending: check name -> its pending drops and staging state), each drop's counts in
    its own results (validate.validate), its frames read and run by the speed layer
    (quality/speed/) unless `HAIC_DQ_FAST=0`, else drop by drop (validate.FrameSource); the
    counts are the same. Check name -> its new rows."""
    from haic_pipeline.quality import speed  # noqa: PLC0415 (GX only when needed)

    t0 = time.perf_counter()
    ids = next((ids for ids in ([eid for eid, _ in pending[c.name][0]] for c in checks) if ids), [])
    if any(pending[c.name][0] and [eid for eid, _ in pending[c.name][0]] != ids for c in checks):
        raise ValueError("checks validated together must have the same pending drops")
    results: dict[tuple[str, str, str | None], dict] = {}
    for ch in checks:
        pending_drop, pending_staging = pending[ch.name]
        for scope in dict.fromkeys(r.scope for r in ch.rules):
            rules = [r for r in ch.rules if r.scope == scope]
            labels = (ids if pending_drop else []) if scope in DROP_SCOPES else ([None] if pending_staging else [])
            for label in labels:
                results[(ch.name, scope, label)] = new_results(rules, label)
    source = (speed.FastSource if quality_settings().fast else FrameSource)(con, contracts, ids)
    validate(con, checks, contracts, pending, ids, results, source)

    at = store.now()  # one timestamp per validation: the cache reads the latest rows
    out: dict[str, list[dict]] = {ch.name: [] for ch in checks}
    by_name = {ch.name: ch for ch in checks}
    for (name, scope, label), per_rule in results.items():
        pending_drop, pending_staging = pending[name]
        data_fp = dict(pending_drop)[label] if label is not None else pending_staging[0][1]
        out[name] += [store.result_row(refresh, by_name[name], rr.rule, scope=scope, extract_id=label,
                                       passed=rr.passed, evaluated=rr.evaluated, unexpected=rr.unexpected,
                                       gx_success=rr.gx_success, exception=rr.exception, suite_fp=suite_fp,
                                       data_fp=data_fp, details={"chunks": rr.chunks}, checked_at=at)
                      for rr in finish(per_rule)]
    log.info("%s: %d drop(s)%s validated in %.1f s", ", ".join(by_name), len(ids),
             " and the staging table" if any(pending[n][1] for n in by_name) else "", time.perf_counter() - t0)
    return out


def rejudge(con: duckdb.DuckDBPyConnection, check: CheckSpec, rows: list[dict],
            refresh: str) -> tuple[list[dict], list[dict]]:
    """A drop's failed rules judged again on what the drop still contributes: its offences that
    staging still routes (its rows in ops.quarantine for error rules, ops.row_flags for warn
    rules, after latest-wins; patients for patient-level rules), over what it delivered. A later
    drop that supersedes the offending rows, or delivers an orphan's patient row, so lifts the
    block at the next refresh by itself. When a drop's offences went down, its rows of this check
    are given anew (one timestamp, `details.rejudged`) for the caller to write; the earlier ones
    stay as history. Only failures are judged again: a later drop never turns a passed drop into
    a failed one. Returns (the rows as judged now, the rows to write)."""
    failed = [r for r in rows if not r["passed"] and not r["exception"] and r["extract_id"]
              and r["scope"] in (SCOPE_DROP, SCOPE_DROP_PATIENT)]
    if not failed:
        return rows, []
    domain = check.asset.split("/")[1]
    ids = sorted({r["extract_id"] for r in failed})
    still = {}
    for table, severity in (("ops.quarantine", "error"), ("ops.row_flags", "warn")):
        if any(r["severity"] == severity for r in failed):
            for eid, rule, n_rows, n_patients in con.execute(
                    f"SELECT extract_id, check_name, count(*), count(DISTINCT patient_key) FROM {table} "
                    "WHERE domain = ? AND list_contains(?, extract_id) GROUP BY ALL", [domain, ids]).fetchall():
                still[(eid, rule, severity)] = (n_rows, n_patients)
    specs = {r.name: r for r in check.rules}
    changed: dict[str, dict] = {}
    for r in failed:
        n_rows, n_patients = still.get((r["extract_id"], r["rule"], r["severity"]), (0, 0))
        n = n_patients if r["scope"] == SCOPE_DROP_PATIENT else n_rows
        if n < (r["unexpected"] or 0):
            changed.setdefault(r["extract_id"], {})[r["rule"]] = n
    if not changed:
        return rows, []
    at, out, new = store.now(), [], []
    for r in rows:
        if r["extract_id"] not in changed:
            out.append(r)
            continue
        r = dict(r, refresh=refresh, checked_at=at)
        n = changed[r["extract_id"]].get(r["rule"])
        if n is not None:
            spec = specs[r["rule"]]
            r["details"] = {**(r["details"] or {}), "rejudged": {
                "unexpected_before": r["unexpected"], "still_offending": n,
                "from": "ops.quarantine" if r["severity"] == "error" else "ops.row_flags"}}
            r.update(unexpected=n, unexpected_share=(n / r["evaluated"]) if r["evaluated"] else 0.0,
                     passed=verdict(r["evaluated"] or 0, n, spec.max_share, spec.min_count))
        out.append(r)
        new.append(r)
    log.info("%s: drop(s) %s judged again on what they still contribute", check.name, ", ".join(sorted(changed)))
    return out, new


def run_check(con: duckdb.DuckDBPyConnection, name: str, *, reports_dir: Path | None = None,
              refresh: str | None = None, contracts: dict[str, Contract] | None = None,
              folder: str | None = None) -> CheckOutcome:
    """Run the check `name` alone (see run_checks); `folder` = another contracts folder (tests)."""
    return run_checks(con, [name], reports_dir=reports_dir, refresh=refresh, contracts=contracts, folder=folder)[0]


@dataclass
class _Pending:
    """What a check must judge now: its stored rows still valid, the drops and staging state it
    has not judged under the current suite."""

    check: CheckSpec
    kept: list[dict]
    drops: list[tuple[str, str]]            # (extract_id, data fingerprint)
    staging: list[tuple[None, str]]         # (None, staging state), or nothing


def _plan(con, group: list[CheckSpec], suite_fp: str, drops: list[tuple]) -> dict[str, _Pending]:
    plan = {}
    for check in group:
        if drop_level.is_drop_check(check):
            kept, pending = drop_level.pending(con, check, suite_fp, drops)
            plan[check.name] = _Pending(check, kept, pending, [])
            continue
        stored, pending_drop, pending_staging = _suite_pending(con, check, suite_fp, drops)
        kept = [r for k, rows in stored.items() if k not in pending_drop + pending_staging for r in rows]
        plan[check.name] = _Pending(check, kept, pending_drop, pending_staging)
    return plan


def _validate(con, plan: dict[str, _Pending], contracts, suite_fp: str, refresh: str,
              drops: list[tuple]) -> dict[str, list[dict]]:
    """Check name -> the rows of what it judged now. Drop-level checks compare drops
    (quality/drops.py); suite checks on the same staging asset whose pending drops are the same
    (a domain's error and warn rules) are validated from one read of those drops' rows, and a
    check with only its staging state pending joins that validation."""
    new: dict[str, list[dict]] = {name: [] for name in plan}
    suites: dict[tuple, list[CheckSpec]] = {}
    for name, p in plan.items():
        if drop_level.is_drop_check(p.check):
            if p.drops:
                new[name] = drop_level.validate(con, p.check, contracts, suite_fp, refresh, drops, p.drops)
        elif p.drops or p.staging:
            suites.setdefault((p.check.asset, tuple(eid for eid, _ in p.drops) or None), []).append(p.check)
    for (asset, ids), members in list(suites.items()):
        if ids is None:
            other = next((k for k in suites if k[0] == asset and k[1] is not None), None)
            if other is not None:
                suites[other] += suites.pop((asset, ids))
    pending = {name: (p.drops, p.staging) for name, p in plan.items()}
    for members in suites.values():
        new.update(_validate_suites(con, members, contracts, suite_fp, refresh, pending))
    return new


def run_checks(con: duckdb.DuckDBPyConnection, names: list[str], *, reports_dir: Path | None = None,
               refresh: str | None = None, contracts: dict[str, Contract] | None = None,
               folder: str | None = None) -> list[CheckOutcome]:
    """Run the checks `names` (see module docstring), one outcome each, in that order: plan what
    is pending, validate it, judge failed drops again, write every new row at once, then the
    report."""
    t0 = time.perf_counter()
    refresh = refresh or f"manual-{uuid.uuid4().hex[:12]}"
    contracts = contracts or load_contracts(folder)
    checks = all_checks(contracts, folder)
    by_name = {c.name: c for c in checks}
    group = [by_name[n] for n in names]
    ensure_ops(con)
    suite_fp = suite_fingerprint(contracts)
    drops = store.loaded_drops(con)
    if store.unvalidated_rows(con, suite_fp) > 0:
        preload.start(load_gx)  # a drop to validate: GX is imported while the drop-level checks run

    plan = _plan(con, group, suite_fp, drops)
    new = _validate(con, plan, contracts, suite_fp, refresh, drops)
    judged, rewritten = {}, []
    for check in group:
        judged[check.name], again = rejudge(con, check, plan[check.name].kept + new[check.name], refresh)
        rewritten += again
    store.write_rows(con, [r for check in group for r in new[check.name]] + rewritten)

    waivers = interventions.active_waivers(con)
    report = None
    if reports_dir is not None:
        report = write_report(Path(reports_dir), store.all_latest(con), checks, str(store.now())[:19])
    seconds = time.perf_counter() - t0
    out = []
    for check in group:
        rows = judged[check.name]
        mine = {e: w for (c, e), w in waivers.items() if c == check.name}
        out.append(CheckOutcome(check=check, passed=all(r["passed"] or r["extract_id"] in mine for r in rows),
                                cached=not new[check.name], rows=rows,
                                validated_now=[eid for eid, _ in plan[check.name].drops], seconds=seconds,
                                report=report, refresh=refresh, waivers=mine))
    return out


def check_groups(checks: list[CheckSpec]) -> dict[str, list[CheckSpec]]:
    """group name -> its checks, in all_checks order (each group is one Dagster step)."""
    groups: dict[str, list[CheckSpec]] = {}
    for c in checks:
        groups.setdefault(c.group or c.name, []).append(c)
    return groups


def run_all(con: duckdb.DuckDBPyConnection, *, reports_dir: Path | None = None, refresh: str | None = None,
            contracts: dict[str, Contract] | None = None, folder: str | None = None) -> list[CheckOutcome]:
    """Every check in order, group by group (what a refresh runs; used by the benchmark)."""
    refresh = refresh or f"manual-{uuid.uuid4().hex[:12]}"
    contracts = contracts or load_contracts(folder)
    return [o for group in check_groups(all_checks(contracts, folder)).values()
            for o in run_checks(con, [c.name for c in group], reports_dir=reports_dir, refresh=refresh,
                                contracts=contracts, folder=folder)]
