"""`haic run | synth | status | sql | drop | check | snapshot | backup | restore | doctor` (also `python -m haic_pipeline.cli ...`).

`haic run` is what `make run` calls: it writes the demo drops if the inbox holds none, lands
every new drop (one Dagster run per drop, recorded in DAGSTER_HOME like any other run, so the
web UI shows them), then runs the refresh job (staging and everything downstream), printing each
drop and each refresh step as it ends with its seconds, and prints where the results are.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import importlib
import logging
import os
import shutil
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import duckdb

from haic_pipeline import preload
from haic_pipeline.cli import backup as backup_cli
from haic_pipeline.cli import doctor
from haic_pipeline.cli.home import ensure_dagster_home, run_lock, say
from haic_pipeline.cli.operate import add_parsers
from haic_pipeline.contracts import load_contracts
from haic_pipeline.ingest import find_complete_drops
from haic_pipeline.quality.gx_runtime import load_gx
from haic_pipeline.settings import DEMO_KEY_WARNING, ConfigurationError, load_settings
from haic_pipeline.study.plan import load_plan
from haic_pipeline.synthetic import write_drops
from haic_pipeline.warehouse import interventions
from haic_pipeline.warehouse.faults import (
    StorageFault,
    check_writable,
    describe,
    disk_full_message,
    nearly_full,
)
from haic_pipeline.warehouse.schema import ensure_schema

# Dagster's console logger at WARNING: the CLI prints its own progress; the full event log of
# every run is in DAGSTER_HOME and shows in the web UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


CLI_TAGS = {"haic/launcher": "cli"}


def _recover_interrupted_runs(instance) -> list[str]:
    """Runs started by an earlier `haic run` that is gone (killed, machine restarted): mark them
    failed and free the DuckDB pool slot they held, or every later run would wait for it forever.
    Only called while holding the run lock, so no such run can still be alive."""
    import dagster as dg

    recovered = []
    records = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
                                              tags=CLI_TAGS))
    for run in records:
        instance.report_run_failed(run, message="interrupted: the `haic run` process that ran it is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered


def _refresh_is_current(instance, last_landing, settings) -> str | None:
    """The run id of the latest `refresh` run if it succeeded after the last change (a drop landed,
    a retraction or a waiver) and the analysts' copy exists: then a refresh would recompute the
    same results."""
    import dagster as dg

    runs = instance.get_runs(dg.RunsFilter(job_name="refresh"), limit=1)
    if not runs or runs[0].status != dg.DagsterRunStatus.SUCCESS or not settings.analytics_copy.exists():
        return None
    record = instance.get_run_record_by_id(runs[0].run_id)
    started = record.start_time if record else None
    if started is None or last_landing is None:
        return None
    started_at = dt.datetime.fromtimestamp(started, dt.timezone.utc).replace(tzinfo=None)
    return runs[0].run_id if started_at > last_landing else None


class _StepProgress:
    """Prints each step of one Dagster run as it ends, with its seconds (`  staging__labs  12.3 s`),
    so a long refresh is not a silent wait; a failed step says why (the blocking checks that
    failed, or the first line of its error), and a failed run names the steps it did not reach.
    Called by the instance with every event of the run as it is stored
    (`DagsterInstance.add_event_listener`); Dagster's console logger stays quiet."""

    def __init__(self, indent: str = "  ", width: int = 34):
        self.indent, self.width = indent, width
        self.planned: dict[str, None] = {}   # step keys in plan order
        self.started: dict[str, float] = {}
        self.failed_checks: dict[str, list[str]] = {}

    def __call__(self, record) -> None:
        try:
            self._show(record)
        except Exception:  # noqa: BLE001 - progress output must never fail the run
            pass

    def _line(self, step: str, seconds: float, note: str = "") -> None:
        say(f"{self.indent}{step:<{self.width}} {seconds:6.1f} s" + (f"  {note}" if note else ""))

    def _show(self, record) -> None:
        import dagster as dg

        kind = record.dagster_event.event_type if record.dagster_event is not None else None
        step = record.step_key
        if kind is None:
            return
        if kind == dg.DagsterEventType.RUN_FAILURE:
            not_run = [s for s in self.planned if s not in self.started]
            if not_run:
                say(textwrap.fill(f"not run, downstream of the failure ({len(not_run)} steps): {', '.join(not_run)}",
                                  width=100, initial_indent=self.indent, subsequent_indent=self.indent * 2))
            return
        if step is None:
            return
        if kind in (dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                    dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED):
            self.planned.setdefault(step)
        elif kind == dg.DagsterEventType.STEP_START:
            self.started[step] = record.timestamp
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = record.dagster_event.event_specific_data
            if not evaluation.passed:
                kind_of = "blocking" if getattr(evaluation, "blocking", False) else "warn"
                self.failed_checks.setdefault(step, []).append(f"{evaluation.check_name} ({kind_of})")
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
                      dg.DagsterEventType.STEP_UP_FOR_RETRY):
            seconds = record.timestamp - self.started.get(step, record.timestamp)
            checks = self.failed_checks.pop(step, [])
            note = f"check failed: {', '.join(checks)}" if checks else ""
            if kind == dg.DagsterEventType.STEP_FAILURE:
                if checks:
                    note += "; `haic status` says why and the ways out"
                else:
                    error = getattr(record.dagster_event.event_specific_data, "error", None)
                    note = (error.message.strip().splitlines() or [""])[0][:160] if error is not None else ""
                note = "FAILED" + (f", {note}" if note else "")
            elif kind == dg.DagsterEventType.STEP_UP_FOR_RETRY:
                note = "failed, retrying"
            self._line(step, seconds, note)


def _execute(job, instance, progress=None, **kwargs):
    """`job.execute_in_process` under the CLI's run config and tags; `progress` (if given) sees
    every event of the run as it is stored."""
    run_id = str(uuid.uuid4())
    if progress is not None:
        instance.add_event_listener(run_id, progress)
    return job.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False, run_config=QUIET,
                                  tags=CLI_TAGS, **kwargs)


def _storage_fault_in(result) -> str | None:
    """A clear message if a step of this Dagster run failed on a full disk or a read-only folder
    (DuckDB's "Could not write file ...: No space left on device" and the like, in any cause)."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure and event.event_specific_data is not None:
            err = event.event_specific_data.error
            while err is not None:
                texts.append(err.message)
                err = err.cause or err.context
    for text in texts:
        message = describe(text)
        if message:
            return message
    return None


def cmd_synth(args) -> int:
    out = Path(args.outdir) if args.outdir else load_settings().inbox
    t0 = time.perf_counter()
    written = write_drops(out, patients=args.patients, drops=args.drops, seed=args.seed)
    say(f"wrote {len(written)} drops to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_run(args) -> int:
    settings = load_settings()
    load_plan()   # a plan that does not parse or holds an impossible value: stop before anything is written
    check_writable(settings.warehouse.parent, "warehouse folder")  # before anything is written
    check_writable(settings.reports, "reports folder")
    with run_lock(ensure_dagster_home()):
        preload.hold_collector()   # until Dagster, GX and the analysis libraries are in (preload.py)
        try:
            return _cmd_run_locked(args)
        finally:
            preload.release_collector()


@dataclass
class _Inbox:
    """What `haic run` finds: the complete drops the warehouse has not landed (new, or changed
    since), those still rejected, and the last change a refresh must see (a landed drop, a
    retraction or a waiver)."""

    pending: list
    still_rejected: list[str]
    last_change: dt.datetime | None


def _read_inbox(settings) -> _Inbox:
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse)) as con:
        ensure_schema(con, load_contracts())
        done = set(con.execute("SELECT extract_id, manifest_sha256 FROM ops.drops "
                               "WHERE status IN ('loaded', 'rejected', 'retracted')").fetchall())
        rejected = {e for (e,) in con.execute("SELECT extract_id FROM ops.drops WHERE status = 'rejected'").fetchall()}
        last_landing = con.execute("SELECT max(attempted_at) FROM ops.drops WHERE status = 'loaded'").fetchall()[0][0]
        last_change = max((t for t in (last_landing, interventions.last_change(con)) if t is not None), default=None)
    pending, still_rejected = [], []
    for drop in find_complete_drops(settings.inbox):
        if (drop.extract_id, drop.manifest_sha256()) not in done:
            pending.append(drop)
        elif drop.extract_id in rejected:
            still_rejected.append(drop.extract_id)
    return _Inbox(pending, still_rejected, last_change)


def _land(ingest, instance, pending) -> tuple[list[str], list[str], str | None]:
    """One `ingest_drop` run per drop, each printed as it lands; stops at a full disk or a
    read-only folder (the drop stays in the inbox). Returns (landed, rejected, storage fault)."""
    loaded, failed = [], []
    if pending:
        say(f"landing {len(pending)} new drop(s) (each as it lands):")
    for i, drop in enumerate(pending, 1):
        t_drop = time.perf_counter()
        result = _execute(ingest, instance, partition_key=drop.extract_id)
        say(f"  {f'[{i}/{len(pending)}] {drop.extract_id}':<34} {time.perf_counter() - t_drop:6.1f} s")
        storage_fault = None if result.success else _storage_fault_in(result)
        if storage_fault:
            say(f"    NOT LANDED (it stays in the inbox): {storage_fault}")
            return loaded, failed, storage_fault
        (loaded if result.success else failed).append(drop.extract_id)
        if not result.success:
            error = next((e.event_specific_data.error for e in result.all_events if e.is_failure
                          and e.event_specific_data is not None
                          and getattr(e.event_specific_data, "error", None) is not None), None)
            if error is not None:
                say(f"    REJECTED: {error.message.strip().splitlines()[0]}")
    return loaded, failed, None


def _print_summary(settings, loaded: list[str], failed: list[str], still_rejected: list[str]) -> None:
    """The drops landed and rejected now, the rows of every staging and analysis table, the
    quarantine, and where the results are."""
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        tables = con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables() "
                             "WHERE schema_name IN ('staging', 'analysis') ORDER BY 1").fetchall()
        summary = [(t, con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for (t,) in tables]
        quarantined = con.execute("SELECT count(*) FROM ops.quarantine").fetchall()[0][0]
        drops_loaded = con.execute("SELECT count(*) FROM ops.drops WHERE status = 'loaded'").fetchall()[0][0]
    say("")
    say(f"drops landed now: {len(loaded)}, rejected now: {len(failed)}"
        + (f", still rejected: {', '.join(still_rejected)}" if still_rejected else "")
        + f"; drops in the warehouse: {drops_loaded}")
    for name, rows in summary:
        say(f"  {name:<34} {rows:>10} rows")
    say(f"  ops.quarantine                     {quarantined:>10} rows (rows that broke an error rule)")
    say(f"warehouse: {settings.warehouse}")
    say(f"reports:   {settings.reports}")
    say(f"web UI:    make ui  (runs are recorded in {os.environ['DAGSTER_HOME']})")


def _cmd_run_locked(args) -> int:
    """Demo drops into an empty inbox (unless --no-demo), land every new drop, then refresh
    unless nothing changed since the last successful refresh (or --force), and print the result."""
    import dagster as dg

    from haic_pipeline.definitions import load
    from haic_pipeline.defs.ingest.assets import DROPS

    settings = load_settings()
    if settings.key_is_demo:
        say(f"\n!!! WARNING: {DEMO_KEY_WARNING}\n")
    ensure_dagster_home()
    t0 = time.perf_counter()
    if not find_complete_drops(settings.inbox):
        if args.no_demo:
            say(f"inbox {settings.inbox} holds no complete drop; nothing to load")
        else:
            say(f"inbox {settings.inbox} is empty: writing the synthetic demo drops")
            write_drops(settings.inbox)
    inbox = _read_inbox(settings)

    instance = dg.DagsterInstance.get()
    for run_id in _recover_interrupted_runs(instance):
        say(f"run {run_id[:8]} of an interrupted `haic run` marked failed; its DuckDB pool slot freed")
    defs = load()
    if inbox.pending:
        instance.add_dynamic_partitions(DROPS.name, [d.extract_id for d in inbox.pending
                                                      if not instance.has_dynamic_partition(DROPS.name, d.extract_id)])
        # GX and the analysis libraries, imported while the drops land (DuckDB work, which leaves
        # the interpreter free); not earlier: the import would hold the GIL while the definitions load
        preload.start(load_gx, partial(importlib.import_module, "haic_pipeline.analysis.build"))
    loaded, failed, storage_fault = _land(defs.resolve_job_def("ingest_drop"), instance, inbox.pending)

    up_to_date = _refresh_is_current(instance, inbox.last_change, settings) if not (loaded or args.force) else None
    refresh = None
    if up_to_date and not storage_fault:
        say(f"nothing new since the last successful refresh (run {up_to_date[:8]}): results unchanged "
            "(`haic run --force` refreshes anyway)")
    elif not storage_fault:
        say("refreshing staging and everything downstream (each step as it ends):")
        preload.release_collector()
        refresh = _execute(defs.resolve_job_def("refresh"), instance, progress=_StepProgress())
        if not refresh.success:
            storage_fault = _storage_fault_in(refresh)

    elapsed = time.perf_counter() - t0
    _print_summary(settings, loaded, failed, inbox.still_rejected)
    ok = (refresh is None or refresh.success) and not storage_fault
    say(f"refresh {'succeeded' if ok else 'FAILED' if refresh is not None else 'NOT RUN'} in {elapsed:.1f} s")
    if storage_fault:
        print(f"error: {storage_fault}", file=sys.stderr, flush=True)
    return 0 if ok and not failed else 1


def cmd_sql(args) -> int:
    settings = load_settings()
    target = settings.analytics_copy if settings.analytics_copy.exists() else settings.warehouse

    duck = shutil.which("duckdb")
    if duck:
        os.execv(duck, [duck, "-readonly", str(target)])

    say(f"(no duckdb CLI found; opening {target} read-only in Python: type SQL, empty line to quit)")
    with duckdb.connect(str(target), read_only=True) as con:
        for line in sys.stdin:
            if not line.strip():
                break
            try:
                con.sql(line).show()
            except duckdb.Error as exc:
                say(f"error: {exc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="haic", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="land new drops and refresh everything once")
    p.add_argument("--no-demo", action="store_true", help="never write demo drops into an empty inbox")
    p.add_argument("--force", action="store_true", help="refresh even when nothing new arrived")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("synth", help="write synthetic demo drops")
    p.add_argument("outdir", nargs="?", help="default: HAIC_INBOX")
    p.add_argument("--patients", type=int, default=100)
    p.add_argument("--drops", type=int, default=6)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(fn=cmd_synth)
    add_parsers(sub)   # status, drop retract|restore, check waive|revoke, snapshot
    backup_cli.add_parsers(sub)   # backup, restore
    sub.add_parser("sql", help="open the warehouse read-only").set_defaults(fn=cmd_sql)
    doctor.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - only storage and instance faults are turned into a message
        instance = doctor.instance_error(exc)
        if instance is not None:
            print(f"configuration error: the Dagster instance cannot be opened: {instance} "
                  "(`haic doctor` checks the whole deployment)", file=sys.stderr)
            return 2
        message = _storage_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


def _storage_error(exc: Exception) -> str | None:
    """The one-line message for a full disk or a read-only folder met outside a Dagster run (the
    preflight, DuckDB, or Dagster's own SQLite storage, which says only "disk I/O error")."""
    if isinstance(exc, StorageFault):
        return str(exc)
    message = describe(str(exc))
    if message is None:
        settings = load_settings(check_key=False)
        full = nearly_full(settings.warehouse.parent, Path(os.environ.get("DAGSTER_HOME", settings.warehouse.parent)))
        if full is not None:
            first = (str(exc).splitlines() or [""])[0][:200]
            message = f"{disk_full_message(full)} ({type(exc).__name__}: {first})"
    return message


def program() -> None:
    """The `haic` program (console script and `python -m haic_pipeline.cli`): main(), then a
    fast exit. Once every atexit handler has run (the GX worker pool shut down, logging flushed)
    and stdout/stderr are flushed, nothing is left but the interpreter's teardown of the Dagster,
    GX, pandas and matplotlib modules, which takes seconds after a refresh: `os._exit` skips it.
    (DuckDB files are closed by then: every connection is a `with` block.)"""
    try:
        code = main()
    except SystemExit as exc:  # argparse errors, --help
        code = exc.code or 0
        if not isinstance(code, int):  # sys.exit("message"): printed, status 1
            print(code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()  # noqa: SLF001 - what the interpreter would run next, run now
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
