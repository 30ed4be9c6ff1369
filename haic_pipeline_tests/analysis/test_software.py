"""The software that computed the results is on record: analysis.software (and the analysts'
copy), ops.software per refresh, the analysis assets' metadata and the study report's provenance
line name Python, the libraries and the project's commit, as a methods section names R."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path


from haic_pipeline import provenance
from haic_pipeline.analysis import build_software
from haic_pipeline.settings import project_root


def test_versions_are_the_installed_ones_and_the_commit_is_the_checkouts():
    v = provenance.software()
    for name in provenance.PACKAGES:
        assert v[name] == metadata.version(name), name
    head = subprocess.run(["git", "-C", str(project_root()), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert v["haic-pipeline"].split("+")[0] == head
    line = provenance.describe()
    assert line.startswith("Python ") and f"duckdb {v['duckdb']}" in line and f"lifelines {v['lifelines']}" in line
    assert f"haic-pipeline {head[:12]}" in line


def test_outside_a_checkout_the_commit_is_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance, "project_root", lambda: tmp_path)
    assert provenance.git_commit() == "unknown"


def test_each_refresh_records_its_software(demo_copy):
    con, reports, _inbox = demo_copy
    rows = dict(con.execute("SELECT component, version FROM analysis.software").fetchall())
    assert rows == provenance.software()
    assert con.execute("SELECT count(DISTINCT extract_id), count(DISTINCT data_cutoff) FROM analysis.software"
                       ).fetchall()[0] == (1, 1)
    before = con.execute("SELECT count(*) FROM ops.software").fetchall()[0][0]
    build_software(con, "second-refresh")
    assert con.execute("SELECT count(*) FROM ops.software WHERE refresh = 'second-refresh'").fetchall()[0][0] == len(rows)
    assert con.execute("SELECT count(*) FROM ops.software").fetchall()[0][0] == before + len(rows)
    report = (Path(reports) / "study_report.md").read_text()
    assert f"computed with {provenance.describe()}" in report
