"""The demo warehouse for the analysis tests: the synthetic drops (100 patients, 6 drops),
landed by the real loader into a real DuckDB file, staging + study models, then the analysis
layer (no Dagster here; test_dagster_analysis.py runs the same through real Dagster runs).
Built once per test run (haic_pipeline_tests/shared.py) and opened read-only by every test that
reads it; a test that writes takes `demo_copy`."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb
import pytest

from haic_pipeline.analysis import build_analysis
from haic_pipeline.study import build_study
from haic_pipeline.synthetic import write_drops

from ..dropkit import land
from ..shared import built_once


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


def _build_demo(folder: Path) -> None:
    write_drops(folder / "inbox", patients=100, drops=6, seed=1)
    with duckdb.connect(str(folder / "haic.duckdb")) as con:
        land(con, folder / "inbox")
        build_study(con)
        build_analysis(con, folder / "reports")


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> Path:
    """haic.duckdb, reports/ and inbox/ of the analysed demo warehouse, shared: read, never write."""
    return built_once(tmp_path_factory, "analysis_demo", _build_demo)


@pytest.fixture(scope="session")
def demo(demo_folder):
    """(con, reports folder, inbox) of the analysed demo warehouse; the connection is read-only."""
    con = duckdb.connect(str(demo_folder / "haic.duckdb"), read_only=True)
    yield con, demo_folder / "reports", demo_folder / "inbox"
    con.close()


@pytest.fixture
def demo_copy(demo_folder, tmp_path):
    """(con, reports folder, inbox) as `demo`, on a copy of the warehouse this test may change."""
    shutil.copy(demo_folder / "haic.duckdb", tmp_path / "haic.duckdb")
    con = duckdb.connect(str(tmp_path / "haic.duckdb"))
    yield con, demo_folder / "reports", demo_folder / "inbox"
    con.close()
