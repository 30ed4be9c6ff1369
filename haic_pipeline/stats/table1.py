"""Table 1 (baseline characteristics by group), study_spec §3-§4.

Output shape = ``analysis.baseline_characteristics``: one row per variable x level with
columns ``variable, level, <group 1>, <group 2>, overall, test, p_value``. Typical call
from the study layer::

    build_table1(cohort_included,
                 continuous=["age", "bilirubin_mg_dl", "albumin_g_dl"],
                 categorical=["sex", "etiology", "ecog", "child_pugh_class", "bclc_stage"],
                 group_col="group", groups=("first_line", "post_ate_beva"))

* continuous: one row, level ``mean ± SD``, cells ``65.79 ± 11.19`` (SD with n - 1),
  test ``t_test`` = Student's t, pooled variance (R ``t.test(var.equal = TRUE)``);
* categorical: one row per level (in ``levels[var]`` order if given, else sorted), cells
  ``n (%)`` with the percentage of the group's non-missing values, test ``chi2`` (Pearson,
  no continuity correction) or ``fisher`` (exact, when an expected count is < 5) as
  :func:`haic_pipeline.stats.compare_proportions`; the test and p-value are repeated on
  every level row of the variable. If values are missing, an extra row with level
  ``missing`` gives the missing counts (no percentage, no test);
* a first row ``n`` (level empty) gives the group sizes;
* ``p_value`` is stored unrounded (NaN with test None where no test is possible, e.g. one
  group empty or a single observed level); format it with :func:`format_p`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .formatting import format_count_percent, format_mean_sd
from .tests import compare_means, compare_proportions


def level_label(level) -> str:
    """A level as text: whole floats without ``.0`` (0/1 codes read back as floats)."""
    if isinstance(level, (float, np.floating)) and float(level).is_integer():
        return str(int(level))
    return str(level)


def _sorted_levels(values: pd.Series) -> list:
    present = list(pd.unique(values.dropna()))
    try:
        return sorted(present)
    except TypeError:
        return sorted(present, key=str)


def build_table1(
    frame: pd.DataFrame,
    continuous: Sequence[str] = (),
    categorical: Sequence[str] = (),
    group_col: str = "group",
    groups: Sequence[str] = ("first_line", "post_ate_beva"),
    levels: Mapping[str, Sequence] | None = None,
    overall_label: str = "overall",
    include_n: bool = True,
    mean_digits: int = 2,
    percent_digits: int = 1,
) -> pd.DataFrame:
    """Build Table 1: mean ± SD with Student's t for ``continuous``, n (%) with chi-square /
    exact Fisher for ``categorical``, by ``group_col`` over the two ``groups`` (rows of other
    groups are ignored) and overall. See the module docstring for the row layout.
    """
    groups = list(groups)
    if len(groups) != 2:
        raise ValueError("build_table1 compares exactly two groups")
    levels = dict(levels or {})
    unknown = [c for c in [group_col, *continuous, *categorical] if c not in frame.columns]
    if unknown:
        raise KeyError(f"columns not in frame: {unknown}")
    data = frame[frame[group_col].isin(groups)]
    parts = {g: data[data[group_col] == g] for g in groups}
    parts[overall_label] = data
    columns = ["variable", "level", *groups, overall_label, "test", "p_value"]
    rows: list[dict] = []

    if include_n:
        row = {"variable": "n", "level": "", "test": None, "p_value": np.nan}
        row.update({k: str(len(v)) for k, v in parts.items()})
        rows.append(row)

    for var in continuous:
        row = {"variable": var, "level": "mean \u00b1 SD"}
        for k, part in parts.items():
            x = pd.to_numeric(part[var], errors="raise").astype(float).dropna()
            row[k] = format_mean_sd(x.mean() if len(x) else None,
                                    x.std(ddof=1) if len(x) > 1 else None, mean_digits)
        try:
            res = compare_means(data[var], data[group_col], levels=groups)
            row["test"], row["p_value"] = "t_test", res.p_value
        except ValueError:
            row["test"], row["p_value"] = None, np.nan
        rows.append(row)
        n_missing = {k: int(p[var].isna().sum()) for k, p in parts.items()}
        if n_missing[overall_label]:
            rows.append({"variable": var, "level": "missing", "test": None, "p_value": np.nan,
                         **{k: str(v) for k, v in n_missing.items()}})

    for var in categorical:
        levs = list(levels.get(var, _sorted_levels(data[var])))
        try:
            res = compare_proportions(data[var], data[group_col])
            test, p = res.test, res.p_value
        except ValueError:
            test, p = None, np.nan
        for lev in levs:
            row = {"variable": var, "level": level_label(lev), "test": test, "p_value": p}
            for k, part in parts.items():
                col = part[var]
                row[k] = format_count_percent(int((col == lev).sum()), int(col.notna().sum()),
                                              percent_digits)
            rows.append(row)
        n_missing = {k: int(p_[var].isna().sum()) for k, p_ in parts.items()}
        if n_missing[overall_label]:
            rows.append({"variable": var, "level": "missing", "test": None, "p_value": np.nan,
                         **{k: str(v) for k, v in n_missing.items()}})

    out = pd.DataFrame(rows, columns=columns)
    out["p_value"] = out["p_value"].astype(float)
    return out
