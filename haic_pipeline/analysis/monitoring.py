"""Group-sequential monitoring of the living study (study_spec §6): the formal looks and the
state of every refresh.

    update_drop_inputs(con)              -> ops.monitoring_inputs: what each loaded drop's state
                                            holds for the monitoring (per drop x endpoint x group)
    monitoring_tables(inputs, plan)      -> MonitoringTables (looks, status per drop, the plan's D)

Looks are a function of the drop sequence, not of when refreshes ran. The state after drop j
is what the pipeline derives from drops 1..j (loaded, not retracted), so for every loaded drop
`ops.monitoring_inputs` records, once, the numbers the monitoring needs from that state: per
endpoint and group n, events, follow-up months, patients without the event and patients
accrued in the last 365 days, and per endpoint the log-rank z of post_ate_beva and the Cox
log-HR of group with its SE. The newest drop's state is the live staging.cohort /
staging.endpoints; an earlier drop not recorded yet (a backlog landed in one refresh) is
replayed (haic_pipeline.study.replay). A drop's row is keyed by the loaded drops up to it
(extract_id and manifest sha256): a retraction or restore of an earlier drop changes that key,
and the row is derived again. Looks and statuses are then computed from these rows and the
plan alone (haic_pipeline.stats.sequential for the boundaries, conditional power and
projections), so one refresh per drop and one refresh for a backlog give the same looks, and a
snapshot rebuilding from the raw rows gives them too. No Dagster here.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from haic_pipeline.stats import (
    CoxFitError,
    conditional_power,
    cox_regression,
    logrank_z,
    project_events,
    repeated_ci,
)
from haic_pipeline.study.plan import MonitoringPlan
from haic_pipeline.warehouse.schema import ensure_ops

from .data import ENDPOINT_COLUMNS, ENDPOINTS, GROUPS, finite_or_none, load_study_data

#: the staging domains the monitoring inputs depend on (inclusion, group, index date: patients,
#: treatments, vital_status; endpoints: vital_status, imaging); a replay leaves the others empty
REPLAY_DOMAINS = ("patients", "treatments", "vital_status", "imaging")
#: bump when what a drop's inputs hold, or how they are derived, changes (re-derives every drop)
INPUTS_VERSION = "1"
#: §6.3: accrual counts patients whose index date lies in the 365 days up to the cutoff
ACCRUAL_DAYS = 365
MONTH_DAYS = 30.4375
TREATED = "post_ate_beva"

# ---------------------------------------------------------------------------------------
# per-drop inputs
# ---------------------------------------------------------------------------------------
def _drop_keys(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """extract_id -> key of the loaded drops up to it (in extract_id order, with their manifests).
    Without ops.drops (staging written by other means) the one state is staging's own drop."""
    has_drops = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                            "AND schema_name = 'ops' AND table_name = 'drops'").fetchall()[0][0]
    if has_drops:
        rows = con.execute("SELECT extract_id, manifest_sha256 FROM ops.drops WHERE status = 'loaded' "
                           "ORDER BY extract_id, manifest_sha256").fetchall()
    else:
        rows = [(eid, "no ops.drops") for (eid,) in con.execute(
            "SELECT DISTINCT extract_id FROM staging.cohort WHERE extract_id IS NOT NULL").fetchall()]
    out, h = {}, hashlib.sha256(INPUTS_VERSION.encode())
    for eid, sha in rows:
        h.update(f"{eid}:{sha};".encode())
        out[eid] = h.hexdigest()
    return out


def state_inputs(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The monitoring inputs of the state in `con` (staging.cohort / staging.endpoints): one row
    per endpoint x group; z and the Cox fit repeated on both rows of an endpoint."""
    data = load_study_data(con)
    cutoff = data.provenance.data_cutoff
    accrued = dict(con.execute(
        f"""SELECT "group", count(*) FROM staging.cohort WHERE included
            AND index_date BETWEEN data_cutoff - INTERVAL {ACCRUAL_DAYS} DAY AND data_cutoff GROUP BY 1""").fetchall())
    frame = data.frame
    rows = []
    for endpoint in ENDPOINTS:
        tcol, ecol = ENDPOINT_COLUMNS[endpoint]
        sub = frame[frame[tcol].notna()]
        z = log_hr = se = None
        notes = []
        try:
            z = logrank_z(sub[tcol], sub[ecol], sub["group"], GROUPS, TREATED)
        except ValueError as exc:
            notes.append(f"log-rank not computed: {exc}")
        cox = pd.DataFrame({"time": sub[tcol].to_numpy(), "event": sub[ecol].to_numpy(),
                            "group": (sub["group"] == TREATED).astype(float).to_numpy()})
        try:
            fit = cox_regression(cox, "time", "event", ["group"])
            log_hr, se = float(fit["coef"].iloc[0]), float(fit["se"].iloc[0])
            if not (math.isfinite(log_hr) and math.isfinite(se) and se > 0):
                log_hr = se = None
                notes.append("Cox model of group not estimable")
        except CoxFitError as exc:
            notes.append(f"Cox model of group not fitted: {exc}")
        for g in GROUPS:
            gs = sub[sub["group"] == g]
            events = int(gs[ecol].sum())
            rows.append({"endpoint": endpoint, "group": g, "n": len(gs), "events": events,
                         "follow_up_months": float(gs[tcol].sum()), "without_event": len(gs) - events,
                         "accrued_12m": int(accrued.get(g, 0)), "z": z, "log_hr": log_hr, "se_log_hr": se,
                         "note": "; ".join(notes) or None, "data_cutoff": cutoff})
    return rows


def update_drop_inputs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Bring ops.monitoring_inputs up to date with the loaded drops (see the module docstring)
    and return its rows in drop order. Rows of drops no longer loaded, or whose earlier drops
    changed, are derived again; the newest drop from the live staging, the others replayed."""
    from haic_pipeline.study.replay import replay  # noqa: PLC0415

    ensure_ops(con)
    keys = _drop_keys(con)
    have = dict(con.execute("SELECT extract_id, any_value(drops_key) FROM ops.monitoring_inputs GROUP BY 1").fetchall())
    stale = [e for e, k in have.items() if keys.get(e) != k]
    todo = [e for e in keys if have.get(e) != keys[e]]
    if stale:
        con.execute("DELETE FROM ops.monitoring_inputs WHERE list_contains(?, extract_id)", [stale])
    derived: dict[str, tuple[list[dict], str]] = {}
    live_eid = con.execute("SELECT any_value(extract_id) FROM staging.cohort").fetchall()[0][0] if todo else None
    newest = max(keys) if keys else None
    if newest in todo and live_eid == newest:
        derived[newest] = (state_inputs(con), "live")
    rest = [e for e in todo if e not in derived]
    if rest:
        replay(con, rest, lambda mem, eid: derived.__setitem__(eid, (state_inputs(mem), "replay")), REPLAY_DOMAINS)
    if derived:
        frame = pd.DataFrame([{**r, "extract_id": eid, "drops_key": keys[eid], "derived_from": how}
                              for eid, (rows, how) in derived.items() for r in rows])
        frame = frame.astype(object).where(pd.notna(frame), None)
        con.register("_monitoring_rows", frame)
        try:
            con.execute("INSERT INTO ops.monitoring_inputs BY NAME SELECT * FROM _monitoring_rows")
        finally:
            con.unregister("_monitoring_rows")
    return con.execute("SELECT * EXCLUDE (drops_key) FROM ops.monitoring_inputs ORDER BY extract_id, endpoint, "
                       '"group"').df()


# ---------------------------------------------------------------------------------------
# looks and statuses (pure: the inputs and the plan)
# ---------------------------------------------------------------------------------------
def planned_events(plan: MonitoringPlan) -> int:
    """D: the plan's override, else Schoenfeld's events rounded up (§6.1)."""
    from haic_pipeline.stats.sequential import schoenfeld_events  # noqa: PLC0415

    if plan.planned_events:
        return int(plan.planned_events)
    d = schoenfeld_events(plan.design_hazard_ratio, plan.alpha, plan.power, plan.allocation_ratio)
    return int(math.ceil(d - 1e-9))


def milestone_events(plan: MonitoringPlan, d: int) -> list[int]:
    """e_m = ceil(m D) per milestone (§6.1)."""
    return [int(math.ceil(m * d - 1e-9)) for m in plan.milestones]


@dataclass
class DropState:
    """One drop of the sequence as the monitoring sees it."""

    extract_id: str
    data_cutoff: object
    events: int
    z: float | None
    log_hr: float | None
    se: float | None
    groups: list = field(default_factory=list)   # GroupFollowUp per group
    note: str | None = None


@dataclass
class MonitoringTables:
    looks: pd.DataFrame      # analysis.monitoring_looks
    status: pd.DataFrame     # the §6.3 status after every drop (the last row: analysis.monitoring_status)
    boundaries: pd.DataFrame  # analysis.monitoring_boundaries: at the looks taken and the milestones ahead
    planned_events: int
    milestone_events: list[int]


def drop_states(inputs: pd.DataFrame, endpoint: str) -> list[DropState]:
    from haic_pipeline.stats.sequential import GroupFollowUp  # noqa: PLC0415

    out = []
    rows = inputs[inputs["endpoint"] == endpoint]
    for eid, g in rows.groupby("extract_id", sort=True):
        first = g.iloc[0]
        groups = [GroupFollowUp(events=float(r["events"]), follow_up_months=float(r["follow_up_months"] or 0.0),
                                without_event=float(r["without_event"]),
                                accrual_per_month=float(r["accrued_12m"]) / 12.0) for _, r in g.iterrows()]
        out.append(DropState(extract_id=str(eid), data_cutoff=first["data_cutoff"], events=int(g["events"].sum()),
                             z=finite_or_none(first["z"]), log_hr=finite_or_none(first["log_hr"]),
                             se=finite_or_none(first["se_log_hr"]),
                             groups=groups, note=first["note"] if isinstance(first["note"], str) else None))
    return out


def _p(z: float | None) -> float | None:
    from scipy.stats import norm  # noqa: PLC0415

    return None if z is None else float(2 * norm.sf(abs(z)))


def _boundary(fractions: list[float], plan: MonitoringPlan):
    from haic_pipeline.stats.sequential import spending_boundaries  # noqa: PLC0415

    b = spending_boundaries(fractions, alpha=plan.alpha, spending=plan.spending)
    c = float(np.asarray(b.critical_z)[-1])
    return (None if not math.isfinite(c) else c), float(np.asarray(b.cumulative_alpha)[-1])


def monitoring_tables(inputs: pd.DataFrame, plan: MonitoringPlan) -> MonitoringTables:
    """The formal looks (§6.2) and the status after each drop (§6.3) from the per-drop inputs."""
    d = planned_events(plan)
    ems = milestone_events(plan, d)
    looks: list[dict] = []
    statuses: list[dict] = []
    prev_events, ended = 0, None   # ended: the decision text once monitoring has ended
    for s in drop_states(inputs, plan.endpoint):
        t = min(s.events / d, 1.0)
        last_look_events = looks[-1]["events"] if looks else 0
        if ended is None and any(max(prev_events, last_look_events) < m <= s.events for m in ems):
            fractions = [lk["information_fraction"] for lk in looks] + [t]
            c, cum = _boundary(fractions, plan)
            crossed = bool(c is not None and s.z is not None and abs(s.z) >= c)
            lo = hi = None
            notes = [s.note] if s.note else []
            if c is None:
                notes.append("boundary +inf (no alpha to spend yet at this information): no crossing possible, "
                             "repeated CI not bounded")
            elif s.log_hr is not None and s.se is not None:
                lo, hi = repeated_ci(s.log_hr, s.se, c)
            looks.append({"look": len(looks) + 1, "extract_id": s.extract_id, "data_cutoff": s.data_cutoff,
                          "endpoint": plan.endpoint, "events": s.events, "planned_events": d,
                          "information_fraction": t, "cumulative_alpha": cum, "critical_z": c, "z": s.z,
                          "nominal_p": _p(s.z), "crossed": crossed,
                          "hr": math.exp(s.log_hr) if s.log_hr is not None else None,
                          "rci_lower": lo, "rci_upper": hi, "final": t >= 1.0,
                          "note": "; ".join(notes) or None})
            if crossed:
                ended = f"boundary crossed at look {len(looks)}"
            elif t >= 1.0:
                ended = "final look taken"
        prev_events = s.events
        statuses.append(_status(s, plan, d, ems, looks, ended, t, conditional_power, project_events))
    cols = ["look", "extract_id", "data_cutoff", "endpoint", "events", "planned_events", "information_fraction",
            "cumulative_alpha", "critical_z", "z", "nominal_p", "crossed", "hr", "rci_lower", "rci_upper", "final",
            "note"]
    return MonitoringTables(looks=pd.DataFrame(looks, columns=cols), status=pd.DataFrame(statuses),
                            boundaries=boundaries(looks, plan, d, ems, ended),
                            planned_events=d, milestone_events=ems)


def boundaries(looks: list[dict], plan: MonitoringPlan, d: int, ems: list[int], ended: str | None) -> pd.DataFrame:
    """The boundaries the figure draws: ±c at each look taken, and, while monitoring goes on, the
    planned ones at the milestones ahead (the design of the looks taken followed by those
    milestones; a planned boundary changes when a look is taken at other information than
    planned)."""
    from haic_pipeline.stats.sequential import spending_boundaries  # noqa: PLC0415

    rows = [{"kind": "look", "look": lk["look"], "events": lk["events"],
             "information_fraction": lk["information_fraction"], "critical_z": lk["critical_z"],
             "cumulative_alpha": lk["cumulative_alpha"], "note": None if lk["critical_z"] is not None else
             "+inf: no alpha to spend yet"} for lk in looks]
    if ended is None:
        taken = [lk["information_fraction"] for lk in looks]
        last = max([lk["events"] for lk in looks], default=0)
        ahead = [(m, e) for m, e in zip(plan.milestones, ems) if e > last and (not taken or m > taken[-1])]
        if ahead:
            b = spending_boundaries(taken + [m for m, _ in ahead], alpha=plan.alpha, spending=plan.spending)
            cz, ca = np.asarray(b.critical_z)[len(taken):], np.asarray(b.cumulative_alpha)[len(taken):]
            for i, (m, e) in enumerate(ahead):
                c = float(cz[i])
                rows.append({"kind": "planned", "look": len(taken) + i + 1, "events": e, "information_fraction": m,
                             "critical_z": c if math.isfinite(c) else None, "cumulative_alpha": float(ca[i]),
                             "note": None if math.isfinite(c) else "+inf: no alpha to spend yet"})
    return pd.DataFrame(rows, columns=["kind", "look", "events", "information_fraction", "critical_z",
                                       "cumulative_alpha", "note"])


def _status(s: DropState, plan, d, ems, looks, ended, t, conditional_power, project_events) -> dict:
    notes = [s.note] if s.note else []
    last_events = looks[-1]["events"] if looks else 0
    ahead = [m for m in ems if m > max(s.events, last_events)]
    next_m = ahead[0] if ahead and ended is None else None
    boundary = cp = None
    if ended is not None:
        notes.append(f"monitoring ended ({ended}): no further looks")
    elif t <= 0:
        notes.append("no events yet: no boundary, no conditional power")
    else:
        taken = [lk["information_fraction"] for lk in looks]
        now = taken if taken and taken[-1] >= t else taken + [t]   # a look taken at this drop is the look now
        boundary, _ = _boundary(now, plan)
        if boundary is None:
            notes.append("boundary now +inf (no alpha to spend yet at this information)")
        if s.z is not None and t < 1:
            cp = conditional_power(s.z, t, taken, plan.alpha, plan.spending)
    cutoff = pd.Timestamp(s.data_cutoff).date() if s.data_cutoff is not None else None

    def project(target):
        if target is None or cutoff is None:
            return None, None
        p = project_events(float(s.events), float(target), s.groups, cutoff)
        if p.months is None:
            notes.append(f"{int(target)} events: {p.note}")
        return p.months, p.date

    m_next, date_next = project(next_m)
    m_d, date_d = project(d if ended is None else None)
    if ended is None and next_m is None:
        notes.append("no milestone ahead")
    decision = ended or "continue"
    return {"extract_id": s.extract_id, "data_cutoff": s.data_cutoff, "endpoint": plan.endpoint,
            "events": s.events, "planned_events": d, "information_fraction": t, "z": s.z, "nominal_p": _p(s.z),
            "looks_taken": len(looks), "next_milestone_events": next_m, "boundary_now": boundary,
            "conditional_power": cp, "months_to_next_milestone": m_next, "date_next_milestone": date_next,
            "months_to_planned_events": m_d, "date_planned_events": date_d, "decision": decision,
            "note": "; ".join(dict.fromkeys(notes)) or None}


STATUS_COLUMNS = ["events", "planned_events", "information_fraction", "z", "nominal_p", "looks_taken",
                  "next_milestone_events", "boundary_now", "conditional_power", "months_to_next_milestone",
                  "date_next_milestone", "months_to_planned_events", "date_planned_events", "decision"]
