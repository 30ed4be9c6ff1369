"""The Dagster instance's SQLite storage under DAGSTER_HOME (deploy/dagster.yaml: `make run`,
`make ui`, `haic run`): Dagster's SQLite stores, the same files (`history/runs.db`, one
`history/runs/<run id>.db` per run and `history/runs/index.db`, `schedules/schedules.db`), with
each database's connection kept open instead of a new engine and connection for every query.

Dagster's SQLite stores create a SQLAlchemy engine without a pool (`NullPool`) for every storage
call, so each of a run's few hundred events connects to the run's database and to the index, and
closes them again (closing the last connection of a database in WAL mode also checkpoints it):
much of the time Dagster itself spends on a run of the demo. Here:

- each database has one engine, which keeps one connection (`pool_size=1`); concurrent callers
  (the webserver's and the daemon's threads) get more, closed again when returned
  (`max_overflow=-1`); a connection is handed to one thread at a time (`check_same_thread` off,
  as SQLAlchemy's pool of a file database does);
- the event log keeps the engines of the index and of the last `RUN_SHARDS_KEPT` run databases it
  used (a webserver reads many runs over the months; each open database holds three files);
- transactions, the busy timeout, WAL and the event log's lock are Dagster's own: a kept
  connection is outside any transaction between calls, so it holds no lock on the file;
- `dispose()` closes them (the instance disposes its run and event-log stores), and the process's
  exit closes what is still open, so the last connection of each database checkpoints its WAL and
  removes the `-wal` and `-shm` files, as Dagster's own closing does (`closing_at_exit`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import _check as check
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

from haic_pipeline.instance_storage import closing_at_exit

RUN_SHARDS_KEPT = 4


def held_connection_engine(conn_string: str, timeout: float | None = None) -> Engine:
    """An engine on one SQLite file that keeps one connection open (module docstring), closed at
    the latest when the process exits (`closing_at_exit`)."""
    connect_args: dict[str, Any] = {"check_same_thread": False}
    if timeout is not None:
        connect_args["timeout"] = timeout
    return closing_at_exit(create_engine(conn_string, pool_size=1, max_overflow=-1, connect_args=connect_args))


class _OneEngine:
    """A Dagster SQLite store (runs or schedules) whose `connect` uses one kept engine instead of
    making a new one for each call."""

    _held: Engine | None = None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        if self._held is None:
            self._held = held_connection_engine(self._conn_string)
        with self._held.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        super().dispose()
        if self._held is not None:
            self._held.dispose()


class HeldConnectionSqliteRunStorage(_OneEngine, SqliteRunStorage):
    """Dagster's `SqliteRunStorage` over one kept engine."""


class HeldConnectionSqliteScheduleStorage(_OneEngine, SqliteScheduleStorage):
    """Dagster's `SqliteScheduleStorage` over one kept engine."""


class HeldConnectionSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's `SqliteEventLogStorage` with one engine per database (shard): the index's and the
    last `RUN_SHARDS_KEPT` runs'. `_connect` is Dagster's, but for the engine it takes."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()   # shard -> engine, most recent last
        super().__init__(base_dir, inst_data)

    def _held_engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = held_connection_engine(self.conn_string_for_shard(shard), SQLITE_BUSY_TIMEOUT_SECONDS)
        self._engines[shard] = engine
        runs = [s for s in self._engines if s != INDEX_SHARD_NAME]    # least recently used first
        for old in runs[:-RUN_SHARDS_KEPT]:
            self._engines.pop(old).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:   # no other connection of this store is checked out meanwhile
            check.str_param(shard, "shard")
            engine = self._held_engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def wipe(self) -> None:
        self._dispose_engines()   # the run databases' files are deleted
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._dispose_engines()

    def _dispose_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


class HeldConnectionSqliteStorage(DagsterSqliteStorage):
    """Dagster's `DagsterSqliteStorage` (configuration: `base_dir`, DAGSTER_HOME for the same files
    as Dagster's default) over the three stores above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        # DagsterSqliteStorage.__init__ with these stores in place of its own
        self.base_dir = check.str_param(base_dir, "base_dir")
        self._run_storage = HeldConnectionSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = HeldConnectionSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = HeldConnectionSqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = check.opt_inst_param(inst_data, "inst_data", ConfigurableClassData)
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Any) -> HeldConnectionSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
