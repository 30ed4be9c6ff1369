"""Input checks shared by the statistics modules (private)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def as_float_array(values: Any, name: str) -> np.ndarray:
    """1-D float array from a list / Series / array; booleans become 0/1, None/NA become NaN."""
    if isinstance(values, (pd.Series, pd.Index)):
        arr = pd.to_numeric(pd.Series(values), errors="raise").astype("float64").to_numpy()
    else:
        arr = np.asarray(values)
        if arr.dtype == object:
            arr = pd.to_numeric(pd.Series(arr), errors="raise").astype("float64").to_numpy()
        else:
            arr = arr.astype("float64")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def clean_survival(time: Any, event: Any, *others: Any) -> tuple[np.ndarray, ...]:
    """Validate right-censored data and drop incomplete rows (R's ``na.omit``).

    Returns ``(time, event, *others)`` restricted to rows where time and event
    (and every extra array) are present. Raises ``ValueError`` on negative
    times, event codes other than 0/1, or arrays of unequal length.
    """
    t = as_float_array(time, "time")
    e = as_float_array(event, "event")
    if len(t) != len(e):
        raise ValueError(f"time and event differ in length ({len(t)} vs {len(e)})")
    keep = ~(np.isnan(t) | np.isnan(e))
    extra = []
    for o in others:
        arr = np.asarray(o, dtype=object) if not isinstance(o, np.ndarray) else o
        if len(arr) != len(t):
            raise ValueError("all inputs must have the same length")
        extra.append(arr)
        keep &= ~pd.isna(pd.Series(arr)).to_numpy()
    t, e = t[keep], e[keep]
    if np.any(~np.isfinite(t)):
        raise ValueError("time contains infinite values")
    if np.any(t < 0):
        raise ValueError("time must be >= 0 (found negative survival times)")
    if not np.all((e == 0) | (e == 1)):
        raise ValueError("event must be coded 0 (censored) / 1 (event)")
    return (t, e, *[a[keep] for a in extra])


def group_levels(group: np.ndarray, levels: Any = None) -> list:
    """Observed group levels in R's factor order (sorted), or the caller's order."""
    present = pd.unique(pd.Series(group))
    if levels is None:
        try:
            return sorted(present)
        except TypeError:
            return sorted(present, key=str)
    levels = list(levels)
    unknown = [g for g in present if g not in levels]
    if unknown:
        raise ValueError(f"group values {unknown!r} are not among levels {levels!r}")
    return levels
