"""The demo warehouse for the analysis tests: the synthetic drops (100 patients, 6 drops) landed
and refreshed by `haic run`, as `make run` does (the shared `refreshed_demo`, built once per test
run: haic_pipeline_tests/refreshed.py). Opened read-only by every test that reads it; a test that
writes takes `demo_copy`."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb
import pytest


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


@pytest.fixture(scope="session")
def demo_folder(refreshed_demo) -> Path:
    """The demo refreshed by `haic run` (haic_pipeline_tests/refreshed.py), shared: read, never
    write. Its warehouse is wh/haic.duckdb (reports in wh/reports), its drops inbox/."""
    return refreshed_demo.succeeded().folder


@pytest.fixture(scope="session")
def demo(demo_folder):
    """(con, reports folder, inbox) of the analysed demo warehouse; the connection is read-only."""
    con = duckdb.connect(str(demo_folder / "wh" / "haic.duckdb"), read_only=True)
    yield con, demo_folder / "wh" / "reports", demo_folder / "inbox"
    con.close()


@pytest.fixture
def demo_copy(demo_folder, tmp_path):
    """(con, reports folder, inbox) as `demo`, on a copy of the warehouse this test may change."""
    shutil.copy(demo_folder / "wh" / "haic.duckdb", tmp_path / "haic.duckdb")
    con = duckdb.connect(str(tmp_path / "haic.duckdb"))
    yield con, demo_folder / "wh" / "reports", demo_folder / "inbox"
    con.close()
