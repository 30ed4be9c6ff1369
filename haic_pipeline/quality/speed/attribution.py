"""Several drops in one frame (a backlog, e.g. the first refresh of a history): GX runs once on
the frame, and its counts are attributed to the drops (`run_frame`).

A drop's unexpected rows are GX's own, read from `partial_unexpected_index_list` (row positions,
mapped to the drop of each row, never values); its evaluated rows are the rows the expectation
applies to (values not missing). The attributed counts must add up to GX's totals, rule by
rule; when they do not, or when a rule has more unexpected rows than the index list holds
(`ATTRIBUTION_CAP`), the frame is validated again drop by drop. GX builds its metric graph once
per validation run whatever the frame size, so one run for six small drops instead of six saves
most of a first refresh. The counts per drop are those of validating each drop alone (tested).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from haic_pipeline.quality.suites import CheckSpec, RuleSpec
from haic_pipeline.quality.validate import SuiteRunner, cached_runner

#: a multi-drop frame: row positions of the unexpected rows (at most ATTRIBUTION_CAP per rule),
#: never their values
ATTRIBUTION_CAP = 20_000
ATTRIBUTION_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": ATTRIBUTION_CAP,
                      "exclude_unexpected_values": True, "include_unexpected_rows": False,
                      "return_unexpected_index_query": False}


#: expectations whose evaluated rows `_applies` knows: not-null counts every row, the others the
#: rows with no missing value in their column(s)
_ATTRIBUTABLE = {"ExpectColumnValuesToNotBeNull", "ExpectColumnValuesToBeInSet", "ExpectColumnValuesToBeBetween",
                 "ExpectColumnPairValuesAToBeGreaterThanB"}


def _applies(rule: RuleSpec, df: pd.DataFrame) -> np.ndarray | None:
    """Rows of `df` the rule's expectation evaluates (GX's element_count - missing_count), or
    None when this module cannot say (the frame is then validated drop by drop)."""
    if rule.expectation not in _ATTRIBUTABLE:
        return None
    if rule.expectation == "ExpectColumnValuesToNotBeNull":
        return np.ones(len(df), dtype=bool)
    if "column" in rule.kwargs:
        return df[rule.kwargs["column"]].notna().to_numpy()
    if rule.kwargs.get("ignore_row_if") != "either_value_is_missing":
        return None
    return df[rule.kwargs["column_A"]].notna().to_numpy() & df[rule.kwargs["column_B"]].notna().to_numpy()


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
