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

With case weights w_i (R ``survfit(Surv(time, event) ~ 1, weights = w)``, same file):

* Y(t_i) = sum of the weights at risk, dw_i = sum of the weights of the events; a time is an
  event time when it has an event of positive weight; S(t) = prod (1 - dw_i / Y(t_i));
  the table's n_at_risk / n_events / n_censored are these weighted sums (R's ``n.risk``
  etc.), the unweighted counts are kept beside them.
* Variance. R's default: integer weights (case counts) keep Greenwood on the weighted
  counts; any non-integer weight switches to the robust infinitesimal-jackknife (IJ)
  variance (``robust = TRUE``, one cluster per row). R's C code (``survfitkm.c``, type 1)
  updates each row's influence U_k(t) = w_k dS(t)/dw_k recursively; solved in closed form,
  U_k(t) = w_k S(t) H_k(t), H_k(t) = B(min(t, t_k)) - delta_k 1(t_k <= t) a(t_k), with
  a(s) = 1/(Y(s) - dw(s)), b(s) = dw(s)/(Y(s)(Y(s) - dw(s))) at the event times and
  B(t) = sum_{s <= t} b(s). var S(t) = sum_k U_k(t)^2
  = S(t)^2 [ sum_{k: t_k <= t} w_k^2 H_k(t_k)^2 + B(t)^2 sum_{k: t_k > t} w_k^2 ],
  running sums over the sorted times: O(n log n), no rows x times matrix. Once S reaches 0
  (every weight at risk has the event) all influences are 0, as in R. se(S) is reported
  directly (R's ``logse = FALSE``) and the log CI uses se(S)/S; where S = 0 the CI is
  NaN (R 3.5-3: NA; later survival versions give 0 when the se is 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as _sps

from ._common import as_float_array, clean_survival

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

    Weighted fits: ``weighted`` is True, ``n`` / ``events`` stay row counts, ``sum_weights``
    = sum w and ``ess`` = (sum w)^2 / sum w^2 (Kish); the table's n_at_risk, n_events and
    n_censored are weighted sums (floats) and n_at_risk_unweighted, n_events_unweighted,
    n_censored_unweighted the counts; ``variance`` is ``"greenwood"`` or ``"robust_ij"``.
    """

    n: int
    events: int
    conf_level: float
    table: pd.DataFrame = field(repr=False)
    _se_log: np.ndarray = field(repr=False)
    median: float | None = None
    median_lower: float | None = None
    median_upper: float | None = None
    weighted: bool = False
    variance: str = "greenwood"
    sum_weights: float | None = None
    ess: float | None = None

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
        n_risk = self.table["n_at_risk"].iloc[j] if j < len(times) else 0
        n_risk = float(n_risk) if self.weighted else int(n_risk)
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

    def log_variance_at(self, t: float) -> float:
        """var(log S(t)): Greenwood sum d/(n(n-d)) over event times <= t (0 before the
        first); for a robust (IJ) weighted fit (se(S)/S)^2."""
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


def kaplan_meier(time: Any, event: Any, weights: Any = None, conf_level: float = 0.95,
                 robust: bool | None = None) -> KaplanMeier:
    """Kaplan-Meier estimate, as R ``survfit(Surv(time, event) ~ 1, conf.type = "log")``.

    S(t) = prod_{t_i <= t} (1 - d_i/n_i); Greenwood var(log S) = sum d_i/(n_i(n_i - d_i));
    CI = S exp(-+ z_{(1+conf_level)/2} se_log), upper capped at 1; median and its CI by
    R's ``quantile.survfit`` rule (see the module docstring). Rows with a missing time or
    event are dropped (R's ``na.omit``); times must be >= 0 (time-0 rows are kept and are
    at risk at time 0); events are 0/1.

    ``weights`` (case weights >= 0, aligned with time): R ``survfit(Surv(time, event) ~ 1,
    weights = w)``: weighted sums at risk / of events, and R's default variance: Greenwood
    on the weighted counts when every weight is an integer, the robust infinitesimal
    jackknife when any is not (``robust=None``; True / False force one, as R's ``robust``).
    The IJ formula is in the module docstring. Rows with a missing weight are dropped.
    """
    if not 0 < conf_level < 1:
        raise ValueError("conf_level must be within (0, 1)")
    if weights is not None:
        return _weighted_km(time, event, weights, conf_level, robust)
    if robust:
        return _weighted_km(time, event, np.ones(len(np.asarray(time))), conf_level, robust)
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


def _weighted_km(time: Any, event: Any, weights: Any, conf_level: float,
                 robust: bool | None) -> KaplanMeier:
    """The weighted fit of :func:`kaplan_meier` (formulas in the module docstring)."""
    t, e, w = clean_survival(time, event, weights)
    w = as_float_array(w, "weights")
    n = len(t)
    if n == 0:
        raise ValueError("kaplan_meier needs at least one observation")
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    if robust is None:  # R survfitKM: robust when any weight is not an integer
        robust = bool(np.any(w != np.floor(w)))
    uniq, inv = np.unique(t, return_inverse=True)
    inv = inv.reshape(-1)
    m = len(uniq)
    counts = np.bincount(inv, minlength=m).astype(float)
    d_count = np.bincount(inv, weights=e, minlength=m)
    wc = np.bincount(inv, weights=w, minlength=m)
    wd = np.bincount(inv, weights=w * e, minlength=m)
    n_risk = n - np.concatenate([[0.0], np.cumsum(counts)[:-1]])
    y = np.cumsum(wc[::-1])[::-1]  # weighted number at risk (time >= t)
    evt = (d_count > 0) & (wd > 0)
    left = y - wd  # weight at risk that survives the time
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(np.where(evt, left / y, 1.0))
        if robust:
            live = evt & (left > 0)  # after S reaches 0 every influence is 0 (R)
            a = np.where(live, 1.0 / left, 0.0)
            b = np.where(live, wd / (y * left), 0.0)
            big_b = np.cumsum(b)
            h = big_b[inv] - e * a[inv]  # H_k(t_k): the row's influence once it leaves
            done = np.cumsum(np.bincount(inv, weights=w * w * h * h, minlength=m))
            w2_after = np.sum(w * w) - np.cumsum(np.bincount(inv, weights=w * w, minlength=m))
            var_s = surv * surv * (done + big_b * big_b * np.maximum(w2_after, 0.0))
            std_err = np.sqrt(var_s)
            se_log = np.where(std_err == 0, 0.0, std_err / surv)
            variance = "robust_ij"
        else:
            incr = np.where(evt, wd / (y * left), 0.0)  # inf where all at risk die
            se_log = np.sqrt(np.cumsum(incr))
            std_err = se_log * surv
            variance = "greenwood"
        z = _sps.norm.ppf(1 - (1 - conf_level) / 2)
        pos = surv > 0  # R 3.5-3 survfit_confint: NA where S = 0, whatever the se
        lower = np.where(pos, surv * np.exp(-z * se_log), np.nan)
        upper = np.minimum(np.where(pos, surv * np.exp(z * se_log), np.nan), 1.0)
    table = pd.DataFrame(
        {
            "time": uniq,
            "n_at_risk": y,
            "n_events": wd,
            "n_censored": wc - wd,
            "survival": surv,
            "std_err": std_err,
            "lower": lower,
            "upper": upper,
            "n_at_risk_unweighted": n_risk.astype(np.int64),
            "n_events_unweighted": d_count.astype(np.int64),
            "n_censored_unweighted": (counts - d_count).astype(np.int64),
        }
    )
    sw, sw2 = float(w.sum()), float(np.sum(w * w))
    km = KaplanMeier(n=n, events=int(e.sum()), conf_level=conf_level, table=table,
                     _se_log=se_log, weighted=True, variance=variance, sum_weights=sw,
                     ess=(sw * sw / sw2) if sw2 > 0 else 0.0)
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
