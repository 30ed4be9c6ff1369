"""Runtime configuration, read from environment variables with demo-friendly defaults.

| variable             | default                     | meaning                                       |
|----------------------|-----------------------------|-----------------------------------------------|
| HAIC_INBOX           | warehouse/inbox/            | where the clinical data warehouse drops extracts |
| HAIC_WAREHOUSE       | warehouse/haic.duckdb       | the pipeline's DuckDB file                    |
| HAIC_PSEUDONYM_KEY   | (demo key, with a warning)  | HMAC key turning patient_id into patient_key  |
| HAIC_ENV             | demo                        | `production` makes HAIC_PSEUDONYM_KEY mandatory |
| HAIC_REPORTS         | <warehouse folder>/reports  | figures, reports, data-quality pages          |
| HAIC_DUCKDB_MEMORY   | 2GB                         | DuckDB memory_limit (it spills to disk beyond) |

Relative paths are resolved against the project root (the folder holding pyproject.toml), so
the pipeline behaves the same from `make run`, `dagster dev` and the tests.
"""

from __future__ import annotations

import logging
import os
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
    key_is_demo = not key
    if key_is_demo:
        if haic_env == "production" and check_key:
            raise ConfigurationError(
                "HAIC_ENV=production requires HAIC_PSEUDONYM_KEY: patient identifiers cannot be "
                "pseudonymised with the public demo key. Set HAIC_PSEUDONYM_KEY to the secret key "
                "held by the hospital's data protection officer."
            )
        key = DEMO_PSEUDONYM_KEY
    warehouse = _resolve(env.get("HAIC_WAREHOUSE") or "warehouse/haic.duckdb")
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


DEMO_KEY_WARNING = (
    "HAIC_PSEUDONYM_KEY is not set: patient_key values are computed with the PUBLIC DEMO KEY. "
    "Anyone can re-identify them. Fine for synthetic demo data, never for real patients "
    "(set HAIC_PSEUDONYM_KEY; HAIC_ENV=production refuses to run without it)."
)


def warn_if_demo_key(settings: Settings, logger: logging.Logger | None = None) -> None:
    if settings.key_is_demo:
        (logger or log).warning("!!! %s", DEMO_KEY_WARNING)
