"""The gate: run one check (validate what is new, reuse what is stored), record it, report it.

`run_check(con, name, ...)` is what each Dagster asset check calls (and the benchmark, and the
tests). For a suite check:

1. the loaded drops (ops.drops) not yet validated by this check under the current suite
   fingerprint (ops.dq_results) are validated together, in ~2 M-row pandas chunks, each drop's
   counts attributed to it and each drop judged on its own (validate.run_frame);
   staging-wide rules (schema, natural-key uniqueness) are validated when the staging state
   changed;
2. every result is written to ops.dq_results (one row per rule and drop);
3. the verdict covers every loaded drop: the check fails while any loaded drop fails a rule (a
   bad drop keeps failing until it is dealt with, it is not forgotten at the next refresh);
4. the HTML report is rewritten from ops.dq_results.

When nothing is new the stored results are returned as they are (`cached`), without importing
Great Expectations: a refresh with no new drop takes well under a second per check.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from haic_pipeline import preload
from haic_pipeline.contracts import Contract, load_contracts
from haic_pipeline.quality import drops as drop_level
from haic_pipeline.quality import frames, parallel, store
from haic_pipeline.quality.report import write_report
from haic_pipeline.quality.suites import (
    SCOPE_DROP,
    SCOPE_PATIENT,
    SCOPE_SCHEMA,
    SCOPE_STAGING,
    CheckSpec,
    generate_checks,
    suite_fingerprint,
)
from haic_pipeline.warehouse.refresh import staging_fingerprint

log = logging.getLogger(__name__)


def all_checks(contracts: dict[str, Contract] | None = None, folder: str | None = None) -> list[CheckSpec]:
    contracts = contracts or load_contracts(folder)
    return drop_level.drop_checks() + generate_checks(contracts, folder)


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


def _row(refresh, check: CheckSpec, rule, *, scope, extract_id, passed, evaluated, unexpected, gx_success,
         exception, suite_fp, data_fp, details=None, checked_at=None) -> dict:
    return {"refresh": refresh, "checked_at": checked_at or store.now(), "check_name": check.name,
            "asset": check.asset, "rule": rule.name, "expectation": rule.expectation or None,
            "severity": rule.severity, "scope": scope, "extract_id": extract_id, "passed": bool(passed),
            "evaluated": evaluated, "unexpected": unexpected,
            "unexpected_share": (unexpected / evaluated) if evaluated else 0.0, "max_share": rule.max_share,
            "gx_success": gx_success, "exception": exception, "suite_fingerprint": suite_fp,
            "data_fingerprint": data_fp, "details": details or {}}


def _usable(rows: list[dict] | None) -> bool:
    return bool(rows) and not any(r["exception"] for r in rows)


# ------------------------------------------------------------------------------------------------


def staging_state(con, domain: str) -> str:
    """The state of staging.<domain> the staging-wide rules were judged on: the loaded drops and
    staging models (warehouse.refresh), plus the table's actual columns, types and row count."""
    schema = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'staging' "
        "AND table_name = ? ORDER BY ordinal_position", [domain]).fetchall()
    rows = con.execute(f"SELECT count(*) FROM staging.{domain}").fetchall()[0][0] if schema else -1
    return hashlib.sha256(f"{staging_fingerprint(con, domain)}|{schema}|{rows}".encode()).hexdigest()


def _suite_pending(con, check: CheckSpec, contracts, suite_fp, drops) -> tuple[dict, list, list]:
    scopes = {r.scope for r in check.rules}
    keys_drop = [(eid, sha) for eid, sha, *_ in drops] if scopes & {SCOPE_DROP, SCOPE_PATIENT} else []
    keys_staging = []
    if scopes & {SCOPE_SCHEMA, SCOPE_STAGING}:
        keys_staging = [(None, staging_state(con, check.asset.split("/")[1]))]
    stored = store.latest_rows(con, check.name, suite_fp, keys_drop + keys_staging)
    pending_drop = [k for k in keys_drop if not _usable(stored.get(k))]
    pending_staging = [k for k in keys_staging if not _usable(stored.get(k))]
    return stored, pending_drop, pending_staging


def _validate_suite(con, check: CheckSpec, contracts, suite_fp, refresh, pending_drop, pending_staging) -> list[dict]:
    """Validate every pending frame of the check (the pending drops' rows, their patients, the
    staging table's schema and keys) as one stream of ~2 M-row frames: in worker processes for
    a large backlog (quality/parallel.py), else here; the verdicts are the same. Several drops
    share a frame (validate.run_frame attributes the counts to each drop). Results are written
    once every frame is read (a statement on the connection would end the result being read)."""
    from haic_pipeline.quality.validate import (  # noqa: PLC0415 (GX only when needed)
        add_chunk, cached_runner, finish, new_results, run_frame)

    t0 = time.perf_counter()
    scopes = {r.scope for r in check.rules}
    domain = check.asset.split("/")[1]
    c = contracts.get(domain)
    ids = [eid for eid, _ in pending_drop]
    rules_of = {scope: [r for r in check.rules if r.scope == scope] for scope in scopes}
    streams: list[tuple[str, object]] = []   # (scope, iterator of (frame, labels, codes))

    def patient_stream():
        frames.build_patient_dates(con, contracts, rules_of[SCOPE_PATIENT])
        try:
            sql, n = frames.patient_frame_sql(contracts, rules_of[SCOPE_PATIENT])
            yield from frames.iter_labelled(con, sql, ids, n)
            frames.flag_cross_table(con, rules_of[SCOPE_PATIENT])   # the frames are all read
        finally:
            con.execute(f"DROP TABLE IF EXISTS {frames.PATIENT_DATES}")

    def unlabelled(make_frames):
        for df in make_frames():
            yield df, [None], np.zeros(len(df), dtype=np.int8)

    if pending_drop and SCOPE_DROP in scopes:
        sql = frames.drop_frame_sql(c, rules_of[SCOPE_DROP])
        known = frames.typed_text_values(con, c, rules_of[SCOPE_DROP], ids)
        streams.append((SCOPE_DROP, frames.iter_labelled(con, sql, ids, known=known)))
    if pending_drop and SCOPE_PATIENT in scopes:
        streams.append((SCOPE_PATIENT, patient_stream()))
    if pending_staging and SCOPE_SCHEMA in scopes:
        streams.append((SCOPE_SCHEMA, unlabelled(lambda: [frames.schema_frame(con, c)])))
    if pending_staging and SCOPE_STAGING in scopes:
        streams.append((SCOPE_STAGING, unlabelled(lambda: frames.staging_frames(con, c))))

    results: dict[tuple[str, str | None], dict] = {}
    for scope, _stream in streams:
        for label in (ids if scope in (SCOPE_DROP, SCOPE_PATIENT) else [None]):
            results[(scope, label)] = new_results(rules_of[scope], label)

    def on_result(scope: str, labels: list, per_code: dict) -> None:
        for code, got in per_code.items():
            add_chunk(results[(scope, labels[code])], got)

    chunks = ((scope, df, labels, codes) for scope, stream in streams for df, labels, codes in stream)
    if parallel.wanted(frames.pending_rows(con, contracts, ids)):
        parallel.validate_chunks(check, chunks, on_result)
    else:
        runners = {scope: cached_runner(check, scope) for scope, _stream in streams}
        for scope, df, labels, codes in chunks:
            on_result(scope, labels, run_frame(runners[scope], df, codes))

    at = store.now()  # one timestamp per validation: the cache reads the latest rows
    fingerprints = dict(pending_drop)
    new_rows: list[dict] = []
    for (scope, label), per_rule in results.items():
        data_fp = fingerprints[label] if label is not None else pending_staging[0][1]
        new_rows += [_row(refresh, check, rr.rule, scope=scope, extract_id=label, passed=rr.passed,
                          evaluated=rr.evaluated, unexpected=rr.unexpected, gx_success=rr.gx_success,
                          exception=rr.exception, suite_fp=suite_fp, data_fp=data_fp,
                          details={"chunks": rr.chunks}, checked_at=at) for rr in finish(per_rule)]
    store.write_rows(con, new_rows)
    log.info("%s: %d drop(s)%s validated in %.1f s", check.name, len(ids),
             " and the staging table" if pending_staging else "", time.perf_counter() - t0)
    return new_rows


def _validate_drops(con, check: CheckSpec, contracts, suite_fp, refresh, drops, pending) -> list[dict]:
    new_rows = []
    rules = {r.name: r for r in check.rules}
    index = {d[0]: i for i, d in enumerate(drops)}
    figures = {}
    if check.name == "drop_changes":  # the pending drops and the drops they are compared with
        wanted = {eid for eid, _ in pending} | {drops[index[eid] - 1][0] for eid, _ in pending if index[eid] > 0}
        figures = drop_level.drop_figures(con, contracts, sorted(wanted))
    for eid, data_fp in pending:
        i = index[eid]
        prev = drops[i - 1] if i > 0 else None
        if check.name == "drop_sequence":
            outcome = drop_level.sequence(drops[i], prev)
        else:
            outcome = drop_level.compare(figures[eid], figures[prev[0]] if prev else None, previous_is_first=i == 1)
        at = store.now()
        rows = [_row(refresh, check, rules[name], scope=check.name, extract_id=eid, passed=o["passed"],
                     evaluated=1, unexpected=0 if o["passed"] else 1, gx_success=None, exception=None,
                     suite_fp=suite_fp, data_fp=data_fp, details=o["details"], checked_at=at)
                for name, o in outcome.items()]
        store.write_rows(con, rows)
        new_rows.extend(rows)
    return new_rows


def run_check(con: duckdb.DuckDBPyConnection, name: str, *, reports_dir: Path | None = None,
              refresh: str | None = None, contracts: dict[str, Contract] | None = None,
              folder: str | None = None) -> CheckOutcome:
    """Run the check `name` (see module docstring); `folder` = another contracts folder (tests)."""
    t0 = time.perf_counter()
    refresh = refresh or f"manual-{uuid.uuid4().hex[:12]}"
    contracts = contracts or load_contracts(folder)
    checks = all_checks(contracts, folder)
    check = next(c for c in checks if c.name == name)
    store.ensure_dq_results(con)
    suite_fp = store_fp = suite_fingerprint(contracts, folder)
    drops = store.loaded_drops(con)
    if not parallel.started() and parallel.wanted(store.unvalidated_rows(con, suite_fp)):
        preload.start()  # a large backlog: GX is imported while the drop-level checks run

    if check.name in ("drop_sequence", "drop_changes"):
        keys = [(d[0], drop_level.pair_fingerprint(drops, i)) for i, d in enumerate(drops)]
        stored = store.latest_rows(con, check.name, store_fp, keys)
        pending = [k for k in keys if not _usable(stored.get(k))]
        new_rows = _validate_drops(con, check, contracts, store_fp, refresh, drops, pending) if pending else []
        kept = [r for k in keys if k not in pending for r in stored.get(k, [])]
        validated = [k[0] for k in pending]
    else:
        stored, pending_drop, pending_staging = _suite_pending(con, check, contracts, suite_fp, drops)
        new_rows = []
        if pending_drop or pending_staging:
            new_rows = _validate_suite(con, check, contracts, suite_fp, refresh, pending_drop, pending_staging)
        kept = [r for k, rows in stored.items() if k not in pending_drop + pending_staging for r in rows]
        validated = [k[0] for k in pending_drop]
    rows = kept + new_rows
    report = None
    if reports_dir is not None:
        report = write_report(Path(reports_dir), store.all_latest(con), checks, str(store.now())[:19])
    return CheckOutcome(check=check, passed=all(r["passed"] for r in rows), cached=not new_rows, rows=rows,
                        validated_now=validated, seconds=time.perf_counter() - t0, report=report, refresh=refresh)


def run_all(con: duckdb.DuckDBPyConnection, *, reports_dir: Path | None = None, refresh: str | None = None,
            contracts: dict[str, Contract] | None = None, folder: str | None = None) -> list[CheckOutcome]:
    """Every check in order (what a refresh runs; used by the benchmark)."""
    refresh = refresh or f"manual-{uuid.uuid4().hex[:12]}"
    contracts = contracts or load_contracts(folder)
    return [run_check(con, c.name, reports_dir=reports_dir, refresh=refresh, contracts=contracts, folder=folder)
            for c in all_checks(contracts, folder)]
