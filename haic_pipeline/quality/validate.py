"""Validate a frame with a generated suite and judge each drop: counts from GX, one verdict.

GX counts, `verdict` judges. Each expectation carries `mostly = 1 - max_share`; a drop's rule
passes when the share of offences (among the rows, or patients, the expectation applies to: its
non-missing values) is within the threshold, by GX's own formula (`(evaluated - unexpected) /
evaluated >= mostly`, as `great_expectations...._mostly_success`), however the drop was read. A
rule with a non-zero threshold also needs `min_count` offences to fail (OHDSI DQD style: a share
of a ten-row delta drop means nothing, a truncated patients.csv still blocks); structural rules
(threshold 0) fail on one. GX's own `success` is kept in `ops.dq_results.gx_success`.

An expectation that raised (GX records it in `exception_info`, with `success=False` and no
counts) is never read as a pass or a fail of the data: the rule result carries the exception,
and the check fails loudly as "not measured".

`validate` is the one dispatch of a validation by scope; a `FrameSource` reads and runs its
frames: the plain one here (each pending drop's frame read alone, validated alone, the gate read
top to bottom), or the speed layer's (`quality/speed/`: several drops per frame, worker
processes), which gives the same counts faster; `HAIC_DQ_FAST=0` switches it off.

Only counts leave this module: `result_format` is SUMMARY with `partial_unexpected_count: 0` (no
unexpected values, no index lists); only whitelisted numeric fields of GX's result are copied.
Identifier values can therefore never reach metadata, logs or the report (no frame column holds
one in any case: frames carry flags, codes, numbers, dates and hashes).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from haic_pipeline.quality import frames
from haic_pipeline.quality.gx_runtime import GxSession
from haic_pipeline.quality.suites import (
    SCOPE_DROP,
    SCOPE_DROP_PATIENT,
    SCOPE_PATIENT,
    SCOPE_SCHEMA,
    SCOPE_STAGING,
    CheckSpec,
    RuleSpec,
    build_suite,
)

#: counts only: no unexpected values, no unexpected index lists, no query
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0,
                 "include_unexpected_rows": False, "return_unexpected_index_query": False}


@dataclass
class RuleResult:
    rule: RuleSpec
    extract_id: str | None
    evaluated: int = 0
    unexpected: int = 0
    gx_success: bool | None = None
    exception: str | None = None
    chunks: int = 0
    passed: bool = True
    details: dict = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.unexpected / self.evaluated if self.evaluated else 0.0


def exception_message(exception_info) -> str | None:
    """The message of an expectation that raised, else None. GX 1.x gives either one dict with
    `raised_exception`, or one dict per failed metric keyed by metric id."""
    if not exception_info:
        return None
    if isinstance(exception_info, dict) and "raised_exception" in exception_info:
        if exception_info.get("raised_exception"):
            return str(exception_info.get("exception_message") or "expectation raised")
        return None
    if isinstance(exception_info, dict):
        messages = [str(v.get("exception_message") or "expectation raised")
                    for v in exception_info.values() if isinstance(v, dict) and v.get("raised_exception")]
        if messages:
            return "; ".join(dict.fromkeys(messages))
        return None
    return str(exception_info)


class SuiteRunner:
    """The generated suite of one check for one frame kind, as a GX ValidationDefinition."""

    def __init__(self, session: GxSession, check: CheckSpec, scope: str):
        gx = session.gx
        self.rules = [r for r in check.rules if r.scope == scope]
        suite = session.context.suites.add(build_suite(gx, check, scope))
        batch_def = session.batch_definition(f"{check.name}.{scope}")
        self.definition = session.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{check.name}.{scope}", data=batch_def, suite=suite))

    def validate(self, df: pd.DataFrame, result_format: dict):
        """GX's ExpectationSuiteValidationResult of the suite on one batch.

        The validation definition's suite is run on its batch with `Batch.validate` (GX's public
        API, the same validator as `ValidationDefinition.run`), which does not keep the result
        in the context's results store (nothing reads it back, and a worker's in-memory store
        would grow with every batch). pandas copy-on-write is on while GX runs: its pandas
        engine copies the whole frame for each metric domain, which copy-on-write defers to a
        write that never comes. The counts are the same (a test runs every check both ways:
        ValidationDefinition.run, booleans)."""
        with pd.option_context("mode.copy_on_write", True):
            batch = self.definition.batch_definition.get_batch(batch_parameters={"dataframe": df})
            return batch.validate(self.definition.suite, result_format=result_format)

    def run(self, df: pd.DataFrame, result_format: dict | None = None) -> dict[str, dict]:
        """rule name -> {evaluated, unexpected, success, exception} for one batch (with a format
        that lists them, also `index`: the unexpected rows' positions, never their values)."""
        res = self.validate(df, result_format or RESULT_FORMAT)
        out: dict[str, dict] = {}
        for r in res.results:
            name = (r.expectation_config.meta or {}).get("rule")
            result = r.result or {}
            element = int(result.get("element_count") or 0)
            missing = int(result.get("missing_count") or 0)
            out[name] = {
                "evaluated": element - missing,
                "unexpected": int(result.get("unexpected_count") or 0),
                "success": bool(r.success),
                "exception": exception_message(r.exception_info),
            }
            if result_format and result_format.get("exclude_unexpected_values"):
                out[name]["index"] = result.get("partial_unexpected_index_list")
        for rule in self.rules:
            if rule.name not in out:
                out[rule.name] = {"evaluated": 0, "unexpected": 0, "success": False,
                                  "exception": "GX returned no result for this expectation"}
        return out


# one GX context per process, its SuiteRunners kept for every later validation of the same check
# spec (in a Dagster run's process and in each data-quality worker): built once per check, not
# once per check and frame
_session: GxSession | None = None
_runners: dict[str, SuiteRunner] = {}     # spec key -> runner
_names: set[tuple[str, str]] = set()      # (check name, scope) registered in the current context


def spec_key(check: CheckSpec, scope: str) -> str:
    """A key for one check spec's suite of `scope` (the spec itself, hashed: another contracts
    folder gives another key)."""
    return hashlib.sha256(pickle.dumps((check, scope))).hexdigest()


def shared_session(new: bool = False) -> GxSession:
    """The process's GX session (a new one if `new`)."""
    global _session
    from haic_pipeline.quality.gx_runtime import open_session  # noqa: PLC0415 (GX only when needed)

    if _session is None or new:
        _session = open_session()
        _names.clear()
    return _session


def cached_runner(check: CheckSpec, scope: str, key: str | None = None) -> SuiteRunner:
    """The process's SuiteRunner for this check spec and scope (`key`: its spec_key, if known)."""
    key = key or spec_key(check, scope)
    runner = _runners.get(key)
    if runner is None:
        # a context holds one suite per name: another spec of that name (another contracts
        # folder) gets a context of its own
        session = shared_session(new=(check.name, scope) in _names)
        runner = _runners[key] = SuiteRunner(session, check, scope)
        _names.add((check.name, scope))
    return runner


def mostly_success(evaluated: int, unexpected: int, mostly: float) -> bool:
    if evaluated == 0:
        return True
    return (float(evaluated) - float(unexpected)) / float(evaluated) >= mostly


def new_results(rules: list[RuleSpec], extract_id: str | None) -> dict[str, RuleResult]:
    return {r.name: RuleResult(rule=r, extract_id=extract_id) for r in rules}


def add_chunk(results: dict[str, RuleResult], got: dict[str, dict]) -> None:
    """Add one chunk's counts (`SuiteRunner.run`) to the drop's running totals."""
    for name, g in got.items():
        rr = results[name]
        rr.chunks += 1
        rr.evaluated += g["evaluated"]
        rr.unexpected += g["unexpected"]
        if g["success"] is not None:   # None: counted on a frame several drops shared
            rr.gx_success = g["success"] if rr.gx_success is None else (rr.gx_success and g["success"])
        if g["exception"] and not rr.exception:
            rr.exception = g["exception"]


def finish(results: dict[str, RuleResult]) -> list[RuleResult]:
    for rr in results.values():
        rr.passed = decide(rr)
    return list(results.values())


def decide(rr: RuleResult) -> bool:
    if rr.exception:
        return False
    return verdict(rr.evaluated, rr.unexpected, rr.rule.max_share, rr.rule.min_count)


def verdict(evaluated: int, unexpected: int, max_share: float, min_count: int) -> bool:
    """Whether a rule passes for one drop: the share of offences within max_share (GX's
    formula), or, for a rule with a non-zero threshold, fewer offences than min_count. The one
    judge of every rule result: a new validation, and a stored failure judged again on what the
    drop still contributes (gate.rejudge)."""
    if mostly_success(evaluated, unexpected, 1.0 - max_share):
        return True
    return max_share > 0 and unexpected < min_count


class FrameSource:
    """Where a validation's frames come from and where they are run: the plain reader, each
    pending drop's frame read alone and validated alone, in this process. Every frame comes as
    (frame, labels, codes): the drops it holds and each row's index into them (here one drop, all
    codes 0). The speed layer (`quality/speed/`) gives faster readers and runners with the same
    counts; `validate` below is the one dispatch both go through."""

    def __init__(self, con, contracts: dict, ids: list[str]):
        self.con, self.contracts, self.ids = con, contracts, ids

    def _per_drop(self, sql: str, n_params: int = 1):
        for eid in self.ids:
            df = frames.read_frame(self.con, sql, [[eid]] * n_params).drop(columns="_extract_id")
            yield df, [eid], np.zeros(len(df), dtype=np.int8)

    def drop_rows(self, c, rules: list[RuleSpec]):
        """The rows each pending drop delivered, frame columns of `rules`."""
        return self._per_drop(frames.drop_frame_sql(c, rules))

    def drop_patients(self, c, rules: list[RuleSpec]):
        """The patients each pending drop delivered rows of (patient-level rules)."""
        return self._per_drop(frames.drop_patient_frame_sql(c, rules))

    def patients(self, sql: str, n_params: int):
        """One row per patient of each pending drop, the staging tables joined (cross-table)."""
        return self._per_drop(sql, n_params)

    def staging(self, c):
        """staging.<domain> itself (natural-key uniqueness)."""
        yield frames.read_frame(self.con, frames.staging_frame_sql(c))

    def run(self, chunks, on_result) -> None:
        """Each (scope, members, frame, labels, codes) through the suite of each member check, on
        the member's own columns; `on_result(scope, members, labels, counts per code per member)`."""
        for scope, members, df, labels, _codes in chunks:
            on_result(scope, members, labels, [{0: cached_runner(ch, scope).run(df if cols is None else df[cols])}
                                               for ch, cols in members])


def validate(con, checks: list[CheckSpec], contracts: dict, pending: dict, ids: list[str], results: dict,
             source: FrameSource | None = None) -> None:
    """Every pending frame of `checks` (the checks of one staging asset; pending: check name ->
    its pending drops and staging state), read and run by `source` (the plain one by default),
    each drop's counts added to `results[(check, scope, extract_id or None)]`. The one dispatch
    by scope: a domain's error and warn checks share one read of the drops' rows, each suite on
    its own columns (the frame it would have alone); patient-level, cross-table, schema and
    staging-wide rules each get their frames. Nothing is written to the connection until every
    frame is read (a statement would end the result being fetched), except the cross-table flags
    once their frames are read."""
    source = source or FrameSource(con, contracts, ids)
    c = contracts.get(checks[0].asset.split("/")[1])
    rules_of = {(ch.name, scope): [r for r in ch.rules if r.scope == scope]
                for ch in checks for scope in {r.scope for r in ch.rules}}
    # a stream: (scope, [(check, its frame columns or None = all)], iterator of (frame, labels, codes))
    streams: list[tuple[str, list, object]] = []

    def patient_stream(rules):
        frames.build_patient_dates(con, contracts, rules)
        try:
            yield from source.patients(*frames.patient_frame_sql(contracts, rules))
            frames.flag_cross_table(con, rules)   # the frames are all read
        finally:
            con.execute(f"DROP TABLE IF EXISTS {frames.PATIENT_DATES}")

    def unlabelled(make_frames):
        for df in make_frames():
            yield df, [None], np.zeros(len(df), dtype=np.int8)

    drop_members = [ch for ch in checks if pending[ch.name][0] and (ch.name, SCOPE_DROP) in rules_of]
    if drop_members:
        union = [r for ch in drop_members for r in rules_of[(ch.name, SCOPE_DROP)]]
        members = [(ch, list(frames.frame_columns(rules_of[(ch.name, SCOPE_DROP)])) if len(drop_members) > 1 else None)
                   for ch in drop_members]
        streams.append((SCOPE_DROP, members, source.drop_rows(c, union)))
    for ch in checks:
        pending_drop, pending_staging = pending[ch.name]
        if pending_drop and (ch.name, SCOPE_DROP_PATIENT) in rules_of:
            streams.append((SCOPE_DROP_PATIENT, [(ch, None)], source.drop_patients(c, rules_of[(ch.name, SCOPE_DROP_PATIENT)])))
        if pending_drop and (ch.name, SCOPE_PATIENT) in rules_of:
            streams.append((SCOPE_PATIENT, [(ch, None)], patient_stream(rules_of[(ch.name, SCOPE_PATIENT)])))
        if pending_staging and (ch.name, SCOPE_SCHEMA) in rules_of:
            streams.append((SCOPE_SCHEMA, [(ch, None)], unlabelled(lambda: [frames.schema_frame(con, c)])))
        if pending_staging and (ch.name, SCOPE_STAGING) in rules_of:
            streams.append((SCOPE_STAGING, [(ch, None)], unlabelled(lambda: source.staging(c))))

    def on_result(scope: str, members, labels: list, per_member: list[dict]) -> None:
        for (ch, _cols), per_code in zip(members, per_member, strict=True):
            for code, got in per_code.items():
                add_chunk(results[(ch.name, scope, labels[code])], got)

    source.run(((scope, members, df, labels, codes)
                for scope, members, stream in streams for df, labels, codes in stream), on_result)
