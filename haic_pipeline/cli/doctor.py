"""`haic doctor`: checks a deployment before it goes live (and any day after) and says what is wrong.

One line per check, `ok` or `FAIL` with the reason in words and the setting that fixes it:

- configuration: every HAIC_* setting reads (a missing key file, a bad number: the setting named);
- pseudonym key: not the public demo key when HAIC_ENV=production; the key file present, readable
  and not readable by group or others;
- folders: the inbox exists and, like the warehouse, reports, backup and DAGSTER_HOME folders, can
  be written (a missing folder other than the inbox is fine when it can be created);
- instance storage: DAGSTER_HOME's instance opens and answers, and is PostgreSQL in production
  (a wrong password, an unreachable host, a missing database: said so, with the DAGSTER_PG_* setting);
- schedule and sensors: each is on in the instance, for this code location;
- daemon: every daemon the instance needs is heartbeating;
- last refresh: the analysts' copy (the last step of every successful refresh) was published within
  HAIC_DOCTOR_MAX_AGE_HOURS.

Exit status 0 when every check passes, 1 otherwise; never a traceback. The doctor only reads:
it opens no DuckDB file (a refresh may be writing) and changes no instance state.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from haic_pipeline import settings as S

LOCATION = "haic_pipeline"  # workspace.yaml's code location name
#: the last asset of every successful refresh
LAST_REFRESH_ASSET = ("analytics", "analysts_copy")


@dataclass
class Result:
    name: str
    ok: bool
    detail: str


def _first_line(text: str) -> str:
    return (str(text).strip().splitlines() or [""])[0][:300]


# --- configuration and key ------------------------------------------------------------------------
def check_configuration() -> list[Result]:
    out = []
    try:
        S.load_settings()
        out.append(Result("configuration", True, "HAIC_* settings read"))
    except S.ConfigurationError as exc:
        out.append(Result("configuration", False, str(exc)))
    for name, fn in (("sensor interval", S.sensor_interval_seconds), ("refresh age limit", S.doctor_max_age_hours)):
        try:
            fn()
        except S.ConfigurationError as exc:
            out.append(Result(name, False, str(exc)))
    return out


def check_key() -> list[Result]:
    production = S.production()
    key_file = S.pseudonym_key_file()
    if key_file is not None:
        try:
            mode = key_file.stat().st_mode
        except FileNotFoundError:
            return [Result("pseudonym key", False, f"HAIC_PSEUDONYM_KEY_FILE: {key_file} does not exist: create it "
                                                   "(the secret key, one line; chmod 600, owned by the service user) "
                                                   "or correct HAIC_PSEUDONYM_KEY_FILE")]
        except OSError as exc:
            return [Result("pseudonym key", False, f"HAIC_PSEUDONYM_KEY_FILE: {key_file} cannot be reached "
                                                   f"({exc.strerror or exc}): correct HAIC_PSEUDONYM_KEY_FILE")]
        try:
            key = S.read_key_file(key_file)
        except S.ConfigurationError as exc:
            return [Result("pseudonym key", False, str(exc))]
        if stat.S_IMODE(mode) & 0o077:
            return [Result("pseudonym key", False,
                           f"HAIC_PSEUDONYM_KEY_FILE: {key_file} is readable by others than its owner "
                           f"(mode {stat.S_IMODE(mode):o}): chmod 600 {key_file}")]
        if key == S.DEMO_PSEUDONYM_KEY:
            return [Result("pseudonym key", not production,
                           f"HAIC_PSEUDONYM_KEY_FILE: {key_file} holds the public demo key"
                           + (": write the hospital's secret key into it" if production else " (HAIC_ENV is not production)"))]
        return [Result("pseudonym key", True, f"read from {key_file} (mode {stat.S_IMODE(mode):o})")]
    try:
        settings = S.load_settings(check_key=False)
    except S.ConfigurationError as exc:
        return [Result("pseudonym key", False, str(exc))]
    if settings.key_is_demo or settings.pseudonym_key == S.DEMO_PSEUDONYM_KEY:
        if production:
            return [Result("pseudonym key", False,
                           "HAIC_ENV=production but the pseudonym key is the public demo key: set "
                           "HAIC_PSEUDONYM_KEY_FILE to a file holding the hospital's secret key")]
        return [Result("pseudonym key", True, f"the public demo key (HAIC_ENV={settings.env}: fine for demo data only)")]
    return [Result("pseudonym key", True, "set in HAIC_PSEUDONYM_KEY"
                   + (" (HAIC_PSEUDONYM_KEY_FILE keeps it out of the environment file)" if production else ""))]


# --- folders --------------------------------------------------------------------------------------
def _probe(folder: Path) -> str | None:
    """None when a file can be created (and deleted) in `folder`, else why not."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".haic-doctor-", dir=folder)
        os.close(fd)
        os.unlink(probe)
        return None
    except OSError as exc:
        return exc.strerror or str(exc)


def folder_result(what: str, folder: Path, setting: str, must_exist: bool = False) -> Result:
    name = f"{what} folder"
    if folder.is_dir():
        why = _probe(folder)
        if why is None:
            return Result(name, True, f"{folder} writable")
        return Result(name, False, f"{folder} is not writable ({why}): give the service user write access "
                                   f"or set {setting} to another folder")
    if os.path.lexists(folder):
        return Result(name, False, f"{folder} is not a folder: set {setting} to a folder")
    if must_exist:
        return Result(name, False, f"{folder} does not exist: create it (writable by the service user) or "
                                   f"correct {setting}")
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    why = _probe(parent) if parent.is_dir() else "not a folder"
    if why is None:
        return Result(name, True, f"{folder} does not exist yet; it will be created in {parent}")
    return Result(name, False, f"{folder} does not exist and cannot be created in {parent} ({why}): create it "
                               f"for the service user or set {setting} to another folder")


def check_folders() -> list[Result]:
    try:
        settings = S.load_settings(check_key=False)
        backups = S.backup_settings().folder
    except S.ConfigurationError as exc:
        return [Result("folders", False, str(exc))]
    home = os.environ.get("DAGSTER_HOME")
    out = [
        folder_result("inbox", settings.inbox, "HAIC_INBOX", must_exist=True),
        folder_result("warehouse", settings.warehouse.parent, "HAIC_WAREHOUSE"),
        folder_result("reports", settings.reports, "HAIC_REPORTS"),
        folder_result("backup", backups, "HAIC_BACKUP_DIR"),
    ]
    if home:
        out.append(folder_result("DAGSTER_HOME", Path(home), "DAGSTER_HOME", must_exist=True))
    return out


# --- Dagster instance -----------------------------------------------------------------------------
def storage_error(exc: BaseException) -> str:
    """What a failure to open or query the instance's storage means, naming the setting to fix."""
    texts, seen = [], exc
    while seen is not None and len(texts) < 10:
        texts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    text = " | ".join(texts)
    low = text.lower()
    pg = (f"PostgreSQL {os.environ.get('DAGSTER_PG_USER', '?')}@{os.environ.get('DAGSTER_PG_HOST', '?')}:"
          f"{os.environ.get('DAGSTER_PG_PORT', '?')}/{os.environ.get('DAGSTER_PG_DB', '?')}")
    if "environment variable" in low and "not set" in low:

        names = sorted(set(re.findall(r'"([A-Z_][A-Z0-9_]*)"', text))) or ["DAGSTER_PG_*"]
        return f"{', '.join(names)} not set: set it in the environment file ({os.environ.get('DAGSTER_HOME', '')}/dagster.yaml reads it)"
    if "password authentication failed" in low or "no password supplied" in low:
        return f"{pg} refused the password: check DAGSTER_PG_PASSWORD (and DAGSTER_PG_USER)"
    if "role" in low and "does not exist" in low:
        return f"{pg}: the role does not exist: check DAGSTER_PG_USER (or create the role)"
    if "database" in low and "does not exist" in low:
        return f"{pg}: the database does not exist: check DAGSTER_PG_DB (or create the database)"
    if any(s in low for s in ("connection refused", "could not connect", "timeout expired", "could not translate host",
                              "name or service not known", "no route to host", "network is unreachable",
                              "connection timed out")):
        return (f"{pg} is unreachable ({_unreachable_reason(low)}): check DAGSTER_PG_HOST and DAGSTER_PG_PORT, "
                "and that PostgreSQL is running and accepts connections from this host")
    if "no pg_hba.conf entry" in low:
        return f"{pg} does not accept this host or user (pg_hba.conf): allow it, or correct DAGSTER_PG_HOST / DAGSTER_PG_USER"
    if "dagster.yaml" in low or "config" in low:
        return f"DAGSTER_HOME/dagster.yaml is not valid: {_first_line(texts[0])}"
    return f"{type(exc).__name__}: {_first_line(texts[-1] if len(texts) > 1 else texts[0])}"


#: exceptions of Dagster's instance storage and its configuration (by class name: the doctor imports
#: neither dagster-postgres nor SQLAlchemy to tell them apart)
_INSTANCE_ERRORS = ("DagsterPostgresException", "OperationalError", "DagsterInvalidConfigError",
                    "DagsterInvariantViolationError", "InterfaceError")


def instance_error(exc: BaseException) -> str | None:
    """The doctor's one line for an exception raised while opening or querying the Dagster instance
    (a wrong PostgreSQL password, an unreachable server, an unset DAGSTER_PG_* variable), else None."""
    seen, names = exc, []
    while seen is not None and len(names) < 10:
        names.append(type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    text = storage_error(exc)
    if any(n in _INSTANCE_ERRORS for n in names) and "DAGSTER_" in text:
        return text
    return None


def _unreachable_reason(low: str) -> str:
    for phrase in ("connection refused", "timeout expired", "could not translate host name", "no route to host",
                   "network is unreachable", "connection timed out"):
        if phrase in low:
            return phrase
    return "no connection"


def open_instance():
    """(instance, None) or (None, Result saying why not)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return None, Result("instance storage", False, "DAGSTER_HOME is not set: set it to the instance folder "
                                                       "(its dagster.yaml: deploy/production/dagster.yaml)")
    if not (Path(home) / "dagster.yaml").is_file():
        return None, Result("instance storage", False,
                            f"{home}/dagster.yaml is missing: copy deploy/production/dagster.yaml there "
                            "(or deploy/dagster.yaml outside production), or correct DAGSTER_HOME")
    import dagster as dg

    try:
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # run storage answers
        instance.all_instigator_state()  # schedule storage answers
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line naming the setting
        return None, Result("instance storage", False, storage_error(exc))
    return instance, None


def check_storage(instance) -> list[Result]:
    kinds = {name: type(getattr(instance, attr)) for name, attr in
             (("runs", "run_storage"), ("event log", "event_log_storage"), ("schedules", "schedule_storage"))}
    # dagster-postgres's stores, or ours built on them (instance_storage/postgres.py)
    postgres = all(any(c.__module__.startswith("dagster_postgres") for c in k.__mro__) for k in kinds.values())
    described = ", ".join(f"{name}: {k.__name__}" for name, k in kinds.items())
    if S.production() and not postgres:
        return [Result("instance storage", False,
                       f"HAIC_ENV=production but the instance does not keep everything in PostgreSQL ({described}): "
                       f"copy deploy/production/dagster.yaml into DAGSTER_HOME ({os.environ.get('DAGSTER_HOME')})")]
    where = (f"PostgreSQL {os.environ.get('DAGSTER_PG_HOST', '')}:{os.environ.get('DAGSTER_PG_PORT', '')}/"
             f"{os.environ.get('DAGSTER_PG_DB', '')}") if postgres else f"{os.environ.get('DAGSTER_HOME')} (SQLite)"
    return [Result("instance storage", True, f"reachable: {where}")]


def check_automation(instance) -> list[Result]:
    """The schedule and every sensor of the code location, on in the instance."""
    import dagster as dg
    from dagster._core.scheduler.instigation import InstigatorStatus

    try:
        from haic_pipeline.definitions import load

        repo = load().get_repository_def()
    except Exception as exc:  # noqa: BLE001
        return [Result("schedule and sensors", False, f"the code location does not load: {_first_line(exc)}")]
    stored = {}
    for state in instance.all_instigator_state():
        try:
            location = state.origin.repository_origin.code_location_origin.location_name
        except AttributeError:
            location = None
        if location in (LOCATION, None):
            stored[(state.instigator_type.value, state.name)] = state
    out = []
    targets = [("schedule", s.name, s.default_status == dg.DefaultScheduleStatus.RUNNING) for s in repo.schedule_defs]
    targets += [("sensor", s.name, s.default_status == dg.DefaultSensorStatus.RUNNING) for s in repo.sensor_defs]
    keep = S.backup_settings().keep
    for kind, name, default_running in targets:
        if name == "nightly_backup" and keep == 0:   # declared off: no nightly backup is asked for
            if S.production():
                out.append(Result(f"{kind} {name}", False, "off: HAIC_BACKUP_KEEP=0 keeps no nightly backup, so a "
                                  "lost warehouse file loses the audit trail; set HAIC_BACKUP_KEEP (e.g. 7) and "
                                  "restart the daemon"))
            else:
                out.append(Result(f"{kind} {name}", True, "off (HAIC_BACKUP_KEEP=0: no nightly backup)"))
            continue
        state = stored.get(("SCHEDULE" if kind == "schedule" else "SENSOR", name))
        if state is None:
            running = default_running
            how = "on by default, not yet evaluated by a daemon" if running else "off by default"
        elif state.status == InstigatorStatus.DECLARED_IN_CODE:
            running, how = default_running, "on (as declared in code)" if default_running else "off (as declared in code)"
        else:
            running = state.status == InstigatorStatus.RUNNING
            how = "on" if running else "turned off in the instance"
        if running:
            out.append(Result(f"{kind} {name}", True, how))
        else:
            out.append(Result(f"{kind} {name}", False, f"{how}: turn it on in the web UI (Automation) or with "
                                                       f"`dagster {kind} start {name} -w workspace.yaml`"))
    return out


def check_daemon(instance) -> list[Result]:
    try:
        statuses = instance.get_daemon_statuses()
    except Exception as exc:  # noqa: BLE001
        return [Result("daemon", False, storage_error(exc))]
    if not statuses:
        return [Result("daemon", False, "this instance needs no daemon (an ephemeral instance): set DAGSTER_HOME")]
    unhealthy = sorted(t for t, s in statuses.items() if not s.healthy)
    if unhealthy:
        beats = [s.last_heartbeat.timestamp for s in statuses.values() if s.last_heartbeat is not None]
        when = f"last heartbeat {time.time() - max(beats):.0f} s ago" if beats else "no heartbeat ever"
        return [Result("daemon", False, f"not heartbeating ({when}; {', '.join(unhealthy)}): start it "
                                        "(systemctl start haic-daemon; journalctl -u haic-daemon says why it stopped)")]
    return [Result("daemon", True, f"heartbeating ({len(statuses)} daemon threads)")]


def check_last_refresh(instance) -> list[Result]:
    import dagster as dg

    try:
        max_hours = S.doctor_max_age_hours()
    except S.ConfigurationError as exc:
        return [Result("last refresh", False, str(exc))]
    event = instance.get_latest_materialization_event(dg.AssetKey(list(LAST_REFRESH_ASSET)))
    if event is None:
        return [Result("last refresh", False, "no successful refresh recorded in this instance yet: put the first "
                                              "drop in HAIC_INBOX (the sensor lands it and the study refreshes)")]
    age_h = (time.time() - event.timestamp) / 3600
    at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(event.timestamp))
    if age_h > max_hours:
        return [Result("last refresh", False, f"the last successful refresh was {age_h:.1f} h ago ({at}), more than "
                                              f"HAIC_DOCTOR_MAX_AGE_HOURS={max_hours:g}: see the failed runs in the "
                                              "web UI and `haic status`")]
    return [Result("last refresh", True, f"{at} ({age_h:.1f} h ago, limit {max_hours:g} h)")]


# --- the command ----------------------------------------------------------------------------------
def run_checks() -> list[Result]:
    results = check_configuration() + check_key() + check_folders()
    instance, failure = open_instance()
    if failure is not None:
        skipped = "not checked: the instance storage cannot be opened"
        return results + [failure] + [Result(n, False, skipped) for n in ("schedule and sensors", "daemon",
                                                                          "last refresh")]
    try:
        results += check_storage(instance)
        for check in (check_automation, check_daemon, check_last_refresh):
            try:
                results += check(instance)
            except Exception as exc:  # noqa: BLE001
                results.append(Result(check.__name__.removeprefix("check_").replace("_", " "), False,
                                      storage_error(exc)))
    finally:
        try:
            instance.dispose()
        except Exception:  # noqa: BLE001
            pass
    return results


def cmd_doctor(args) -> int:
    # the storage layers log every retry of a refused connection: the doctor says it once, in words
    logging.getLogger().setLevel(logging.CRITICAL)
    for name in ("dagster", "root", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    warnings.filterwarnings("ignore")
    env = "production" if S.production() else "demo"
    print(f"haic doctor: HAIC_ENV={env}, DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '(not set)')}", flush=True)
    results = run_checks()
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"  {'ok  ' if r.ok else 'FAIL'}  {r.name:<{width}}  {r.detail}", flush=True)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} checks FAILED: fix the settings named above and run `haic doctor` again",
              flush=True)
        return 1
    print(f"all {len(results)} checks passed", flush=True)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check a deployment (settings, folders, key, Dagster instance, daemon, "
                                      "automation, last refresh)")
    p.set_defaults(fn=cmd_doctor)
