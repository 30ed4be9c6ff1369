"""The monitoring plan (study_spec §6.1): a committed YAML file, `study/monitoring_plan.yaml`
by default, another one with `HAIC_STUDY_PLAN=path` (haic_pipeline.settings).

    load_plan(path=None) -> MonitoringPlan     (None: the file HAIC_STUDY_PLAN names)

Every key is checked; a plan that does not parse or holds an impossible value raises
:class:`PlanError` naming the file and the key, so a refresh stops before it writes anything
(`haic run` checks the plan before landing, the refresh's first step and the monitoring step
again before writing). No statistics here: planned events from Schoenfeld's formula are
computed by haic_pipeline.stats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import yaml

from haic_pipeline.settings import ConfigurationError, study_plan_path

ENDPOINTS = ("OS", "PFS")
SPENDING = ("obf", "pocock")
DEFAULTS = {
    "endpoint": "OS",
    "alpha": 0.05,
    "power": 0.80,
    "design_hazard_ratio": 0.60,
    "allocation_ratio": "35/65",
    "planned_events": None,
    "milestones": [0.25, 0.50, 0.75, 1.00],
    "spending": "obf",
}


class PlanError(ConfigurationError):
    """The monitoring plan cannot be used (the message names the file and the key)."""


@dataclass(frozen=True)
class MonitoringPlan:
    endpoint: str
    alpha: float
    power: float
    design_hazard_ratio: float
    allocation_ratio: float
    milestones: tuple[float, ...]
    spending: str
    planned_events: int | None = None   # the override of D; None: Schoenfeld
    source: str = ""

    def describe(self) -> str:
        d = f"D = {self.planned_events} (plan)" if self.planned_events else "D from Schoenfeld"
        kind = "O'Brien-Fleming" if self.spending == "obf" else "Pocock"
        return (f"{self.endpoint} log-rank, two-sided \u03b1 = {self.alpha:g}, power {self.power:g}, design HR "
                f"{self.design_hazard_ratio:g}, allocation {self.allocation_ratio:.4g}, {d}, looks at "
                f"{', '.join(f'{m:g}' for m in self.milestones)} of the information, "
                f"{kind}-type spending")


def _number(path: Path, key: str, value) -> float:
    """A YAML number, or a text that reads as one or as a fraction ("35/65"), finite."""
    if isinstance(value, str):
        try:
            value = Fraction(value.strip().replace(" ", ""))
        except (ValueError, ZeroDivisionError):
            raise PlanError(f"{path}: {key} must be a number (or a fraction such as 35/65), got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise PlanError(f"{path}: {key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise PlanError(f"{path}: {key} must be a finite number, got {value!r}")
    return float(value)


def parse_plan(data, path: Path | str = "<plan>") -> MonitoringPlan:
    """The plan from the parsed YAML mapping `data` (missing keys take §6.1's defaults)."""
    path = Path(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PlanError(f"{path}: the plan must be a mapping of keys ({', '.join(DEFAULTS)}), "
                        f"got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in DEFAULTS)
    if unknown:
        raise PlanError(f"{path}: unknown key(s) {', '.join(unknown)} (the plan's keys: {', '.join(DEFAULTS)})")
    v = {**DEFAULTS, **data}
    endpoint = str(v["endpoint"]).strip().upper()
    if endpoint not in ENDPOINTS:
        raise PlanError(f"{path}: endpoint must be one of {', '.join(ENDPOINTS)}, got {v['endpoint']!r}")
    alpha = _number(path, "alpha", v["alpha"])
    if not 0 < alpha < 1:
        raise PlanError(f"{path}: alpha must lie in (0, 1) (two-sided), got {v['alpha']!r}")
    power = _number(path, "power", v["power"])
    if not 0 < power < 1:
        raise PlanError(f"{path}: power must lie in (0, 1), got {v['power']!r}")
    hr = _number(path, "design_hazard_ratio", v["design_hazard_ratio"])
    if hr <= 0 or hr == 1:
        raise PlanError(f"{path}: design_hazard_ratio must be > 0 and not 1 (no difference to detect), "
                        f"got {v['design_hazard_ratio']!r}")
    ratio = _number(path, "allocation_ratio", v["allocation_ratio"])
    if ratio <= 0:
        raise PlanError(f"{path}: allocation_ratio must be > 0, got {v['allocation_ratio']!r}")
    spending = str(v["spending"]).strip().lower()
    if spending not in SPENDING:
        raise PlanError(f"{path}: spending must be one of {', '.join(SPENDING)}, got {v['spending']!r}")
    ms = v["milestones"]
    if not isinstance(ms, (list, tuple)) or not ms:
        raise PlanError(f"{path}: milestones must be a list of information fractions ending at 1, got {ms!r}")
    milestones = tuple(_number(path, "milestones", m) for m in ms)
    if any(m <= 0 for m in milestones) or any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise PlanError(f"{path}: milestones must be strictly increasing fractions in (0, 1], got {list(ms)}")
    if milestones[-1] != 1:
        raise PlanError(f"{path}: milestones must end at 1 (the final look at the planned events), got {list(ms)}")
    planned = v["planned_events"]
    if planned is not None:
        p = _number(path, "planned_events", planned)
        if p < 1 or p != int(p):
            raise PlanError(f"{path}: planned_events must be a whole number >= 1, got {planned!r}")
        planned = int(p)
    return MonitoringPlan(endpoint=endpoint, alpha=alpha, power=power, design_hazard_ratio=hr,
                          allocation_ratio=ratio, milestones=milestones, spending=spending,
                          planned_events=planned, source=str(path))


def load_plan(path: Path | str | None = None) -> MonitoringPlan:
    """Read and check the plan file (default: HAIC_STUDY_PLAN, else study/monitoring_plan.yaml)."""
    path = Path(path) if path is not None else study_plan_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"monitoring plan {path} cannot be read ({exc.strerror or exc}); set HAIC_STUDY_PLAN "
                        "to the plan file, or restore study/monitoring_plan.yaml") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise PlanError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    return parse_plan(data, path)
