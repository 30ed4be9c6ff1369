"""`haic backup` / `haic restore` and the nightly backup asset, on a real warehouse refreshed by a
real `haic run` (the one test_faults.py builds, shared per test run), real DuckDB files, the real
CLI in-process and real Dagster runs."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from haic_pipeline.cli.main import main
from haic_pipeline.definitions import load
from haic_pipeline.defs.operations.assets import BACKUP
from haic_pipeline.defs.operations.assets import backup as backup_asset
from haic_pipeline.defs.resources import resources_for
from haic_pipeline.settings import load_settings
from haic_pipeline.snapshot import VOLATILE, table_hashes
from haic_pipeline.warehouse import backup, interventions

from . import refreshed


@pytest.fixture
def staged(tmp_path_factory, tmp_path, monkeypatch):
    """A copy of the demo warehouse refreshed by `haic run` on five of the six demo drops
    (refreshed.five_of_six), its run history and inbox, the HAIC_* variables pointing at it;
    `.last` is the newest loaded drop, `.new_drop` the held-back sixth."""
    shared = refreshed.five_of_six(tmp_path_factory).succeeded()
    for key, value in shared.copy_into(tmp_path).items():
        if key.startswith(("HAIC_", "DAGSTER_HOME")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("HAIC_BACKUP_DIR", raising=False)
    monkeypatch.delenv("HAIC_BACKUP_KEEP", raising=False)
    drops = sorted(p for p in (shared.folder / "all").iterdir() if p.is_dir())
    return type("Staged", (), {"root": tmp_path, "warehouse": tmp_path / "wh" / "haic.duckdb",
                               "loaded": [d.name for d in drops[:5]], "last": drops[4].name,
                               "new_drop": drops[5]})


def _hashes(path: Path, schemas=None, volatile=None) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return table_hashes(con, schemas=schemas, volatile={} if volatile is None else volatile)


def _views(path: Path) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return dict(con.execute("SELECT schema_name || '.' || view_name, sql FROM duckdb_views() "
                                "WHERE NOT internal").fetchall())


def _query(path: Path, sql: str) -> list:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def _only_child(folder: Path) -> Path:
    children = [p for p in folder.iterdir()]
    assert len(children) == 1, children
    return children[0]


def test_backup_destroy_restore_then_the_study_refreshes_as_before(staged, capsys):
    wh = staged.warehouse
    with duckdb.connect(str(wh)) as con:   # the audit trail a lost file would take with it
        interventions.retract(con, staged.last, "cutoff queried with the data warehouse")
        interventions.restore(con, staged.last, "cutoff confirmed by the data warehouse")
    before = _hashes(wh)                                   # every table of every schema, every column
    views = _views(wh)
    results = _hashes(wh, ("staging", "analysis"), VOLATILE)
    assert {"raw.patients", "ops.drops", "ops.load_log", "ops.dq_results", "ops.interventions",
            "ops.refresh_state", "staging.cohort", "analysis.km_summary", "analysis.cox_models"} <= set(before)
    assert {"ops.waivers", "raw.typed_labs"} <= set(views)

    # 1. take a backup (the real CLI)
    assert main(["backup", "--out", str(staged.root / "backups")]) == 0
    folder = _only_child(staged.root / "backups")
    assert "backup of" in capsys.readouterr().out
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {t: m["sha256"] for t, m in manifest["tables"].items()} == before
    assert manifest["tables"]["ops.interventions"]["rows"] == 2
    assert set(manifest["views"]) == set(views)
    assert manifest["last_extract_id"] == staged.last and manifest["source"] == str(wh)
    assert manifest["software"]["duckdb"] == duckdb.__version__

    # 2. destroy the warehouse and the analysts' copy
    for f in (wh, wh.with_name("haic.duckdb.wal"), wh.with_name("analytics.duckdb")):
        f.unlink(missing_ok=True)

    # 3. restore it
    assert main(["restore", str(folder)]) == 0
    assert "restored" in capsys.readouterr().out

    # 4. every table back hash for hash (ops with the interventions, raw, staging, analysis), the
    # views with the same SQL, and the analysts' copy rewritten from it
    assert _hashes(wh) == before
    assert _views(wh) == views
    assert len(_query(wh, "SELECT * FROM ops.interventions")) == 2
    assert _hashes(wh.with_name("analytics.duckdb")) == _hashes(wh, ("staging", "analysis"))
    assert not [p.name for p in wh.parent.iterdir() if ".tmp" in p.name]

    # restore never overwrites a warehouse unless told to
    restored_bytes = wh.read_bytes()
    with pytest.raises(SystemExit, match=r"a warehouse exists at .*--force.*nothing was changed"):
        main(["restore", str(folder)])
    assert wh.read_bytes() == restored_bytes

    # a tampered backup does not verify, and is not restored even with --force
    tampered = staged.root / "tampered"
    shutil.copytree(folder, tampered)
    with duckdb.connect(str(tampered / backup.DATABASE)) as con:
        con.execute("UPDATE ops.interventions SET reason = 'edited later' WHERE action = 'retract'")
    assert backup.verify(tampered) == ["ops.interventions: its rows differ from the manifest's hash"]
    with pytest.raises(SystemExit, match=r"does not verify .*ops\.interventions"):
        main(["restore", str(tampered), "--force"])
    assert wh.read_bytes() == restored_bytes
    assert backup.verify(folder) == []

    # 5. the restored warehouse refreshes to the same results (the interventions are newer than its
    # last refresh, so `haic run` refreshes), then lands the next drop and refreshes normally
    assert main(["run", "--no-demo"]) == 0
    assert "refresh succeeded" in capsys.readouterr().out
    assert _hashes(wh, ("staging", "analysis"), VOLATILE) == results
    shutil.copytree(staged.new_drop, staged.root / "inbox" / staged.new_drop.name)
    assert main(["run", "--no-demo"]) == 0
    out = capsys.readouterr().out
    assert "drops landed now: 1" in out and "refresh succeeded" in out
    assert _query(wh, "SELECT extract_id, status FROM ops.drops ORDER BY 1") == [
        (name, "loaded") for name in (*staged.loaded, staged.new_drop.name)]
    assert _query(wh, "SELECT DISTINCT extract_id FROM analysis.km_summary") == [(staged.new_drop.name,)]
    assert len(_query(wh, "SELECT * FROM ops.interventions")) == 2


def test_backup_refused_cleanly_while_the_warehouse_is_written_or_a_run_holds_the_lock(staged, capsys):
    out = staged.root / "backups"
    # another process holds the warehouse open for writing: refused at once, nothing left behind
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('open', flush=True); time.sleep(60)", str(staged.warehouse)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(SystemExit, match=rf"warehouse {staged.warehouse} is open in another process .*PID "
                                             rf"{holder.pid}.*nothing was changed"):
            main(["backup", "--out", str(out)])
    finally:
        holder.kill()
        holder.wait()
    assert list(out.iterdir()) == []

    # a `haic run` holds the run lock: the backup waits for no refresh, it says so
    with open(staged.root / "dagster_home" / "haic-run.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SystemExit, match="another `haic run` is using"):
            main(["backup", "--out", str(out)])
    assert list(out.iterdir()) == []


def test_a_backup_folder_that_cannot_be_written_is_named_with_its_setting(staged, monkeypatch, capsys):
    # a file where the folder should be: not writable even for root (as a read-only mount is)
    blocker = staged.root / "not-a-folder"
    blocker.write_text("")
    capsys.readouterr()
    assert main(["backup", "--out", str(blocker / "backups")]) == 1
    err = capsys.readouterr().err
    assert f"error: backup folder (--out) {blocker / 'backups'} is read-only / not writable" in err
    assert "Traceback" not in err
    monkeypatch.setenv("HAIC_BACKUP_DIR", str(blocker / "nightly"))
    assert main(["backup"]) == 1
    err = capsys.readouterr().err
    assert f"error: backup folder (HAIC_BACKUP_DIR) {blocker / 'nightly'} is read-only / not writable" in err
    assert "Traceback" not in err

    # the nightly asset fails its run with the same message (shown in the UI)
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([backup_asset], instance=instance,
                                resources=resources_for(load_settings()), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error
    assert f"backup folder (HAIC_BACKUP_DIR) {blocker / 'nightly'} is read-only / not writable" in failure.message


def test_nightly_backup_keeps_the_newest_n(staged, monkeypatch):
    nightly = staged.root / "nightly"
    monkeypatch.setenv("HAIC_BACKUP_DIR", str(nightly))
    monkeypatch.setenv("HAIC_BACKUP_KEEP", "2")
    defs = load()
    schedule = defs.resolve_schedule_def("nightly_backup")
    assert (schedule.job_name, schedule.cron_schedule, schedule.execution_timezone, schedule.default_status) == (
        "backup", "0 3 * * *", "Asia/Seoul", dg.DefaultScheduleStatus.RUNNING)
    assert BACKUP not in defs.resolve_job_def("refresh").asset_layer.executable_asset_keys
    nightly.mkdir()
    (nightly / "before-upgrade").mkdir()              # a named backup: never pruned
    (nightly / "before-upgrade" / "manifest.json").write_text("{}")
    gone = subprocess.Popen(["true"])
    gone.wait()
    (nightly / f".20261206T030000Z.tmp-{gone.pid}").mkdir()   # a backup killed half-way: its process is gone
    taken = []
    with dg.DagsterInstance.ephemeral() as instance:
        for _ in range(3):
            result = dg.materialize([backup_asset], instance=instance,
                                    resources=resources_for(load_settings()))
            assert result.success
            meta = result.asset_materializations_for_node("ops__backup")[0].metadata
            taken.append(Path(meta["path"].value))
    assert len(set(taken)) == 3
    assert sorted(p.name for p in nightly.iterdir()) == sorted(["before-upgrade", taken[1].name, taken[2].name])
    for folder in taken[1:]:
        assert backup.verify(folder) == []
    assert _hashes(taken[2] / backup.DATABASE) == _hashes(staged.warehouse)

    monkeypatch.setenv("HAIC_BACKUP_KEEP", "0")
    assert load().resolve_schedule_def("nightly_backup").default_status == dg.DefaultScheduleStatus.STOPPED
