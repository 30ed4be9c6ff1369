"""Publication formatting, in one place.

* median with CI: ``12.4 (9.0–NA)``          :func:`format_median_ci`
* hazard ratio:   ``HR 0.404 (0.197–0.829)`` :func:`format_hr`
* mean ± SD:      ``65.79 ± 11.19``          :func:`format_mean_sd`
* p-value:        ``0.073`` / ``<0.001``     :func:`format_p`
* count:          ``12 (34.3)``              :func:`format_count_percent`

Missing values (None / NaN, e.g. a median not reached) print as ``NA``, as R prints them.
Rounding is C ``printf`` rounding of the binary value (Python's ``format``), as R's
``sprintf``/``formatC``. The range separator is an en dash (U+2013).
"""

from __future__ import annotations

import math
from typing import Any

EN_DASH = "\u2013"


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def _num(x: Any, digits: int) -> str:
    return "NA" if _missing(x) else f"{float(x):.{digits}f}"


def format_estimate_ci(estimate: Any, lower: Any, upper: Any, digits: int = 1) -> str:
    """``est (lower–upper)`` with ``digits`` decimals; missing parts as ``NA``."""
    return f"{_num(estimate, digits)} ({_num(lower, digits)}{EN_DASH}{_num(upper, digits)})"


def format_median_ci(median: Any, lower: Any, upper: Any, digits: int = 1) -> str:
    """Median survival with its CI, e.g. ``12.4 (9.0–NA)`` (None = not reached = NA)."""
    return format_estimate_ci(median, lower, upper, digits)


def format_hr(hr: Any, lower: Any, upper: Any, digits: int = 3) -> str:
    """Hazard ratio with its CI, e.g. ``HR 0.404 (0.197–0.829)``."""
    return "HR " + format_estimate_ci(hr, lower, upper, digits)


def format_mean_sd(mean: Any, sd: Any, digits: int = 2) -> str:
    """Mean ± standard deviation, e.g. ``65.79 ± 11.19``."""
    return f"{_num(mean, digits)} \u00b1 {_num(sd, digits)}"


def format_p(p: Any, digits: int = 3) -> str:
    """p-value with 3 decimals, ``<0.001`` below 0.001 (study_spec §3), ``NA`` if missing."""
    if _missing(p):
        return "NA"
    p = float(p)
    floor = 10.0 ** (-digits)
    if p < floor:
        return f"<{floor:.{digits}f}"
    return f"{p:.{digits}f}"


def format_count_percent(count: Any, total: Any, digits: int = 1) -> str:
    """``n (%)``, e.g. ``12 (34.3)``; the percent is ``NA`` when the total is 0."""
    if _missing(count):
        return "NA"
    count = int(count)
    if _missing(total) or int(total) == 0:
        return f"{count} (NA)"
    return f"{count} ({100.0 * count / int(total):.{digits}f})"
