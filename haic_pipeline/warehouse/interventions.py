"""The data engineer's recorded ways out of a blocked refresh, in `ops.interventions` (its DDL
and the view `ops.waivers`: `warehouse/schema.py`).

- retract a drop: `ops.drops.status` becomes `retracted`; the drop's rows leave `raw.typed_*`
  (which reads loaded drops only), hence staging and everything derived, at the next refresh;
  `raw.*` keeps them for audit; `ops.load_log` gets a `retracted` row per file; a re-delivery of
  the same extract_id is refused (ingest) until the drop is restored.
- restore it: the drop is `loaded` again, as it was delivered.
- waive one check's failure for one drop: the check passes for that drop while the waiver
  stands, its failing rules stay in `ops.dq_results` and the waiver shows on the check, in
  `haic status` and in the study report; revoke ends it.

Every action is one row (who, when, why); nothing is deleted. The refresh after an action
recomputes everything (`last_change` moves on), so its effect is never skipped as "nothing new".
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re

import duckdb

from haic_pipeline.settings import actor_override
from haic_pipeline.warehouse.transaction import transaction

class InterventionError(ValueError):
    """The action does not apply (unknown drop, already retracted, nothing to waive...)."""


def actor() -> str:
    """Who runs the command: HAIC_ACTOR if set (a service account acting for someone), else the
    operating-system user."""
    who = actor_override()
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _record(con, action: str, extract_id: str, check_name: str | None, reason: str, who: str, at,
            rules: list[str] | None = None) -> None:
    con.execute("INSERT INTO ops.interventions (action, extract_id, check_name, reason, actor, recorded_at, rules) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", [action, extract_id, check_name, reason, who, at, rules])


def _reason(reason: str) -> str:
    """The reason as recorded: required, and never a patient identifier (it shows in the web UI
    and the study report)."""
    reason = (reason or "").strip()
    if not reason:
        raise InterventionError("a reason is required (--reason \"...\"): it is the record of why")
    if re.search(r"(?<![0-9A-Za-z])[0-9]{8}(?![0-9A-Za-z])", reason):
        raise InterventionError("the reason holds an 8-digit number, which may be a patient_id: it would show in "
                                "the web UI and the study report; describe the problem without identifiers")
    return reason


def drop_status(con: duckdb.DuckDBPyConnection, extract_id: str) -> str | None:
    """loaded / retracted / rejected (the drop's best status), None when never delivered."""
    rows = {s for (s,) in con.execute("SELECT status FROM ops.drops WHERE extract_id = ?", [extract_id]).fetchall()}
    return next((s for s in ("loaded", "retracted", "rejected") if s in rows), None)


def _move_drop(con, extract_id: str, old: str, new: str, action: str, reason: str) -> None:
    """The drop's status old -> new, a load_log row per file and the intervention, in one transaction."""
    reason, who, at = _reason(reason), actor(), _now()
    with transaction(con):
        con.execute("UPDATE ops.drops SET status = ? WHERE extract_id = ? AND status = ?", [new, extract_id, old])
        con.execute(
            "INSERT INTO ops.load_log SELECT extract_id, file, rows, sha256, ?, ?, ? FROM ops.load_log "
            "WHERE extract_id = ? AND status = 'loaded'",
            ["retracted" if new == "retracted" else "restored", f"{reason} ({who})", at, extract_id])
        _record(con, action, extract_id, None, reason, who, at)


def retract(con: duckdb.DuckDBPyConnection, extract_id: str, reason: str) -> None:
    status = drop_status(con, extract_id)
    if status != "loaded":
        raise InterventionError(f"drop {extract_id} is {status or 'not in the warehouse'}; only a loaded drop "
                                "can be retracted")
    _move_drop(con, extract_id, "loaded", "retracted", "retract", reason)


def restore(con: duckdb.DuckDBPyConnection, extract_id: str, reason: str) -> None:
    if drop_status(con, extract_id) != "retracted":
        raise InterventionError(f"drop {extract_id} is not retracted; nothing to restore")
    _move_drop(con, extract_id, "retracted", "loaded", "restore", reason)


def waive(con: duckdb.DuckDBPyConnection, check_name: str, extract_id: str, reason: str,
          failing: list[str]) -> None:
    """Waive `check_name` for drop `extract_id`; `failing`: the rules of that check the drop
    fails now (the caller reads them from ops.dq_results): a waiver is for a known failure."""
    reason = _reason(reason)
    if drop_status(con, extract_id) != "loaded":
        raise InterventionError(f"drop {extract_id} is not a loaded drop; nothing to waive")
    if not failing:
        raise InterventionError(f"{check_name} does not fail for drop {extract_id}; nothing to waive")
    if (check_name, extract_id) in active_waivers(con):
        raise InterventionError(f"{check_name} is already waived for drop {extract_id}")
    _record(con, "waive", extract_id, check_name, reason, actor(), _now(), rules=list(failing))


def revoke(con: duckdb.DuckDBPyConnection, check_name: str, extract_id: str, reason: str) -> None:
    reason = _reason(reason)
    if (check_name, extract_id) not in active_waivers(con):
        raise InterventionError(f"{check_name} is not waived for drop {extract_id}; nothing to revoke")
    _record(con, "revoke", extract_id, check_name, reason, actor(), _now())


def active_waivers(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict]:
    """(check_name, extract_id) -> {reason, rules, waived_by, waived_at} of every standing waiver."""
    rows = con.execute("SELECT check_name, extract_id, reason, rules, waived_by, waived_at FROM ops.waivers "
                       "ORDER BY waived_at").fetchall()
    return {(c, e): {"reason": r, "rules": list(rules or []), "waived_by": by, "waived_at": at}
            for c, e, r, rules, by, at in rows}


def retracted_drops(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every retracted drop with its latest retraction (who, when, why)."""
    rows = con.execute(
        """SELECT d.extract_id, i.reason, i.actor, i.recorded_at FROM ops.drops AS d
           JOIN (SELECT * FROM ops.interventions WHERE action = 'retract'
                 QUALIFY row_number() OVER (PARTITION BY extract_id ORDER BY recorded_at DESC) = 1) AS i USING (extract_id)
           WHERE d.status = 'retracted' ORDER BY d.extract_id""").fetchall()
    return [{"extract_id": e, "reason": r, "retracted_by": by, "retracted_at": at} for e, r, by, at in rows]


def last_change(con: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    """When the last intervention was recorded (a refresh before it is out of date)."""
    return con.execute("SELECT max(recorded_at) FROM ops.interventions").fetchall()[0][0]
