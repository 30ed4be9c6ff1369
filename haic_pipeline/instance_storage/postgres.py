"""The Dagster instance's PostgreSQL storage in production (deploy/production/dagster.yaml,
`storage: custom:`): dagster-postgres's storage with each of its three stores (runs, event log,
schedules) holding one open connection, instead of opening one for every query.

dagster-postgres gives the daemon, the code servers and every run no connection pool (`NullPool`):
each storage call connects, authenticates (scram-sha-256 on Debian's PostgreSQL) and disconnects,
which costs client and server more CPU than most of the queries themselves; a run's few hundred
events and the daemon's polling open thousands of connections per refresh. Only
`dagster-webserver` holds a connection (`optimize_for_webserver`, with its statement timeout).
Here every process does, without a statement timeout:

- each store keeps one connection (`pool_size=1`); concurrent callers (the daemon's threads) get
  more, closed again when returned (`max_overflow=-1`: nobody waits for a free connection);
- a kept connection is checked before each use (`pool_pre_ping`): one that PostgreSQL closed (a
  restart, an idle timeout) is replaced instead of failing the call; one older than an hour is
  replaced (`pool_recycle`);
- the instance's `dispose()` closes the run and event-log stores' connections; the process's exit
  closes what is still open (Dagster never disposes an instance's schedule store), so PostgreSQL
  sees each session end cleanly (`closing_at_exit`).

The stores, their tables and their SQL are dagster-postgres's own; only the engine differs. So
`haic doctor` sees PostgreSQL stores, and an instance first written with `storage: postgres:`
reads the same.
"""

from __future__ import annotations

from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

from haic_pipeline.instance_storage import closing_at_exit

POOL_RECYCLE_SECONDS = 3600


class _HeldConnection:
    """A dagster-postgres store whose engine keeps one connection open (module docstring), made as
    dagster-postgres makes its own: the same URL, token provider, URL `options` and autocommit."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        engine_kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "pool_size": 1, "max_overflow": -1,
                                         "pool_pre_ping": True, "pool_recycle": POOL_RECYCLE_SECONDS}
        options = self._engine.url.query.get("options")
        if options:
            engine_kwargs["connect_args"] = {"options": options}
        unpooled, self._engine = self._engine, closing_at_exit(
            create_pg_engine(self.postgres_url, self._token_provider, **engine_kwargs))
        unpooled.dispose()

    def optimize_for_webserver(self, statement_timeout: int, pool_recycle: int, max_overflow: int) -> None:
        self._engine.dispose()   # the webserver's own engine replaces this one
        super().optimize_for_webserver(statement_timeout, pool_recycle, max_overflow)

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()


class HeldConnectionRunStorage(_HeldConnection, PostgresRunStorage):
    """dagster-postgres's `PostgresRunStorage`, holding one connection."""


class HeldConnectionEventLogStorage(_HeldConnection, PostgresEventLogStorage):
    """dagster-postgres's `PostgresEventLogStorage`, holding one connection."""


class HeldConnectionScheduleStorage(_HeldConnection, PostgresScheduleStorage):
    """dagster-postgres's `PostgresScheduleStorage`, holding one connection."""


class HeldConnectionPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres's `DagsterPostgresStorage` (the same configuration: `postgres_db` or
    `postgres_url`) over the three stores above."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider: Any = None):
        # DagsterPostgresStorage.__init__ with these stores in place of its own
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = HeldConnectionRunStorage(postgres_url, should_autocreate_tables,
                                                     token_provider=token_provider)
        self._event_log_storage = HeldConnectionEventLogStorage(postgres_url, should_autocreate_tables,
                                                                token_provider=token_provider)
        self._schedule_storage = HeldConnectionScheduleStorage(postgres_url, should_autocreate_tables,
                                                               token_provider=token_provider)
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Any) -> HeldConnectionPostgresStorage:
        return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))
