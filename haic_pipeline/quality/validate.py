"""Run a generated suite on pandas batches and turn GX's results into rule results.

GX counts, `verdict` judges. Each expectation carries `mostly = 1 - max_share`; a drop's rule
passes when the share of offences (among the rows, or patients, the expectation applies to:
non-missing values, rows matching its row condition) is within the threshold, by GX's own formula
(`(evaluated - unexpected) / evaluated >= mostly`, as `great_expectations...._mostly_success`),
whether the drop was read in one chunk or several. A rule with a non-zero threshold also needs
`min_count` offences to fail (OHDSI DQD style: a share of a ten-row delta drop means nothing, a
truncated patients.csv still blocks); structural rules (threshold 0) fail on one. GX's own
`success` is kept in `ops.dq_results.gx_success` for the record.

An expectation that raised (GX records it in `exception_info`, with `success=False` and no
counts) is never read as a pass or a fail of the data: the rule result carries the exception,
and the check fails loudly as "not measured".

Several drops in one frame (a backlog, e.g. the first refresh of a history): GX runs once on
the frame, and its counts are attributed to the drops (`run_frame`). A drop's unexpected rows are
GX's own, read from `partial_unexpected_index_list` (row positions, mapped to the drop of each
row); its evaluated rows are the rows the expectation applies to (its row condition, values not
missing). The attributed counts must add up to GX's totals, rule by rule; when they do not, or
when a rule has more unexpected rows than the index list holds (`ATTRIBUTION_CAP`), the frame is
validated again drop by drop. GX's graph building costs ~0.2-0.5 s per validation run whatever
the frame size, so one run for six small drops instead of six saves most of a first refresh.

Only counts leave this module: `result_format` is SUMMARY with `partial_unexpected_count: 0` (no
unexpected values, no index lists) or, to attribute a multi-drop frame,
`exclude_unexpected_values: True` with row positions only; only whitelisted numeric fields of
GX's result are copied. Identifier values can therefore never reach metadata, logs or the report
(no frame column holds one in any case: frames carry flags, codes, numbers, dates and hashes).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from haic_pipeline.quality.gx_runtime import GxSession
from haic_pipeline.quality.suites import CheckSpec, RuleSpec, build_suite

#: counts only: no unexpected values, no unexpected index lists, no query
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0,
                 "include_unexpected_rows": False, "return_unexpected_index_query": False}
#: a multi-drop frame: row positions of the unexpected rows (at most ATTRIBUTION_CAP per rule),
#: never their values
ATTRIBUTION_CAP = 20_000
ATTRIBUTION_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": ATTRIBUTION_CAP,
                      "exclude_unexpected_values": True, "include_unexpected_rows": False,
                      "return_unexpected_index_query": False}


@dataclass
class RuleResult:
    rule: RuleSpec
    extract_id: str | None
    evaluated: int = 0
    unexpected: int = 0
    gx_success: bool | None = None
    exception: str | None = None
    chunks: int = 0
    attributed: bool = False   # counted on a multi-drop frame: decided with GX's formula
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


def condition_builder(condition: list):
    """(column, op, value) triples -> a GX 1.x row condition (AND)."""
    from great_expectations.expectations.row_conditions import Column  # noqa: PLC0415 (lazy)

    parts = []
    for col, op, value in condition:
        c = Column(col)
        if op == "not_null":
            parts.append(c.is_not_null())
        elif op == "in":
            parts.append(c.is_in(list(value)))
        elif op == "not_in":
            parts.append(c.is_not_in(list(value)))
        elif op == "ne":
            parts.append(c != value)
        else:
            raise ValueError(f"unknown condition operator {op!r}")
    out = parts[0]
    for p in parts[1:]:
        out = out & p
    return out


class SuiteRunner:
    """The generated suite of one check for one frame kind, as a GX ValidationDefinition."""

    def __init__(self, session: GxSession, check: CheckSpec, scope: str):
        gx = session.gx
        self.rules = [r for r in check.rules if r.scope == scope]
        suite = session.context.suites.add(build_suite(gx, check, scope, condition_builder))
        batch_def = session.batch_definition(f"{check.name}.{scope}")
        self.definition = session.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{check.name}.{scope}", data=batch_def, suite=suite))

    def validate(self, df: pd.DataFrame, result_format: dict):
        """GX's ExpectationSuiteValidationResult of the suite on one batch.

        The validation definition's suite is run on its batch with `Batch.validate` (GX's public
        API, the same validator as `ValidationDefinition.run`), which does not keep the result
        in the context's results store: nothing here reads it back, serialising it cost ~0.1 s
        per batch, and a worker's in-memory store grew with every batch. pandas copy-on-write
        is on while GX runs: its pandas engine copies the whole frame for each metric domain
        (~40 copies of a 2 M-row lab frame), which copy-on-write defers to a write that never
        comes. The two together take a lab frame's validation from ~0.8 to ~0.4 s; the counts
        are the same (a test runs every check both ways: ValidationDefinition.run, booleans)."""
        with pd.option_context("mode.copy_on_write", True):
            batch = self.definition.batch_definition.get_batch(batch_parameters={"dataframe": df})
            return batch.validate(self.definition.suite, result_format=result_format)

    def run(self, df: pd.DataFrame, result_format: dict | None = None) -> dict[str, dict]:
        """rule name -> {evaluated, unexpected, success, exception} for one batch (with
        ATTRIBUTION_FORMAT also `index`: the unexpected rows' positions, at most the cap)."""
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
            if result_format is ATTRIBUTION_FORMAT:
                out[name]["index"] = result.get("partial_unexpected_index_list")
        for rule in self.rules:
            if rule.name not in out:
                out[rule.name] = {"evaluated": 0, "unexpected": 0, "success": False,
                                  "exception": "GX returned no result for this expectation"}
        return out


# one GX context per process, its SuiteRunners kept for every later validation of the same check
# spec (in a Dagster run's process and in each data-quality worker): a context and a runner cost
# ~0.1 s to build, paid once per check instead of once per check and drop batch
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


#: expectations whose evaluated rows `_applies` knows: not-null counts every row in its row
#: condition, the others the rows with no missing value in their column(s)
_ATTRIBUTABLE = {"ExpectColumnValuesToNotBeNull", "ExpectColumnValuesToBeInSet", "ExpectColumnValuesToBeBetween",
                 "ExpectColumnPairValuesAToBeGreaterThanB"}


def _applies(rule: RuleSpec, df: pd.DataFrame) -> np.ndarray | None:
    """Rows of `df` the rule's expectation evaluates (GX's element_count - missing_count), or
    None when this module cannot say (the frame is then validated drop by drop)."""
    if rule.expectation not in _ATTRIBUTABLE:
        return None
    mask = np.ones(len(df), dtype=bool)
    for col, op, value in rule.condition:   # as GX's pandas row condition reads them
        series = df[col]
        if op == "not_null":
            mask &= series.notna().to_numpy()
        elif op == "in":
            mask &= series.isin(list(value)).to_numpy()
        elif op == "not_in":
            mask &= ~series.isin(list(value)).to_numpy()
        elif op == "ne":
            mask &= (series != value).to_numpy(dtype=bool, na_value=True)
        else:
            return None
    if rule.expectation == "ExpectColumnValuesToNotBeNull":
        return mask
    if "column" in rule.kwargs:
        return mask & df[rule.kwargs["column"]].notna().to_numpy()
    if rule.kwargs.get("ignore_row_if") != "either_value_is_missing":
        return None
    return mask & df[rule.kwargs["column_A"]].notna().to_numpy() & df[rule.kwargs["column_B"]].notna().to_numpy()


def run_frame(runner: SuiteRunner, df: pd.DataFrame, codes: np.ndarray) -> dict[int, dict[str, dict]]:
    """Validate one frame whose rows belong to several drops (`codes[i]`: the drop of row i, a
    small integer); drop code -> the counts `SuiteRunner.run` gives for one drop's frame.
    A frame of one drop is validated as such (GX's own success per drop)."""
    rows_of = np.bincount(codes)   # rows per drop code (codes are small integers)
    present = np.flatnonzero(rows_of)
    if len(present) <= 1:
        return {int(c): runner.run(df) for c in present}
    if not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1):
        df = df.reset_index(drop=True)   # GX's index list: row positions
    got = runner.run(df, ATTRIBUTION_FORMAT)
    per_drop: dict[int, dict[str, dict]] = {int(c): {} for c in present}
    size = len(rows_of)
    for rule in runner.rules:
        g = got[rule.name]
        applies = _applies(rule, df)
        index = g.get("index")
        if g["exception"]:
            for c in present:
                per_drop[int(c)][rule.name] = {"evaluated": 0, "unexpected": 0, "success": None,
                                               "exception": g["exception"]}
            continue
        if applies is None or index is None or len(index) != g["unexpected"]:
            return _drop_by_drop(runner, df, codes, present)
        evaluated = rows_of if applies.all() else np.bincount(codes[applies], minlength=size)
        unexpected = np.bincount(codes[np.asarray(index, dtype=np.int64)], minlength=size)
        if int(evaluated.sum()) != g["evaluated"] or int(unexpected.sum()) != g["unexpected"]:
            return _drop_by_drop(runner, df, codes, present)
        for c in present:
            per_drop[int(c)][rule.name] = {"evaluated": int(evaluated[c]), "unexpected": int(unexpected[c]),
                                           "success": None, "exception": None}
    return per_drop



def run_members(members: list[tuple[CheckSpec, list[str] | None]], scope: str, df: pd.DataFrame,
                codes: np.ndarray, keys: list[str] | None = None) -> list[dict[int, dict[str, dict]]]:
    """run_frame of one frame for each member check of a group (check, its own frame columns or
    None = all of them) with the process's runner for its suite of `scope` (`keys`: their
    spec_keys, if known); one result per member, in order."""
    return [run_frame(cached_runner(check, scope, keys[i] if keys else None), df if cols is None else df[cols], codes)
            for i, (check, cols) in enumerate(members)]

def _drop_by_drop(runner: SuiteRunner, df: pd.DataFrame, codes: np.ndarray, present) -> dict[int, dict[str, dict]]:
    """The fallback of run_frame: one GX run per drop of the frame (exact, slower)."""
    return {int(c): runner.run(df[codes == c].reset_index(drop=True)) for c in present}


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
        if g["success"] is None:
            rr.attributed = True
        else:
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
