"""Resources: where the inbox, the warehouse and the reports are (from HAIC_* variables)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import PrivateAttr

from haic_pipeline.settings import ConfigurationError, Settings, load_settings
from haic_pipeline.warehouse.faults import (
    StorageFault,
    check_writable,
    describe,
    locked,
)

#: Every asset and check that writes the warehouse is in this Dagster pool, limited to 1 by
#: deploy/dagster.yaml: DuckDB allows one writing process.
DUCKDB_POOL = "duckdb_writer"

#: How long a lock held by another process is waited for before the run fails: long enough for
#: a short holder (the run-failure sensor, `haic status`), short enough that a session an analyst
#: keeps open fails the run at once.
LOCK_WAIT_SECONDS = 3.0


class HaicConfig(dg.ConfigurableResource):
    """Paths of the platform. The pseudonym key is never a field (it would show in the UI):
    it is read from HAIC_PSEUDONYM_KEY when a drop is landed."""

    inbox: str
    warehouse: str
    reports: str

    def settings(self) -> Settings:
        try:
            base = load_settings()
        except ConfigurationError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        return Settings(
            inbox=type(base.inbox)(self.inbox),
            warehouse=type(base.warehouse)(self.warehouse),
            reports=type(base.reports)(self.reports),
            pseudonym_key=base.pseudonym_key,
            env=base.env,
            key_is_demo=base.key_is_demo,
            duckdb_memory=base.duckdb_memory,
        )


class WarehouseResource(DuckDBResource):
    """dagster-duckdb's resource without its long retries: a lock held by another process is
    waited for LOCK_WAIT_SECONDS, a read-only warehouse not at all, then the run fails with one
    clear message (`warehouse_open_fault`), because a run retrying in silence tells the engineer on
    call nothing. The connection is closed on failure too, and DuckDB's progress bar is off (it
    drew bars into the run's captured stdout).

    The first connection of a run stays open until the run ends (`teardown_after_execution`), and
    each step gets a connection of its own to that open database (`cursor()`), instead of opening
    the file, reading its catalogue and checkpointing it at every step. The run therefore holds
    the warehouse's lock from its first step that opens it to its end, as the `duckdb_writer` pool
    already orders the runs; every commit is in the write-ahead log, which the close at the end
    checkpoints."""

    _held: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)

    @contextmanager
    def get_connection(self):
        if self._held is None:
            self._held = self._connect()
        conn = self._held.cursor()
        try:
            conn.execute("SET enable_progress_bar = false")
            yield conn
        finally:
            conn.close()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """The end of the run (or of a sensor's evaluation): the held connection closes last."""
        if self._held is not None:
            held, self._held = self._held, None
            held.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        config = {"custom_user_agent": "dagster", **self.connection_config}
        deadline, delay = time.monotonic() + LOCK_WAIT_SECONDS, 0.1
        while True:
            try:
                return duckdb.connect(self.database, read_only=False, config=config)
            except duckdb.Error as exc:
                if locked(str(exc)) and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay *= 2
                    continue
                message = warehouse_open_fault(str(exc), self.database)
                if message is None:
                    raise
                raise dg.Failure(description=message) from None


def warehouse_open_fault(error: str, database: str) -> str | None:
    """The one-line message for DuckDB's error on opening the warehouse for writing, when another
    process holds its lock or its folder (or file) is read-only; else None. A read-only folder is
    named as `haic run`'s preflight names it (faults.check_writable)."""
    path = Path(database)
    problem = describe(error, database)
    if problem is None or locked(error) or not path.parent.is_dir():
        return problem
    try:
        check_writable(path.parent, "warehouse folder")
    except StorageFault as fault:
        return str(fault)
    return problem


def resources_for(settings: Settings) -> dict:
    """The resource dict for these settings (used by the code location, the CLI and tests)."""
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    return {
        "haic": HaicConfig(inbox=str(settings.inbox), warehouse=str(settings.warehouse),
                           reports=str(settings.reports)),
        "duckdb": WarehouseResource(database=str(settings.warehouse),
                                    connection_config={"memory_limit": settings.duckdb_memory}),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_for(load_settings(check_key=False)))
