"""E-values for a hazard ratio (VanderWeele & Ding 2017), with R's formulas.

The E-value is the minimum strength of association, on the risk-ratio scale, that an
unmeasured confounder would need with both the treatment and the outcome (conditional on the
measured covariates) to explain the observed estimate away.

* The hazard ratio is first put on the risk-ratio scale: RR = HR when the outcome is rare
  (VanderWeele & Ding: events in < 15% of the patients), otherwise the common-outcome
  conversion RR = (1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR)) (VanderWeele 2020; R
  ``EValue::evalues.HR(est, lo, hi, rare = FALSE)``).
* E = RR* + sqrt(RR* (RR* - 1)), RR* = RR if RR >= 1 else 1/RR.
* For the confidence interval: 1 when the CI of the HR contains 1, otherwise the E-value of
  the limit closer to 1 (the upper limit when HR < 1, the lower when HR > 1).

R (``../shared/reference/r_beyond/r_beyond.R`` section (9), which writes the package's formula
out since EValue is not a survival dependency)::

    rr <- function(h) if (rare) h else (1 - 0.5^sqrt(h)) / (1 - 0.5^sqrt(1 / h))
    e <- function(r) { r <- if (r < 1) 1 / r else r; r + sqrt(r * (r - 1)) }
    ci <- if (lo <= 1 && hi >= 1) 1 else if (hi < 1) e(rr(hi)) else e(rr(lo))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: an outcome seen in fewer than this share of the patients is "rare" (HR taken as the RR)
RARE_OUTCOME_SHARE = 0.15


@dataclass(frozen=True)
class EValueResult:
    """:func:`e_value`: ``rr`` (the HR on the risk-ratio scale), ``rr_lower`` / ``rr_upper``
    (the CI limits converted likewise; None without a CI), ``e_value`` (of the estimate),
    ``e_value_ci`` (of the CI limit closer to 1; 1 when the CI contains 1; None without a
    CI), ``rare`` (whether the rare-outcome approximation RR = HR was used)."""

    rr: float
    rr_lower: float | None
    rr_upper: float | None
    e_value: float
    e_value_ci: float | None
    rare: bool


def _check_hr(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"e_value: {name} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"e_value: {name} must be a finite hazard ratio > 0, got {value!r}")
    return v


def _to_rr(hr: float, rare: bool) -> float:
    if rare:
        return hr
    return (1.0 - 0.5 ** math.sqrt(hr)) / (1.0 - 0.5 ** math.sqrt(1.0 / hr))


def _e_of_rr(rr: float) -> float:
    r = 1.0 / rr if rr < 1 else rr
    return r + math.sqrt(r * (r - 1.0))


def e_value(hr: float, lower: float | None = None, upper: float | None = None,
            rare: bool = False) -> EValueResult:
    """E-value of a hazard ratio and of its confidence interval (formulas in the module
    docstring; R ``EValue::evalues.HR(hr, lower, upper, rare = rare)``, rows "RR" and
    "E-values").

    ``rare``: True when the outcome occurs in < 15% of the patients (:func:`rare_outcome`);
    then RR = HR, otherwise the common-outcome conversion. ``lower`` / ``upper``: the CI of
    the HR (both or neither). Raises ``ValueError`` for a HR or limit that is not a finite
    number > 0, or lower > hr > upper violated.
    """
    h = _check_hr(hr, "hr")
    if (lower is None) != (upper is None):
        raise ValueError("e_value: give both CI limits or neither")
    rr = _to_rr(h, rare)
    if lower is None:
        return EValueResult(rr=rr, rr_lower=None, rr_upper=None, e_value=_e_of_rr(rr),
                            e_value_ci=None, rare=bool(rare))
    lo, hi = _check_hr(lower, "lower"), _check_hr(upper, "upper")
    if not lo <= h <= hi:
        raise ValueError(f"e_value: the CI ({lo:g}, {hi:g}) does not contain the HR {h:g}")
    if lo <= 1 <= hi:
        ci = 1.0
    elif hi < 1:
        ci = _e_of_rr(_to_rr(hi, rare))
    else:
        ci = _e_of_rr(_to_rr(lo, rare))
    return EValueResult(rr=rr, rr_lower=_to_rr(lo, rare), rr_upper=_to_rr(hi, rare),
                        e_value=_e_of_rr(rr), e_value_ci=ci, rare=bool(rare))


def rare_outcome(event: Any, threshold: float = RARE_OUTCOME_SHARE) -> bool:
    """Whether the outcome is rare for :func:`e_value`: the share of rows with an event is
    below ``threshold`` (0.15), R ``mean(event) < 0.15``. Missing values are left out."""
    e = np.asarray(event, dtype=float)
    e = e[~np.isnan(e)]
    if len(e) == 0:
        raise ValueError("rare_outcome needs at least one non-missing event indicator")
    return bool(e.mean() < threshold)
