"""Runtime configuration, read from environment variables with demo-friendly defaults.

| variable             | default                     | meaning                                       |
|----------------------|-----------------------------|-----------------------------------------------|
| HAIC_INBOX           | warehouse/inbox/            | where the clinical data warehouse drops extracts |
| HAIC_WAREHOUSE       | warehouse/haic.duckdb       | the pipeline's DuckDB file                    |
| HAIC_PSEUDONYM_KEY   | (demo key, with a warning)  | HMAC key turning patient_id into patient_key  |
| HAIC_PSEUDONYM_KEY_FILE | (unset)                  | a file holding that key (production: readable by the service user alone) |
| HAIC_ENV             | demo                        | `production` makes a pseudonym key (HAIC_PSEUDONYM_KEY or _FILE) mandatory |
| HAIC_REPORTS         | <warehouse folder>/reports  | figures, reports, data-quality pages          |
| HAIC_DUCKDB_MEMORY   | 2GB                         | DuckDB memory_limit (it spills to disk beyond) |
| HAIC_REFRESH_CRON    | 0 2 * * *                   | when the nightly refresh runs                 |
| HAIC_TIMEZONE        | Asia/Seoul                  | the time zone of HAIC_REFRESH_CRON            |
| HAIC_ACTOR           | (the operating-system user) | who `haic drop` / `haic check` record as acting |
| HAIC_BACKUP_DIR      | <warehouse folder>/backups  | where `haic backup` and the nightly backup write |
| HAIC_BACKUP_KEEP     | 0                           | nightly backups kept (0: no nightly backup)   |
| HAIC_BACKUP_CRON     | 0 3 * * *                   | when the nightly backup runs (HAIC_TIMEZONE)  |
| HAIC_DQ_FAST         | 1                           | 0: the data-quality gate without its speed layer (same verdicts) |
| HAIC_DQ_WORKERS      | the cores, at most 4        | GX worker processes for a large backlog (0 or 1: none) |
| HAIC_DQ_PARALLEL_MIN_ROWS | 5000000                | pending rows from which the workers are used  |
| HAIC_DQ_START_METHOD | fork                        | how the workers start (fork, or spawn)        |
| HAIC_SYNTH_DEBUG     | (unset)                     | the synthetic writer reports each drop's edits |
| HAIC_STUDY_PLAN      | study/monitoring_plan.yaml  | the monitoring plan (study_spec §6.1)         |
| HAIC_SENSOR_INTERVAL_SECONDS | 30                  | how often the inbox and automation sensors are evaluated (at least 5) |
| HAIC_DOCTOR_MAX_AGE_HOURS | 26                     | `haic doctor`: the last successful refresh must be younger |
| HAIC_TEST_KILL_AT    | (unset)                     | test hook: the named point where the process kills itself (`kill_if_asked`) |

Every HAIC_* variable is read here and nowhere else.

Relative paths are resolved against the project root (the folder holding pyproject.toml), so
the pipeline behaves the same from `make run`, `dagster dev` and the tests.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The fixed key used when no HAIC_PSEUDONYM_KEY is set (demo only, never in production).
DEMO_PSEUDONYM_KEY = "haic-demo-pseudonym-key-NOT-FOR-PRODUCTION"


class ConfigurationError(RuntimeError):
    """The environment does not allow the pipeline to run safely."""


def project_root() -> Path:
    """The folder holding pyproject.toml (the repository), else the current directory."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd()


def _resolve(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (project_root() / path)


@dataclass(frozen=True)
class Settings:
    inbox: Path
    warehouse: Path
    reports: Path
    pseudonym_key: str
    env: str
    key_is_demo: bool
    duckdb_memory: str = "2GB"

    @property
    def analytics_copy(self) -> Path:
        return self.warehouse.parent / "analytics.duckdb"


def load_settings(environ: dict[str, str] | None = None, check_key: bool = True) -> Settings:
    """Read the HAIC_* environment variables (see module docstring).

    `check_key=False` only reads the paths (the code location loads, and shows, without the
    key); anything that pseudonymises calls it with the check, which refuses production
    without HAIC_PSEUDONYM_KEY."""
    env = os.environ if environ is None else environ
    haic_env = (env.get("HAIC_ENV") or "demo").strip().lower()
    key = env.get("HAIC_PSEUDONYM_KEY") or ""
    key_file = pseudonym_key_file(env)
    if key_file:
        if key:
            raise ConfigurationError(
                "HAIC_PSEUDONYM_KEY and HAIC_PSEUDONYM_KEY_FILE are both set: set only one (in production, "
                "HAIC_PSEUDONYM_KEY_FILE, a file readable by the service user alone).")
        try:
            key = read_key_file(key_file)
        except ConfigurationError:
            if check_key:
                raise
            key = ""
    key_is_demo = not key
    if key_is_demo:
        if haic_env == "production" and check_key:
            raise ConfigurationError(
                "HAIC_ENV=production requires HAIC_PSEUDONYM_KEY_FILE (or HAIC_PSEUDONYM_KEY): patient "
                "identifiers cannot be pseudonymised with the public demo key. Set HAIC_PSEUDONYM_KEY_FILE "
                "to a file holding the secret key held by the hospital's data protection officer."
            )
        key = DEMO_PSEUDONYM_KEY
    warehouse = warehouse_path(env)
    reports = _resolve(env.get("HAIC_REPORTS") or str(warehouse.parent / "reports"))
    return Settings(
        inbox=_resolve(env.get("HAIC_INBOX") or "warehouse/inbox/"),
        warehouse=warehouse,
        reports=reports,
        pseudonym_key=key,
        env=haic_env,
        key_is_demo=key_is_demo,
        duckdb_memory=env.get("HAIC_DUCKDB_MEMORY") or "2GB",
    )


def read_key_file(path: Path) -> str:
    """The pseudonym key held in `path` (HAIC_PSEUDONYM_KEY_FILE): its text without surrounding
    whitespace. Raises ConfigurationError naming the setting when it is missing, unreadable or empty."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigurationError(f"HAIC_PSEUDONYM_KEY_FILE: {path} does not exist: create it (the secret key, "
                                 "one line, readable by the service user alone) or correct the path") from None
    except IsADirectoryError:
        raise ConfigurationError(f"HAIC_PSEUDONYM_KEY_FILE: {path} is a directory, not the key file") from None
    except PermissionError:
        raise ConfigurationError(f"HAIC_PSEUDONYM_KEY_FILE: {path} cannot be read by this user: make the "
                                 "service user its owner (chmod 600)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"HAIC_PSEUDONYM_KEY_FILE: {path} cannot be read ({exc})") from None
    if not key:
        raise ConfigurationError(f"HAIC_PSEUDONYM_KEY_FILE: {path} is empty: write the secret key into it")
    return key


DEMO_KEY_WARNING = (
    "HAIC_PSEUDONYM_KEY is not set: patient_key values are computed with the PUBLIC DEMO KEY. "
    "Anyone can re-identify them. Fine for synthetic demo data, never for real patients "
    "(set HAIC_PSEUDONYM_KEY; HAIC_ENV=production refuses to run without it)."
)


def warn_if_demo_key(settings: Settings, logger: logging.Logger | None = None) -> None:
    if settings.key_is_demo:
        (logger or log).warning("!!! %s", DEMO_KEY_WARNING)


@dataclass(frozen=True)
class QualitySettings:
    """How the data-quality gate runs (never what it decides)."""

    fast: bool = True
    workers: int = 2
    parallel_min_rows: int = 5_000_000
    start_method: str = "fork"


def quality_settings(environ: dict[str, str] | None = None) -> QualitySettings:
    env = os.environ if environ is None else environ
    workers = (env.get("HAIC_DQ_WORKERS") or "").strip()
    min_rows = (env.get("HAIC_DQ_PARALLEL_MIN_ROWS") or "").strip()
    return QualitySettings(
        fast=(env.get("HAIC_DQ_FAST") or "1").strip().lower() not in ("0", "false", "no", "off"),
        workers=max(0, int(workers)) if workers else min(4, os.cpu_count() or 1),
        parallel_min_rows=int(min_rows) if min_rows else 5_000_000,
        start_method=(env.get("HAIC_DQ_START_METHOD") or "fork").strip(),
    )


def refresh_schedule(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """(cron, time zone) of the nightly refresh."""
    env = os.environ if environ is None else environ
    return env.get("HAIC_REFRESH_CRON") or "0 2 * * *", env.get("HAIC_TIMEZONE") or "Asia/Seoul"


@dataclass(frozen=True)
class BackupSettings:
    """Where backups go and how many nightly ones are kept (0: the nightly backup is off)."""

    folder: Path
    keep: int
    cron: str
    timezone: str


def backup_settings(environ: dict[str, str] | None = None) -> BackupSettings:
    """HAIC_BACKUP_DIR (default <warehouse folder>/backups), HAIC_BACKUP_KEEP (default 0: no
    nightly backup), HAIC_BACKUP_CRON (default 03:00, an hour after the nightly refresh, in
    HAIC_TIMEZONE)."""
    env = os.environ if environ is None else environ
    keep = (env.get("HAIC_BACKUP_KEEP") or "0").strip()
    if not keep.isdigit():
        raise ConfigurationError(f"HAIC_BACKUP_KEEP={keep!r} is not a whole number: it is how many nightly "
                                 "backups are kept (0 turns the nightly backup off)")
    warehouse = warehouse_path(env)
    return BackupSettings(
        folder=_resolve(env.get("HAIC_BACKUP_DIR") or str(warehouse.parent / "backups")),
        keep=int(keep),
        cron=env.get("HAIC_BACKUP_CRON") or "0 3 * * *",
        timezone=refresh_schedule(env)[1],
    )


def actor_override(environ: dict[str, str] | None = None) -> str | None:
    """HAIC_ACTOR: who an intervention is recorded as (a service account acting for someone)."""
    env = os.environ if environ is None else environ
    return env.get("HAIC_ACTOR") or None


def synth_debug(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("HAIC_SYNTH_DEBUG"))


#: The committed monitoring plan (study_spec §6.1), relative to the project root.
DEFAULT_STUDY_PLAN = "study/monitoring_plan.yaml"


def study_plan_path(environ: dict[str, str] | None = None) -> Path:
    """HAIC_STUDY_PLAN: the monitoring plan file (default: the committed study/monitoring_plan.yaml)."""
    env = os.environ if environ is None else environ
    return _resolve(env.get("HAIC_STUDY_PLAN") or DEFAULT_STUDY_PLAN)


#: The shortest interval the sensors accept (a tick lists the inbox; less would only load the daemon).
MIN_SENSOR_INTERVAL_SECONDS = 5


def sensor_interval_seconds(environ: dict[str, str] | None = None) -> int:
    """HAIC_SENSOR_INTERVAL_SECONDS: how often the inbox sensor and the automation sensor are
    evaluated (default 30 s, at least 5)."""
    env = os.environ if environ is None else environ
    raw = (env.get("HAIC_SENSOR_INTERVAL_SECONDS") or "").strip()
    if not raw:
        return 30
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"HAIC_SENSOR_INTERVAL_SECONDS={raw!r} is not a whole number of seconds") from None
    return max(MIN_SENSOR_INTERVAL_SECONDS, value)


def warehouse_path(environ: dict[str, str] | None = None) -> Path:
    """HAIC_WAREHOUSE: the pipeline's DuckDB file (default warehouse/haic.duckdb); the reports and
    backups default to folders beside it."""
    env = os.environ if environ is None else environ
    return _resolve(env.get("HAIC_WAREHOUSE") or "warehouse/haic.duckdb")


def pseudonym_key_file(environ: dict[str, str] | None = None) -> Path | None:
    """HAIC_PSEUDONYM_KEY_FILE as a path, or None when unset."""
    env = os.environ if environ is None else environ
    value = env.get("HAIC_PSEUDONYM_KEY_FILE") or ""
    return _resolve(value) if value else None


def doctor_max_age_hours(environ: dict[str, str] | None = None) -> float:
    """HAIC_DOCTOR_MAX_AGE_HOURS: `haic doctor` fails when the last successful refresh is older
    (default 26 h: a nightly refresh plus two hours of slack)."""
    env = os.environ if environ is None else environ
    raw = (env.get("HAIC_DOCTOR_MAX_AGE_HOURS") or "").strip()
    try:
        return float(raw) if raw else 26.0
    except ValueError:
        raise ConfigurationError(f"HAIC_DOCTOR_MAX_AGE_HOURS={raw!r} is not a number of hours") from None


def production(environ: dict[str, str] | None = None) -> bool:
    """HAIC_ENV=production."""
    env = os.environ if environ is None else environ
    return (env.get("HAIC_ENV") or "demo").strip().lower() == "production"


def kill_if_asked(point: str, environ: dict[str, str] | None = None) -> None:
    """Test hook: SIGKILL this process at `point` when HAIC_TEST_KILL_AT names it, so the
    crash-safety test cuts the power at a chosen place instead of after a guessed delay. Unset
    (always, outside that test), it does nothing. The points: `staging.<domain> uncommitted`
    (the domain's new staging tables written inside their transaction, not committed) and
    `analytics copy written` (the new analysts' copy complete beside the old one, not renamed)."""
    env = os.environ if environ is None else environ
    if env.get("HAIC_TEST_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
