"""The demo warehouse for the analysis tests: the synthetic drops (100 patients, 6 drops),
landed by the real loader into a real DuckDB file, staging + study models, then the analysis
layer (no Dagster here; test_dagster_analysis.py runs the same through real Dagster runs)."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from haic_pipeline.analysis import build_analysis
from haic_pipeline.contracts import load_contracts
from haic_pipeline.ingest import find_complete_drops, load_drop
from haic_pipeline.study import build_study
from haic_pipeline.synthetic import write_drops
from haic_pipeline.warehouse.staging import build_staging

from ..conftest import TEST_KEY


def land_all(con, inbox: Path, contracts) -> None:
    for d in find_complete_drops(inbox):
        load_drop(con, d, contracts, TEST_KEY)
    for domain in ["patients"] + [d for d in contracts if d != "patients"]:
        build_staging(con, domain)
    build_study(con)


def identifiers(inbox: Path) -> dict[str, set[str]]:
    """patient_id, patient_name and birth_date values delivered in the drops (to look for leaks)."""
    out = {"patient_id": set(), "patient_name": set(), "birth_date": set()}
    for f in sorted(inbox.glob("*/patients.csv")):
        raw = f.read_bytes()
        for enc in ("utf-8-sig", "cp949"):
            try:
                text = raw.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        for row in csv.DictReader(text.splitlines()):
            for k in out:
                if row.get(k):
                    out[k].add(row[k].strip())
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(con, reports folder, inbox) of the analysed demo warehouse; shared by a module."""
    root = tmp_path_factory.mktemp("analysis_demo")
    inbox = root / "inbox"
    write_drops(inbox, patients=100, drops=6, seed=1)
    con = duckdb.connect(str(root / "haic.duckdb"))
    land_all(con, inbox, load_contracts())
    build_analysis(con, root / "reports")
    yield con, root / "reports", inbox
    con.close()
