"""`haic run` (what `make run` calls), end to end in a child process, honouring HAIC_* variables."""

import os
import subprocess
import sys

import duckdb

from .conftest import table_counts


def _haic(*args, env):
    return subprocess.run([sys.executable, "-m", "haic_pipeline.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_run_writes_demo_drops_into_an_empty_inbox_then_a_second_run_changes_nothing(env):
    environ = dict(os.environ)
    first = _haic("run", env=environ)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    drops = sorted(p.name for p in (env / "inbox").iterdir() if (p / "manifest.json").exists())
    assert len(drops) == 6
    assert "drops landed now: 6, rejected now: 0" in first.stdout
    assert str(env / "wh" / "haic.duckdb") in first.stdout
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        staged = table_counts(con, "staging")
        raw = table_counts(con, "raw")
        log_rows = con.execute("SELECT count(*) FROM ops.load_log").fetchall()[0][0]
        included = con.execute("SELECT count(*) FROM staging.cohort WHERE included").fetchall()[0][0]
    assert all(n > 0 for n in staged.values()), staged
    assert included == 100

    status = _haic("status", env=environ)
    assert status.returncode == 0 and "no blocking data-quality check fails" in status.stdout
    assert sum(1 for line in status.stdout.splitlines() if " loaded " in f" {line} ") == 6

    second = _haic("run", env=environ)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "drops landed now: 0" in second.stdout
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        assert table_counts(con, "staging") == staged
        assert table_counts(con, "raw") == raw
        assert con.execute("SELECT count(*) FROM ops.load_log").fetchall()[0][0] == log_rows


def test_run_reports_a_rejected_drop_and_exits_non_zero(env):
    from .dropkit import patient, write_drop
    import json

    folder = write_drop(env / "inbox", "20240101T020000Z", {"patients.csv": [patient("10000001")]})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["patients.csv"]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = _haic("run", "--no-demo", env=dict(os.environ))
    assert result.returncode == 1
    assert "REJECTED" in result.stdout and "sha256" in result.stdout
    assert "10000001" not in result.stdout + result.stderr
    assert (folder / "manifest.json").exists()
