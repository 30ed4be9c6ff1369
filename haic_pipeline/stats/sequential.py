"""Group-sequential monitoring: alpha-spending boundaries, planned events, and what a look needs.

Everything here is two-sided and under the canonical joint distribution of the sequential
z-statistics: at information fractions t_1 < ... < t_K, Z_k = S_k / sqrt(t_k) where the score
S_k has independent normal increments, S_k - S_{k-1} ~ N(0, t_k - t_{k-1}) under no
difference, so Corr(Z_i, Z_j) = sqrt(t_i / t_j) (Jennison & Turnbull 2000, ch. 3).

* :func:`spending_boundaries`: Lan-DeMets (1983) alpha-spending boundaries. Spending
  functions (rpact's two-sided definitions): ``obf`` alpha(t) = 4 (1 - Phi(Phi^-1(1 - alpha/4)
  / sqrt t)), ``pocock`` alpha(t) = alpha ln(1 + (e - 1) t). The boundary c_k at look k solves
  P(|Z_1| < c_1, ..., |Z_{k-1}| < c_{k-1}, |Z_k| >= c_k) = alpha(t_k) - (alpha spent before k),
  by the recursive numerical integration of Armitage, McPherson & Rowe (1969) as set out in
  Jennison & Turnbull (2000, ch. 19): the sub-density of S_k on the continuation region
  |S_k| < c_k sqrt(t_k) is carried from look to look on a grid with Simpson weights, each
  step one matrix-vector product with the normal transition kernel N(0, t_k - t_{k-1})
  (restricted to the grid points within 9 sd when the kernel is narrow);
  c_k is the root (safeguarded Newton) of the crossing probability at look k, the same
  integral with the kernel replaced by normal tail probabilities. The grid is equally spaced
  over the region, at least ``PANELS_PER_SD`` Simpson panels per standard deviation of the
  narrowest feature of the integrands (sqrt t_k, and the kernels into and out of look k):
  J&T's fixed non-uniform grid loses accuracy when looks lie close together, where the
  kernel is narrow. Under no difference the sub-densities are even, so half of each product
  is computed. No simulation and no generic multivariate-normal CDF (both stochastic, far
  from 1e-7 at 10+ looks).
  R: ``rpact::getDesignGroupSequential(sided = 2, typeOfDesign = "asOF" / "asP",
  informationRates = t, alpha = alpha)``, ``$criticalValues``, ``$alphaSpent``,
  ``2 * $stageLevels``.
  A boundary above 8 is +Inf (study_spec §6.1): that look spends no alpha,
  its (at most ~1e-13) share is spent at the next look with a finite boundary, and its
  nominal p is 0. rpact's reported final cumulative alpha is its own integral floored to
  1e-8 (e.g. 0.04999999 for alpha = 0.05); here the cumulative alpha at a look with a finite
  boundary is the exact spending function value alpha(t_k).
  A look's boundary depends only on the looks up to it, so the boundary "a look now would
  face" is ``spending_boundaries(looks_so_far + [t_now])`` at its last look (the last look's
  own boundary when t_now is that look's fraction: fractions must increase strictly).
* :func:`schoenfeld_events`: D = (z_{1-alpha/2} + z_{1-beta})^2 (1 + r)^2 / (r (ln HR)^2)
  (Schoenfeld 1983), unrounded. R: ``rpact::getSampleSizeSurvival(alpha = alpha, sided = 2,
  beta = 1 - power, hazardRatio = HR, allocationRatioPlanned = r)$maxNumberOfEvents``.
  D is the same for r and 1/r.
* :func:`repeated_ci`: exp(beta +- c SE), the repeated confidence interval of Jennison &
  Turnbull (1989) at a look with boundary c (no R call; rpact's ``getRepeatedConfidenceIntervals``
  needs a dataset object).
* :func:`conditional_power`: Lan & Wittes (1988) under the current trend (study_spec §6.3).
* :func:`expected_events`, :func:`months_to_target`, :func:`project_events`: when the
  planned events will be reached under exponential hazards and steady accrual (study_spec
  §6.3; no R counterpart).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize as _opt
from scipy import special as _special
from scipy import stats as _sps

SPENDING_FUNCTIONS = ("obf", "pocock")

#: A boundary above this is +Inf, no alpha spent at that look (study_spec §6.1). rpact 3.3.4
#: searches its boundaries up to 8 but already reports a value at or above 7.5 as Inf, so for a
#: first look whose exact boundary lies in [7.5, 8) it says Inf where this gives the finite value
#: (tested against the exact value).
INFINITE_BOUNDARY = 8.0

#: Simpson panels per standard deviation of the narrowest feature of the integrands.
PANELS_PER_SD = 3.0
#: Panels of a look's grid at least (cheap, and keeps few-look designs at ~1e-8).
MIN_PANELS = 100
#: Cap on the panels of one look's grid: looks closer than about 1e-7 apart (1e-6 after
#: a look with an infinite boundary) are refused rather than integrated inaccurately.
MAX_PANELS = 100_000

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# spending
# --------------------------------------------------------------------------------------------


def spending_function(t: np.ndarray | float, alpha: float, spending: str) -> np.ndarray:
    """Cumulative two-sided alpha spent by information fraction ``t`` (rpact's ``asOF`` /
    ``asP``): ``obf`` 4 (1 - Phi(Phi^-1(1 - alpha/4) / sqrt t)), ``pocock`` alpha ln(1 + (e - 1) t)."""
    t = np.asarray(t, dtype=float)
    _check_alpha(alpha)
    _check_spending(spending)
    if spending == "obf":
        return 4.0 * _special.ndtr(_special.ndtri(alpha / 4.0) / np.sqrt(t))
    return alpha * np.log1p((math.e - 1.0) * t)


@dataclass(frozen=True)
class SpendingBoundaries:
    """Two-sided group-sequential boundaries, one entry per look.

    ``critical_z`` (+inf where no alpha is spent), ``cumulative_alpha`` (alpha spent up to
    and including the look), ``alpha_increments`` (spent at the look), ``nominal_p``
    (2 (1 - Phi(c)), 0 where c is +inf), for ``information_fractions`` under ``alpha`` and
    ``spending``."""

    information_fractions: np.ndarray
    critical_z: np.ndarray
    cumulative_alpha: np.ndarray
    nominal_p: np.ndarray
    alpha_increments: np.ndarray
    alpha: float
    spending: str

    def __len__(self) -> int:
        return len(self.information_fractions)


def spending_boundaries(information_fractions: Sequence[float], alpha: float = 0.05,
                        spending: str = "obf") -> SpendingBoundaries:
    """Lan-DeMets two-sided alpha-spending boundaries at the given information fractions.

    ``information_fractions`` strictly increasing in (0, 1] (the last need not be 1: the looks
    so far); ``alpha`` in (0, 1); ``spending`` ``"obf"`` or ``"pocock"``. See the module
    docstring for the spending functions, the recursion and rpact's conventions.
    R: ``rpact::getDesignGroupSequential(sided = 2, typeOfDesign = "asOF", informationRates =
    t, alpha = alpha)`` (``"asP"`` for pocock).
    """
    t = _check_fractions(information_fractions)
    _check_alpha(alpha)
    _check_spending(spending)
    target = spending_function(t, alpha, spending)
    k_max = len(t)
    crit = np.full(k_max, np.inf)
    spent = np.zeros(k_max)
    cumulative = 0.0
    grid = None  # (score-scale points, Simpson weight x sub-density) at the previous look
    for k in range(k_max):
        increment = float(target[k]) - cumulative
        if k == 0:
            c = _first_boundary(increment)
        else:
            c = _next_boundary(grid, t[k - 1], t[k], increment)
        if np.isfinite(c):
            crit[k] = c
            spent[k] = increment
            cumulative = float(target[k])
        if k + 1 < k_max:
            grid = _propagate(grid, t[k - 1] if k else 0.0, t[k], crit[k], t[k + 1])
    cum = np.cumsum(spent)
    nominal = 2.0 * _special.ndtr(-crit)  # 0 at +inf
    for arr in (t, crit, cum, nominal, spent):
        arr.setflags(write=False)
    return SpendingBoundaries(information_fractions=t, critical_z=crit, cumulative_alpha=cum,
                              nominal_p=nominal, alpha_increments=spent, alpha=float(alpha),
                              spending=spending)


def _first_boundary(increment: float) -> float:
    """Look 1: P(|Z_1| >= c) = increment, c = Phi^-1(1 - increment/2); +inf above 8."""
    if increment <= 0.0:
        return math.inf
    c = float(-_special.ndtri(increment / 2.0))
    return c if c < INFINITE_BOUNDARY else math.inf


def _crossing(c: float, points: np.ndarray, mass: np.ndarray, t_prev: float,
              t_now: float) -> tuple[float, float]:
    """P(continue to look k and |Z_k| >= c) and its derivative in c.

    P = sum_i m_i [Phi((-c sqrt t_k - s_i)/sqrt d) + Phi((s_i - c sqrt t_k)/sqrt d)] with m_i
    the weighted sub-density of S_{k-1} on its grid, d = t_k - t_{k-1}; the grid and the
    sub-density are symmetric, so P = 2 sum_i m_i Phi((s_i - c sqrt t_k)/sqrt d)."""
    sd = math.sqrt(t_now - t_prev)
    root_t = math.sqrt(t_now)
    x = (points - c * root_t) / sd
    p = 2.0 * float(mass @ _special.ndtr(x))
    dp = -2.0 * root_t / sd * _INV_SQRT_2PI * float(mass @ np.exp(-0.5 * x * x))
    return p, dp


def _next_boundary(grid: tuple[np.ndarray, np.ndarray], t_prev: float, t_now: float,
                   increment: float) -> float:
    """Root of P(c) = increment (P decreasing in c): Newton's method kept inside a bracket
    (bisection when a step leaves it), from c = Phi^-1(1 - increment/2), an upper bound
    (P(c) <= P(|Z_k| >= c))."""
    points, mass = grid
    if increment <= 0.0:
        return math.inf
    hi = float(-_special.ndtri(increment / 2.0))
    if hi >= INFINITE_BOUNDARY:
        if _crossing(INFINITE_BOUNDARY, points, mass, t_prev, t_now)[0] >= increment:
            return math.inf
        hi = INFINITE_BOUNDARY
    lo, c = 0.0, hi
    for _ in range(100):
        p, dp = _crossing(c, points, mass, t_prev, t_now)
        f = p - increment
        if f > 0.0:
            lo = c
        else:
            hi = c
        if dp < 0.0 and abs(f / dp) < 1e-10:
            return c - f / dp
        new = c - f / dp if dp < 0.0 else lo
        c = new if lo < new < hi else 0.5 * (lo + hi)
        if hi - lo < 1e-10:
            return c
    raise RuntimeError(f"boundary search did not converge (t = {t_now}, increment = {increment})")


def _propagate(grid: tuple[np.ndarray, np.ndarray] | None, t_prev: float, t_now: float,
               c_now: float, t_next: float) -> tuple[np.ndarray, np.ndarray]:
    """Sub-density of S_k on its continuation region |S_k| < c_k sqrt(t_k), on a grid with
    Simpson weights already multiplied in (one matrix-vector product from look k-1)."""
    b = min(c_now, 12.0) * math.sqrt(t_now)  # an infinite boundary: beyond 12 sd < 1e-32
    # features of the integrands: the density's own scale sqrt(t_k), the kernel it was made
    # with (sd sqrt(t_k - t_{k-1})) and the kernel it goes into (sqrt(t_{k+1} - t_k))
    scale = min(math.sqrt(t_now), math.sqrt(t_next - t_now))
    if grid is not None:
        scale = min(scale, math.sqrt(t_now - t_prev))
    panels = max(MIN_PANELS, math.ceil(2.0 * b * PANELS_PER_SD / scale))
    if panels > MAX_PANELS:
        looks = ([t_prev] if grid is not None else []) + [t_now, t_next]
        raise ValueError(f"information_fractions: the looks at {', '.join(map(repr, looks))} lie "
                         f"too close together to integrate (a grid of {panels} Simpson panels)")
    s, w = _simpson_grid(b, panels)
    if grid is None:  # look 1: S_1 ~ N(0, t_1)
        density = np.exp(-0.5 * s * s / t_now) * (_INV_SQRT_2PI / math.sqrt(t_now))
    else:
        # under no difference the sub-density is even: compute s >= 0 and mirror
        half = _convolve(s[panels:], grid[0], grid[1], math.sqrt(t_now - t_prev))
        density = np.concatenate((half[:0:-1], half))
    return s, w * density


def _convolve(s: np.ndarray, points: np.ndarray, mass: np.ndarray, sd: float) -> np.ndarray:
    """sum_i mass_i phi((s_j - u_i)/sd)/sd for each s_j: a dense matrix-vector product, or,
    when the kernel is narrow against the (equally spaced) previous grid, only the points
    within 9 sd of s_j (the rest weigh < 1e-17 of the kernel's peak), in row blocks."""
    n = points.size
    h = points[1] - points[0]
    m = int(math.ceil(9.0 * sd / h))
    scale = _INV_SQRT_2PI / sd
    if 2 * m + 1 >= n // 2:
        u = (s[:, None] - points[None, :]) / sd
        return (np.exp(-0.5 * u * u) @ mass) * scale
    offsets = np.arange(-m, m + 1)
    out = np.empty(s.size)
    rows = max(1, 2_000_000 // offsets.size)
    for start in range(0, s.size, rows):
        block = s[start:start + rows]
        centre = np.rint((block - points[0]) / h).astype(np.int64)
        idx = centre[:, None] + offsets[None, :]
        inside = (idx >= 0) & (idx < n)
        idx = np.clip(idx, 0, n - 1)
        u = (block[:, None] - points[idx]) / sd
        out[start:start + rows] = (np.exp(-0.5 * u * u) * np.where(inside, mass[idx], 0.0)).sum(axis=1)
    return out * scale


def _simpson_grid(b: float, panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Simpson rule on [-b, b]: 2 * panels + 1 equally spaced points and weights."""
    s = np.linspace(-b, b, 2 * panels + 1)
    h = s[1] - s[0]
    w = np.full(s.size, 2.0 * h / 3.0)
    w[1::2] = 4.0 * h / 3.0
    w[0] = w[-1] = h / 3.0
    return s, w


# --------------------------------------------------------------------------------------------
# planned events, repeated CI, conditional power
# --------------------------------------------------------------------------------------------


def schoenfeld_events(hazard_ratio: float, alpha: float = 0.05, power: float = 0.8,
                      allocation_ratio: float = 1.0) -> float:
    """Events needed by the two-sided log-rank test (Schoenfeld 1983), unrounded:
    D = (z_{1-alpha/2} + z_{power})^2 (1 + r)^2 / (r (ln HR)^2), r = allocation ratio (patients
    of one group per patient of the other; D is the same for r and 1/r).
    R: ``rpact::getSampleSizeSurvival(alpha = alpha, sided = 2, beta = 1 - power,
    hazardRatio = HR, allocationRatioPlanned = r)$maxNumberOfEvents``."""
    hr = _finite(hazard_ratio, "hazard_ratio")
    if hr <= 0.0 or hr == 1.0:
        raise ValueError(f"hazard_ratio must be positive and not 1 (no difference to detect), got {hazard_ratio!r}")
    _check_alpha(alpha)
    pw = _finite(power, "power")
    if not 0.0 < pw < 1.0:
        raise ValueError(f"power must lie in (0, 1), got {power!r}")
    r = _finite(allocation_ratio, "allocation_ratio")
    if r <= 0.0:
        raise ValueError(f"allocation_ratio must be positive, got {allocation_ratio!r}")
    z = _sps.norm.isf(alpha / 2.0) + _sps.norm.ppf(pw)
    return float(z * z * (1.0 + r) ** 2 / (r * math.log(hr) ** 2))


def repeated_ci(log_hr: float, se: float, critical_z: float) -> tuple[float | None, float | None]:
    """Repeated confidence interval for the hazard ratio at a look with boundary c
    (Jennison & Turnbull 1989): (exp(beta - c SE), exp(beta + c SE)); (None, None) when c is
    +inf (no alpha spent at the look: the interval is the whole half-line)."""
    beta = _finite(log_hr, "log_hr")
    s = _finite(se, "se")
    if s <= 0.0:
        raise ValueError(f"se must be positive, got {se!r}")
    c = float(critical_z)
    if math.isnan(c) or c <= 0.0:
        raise ValueError(f"critical_z must be positive (or +inf), got {critical_z!r}")
    if math.isinf(c):
        return None, None
    return math.exp(beta - c * s), math.exp(beta + c * s)


def conditional_power(z: float, information_fraction: float, looks_so_far: Sequence[float],
                      alpha: float = 0.05, spending: str = "obf") -> float | None:
    """Conditional power under the current trend (Lan & Wittes 1988; study_spec §6.3).

    With B = |z| sqrt(t) and theta = |z| / sqrt(t) (the drift the current z implies),
    CP = 1 - Phi((c_final - B - theta (1 - t)) / sqrt(1 - t)), where c_final is the boundary at
    t = 1 of the design made of ``looks_so_far`` (information fractions of the formal looks
    taken, each < 1) followed by one look at t = 1. None when t >= 1 (no information left).
    """
    zz = _finite(z, "z")
    t = _finite(information_fraction, "information_fraction")
    if t <= 0.0:
        raise ValueError(f"information_fraction must be positive, got {information_fraction!r}")
    if t >= 1.0:
        return None
    looks = [float(v) for v in looks_so_far]
    if looks and looks[-1] >= 1.0:
        raise ValueError(f"looks_so_far must lie below 1 (a final look leaves nothing to "
                         f"project), got {looks!r}")
    c_final = float(spending_boundaries(looks + [1.0], alpha, spending).critical_z[-1])
    drift = abs(zz) / math.sqrt(t)  # B + theta (1 - t) = |z| / sqrt(t)
    return float(_sps.norm.sf((c_final - drift) / math.sqrt(1.0 - t)))


# --------------------------------------------------------------------------------------------
# projected events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupFollowUp:
    """One group's data for the projection: ``events`` so far, ``follow_up_months`` (total
    time at risk), ``without_event`` (patients still without the event, censored included),
    ``accrual_per_month`` (new patients per month). ``hazard`` = events / follow-up."""

    events: float
    follow_up_months: float
    without_event: float
    accrual_per_month: float

    def __post_init__(self) -> None:
        for name in ("events", "follow_up_months", "without_event", "accrual_per_month"):
            value = _finite(getattr(self, name), f"GroupFollowUp.{name}")  # also Decimal, numpy
            if value < 0:
                raise ValueError(f"GroupFollowUp.{name} must be >= 0, got {value!r}")
            object.__setattr__(self, name, value)
        if self.events > 0 and self.follow_up_months <= 0:
            raise ValueError(f"GroupFollowUp.follow_up_months must be positive when there are "
                             f"events (events={self.events!r})")

    @property
    def hazard(self) -> float:
        return self.events / self.follow_up_months if self.events > 0 else 0.0


@dataclass(frozen=True)
class EventProjection:
    """When ``target`` events will be reached: ``months`` after the data cutoff and ``date``
    (None when not asked or unreachable), ``note`` the reason when unreachable."""

    target: float
    months: float | None
    date: _dt.date | None
    note: str | None


def expected_events(u: float, groups: Sequence[GroupFollowUp]) -> float:
    """Expected further events u months after the cutoff (study_spec §6.3):
    E(u) = sum_g [n_g (1 - e^(-lambda_g u)) + r_g (u - (1 - e^(-lambda_g u)) / lambda_g)],
    n_g patients without the event, lambda_g = events / follow-up, r_g accrual per month
    (exponential times; a patient accrued at s < u contributes 1 - e^(-lambda (u - s))).
    A group with lambda_g = 0 contributes 0 (the limit)."""
    uu = _finite(u, "u")
    if uu < 0:
        raise ValueError(f"u must be >= 0 months, got {u!r}")
    total = 0.0
    for g in groups:
        lam = g.hazard
        if lam == 0.0:
            continue
        x = lam * uu
        p = -math.expm1(-x)  # 1 - e^(-lambda u)
        # u - p / lambda = (x - p) / lambda; for small x use the series x^2/2 - x^3/6
        accrued = (x - p) / lam if x > 1e-4 else (x * x / 2.0 - x ** 3 / 6.0 + x ** 4 / 24.0) / lam
        total += g.without_event * p + g.accrual_per_month * accrued
    return total


def months_to_target(e_now: float, target: float, groups: Sequence[GroupFollowUp]) -> EventProjection:
    """Months u after the cutoff solving e_now + E(u) = target (Brent's method, bracket
    doubled until it holds the root). 0 when the target is already reached; months None
    with a note when it cannot be reached (E(u) tends to sum n_g over groups with
    lambda_g > 0 when no such group accrues)."""
    now = _finite(e_now, "e_now")
    goal = _finite(target, "target")
    groups = list(groups)
    if now >= goal:
        return EventProjection(target=goal, months=0.0, date=None, note=None)
    if not any(g.hazard > 0 for g in groups):
        return EventProjection(goal, None, None, "no events yet: no hazard to project from")
    if not any(g.hazard > 0 and g.accrual_per_month > 0 for g in groups):
        ceiling = now + sum(g.without_event for g in groups if g.hazard > 0)
        if ceiling <= goal:
            return EventProjection(goal, None, None,
                                   f"unreachable: no accrual and only {ceiling - now:g} patients "
                                   f"without the event for {goal - now:g} more events")
    hi = 1.0
    while now + expected_events(hi, groups) < goal:
        hi *= 2.0
        if hi > 1.2e5:  # ten thousand years
            return EventProjection(goal, None, None, "unreachable within 10,000 years")
    u = _opt.brentq(lambda v: now + expected_events(v, groups) - goal, 0.0, hi, xtol=1e-10)
    return EventProjection(target=goal, months=float(u), date=None, note=None)


def project_events(e_now: float, target: float, groups: Sequence[GroupFollowUp],
                   data_cutoff: _dt.date) -> EventProjection:
    """:func:`months_to_target` reported as study_spec §6.3 asks: months to 2 decimals and the
    date data_cutoff + round(u x 30.4375) days (None with the note when unreachable)."""
    p = months_to_target(e_now, target, groups)
    if p.months is None:
        return p
    days = int(round(p.months * 30.4375))
    return EventProjection(target=p.target, months=round(p.months, 2),
                           date=data_cutoff + _dt.timedelta(days=days), note=None)


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _finite(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _check_alpha(alpha: float) -> None:
    a = _finite(alpha, "alpha")
    if not 0.0 < a < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")


def _check_spending(spending: str) -> None:
    if spending not in SPENDING_FUNCTIONS:
        raise ValueError(f"spending must be one of {SPENDING_FUNCTIONS}, got {spending!r}")


def _check_fractions(values: Sequence[float]) -> np.ndarray:
    try:
        t = np.array(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"information_fractions must be numbers, got {values!r}") from None
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"information_fractions must be a non-empty list, got {values!r}")
    if not np.all(np.isfinite(t)) or t[0] <= 0.0 or t[-1] > 1.0:
        raise ValueError(f"information_fractions must lie in (0, 1], got {t.tolist()}")
    if np.any(np.diff(t) <= 0.0):
        raise ValueError(f"information_fractions must be strictly increasing, got {t.tolist()}")
    return t
