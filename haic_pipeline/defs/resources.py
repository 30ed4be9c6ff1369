"""Resources: where the inbox, the warehouse and the reports are (from HAIC_* variables)."""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg
from dagster_duckdb import DuckDBResource

from haic_pipeline.settings import ConfigurationError, Settings, load_settings


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
    """dagster-duckdb's resource (it retries while another process holds the file), closing the
    connection on failure too, so a failed asset never leaves the warehouse file open. DuckDB's
    progress bar is off: it drew bars into the run's captured stdout for queries over 2 s."""

    @contextmanager
    def get_connection(self):
        with super().get_connection() as conn:
            try:
                conn.execute("SET enable_progress_bar = false")
                yield conn
            finally:
                conn.close()


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
