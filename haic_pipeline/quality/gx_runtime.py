"""Great Expectations, imported lazily and run offline.

Importing `great_expectations` takes seconds, so nothing imports it at module level: the Dagster
definitions (loaded by `dagster dev` and every test) never pay for it, and a refresh with nothing
new to validate never imports it at all. `load_gx()` is the one place that imports it:

- `GX_ANALYTICS_ENABLED=False` is set in the environment *before* the import (GX reads it when a
  context is created) and the context is created with `analytics_enabled=False` as well;
- the context is ephemeral (`mode="ephemeral"`, in-memory stores, no Data Docs site): nothing is
  written to disk, no `gx/` folder, no usage statistics, no network call;
- progress bars are off (`ProgressBarsConfig(globally=False)`);
- no batch fingerprint: GX's pandas engine hashes every batch under 1 GB
  (`pd.util.hash_pandas_object` + md5, `HASH_THRESHOLD`) only to store a
  `pandas_data_fingerprint` in the batch markers, which nothing here reads, at a cost that grows
  with every row validated. The threshold is set to 0 (the marker is then left out;
  expectations and their results do not depend on it);
- GX builds its metric graphs with less repeated work (`gx_graph.install`: an expectation's
  kwargs read once per call, metric ids of plain values hashed without GX's generic JSON
  conversion; GX's own code otherwise, the same results).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from haic_pipeline.quality import gx_graph

ANALYTICS_ENV = "GX_ANALYTICS_ENABLED"


def disable_analytics() -> None:
    os.environ[ANALYTICS_ENV] = "False"


def load_gx():
    """The `great_expectations` module, imported with analytics disabled."""
    disable_analytics()
    import great_expectations as gx  # noqa: PLC0415 (lazy on purpose)
    from great_expectations.execution_engine import pandas_execution_engine  # noqa: PLC0415

    pandas_execution_engine.HASH_THRESHOLD = 0  # no batch fingerprint (see module docstring)
    gx_graph.install()
    return gx


@dataclass
class GxSession:
    """One ephemeral context with one pandas data source; a batch definition per frame kind."""

    gx: Any
    context: Any
    source: Any
    _batch_defs: dict

    def batch_definition(self, name: str):
        if name not in self._batch_defs:
            asset = self.source.add_dataframe_asset(name)
            self._batch_defs[name] = asset.add_batch_definition_whole_dataframe(name)
        return self._batch_defs[name]


def ephemeral_context():
    """An in-memory GX context: analytics off, progress bars off, no Data Docs site, no files."""
    gx = load_gx()
    from great_expectations.data_context.types.base import (  # noqa: PLC0415
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def open_session() -> GxSession:
    context = ephemeral_context()
    gx = load_gx()
    source = context.data_sources.add_pandas("haic_quality")
    return GxSession(gx=gx, context=context, source=source, _batch_defs={})
