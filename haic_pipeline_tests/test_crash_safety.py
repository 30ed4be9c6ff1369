"""SIGKILL in the middle of a refresh: the analysts' copy is untouched, the warehouse opens and
is consistent, and the next `haic run` completes with the same results as an uninterrupted one."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import duckdb

from haic_pipeline.synthetic import write_drops

RESULT_QUERIES = {
    "cohort": 'SELECT count(*), count(*) FILTER (WHERE included) FROM staging.cohort',
    "endpoints": "SELECT count(*), sum(os_event), sum(pfs_event), round(sum(os_months), 6) FROM staging.endpoints",
    "km": 'SELECT endpoint, "group", n, events, median_months FROM analysis.km_summary ORDER BY 1, 2',
    "cox": "SELECT endpoint, model, term, round(hr, 8) FROM analysis.cox_models ORDER BY 1, 2, 3",
}


def _env(base, name):
    env = dict(os.environ)
    env.update(HAIC_INBOX=str(base / "inbox"), HAIC_WAREHOUSE=str(base / name / "haic.duckdb"),
               DAGSTER_HOME=str(base / name / "dagster_home"))
    return env


def _run(env):
    proc = subprocess.run([sys.executable, "-m", "haic_pipeline.cli", "run", "--no-demo"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _results(path):
    with duckdb.connect(str(path), read_only=True) as con:
        return {k: con.execute(q).fetchall() for k, q in RESULT_QUERIES.items()}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sigkill_mid_refresh_then_restart(tmp_path):
    drops = write_drops(tmp_path / "all", patients=100, drops=6, seed=3)
    (tmp_path / "inbox").mkdir()
    for d in drops[:5]:
        shutil.copytree(d, tmp_path / "inbox" / d.name)
    killed = _env(tmp_path, "killed")
    _run(killed)
    copy = tmp_path / "killed" / "analytics.duckdb"
    before_copy = _sha(copy)
    before = _results(copy)

    shutil.copytree(drops[5], tmp_path / "inbox" / drops[5].name)  # a new drop arrives
    proc = subprocess.Popen([sys.executable, "-m", "haic_pipeline.cli", "run", "--no-demo"], env=killed,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # wait until the refresh is under way, then kill it hard
        if line.startswith("refreshing staging"):
            break
    time.sleep(3.0)
    assert proc.poll() is None, "the refresh finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    assert _sha(copy) == before_copy  # analysts still see the last good copy, byte for byte
    assert _results(copy) == before
    with duckdb.connect(str(killed["HAIC_WAREHOUSE"])) as con:  # opens, replays its WAL, not corrupt
        assert con.execute("SELECT count(*) FROM ops.drops WHERE status = 'loaded'").fetchall()[0][0] == 6

    # the next refresh completes (the killed run is marked failed and its DuckDB pool slot freed)
    # and clears what the killed one left half-written
    _run(killed)
    assert not [p for p in copy.parent.iterdir() if ".tmp" in p.name]
    control = _env(tmp_path, "control")
    _run(control)  # the same drops, never interrupted
    assert _results(copy) == _results(tmp_path / "control" / "analytics.duckdb")
    assert _results(copy) != before
