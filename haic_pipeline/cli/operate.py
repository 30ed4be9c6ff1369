"""`haic status`, `haic drop retract|restore`, `haic check waive|revoke`: what blocks the study,
and the data engineer's recorded ways out (haic_pipeline.warehouse.interventions).

Each action is written to `ops.interventions` (who, when, why) in one transaction and noted on
the Dagster asset it concerns (an observation: the drop's raw partitions, or the checked staging
asset), so the web UI shows it beside the runs; it takes effect at the next refresh (`haic run`,
the nightly schedule, or a materialization in the UI).
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from haic_pipeline import snapshot
from haic_pipeline.cli.home import ensure_dagster_home, say
from haic_pipeline.contracts import load_contracts
from haic_pipeline.quality import store
from haic_pipeline.quality.gate import all_checks
from haic_pipeline.settings import load_settings
from haic_pipeline.warehouse import interventions
from haic_pipeline.warehouse.schema import ensure_ops

WAYS_OUT = """\
Ways out (each recorded in ops.interventions and shown in the web UI and the study report):
  - fix it at the source and deliver a new drop: when a later drop supersedes the offending rows
    (or delivers an orphan's patient row), the block lifts at the next refresh by itself;
  - haic drop retract EXTRACT_ID --reason "..."
      the drop's rows leave staging and everything derived (raw keeps them for audit);
      `haic drop restore EXTRACT_ID --reason "..."` undoes it;
  - haic check waive CHECK EXTRACT_ID --reason "..."
      accept this known failure of CHECK for this drop; `haic check revoke` ends the waiver.
Then `haic run` (or `make run`) refreshes now; the nightly schedule would at 02:00."""


def _fmt(ts) -> str:
    return f"{ts:%Y-%m-%d %H:%M} UTC" if ts is not None else "-"


def _warehouse():
    settings = load_settings(check_key=False)
    if not settings.warehouse.exists():
        raise SystemExit(f"no warehouse at {settings.warehouse} yet: run `make run`")
    return settings


def _checks() -> dict:
    return {c.name: c for c in all_checks()}


def blockers(con, failing: list[dict]) -> list[dict]:
    """(check, drop) pairs whose blocking check fails now (`failing`: store.failing_now) and is not
    waived: what stops the study."""
    checks = _checks()
    waived = interventions.active_waivers(con)
    out: dict[tuple, dict] = {}
    for r in failing:
        if not checks[r["check_name"]].blocking or (r["check_name"], r["extract_id"]) in waived:
            continue
        b = out.setdefault((r["check_name"], r["extract_id"]), {
            "check_name": r["check_name"], "extract_id": r["extract_id"], "since": r["since"], "rules": []})
        b["since"] = min(b["since"], r["since"])
        spec = next((x for x in checks[r["check_name"]].rules if x.name == r["rule"]), None)
        unit = "patients" if spec is not None and spec.unit == "patient" else "rows"
        share = f"{100 * (r['unexpected_share'] or 0):.2f} %, max {100 * (r['max_share'] or 0):g} %"
        b["rules"].append(f"{r['rule']}: {r['unexpected']:,} of {r['evaluated']:,} {unit} ({share})"
                          if r["scope"] not in ("drop_sequence",) else r["rule"])
    return sorted(out.values(), key=lambda b: (b["since"], b["check_name"]))


def cmd_status(args) -> int:
    settings = load_settings()
    if not settings.warehouse.exists():
        say(f"no warehouse at {settings.warehouse} yet: run `make run`")
        return 1
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        has = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'ops'").fetchall()}
        say("drops:")
        for row in con.execute(
            "SELECT extract_id, status, data_cutoff, coalesce(reason, '') FROM ops.drops ORDER BY extract_id"
        ).fetchall():
            say("  " + "  ".join(str(x) for x in row))
        last = con.execute("SELECT max(updated_at) FROM ops.refresh_state").fetchall()[0][0]
        say(f"last staging build: {_fmt(last)}")
        for row in con.execute(
            "SELECT domain, check_name, count(*) FROM ops.quarantine GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            say(f"  quarantine {row[0]}.{row[1]}: {row[2]}")
        if "interventions" in has:
            for r in interventions.retracted_drops(con):
                say(f"retracted: drop {r['extract_id']} on {_fmt(r['retracted_at'])} by {r['retracted_by']}: "
                    f"{r['reason']}")
            for (check, eid), w in interventions.active_waivers(con).items():
                say(f"waived: {check} for drop {eid} (rules {', '.join(w['rules'])}) on {_fmt(w['waived_at'])} "
                    f"by {w['waived_by']}: {w['reason']}")
        if "dq_results" not in has:
            return 0

        failing = store.failing_now(con)
        blocked = blockers(con, failing)
        if blocked:
            say(f"\nSTUDY BLOCKED since {_fmt(blocked[0]['since'])}: a blocking data-quality check fails, so the "
                "cohort, the endpoints and every analysis stop at the gate (the last good results stay):")
            for b in blocked:
                say(f"  {b['check_name']} — drop {b['extract_id'] or '(staging table)'}, failing since "
                    f"{_fmt(b['since'])}")
                for line in b["rules"]:
                    say(f"      {line}")
            say("\n" + WAYS_OUT)
        else:
            say("\nno blocking data-quality check fails: the study refreshes")
        warn = [r for r in failing if r["severity"] == "warn"]
        if warn:
            say(f"warnings (the refresh goes on): {len(warn)} rule result(s)")
            for r in warn[:20]:
                say(f"  {r['check_name']}.{r['rule']} drop {r['extract_id'] or '-'}: "
                    f"{r['unexpected']} of {r['evaluated']}")
    return 0


def _note_in_dagster(asset_keys, partition: str | None, metadata: dict) -> None:
    """An observation on the assets concerned, so the web UI shows the action beside the runs."""
    import dagster as dg

    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    for key in asset_keys:
        instance.report_runless_asset_event(dg.AssetObservation(asset_key=key, partition=partition, metadata=metadata))


def _act(fn) -> int:
    """Run fn(con) on the warehouse, read-write; an action that does not apply is a one-line error."""
    settings = _warehouse()
    try:
        with duckdb.connect(str(settings.warehouse)) as con:
            ensure_ops(con)
            return fn(con)
    except interventions.InterventionError as exc:
        raise SystemExit(f"error: {exc}") from None


def _recorded(what: str) -> int:
    """What an intervention did, then what to do next."""
    say(what)
    say("Refresh now with `haic run` (or `make run`).")
    return 0


def cmd_drop(args) -> int:
    eid = args.extract_id

    def act(con) -> int:
        if args.action == "retract":
            interventions.retract(con, eid, args.reason)
        else:
            interventions.restore(con, eid, args.reason)
        return 0

    _act(act)
    import dagster as dg

    who = interventions.actor()
    status = "retracted" if args.action == "retract" else "loaded"
    _note_in_dagster([dg.AssetKey(["raw", d]) for d in load_contracts()], eid,
                     {"status": status, f"{args.action}_reason": args.reason, "by": who})
    return _recorded(
        f"drop {eid} retracted (recorded in ops.interventions, ops.drops and ops.load_log): its rows leave "
        "staging and everything derived at the next refresh; raw keeps them for audit. A re-delivery of "
        f"{eid} is refused until `haic drop restore {eid} --reason \"...\"`." if args.action == "retract" else
        f"drop {eid} restored: it counts again from the next refresh.")


def cmd_check(args) -> int:
    import dagster as dg

    checks = _checks()
    if args.check not in checks:
        raise SystemExit(f"error: no check {args.check!r}; the checks are: {', '.join(checks)}")
    eid = args.extract_id

    def act(con) -> int:
        if args.action == "waive":
            failing = sorted({r["rule"] for r in store.failing_now(con, [args.check]) if r["extract_id"] == eid})
            interventions.waive(con, args.check, eid, args.reason, failing)
        else:
            interventions.revoke(con, args.check, eid, args.reason)
        return 0

    _act(act)
    asset = checks[args.check].asset
    _note_in_dagster([dg.AssetKey(asset.split("/"))], None,
                     {"check": args.check, "extract_id": eid, "action": args.action, "reason": args.reason,
                      "by": interventions.actor()})
    return _recorded(
        f"{args.check} waived for drop {eid} (recorded in ops.interventions; ops.waivers lists the standing "
        "ones): the check passes for this drop from the next refresh, and says so on its metadata and in the "
        "study report." if args.action == "waive" else
        f"waiver of {args.check} for drop {eid} revoked: the check judges the drop again from the next refresh.")


def cmd_snapshot(args) -> int:
    """`haic snapshot --as-of EXTRACT_ID [--out DIR]` or `haic snapshot --verify DIR`."""
    settings = load_settings()
    t0 = time.perf_counter()
    try:
        if args.verify:
            problems, notes = snapshot.verify(settings.warehouse, args.verify)
            for line in notes:
                say(f"note: software {line}")
            if problems:
                say(f"snapshot {args.verify} does NOT verify:")
                for line in problems:
                    say(f"  {line}")
                return 1
            say(f"snapshot {args.verify} verifies: every table equals its manifest and the same snapshot rebuilt "
                f"now from the live warehouse ({time.perf_counter() - t0:.1f} s)")
            return 0
        out = args.out or settings.warehouse.parent / "snapshots" / args.as_of
        snap = snapshot.take(settings.warehouse, args.as_of, out)
    except snapshot.SnapshotError as exc:
        raise SystemExit(f"error: {exc}") from None
    m = snap.manifest
    say(f"snapshot as of drop {m['as_of']} (data cutoff {m['data_cutoff']}, {len(m['inputs'])} drop(s)) in "
        f"{time.perf_counter() - t0:.1f} s:")
    say(f"  {snap.folder / snapshot.DATABASE}   ({len(m['tables'])} tables, each hashed in "
        f"{snap.folder / snapshot.MANIFEST})")
    say(f"  {snap.folder / 'reports' / 'study_report.html'}")
    say(f"verify it, here or on any machine with the same warehouse: haic snapshot --verify {snap.folder}")
    return 0


def add_parsers(sub) -> None:
    sub.add_parser("status", help="drops, quarantine, and what blocks the study").set_defaults(fn=cmd_status)
    p = sub.add_parser("drop", help="retract a drop (or restore a retracted one), with a reason")
    p.add_argument("action", choices=["retract", "restore"])
    p.add_argument("extract_id")
    p.add_argument("--reason", required=True, help="why (recorded in ops.interventions)")
    p.set_defaults(fn=cmd_drop)
    p = sub.add_parser("check", help="waive a check's failure for one drop (or revoke the waiver), with a reason")
    p.add_argument("action", choices=["waive", "revoke"])
    p.add_argument("check", help="e.g. labs_error_rules")
    p.add_argument("extract_id")
    p.add_argument("--reason", required=True, help="why (recorded in ops.interventions)")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("snapshot", help="rebuild the whole study as of one drop into a separate folder, or verify one")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--as-of", metavar="EXTRACT_ID", help="the last drop the snapshot includes")
    how.add_argument("--verify", metavar="DIR", type=Path, help="a snapshot folder to verify")
    p.add_argument("--out", type=Path, help="a new folder (default: <warehouse folder>/snapshots/EXTRACT_ID)")
    p.set_defaults(fn=cmd_snapshot)

