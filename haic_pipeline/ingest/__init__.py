"""Landing EMR extract drops in raw.* (pure Python + DuckDB, no Dagster)."""

from haic_pipeline.ingest.drops import (  # noqa: F401
    Drop,
    DropRefused,
    DropRejected,
    LoadResult,
    find_complete_drops,
    load_drop,
    read_manifest,
)
from haic_pipeline.ingest.pseudonym import patient_key  # noqa: F401
