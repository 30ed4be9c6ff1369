"""`haic snapshot`: the study rebuilt as of a past drop, exactly what the live pipeline published
right after that drop landed, in a separate folder, with a manifest anyone can verify. Real demo
drops, real Dagster refreshes of the live warehouse, a real snapshot DuckDB file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from haic_pipeline import snapshot
from haic_pipeline.cli.main import main
from haic_pipeline.synthetic import write_drops

from .quality.test_quality import _ingest_and_refresh


def _land_and_refresh(instance, extract_ids):
    assert _ingest_and_refresh(instance, extract_ids).success


def _published() -> dict[str, str]:
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        return snapshot.table_hashes(con)


def _looks(database: Path, upto: str):
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute("SELECT * FROM analysis.monitoring_looks WHERE extract_id <= ? ORDER BY look",
                           [upto]).df()


def test_a_snapshot_reproduces_what_was_published_and_verifies(env, capsys, monkeypatch):
    # a monitoring plan whose milestones (5, 10, 15, 20 deaths) the demo passes by its fourth drop
    (env / "plan.yaml").write_text("planned_events: 20\n")
    monkeypatch.setenv("HAIC_STUDY_PLAN", str(env / "plan.yaml"))
    staged = env / "all_drops"
    write_drops(staged, patients=100, drops=6, seed=1)
    eids = sorted(p.name for p in staged.iterdir() if p.is_dir())
    for eid in eids[:4]:
        shutil.copytree(staged / eid, env / "inbox" / eid)
    live = Path(os.environ["HAIC_WAREHOUSE"])
    with dg.DagsterInstance.ephemeral() as instance:
        _land_and_refresh(instance, eids[:4])
        published = _published()                     # what the live pipeline published after drop 4
        for eid in eids[4:]:
            shutil.copytree(staged / eid, env / "inbox" / eid)
        _land_and_refresh(instance, eids[4:])
    assert _published() != published                 # the live study moved on
    live_bytes = live.read_bytes()

    # the snapshot as of the fourth drop: the same tables, row for row, as published then
    capsys.readouterr()
    assert main(["snapshot", "--as-of", eids[3], "--out", str(env / "snap_a")]) == 0
    assert "snapshot as of drop" in capsys.readouterr().out
    manifest = json.loads((env / "snap_a" / "manifest.json").read_text())
    assert manifest["tables"] == published
    assert {"staging.cohort", "staging.endpoints", "analysis.km_summary", "analysis.cox_models",
            "analysis.rmst"} <= set(manifest["tables"])
    assert [i["extract_id"] for i in manifest["inputs"]] == eids[:4]
    assert all(len(f["sha256"]) == 64 for i in manifest["inputs"] for f in i["files"].values())
    assert manifest["software"]["duckdb"] == duckdb.__version__
    assert len(manifest["environment_lock_sha256"]) == 64   # uv.lock: every transitive dependency
    assert (env / "snap_a" / "reports" / "study_report.html").is_file()
    assert live.read_bytes() == live_bytes           # the live warehouse was only read
    # the formal looks up to that drop: as the live pipeline took them, drops 1-4 landed as one backlog
    # and 5-6 later (study_spec §6.2: looks are a function of the drop sequence)
    assert {"analysis.monitoring_looks", "analysis.monitoring_status"} <= set(manifest["tables"])
    assert manifest["monitoring_plan"]["planned_events"] == 20 and len(manifest["monitoring_plan"]["file_sha256"]) == 64
    snap_looks = _looks(env / "snap_a" / snapshot.DATABASE, eids[3])
    assert len(snap_looks) >= 2
    import pandas as pd  # noqa: PLC0415

    pd.testing.assert_frame_equal(snap_looks, _looks(live, eids[3]), check_exact=True)

    # it verifies (that a rebuild gives the same hashes is the equality with what was published, above)
    assert main(["snapshot", "--verify", str(env / "snap_a")]) == 0
    assert "verifies" in capsys.readouterr().out

    # a changed table of a copy no longer verifies
    shutil.copytree(env / "snap_a", env / "snap_b")
    with duckdb.connect(str(env / "snap_b" / snapshot.DATABASE)) as con:
        con.execute("UPDATE analysis.km_summary SET median_months = median_months + 0.1 WHERE endpoint = 'OS'")
    problems, _notes = snapshot.verify(live, env / "snap_b")
    assert problems == ["analysis.km_summary: the snapshot's table differs from its manifest"]

    # as of a drop never loaded, or retracted: a clear message, nothing written
    with pytest.raises(SystemExit, match="never loaded"):
        main(["snapshot", "--as-of", "20990101T000000Z", "--out", str(env / "snap_c")])
    assert main(["drop", "retract", eids[5], "--reason", "wrong cutoff"]) == 0
    with pytest.raises(SystemExit, match="retracted"):
        main(["snapshot", "--as-of", eids[5], "--out", str(env / "snap_d")])
    assert not (env / "snap_c").exists() and not (env / "snap_d").exists()
