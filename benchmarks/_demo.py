"""The study of a benchmark: synthetic drops written into a temp folder, landed by the real loader
into a DuckDB file there, then staging and the study built (what the analysis is computed from);
the folder is removed afterwards. Also: the command line of such a benchmark (`arguments`)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb


def arguments(doc: str, repeat: str) -> argparse.Namespace:
    """--patients (100), --drops (6) and `--<repeat>` (3), described by the first line of `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--drops", type=int, default=6)
    parser.add_argument(f"--{repeat}", type=int, default=3)
    return parser.parse_args()


@contextmanager
def demo_study(name: str, patients: int, drops: int, seed: int = 1) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """(an open read-write connection to the warehouse, its temp folder) holding the drops, staging
    and the study; the folder is removed on leaving."""
    from haic_pipeline.contracts import load_contracts
    from haic_pipeline.ingest import find_complete_drops, load_drop
    from haic_pipeline.settings import load_settings
    from haic_pipeline.study import build_study
    from haic_pipeline.synthetic import write_drops
    from haic_pipeline.warehouse.staging import build_staging

    folder = Path(tempfile.mkdtemp(prefix=f"haic-bench-{name}-"))
    try:
        write_drops(folder / "inbox", patients=patients, drops=drops, seed=seed)
        contracts = load_contracts()
        key = load_settings(check_key=False).pseudonym_key
        with duckdb.connect(str(folder / "haic.duckdb")) as con:
            con.execute("SET enable_progress_bar = false")
            for drop in find_complete_drops(folder / "inbox"):
                load_drop(con, drop, contracts, key)
            for domain in ["patients"] + [d for d in contracts if d != "patients"]:
                build_staging(con, domain)
            build_study(con)
            yield con, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
