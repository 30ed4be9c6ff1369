"""The study of a benchmark: synthetic drops written into a temp folder, landed by the real loader
into a DuckDB file there, then staging and the study built (what the analysis is computed from)."""

from __future__ import annotations

from pathlib import Path

import duckdb


def demo_study(folder: Path, patients: int, drops: int, seed: int = 1) -> duckdb.DuckDBPyConnection:
    """An open read-write connection to `<folder>/haic.duckdb` holding the drops, staging and the study."""
    from haic_pipeline.contracts import load_contracts
    from haic_pipeline.ingest import find_complete_drops, load_drop
    from haic_pipeline.settings import load_settings
    from haic_pipeline.study import build_study
    from haic_pipeline.synthetic import write_drops
    from haic_pipeline.warehouse.staging import build_staging

    write_drops(folder / "inbox", patients=patients, drops=drops, seed=seed)
    contracts = load_contracts()
    key = load_settings(check_key=False).pseudonym_key
    con = duckdb.connect(str(folder / "haic.duckdb"))
    con.execute("SET enable_progress_bar = false")
    for drop in find_complete_drops(folder / "inbox"):
        load_drop(con, drop, contracts, key)
    for domain in ["patients"] + [d for d in contracts if d != "patients"]:
        build_staging(con, domain)
    build_study(con)
    return con
