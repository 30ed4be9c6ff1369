"""SIGKILL in the middle of a refresh: the analysts' copy is untouched, the warehouse opens and
is consistent, and the next `haic run` completes with the same results as an uninterrupted one.

The power is cut at named points (HAIC_TEST_KILL_AT, settings.kill_if_asked): first with the
new staging tables written inside their transaction but not committed, then, in the next run,
with the new analysts' copy complete beside the old one but not yet renamed over it."""

import hashlib
import shutil
import signal
import subprocess
import sys

import duckdb

from .refreshed import haic_env

RESULT_QUERIES = {
    "cohort": 'SELECT count(*), count(*) FILTER (WHERE included) FROM staging.cohort',
    "endpoints": "SELECT count(*), sum(os_event), sum(pfs_event), round(sum(os_months), 6) FROM staging.endpoints",
    "km": 'SELECT endpoint, "group", n, events, median_months FROM analysis.km_summary ORDER BY 1, 2',
    "cox": "SELECT endpoint, model, term, round(hr, 8) FROM analysis.cox_models ORDER BY 1, 2, 3",
}


def _haic_run(env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "haic_pipeline.cli", "run", "--no-demo"], env=env,
                          capture_output=True, text=True, timeout=900)


def _killed_at(env, point: str) -> str:
    """`haic run` killed (SIGKILL, by itself) at `point`; returns what it printed."""
    proc = _haic_run({**env, "HAIC_TEST_KILL_AT": point})
    assert proc.returncode == -signal.SIGKILL, f"not killed at {point!r}\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "refreshing staging" in proc.stdout  # in the middle of the refresh
    return proc.stdout


def _results(path):
    with duckdb.connect(str(path), read_only=True) as con:
        return {k: con.execute(q).fetchall() for k, q in RESULT_QUERIES.items()}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _temporary(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


def test_sigkill_mid_refresh_then_restart(tmp_path, refreshed_five_of_six, refreshed_demo):
    five = refreshed_five_of_six.succeeded()
    five.copy_into(tmp_path)                       # five demo drops landed and refreshed
    env = haic_env(tmp_path)
    wh = tmp_path / "wh" / "haic.duckdb"
    copy = tmp_path / "wh" / "analytics.duckdb"
    before_copy = _sha(copy)
    before = _results(copy)
    new = sorted(p for p in (five.folder / "all").iterdir() if p.is_dir())[5]
    shutil.copytree(new, tmp_path / "inbox" / new.name)  # a new drop arrives

    # killed with staging.labs rebuilt inside its transaction, not committed
    _killed_at(env, "staging.labs uncommitted")
    assert _sha(copy) == before_copy  # analysts still see the last good copy, byte for byte
    assert _results(copy) == before
    with duckdb.connect(str(wh)) as con:  # opens, replays its WAL, not corrupt
        assert con.execute("SELECT count(*) FROM ops.drops WHERE status = 'loaded'").fetchall()[0][0] == 6
        assert con.execute("SELECT count(*) FROM raw.labs WHERE _extract_id = ?", [new.name]).fetchall()[0][0] > 0
        # nothing of the uncommitted rebuild was kept
        assert con.execute("SELECT count(*) FROM staging.labs WHERE _extract_id = ?", [new.name]).fetchall()[0][0] == 0

    # the next run (the killed one marked failed, its DuckDB pool slot freed) is killed in turn with
    # the new analysts' copy written beside the old one: the old one is still what analysts open
    out = _killed_at(env, "analytics copy written")
    assert "of an interrupted `haic run` marked failed" in out
    assert _temporary(copy.parent), "the killed publication left no temporary copy to clear"
    assert _sha(copy) == before_copy
    assert _results(copy) == before

    # the next refresh completes and clears what the killed ones left half-written
    proc = _haic_run(env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "of an interrupted `haic run` marked failed" in proc.stdout
    assert not _temporary(copy.parent)
    # the same results as the same six drops refreshed without interruption
    assert _results(copy) == _results(refreshed_demo.succeeded().folder / "wh" / "analytics.duckdb")
    assert _results(copy) != before
