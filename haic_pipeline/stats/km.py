"""Kaplan-Meier estimation with R ``survival::survfit`` conventions.

Implemented in NumPy here, not with lifelines, because lifelines' defaults are not R's:
its confidence interval is R's ``conf.type = "log-log"`` (R's default is ``"log"``), its
median has no midpoint rule and returns ``inf`` instead of NA when not reached.
``haic_pipeline_tests/stats`` has a test that shows the lifelines difference and that
this module reproduces R.

Formulas (R ``survfit(Surv(time, event) ~ 1)``, survival 3.5-3, ``src/survfitkm.c``):

* at each distinct observed time t_i (event or censored): n_i at risk (time >= t_i),
  d_i events, c_i censored;
* S(t) = prod_{t_i <= t} (1 - d_i / n_i);
* Greenwood: var(log S(t)) = sum_{t_i <= t, d_i > 0} d_i / (n_i (n_i - d_i))
  (infinite once S reaches 0);
* log-scale CI (``conf.type = "log"``): S exp(-+ z se_log), upper bound capped at 1;
  NaN (R: NA) where S = 0; equal to S where se_log = 0;
* quantiles (``quantile.survfit``): on the CDF 1 - S with (0, 0) prepended, the first
  time at which 1 - S > p; where 1 - S == p (tolerance sqrt(machine eps)) on a flat,
  the midpoint of the flat's start and the next jump time (or the last observed time when
  the flat runs to the end). CI bounds of a quantile apply the same rule to the lower and
  upper CI curves. Not reached = ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as _sps

from ._common import clean_survival

_TOL = float(np.sqrt(np.finfo(float).eps))  # R: sqrt(.Machine$double.eps)


class SurvivalAt(NamedTuple):
    """S(t) with its log-scale confidence interval (unpacks as a 3-tuple)."""

    surv: float
    lower: float
    upper: float


class SurvivalSummary(NamedTuple):
    """R ``summary(fit, times = t, extend = TRUE)`` for one time."""

    time: float
    n_at_risk: int
    surv: float
    std_err: float  # standard error of S(t) (Greenwood), as R's summary prints it
    lower: float
    upper: float


class Quantile(NamedTuple):
    """A survival-time quantile with its CI; ``None`` where not reached."""

    estimate: float | None
    lower: float | None
    upper: float | None


def _findq(x: np.ndarray, y: np.ndarray, p: float, tol: float = _TOL) -> float | None:
    """Port of R's ``survival:::findq`` (quantile.survfit.R) for one probability.

    ``x`` = c(firstx, time), ``y`` = c(0, 1 - curve): a CDF-like curve, possibly with NaN
    (a CI curve after S reached 0). Returns None where R returns NA.
    """
    finite = ~np.isnan(y)
    if not finite.any() or np.nanmax(y) < p:
        return None
    xmax = x[-1]
    # R: dups <- duplicated(y); x <- x[!dups]; y <- y[!dups]   (NaN counts as a value)
    dups = pd.Series(y).duplicated().to_numpy()
    x, y = x[~dups], y[~dups]
    n = len(y)
    valid = np.flatnonzero(~np.isnan(y))
    yv = y[valid]

    def approx_right(shift: float) -> int | None:
        # approx(y + shift, 1:n, p, method = "constant", f = 1): index of the smallest
        # knot >= p (NaN knots dropped); NA outside the knots' range.
        knots = yv + shift
        if p < knots.min() or p > knots.max():
            return None
        ok = knots >= p
        return int(valid[ok][np.argmin(knots[ok])])

    i1 = approx_right(tol)
    i2 = approx_right(-tol)
    quant = None
    if i1 is not None and i2 is not None:
        quant = (x[i1] + x[i2]) / 2.0
    if p == 0:
        quant = x[0]
    if not np.isnan(y[n - 1]) and abs(p - y[n - 1]) < tol and i1 is not None:
        quant = (x[i1] + xmax) / 2.0
    return None if quant is None else float(quant)


@dataclass(frozen=True)
class KaplanMeier:
    """A fitted Kaplan-Meier curve (R ``survfit`` object equivalent).

    Attributes: ``n`` (rows used), ``events``, ``median``/``median_lower``/``median_upper``
    (None when not reached), ``conf_level`` and ``table`` with one row per distinct
    observed time: time, n_at_risk, n_events, n_censored, survival, std_err (standard error
    of S, i.e. R's ``summary()`` std.err = S * se(log S)), lower, upper.
    """

    n: int
    events: int
    conf_level: float
    table: pd.DataFrame = field(repr=False)
    _se_log: np.ndarray = field(repr=False)
    median: float | None = None
    median_lower: float | None = None
    median_upper: float | None = None

    # -- lookups -------------------------------------------------------------------
    def _row(self, t: float) -> int:
        """Index of the last curve time <= t, or -1 before the first time."""
        return int(np.searchsorted(self.table["time"].to_numpy(), t, side="right")) - 1

    def summary_at(self, t: float) -> SurvivalSummary:
        """R ``summary(fit, times = t, extend = TRUE)``: S(t), its standard error, log CI.

        Before the first observed time S = 1 with standard error 0; after the last one the
        last values are carried forward (``extend = TRUE``) with n_at_risk 0.
        """
        t = float(t)
        i = self._row(t)
        times = self.table["time"].to_numpy()
        # number at risk at t: subjects with time >= t
        j = int(np.searchsorted(times, t, side="left"))
        n_risk = int(self.table["n_at_risk"].iloc[j]) if j < len(times) else 0
        if i < 0:
            return SurvivalSummary(t, n_risk, 1.0, 0.0, 1.0, 1.0)
        row = self.table.iloc[i]
        return SurvivalSummary(
            t, n_risk, float(row["survival"]), float(row["std_err"]),
            float(row["lower"]), float(row["upper"]),
        )

    def survival_at(self, t: float) -> SurvivalAt:
        """``(surv, lower, upper)`` at time t: S(t) and its log-scale CI (R ``summary``)."""
        s = self.summary_at(t)
        return SurvivalAt(s.surv, s.lower, s.upper)

    def std_err_at(self, t: float) -> float:
        """Greenwood standard error of S(t) (R ``summary(fit, times = t)$std.err``)."""
        return self.summary_at(t).std_err

    def log_variance_at(self, t: float) -> float:
        """Greenwood var(log S(t)) = sum d/(n(n-d)) over event times <= t (0 before the first)."""
        i = self._row(t)
        return 0.0 if i < 0 else float(self._se_log[i] ** 2)

    def quantile(self, p: float) -> Quantile:
        """Time by which a fraction p has had the event, with CI (R ``quantile(fit, p)``).

        p = 0.5 is the median: the first time S(t) < 0.5, the midpoint rule where S is
        exactly 0.5 on an interval; lower/upper from the lower/upper CI curves.
        """
        if not 0 <= p <= 1:
            raise ValueError("p must be within [0, 1]")
        x = np.concatenate([[0.0], self.table["time"].to_numpy(dtype=float)])
        est = _findq(x, np.concatenate([[0.0], 1 - self.table["survival"].to_numpy()]), p)
        low = _findq(x, np.concatenate([[0.0], 1 - self.table["lower"].to_numpy()]), p)
        up = _findq(x, np.concatenate([[0.0], 1 - self.table["upper"].to_numpy()]), p)
        return Quantile(est, low, up)


def kaplan_meier(time: Any, event: Any, conf_level: float = 0.95) -> KaplanMeier:
    """Kaplan-Meier estimate, as R ``survfit(Surv(time, event) ~ 1, conf.type = "log")``.

    S(t) = prod_{t_i <= t} (1 - d_i/n_i); Greenwood var(log S) = sum d_i/(n_i(n_i - d_i));
    CI = S exp(-+ z_{(1+conf_level)/2} se_log), upper capped at 1; median and its CI by
    R's ``quantile.survfit`` rule (see the module docstring). Rows with a missing time or
    event are dropped (R's ``na.omit``); times must be >= 0 (time-0 rows are kept and are
    at risk at time 0); events are 0/1.
    """
    if not 0 < conf_level < 1:
        raise ValueError("conf_level must be within (0, 1)")
    t, e = clean_survival(time, event)
    n = len(t)
    if n == 0:
        raise ValueError("kaplan_meier needs at least one observation")
    uniq, inverse = np.unique(t, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(uniq)).astype(float)
    d = np.bincount(inverse, weights=e, minlength=len(uniq))
    n_risk = n - np.concatenate([[0.0], np.cumsum(counts)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - d / n_risk)
        incr = np.where(d > 0, d / (n_risk * (n_risk - d)), 0.0)  # inf where n == d
        var_log = np.cumsum(incr)
        se_log = np.sqrt(var_log)
        z = _sps.norm.ppf(1 - (1 - conf_level) / 2)
        pos = surv > 0
        lower = np.where(se_log == 0, surv, np.where(pos, surv * np.exp(-z * se_log), np.nan))
        upper = np.where(se_log == 0, surv, np.where(pos, surv * np.exp(z * se_log), np.nan))
        upper = np.minimum(upper, 1.0)
        std_err = se_log * surv  # R summary(): se(S) = S * se(log S); 0 * inf = NaN
    table = pd.DataFrame(
        {
            "time": uniq,
            "n_at_risk": n_risk.astype(np.int64),
            "n_events": d.astype(np.int64),
            "n_censored": (counts - d).astype(np.int64),
            "survival": surv,
            "std_err": std_err,
            "lower": lower,
            "upper": upper,
        }
    )
    km = KaplanMeier(n=n, events=int(e.sum()), conf_level=conf_level, table=table,
                     _se_log=se_log)
    med = km.quantile(0.5)
    object.__setattr__(km, "median", med.estimate)
    object.__setattr__(km, "median_lower", med.lower)
    object.__setattr__(km, "median_upper", med.upper)
    return km


def reverse_km_follow_up(time: Any, event: Any, conf_level: float = 0.95) -> KaplanMeier:
    """Median follow-up by the reverse Kaplan-Meier method.

    The KM of the censoring distribution: R ``survfit(Surv(time, 1 - event) ~ 1)``;
    censored rows are the "events". ``.median`` (with ``median_lower``/``median_upper``)
    is the median follow-up; None when fewer than half were censored before the end.
    """
    t, e = clean_survival(time, event)
    return kaplan_meier(t, 1.0 - e, conf_level=conf_level)
