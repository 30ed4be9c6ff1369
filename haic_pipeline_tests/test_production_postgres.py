"""The production path, really run: a throwaway PostgreSQL 15 cluster (pgcluster.py), the instance
settings of deploy/production/dagster.yaml in a temp DAGSTER_HOME, and `dagster-daemon run` and
`dagster-webserver` as two separate processes over it, as the systemd units of deploy/production/
start them, with HAIC_ENV=production and the pseudonym key in a file only its owner can read.

A demo drop put into the inbox is landed by the inbox sensor and the study refreshes by itself
(runs recorded in PostgreSQL, analysis tables in DuckDB); the daemon is stopped and started again;
no drop is ingested twice, the sensors' state survived (the automation sensor resumes at the next
evaluation of its stored cursor), and the next drop refreshes. `haic doctor` passes on that
deployment, and fails with a message naming the setting on each bad one (a wrong PostgreSQL
password, an unreachable server, a missing key file, a backup folder that cannot be written).

Under CI=true a missing PostgreSQL fails these tests instead of skipping them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from haic_pipeline.synthetic import write_drops

from .pgcluster import free_port, start_cluster
from .webui import graphql

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DB, USER, PASSWORD = "haic_dagster", "haic", "service-password"
SENSOR_INTERVAL = "5"
WAIT = 600  # seconds, the most any one step of the deployment may take on a loaded machine


@pytest.fixture(scope="module")
def cluster():
    cluster, stop = start_cluster()
    try:
        yield cluster
    finally:
        stop()


@pytest.fixture(scope="module")
def demo_drops(tmp_path_factory):
    """The demo's drops, written once outside any inbox (oldest first)."""
    return write_drops(tmp_path_factory.mktemp("cdw"), patients=100, drops=6, seed=1)


def deployment(tmp_path: Path, cluster, db: str) -> dict[str, str]:
    """The environment of /etc/haic/haic.env for a deployment in `tmp_path` (database `db`), with
    DAGSTER_HOME holding deploy/production/dagster.yaml and a key file of mode 600."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "production" / "dagster.yaml", home / "dagster.yaml")
    key = tmp_path / "secrets" / "pseudonym.key"
    key.parent.mkdir()
    key.write_text("a-hospital-secret-not-the-demo-key\n")
    key.chmod(0o600)
    (tmp_path / "inbox").mkdir()
    env = {k: v for k, v in os.environ.items() if not (k.startswith("HAIC_") or k.startswith("DAGSTER_"))}
    env.update({
        "HAIC_ENV": "production",
        "HAIC_PSEUDONYM_KEY_FILE": str(key),
        "HAIC_INBOX": str(tmp_path / "inbox"),
        "HAIC_WAREHOUSE": str(tmp_path / "wh" / "haic.duckdb"),
        "HAIC_REPORTS": str(tmp_path / "reports"),
        "HAIC_BACKUP_DIR": str(tmp_path / "backups"),
        "HAIC_BACKUP_KEEP": "3",
        "HAIC_SENSOR_INTERVAL_SECONDS": SENSOR_INTERVAL,
        "HAIC_DQ_WORKERS": "0",
        "DAGSTER_HOME": str(home),
        **cluster.env(db, USER, PASSWORD),
    })
    return env


@contextmanager
def service(args: list[str], env: dict[str, str], log: Path):
    """A long-lived process in its own process group, its output in `log`; stopped with SIGTERM
    (SIGKILL after 30 s) on leaving."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def tail(*logs: Path) -> str:
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())


def wait_for(what: str, condition, logs: list[Path], timeout: float = WAIT, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{tail(*logs)}", pytrace=False)
        time.sleep(every)


def pg_runs(cluster, db: str) -> list[tuple[str, str, str | None]]:
    """(job, status, partition) of every run, read from PostgreSQL's `runs` table itself (none
    before the first service created Dagster's tables)."""
    import psycopg2.errors

    con = cluster.connect(db, USER, PASSWORD)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT pipeline_name, status, partition FROM runs ORDER BY create_timestamp")
            return cur.fetchall()
    except psycopg2.errors.UndefinedTable:
        return []
    finally:
        con.close()


def published_extract(env: dict[str, str]) -> str | None:
    """The drop the analysts' copy was last computed from (None before the first publication)."""
    copy = Path(env["HAIC_WAREHOUSE"]).parent / "analytics.duckdb"
    if not copy.exists():
        return None
    try:
        with duckdb.connect(str(copy), read_only=True) as con:
            return con.execute("SELECT max(extract_id) FROM analysis.km_summary").fetchall()[0][0]
    except duckdb.Error:
        return None  # being replaced


def failed_runs(cluster, db: str) -> list:
    return [r for r in pg_runs(cluster, db) if r[1] in ("FAILURE", "CANCELED")]


def settle(cluster, db, env, extract_id, logs):
    """Wait until the analysts' copy holds `extract_id` (the drop landed and the study refreshed)
    and no run is queued or running; fail at once on a failed run."""
    def done():
        bad = failed_runs(cluster, db)
        if bad:
            pytest.fail(f"a run failed: {bad}\n{tail(*logs)}", pytrace=False)
        busy = [r for r in pg_runs(cluster, db) if r[1] in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")]
        return published_extract(env) == extract_id and not busy
    wait_for(f"drop {extract_id} landed by the sensor and the study refreshed by automation", done, logs)


def sensor_states(instance) -> dict:
    from dagster._core.scheduler.instigation import InstigatorType

    return {s.name: s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)}


def cursors(instance) -> dict[str, str | None]:
    """The stored cursor of every sensor of the code location."""
    return {name: state.instigator_data.cursor for name, state in sensor_states(instance).items()}


def doctor(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "haic"), "doctor"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_daemon_and_webserver_on_postgres_land_refresh_and_survive_a_restart(cluster, demo_drops, tmp_path,
                                                                             monkeypatch):
    import dagster as dg

    cluster.create_database(DB, USER, PASSWORD)
    env = deployment(tmp_path, cluster, DB)
    for k, v in env.items():
        if k.startswith(("HAIC_", "DAGSTER_")):
            monkeypatch.setenv(k, v)
    first, second = demo_drops[0], demo_drops[1]
    inbox = Path(env["HAIC_INBOX"])
    shutil.copytree(first, inbox / first.name)
    logs = [tmp_path / "daemon.log", tmp_path / "webserver.log"]
    port = free_port()
    webserver = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]

    with service(webserver, env, logs[1]), service(daemon, env, logs[0]) as first_daemon:
        settle(cluster, DB, env, first.name, logs)

        # the run history is in PostgreSQL: the sensor's ingest run and automation's refresh
        runs = pg_runs(cluster, DB)
        assert ("ingest_drop", "SUCCESS", first.name) in runs
        assert any(job != "ingest_drop" and status == "SUCCESS" for job, status, _ in runs), runs
        # the webserver, a separate process, serves the same instance
        data = wait_for("the webserver answering", lambda: _graphql_runs(port), logs, timeout=60)
        assert {r["runId"] for r in data} == set(_run_ids(cluster)), data
        # the analysis tables in DuckDB, computed from the drop
        with duckdb.connect(env["HAIC_WAREHOUSE"], read_only=True) as con:
            assert con.execute("SELECT count(*) FROM analysis.cox_models").fetchall()[0][0] > 0
            assert con.execute("SELECT DISTINCT extract_id FROM analysis.km_summary").fetchall() == [(first.name,)]

        stop(first_daemon)
        # what the first daemon left in PostgreSQL (read by a new instance object, as a new process does)
        with dg.DagsterInstance.get() as instance:
            stored = cursors(instance)
            runs_before = {r.run_id for r in instance.get_runs()}
        assert stored["automation_condition_sensor"], "the automation sensor stored no cursor"

        # the next drop arrives while the daemon is down; a new daemon takes over
        shutil.copytree(second, inbox / second.name)
        restarted_at = time.time()
        with service(daemon, env, logs[0]):
            with dg.DagsterInstance.get() as instance:
                # polled often: the cursors are read as soon as the new daemon is up, before its first
                # evaluation of at least one sensor (which `compared` below requires)
                wait_for("the new daemon heartbeating", lambda: any(
                    h.timestamp > restarted_at for h in instance.get_daemon_heartbeats().values()), logs,
                    timeout=WAIT, every=0.1)
                at_start, read_at = cursors(instance), time.time()
                states = sensor_states(instance)
            settle(cluster, DB, env, second.name, logs)
            with dg.DagsterInstance.get() as instance:
                ticks = {name: [t.timestamp for t in instance.get_ticks(state.instigator_origin_id, state.selector_id)
                                if t.timestamp >= restarted_at] for name, state in states.items()}
                new_runs = [r for r in instance.get_runs() if r.run_id not in runs_before]
                ingest2 = next(r for r in new_runs if r.job_name == "ingest_drop")
                ingest2_end = instance.get_run_record_by_id(ingest2.run_id).end_time
                early = [r for r in new_runs if r.job_name != "ingest_drop" and
                         instance.get_run_record_by_id(r.run_id).create_timestamp.timestamp() < ingest2_end]
            doctor_result = doctor(env)

    # the sensors' cursors survived the restart: the running new daemon found each as the first one
    # stored it (unless it had already evaluated that sensor when they were read; the inbox sensor
    # keeps no cursor: its memory is the run keys and the drop partitions, in the instance), and it
    # requested no refresh of what the first daemon had refreshed: no automation run before the
    # next drop landed
    assert ticks["automation_condition_sensor"] and ticks["inbox_sensor"], ticks
    compared = [name for name in stored if not any(t < read_at for t in ticks[name])]
    for name in compared:
        assert at_start[name] == stored[name], name
    assert compared, "every sensor had been evaluated before its cursor was read"
    assert early == [], [r.run_id for r in early]

    # no drop ingested twice: one ingest run per drop in PostgreSQL, one landing each in DuckDB
    ingests = [(status, part) for job, status, part in pg_runs(cluster, DB) if job == "ingest_drop"]
    assert sorted(ingests) == [("SUCCESS", first.name), ("SUCCESS", second.name)]
    with duckdb.connect(env["HAIC_WAREHOUSE"], read_only=True) as con:
        drops = con.execute("SELECT extract_id, status FROM ops.drops ORDER BY 1").fetchall()
        assert drops == [(first.name, "loaded"), (second.name, "loaded")]
        loads = con.execute("SELECT extract_id, count(*) FROM ops.load_log WHERE status = 'loaded' "
                            "GROUP BY 1 ORDER BY 1").fetchall()
        assert [e for e, _ in loads] == [first.name, second.name]
        assert con.execute("SELECT count(*) FROM ops.load_log WHERE status = 'duplicate'").fetchall()[0][0] == 0
        assert con.execute("SELECT DISTINCT extract_id FROM analysis.km_summary").fetchall() == [(second.name,)]

    # haic doctor, run while the restarted daemon served, passed on this deployment
    assert doctor_result.returncode == 0, doctor_result.stdout + doctor_result.stderr
    assert "FAIL" not in doctor_result.stdout and "Traceback" not in doctor_result.stderr
    for line in ("instance storage", "daemon", "last refresh", "sensor inbox_sensor", "schedule nightly_refresh",
                 "pseudonym key"):
        assert any(l.split()[0] == "ok" and line in l for l in doctor_result.stdout.splitlines()), doctor_result.stdout
    assert f"PostgreSQL 127.0.0.1:{cluster.port}/{DB}" in doctor_result.stdout


def _backends(cluster, db: str) -> set[tuple[int, object]]:
    """(pid, start) of every connection the service role holds open to `db`."""
    con = cluster.connect()
    try:
        with con.cursor() as cur:
            cur.execute("SELECT pid, backend_start FROM pg_stat_activity WHERE datname = %s AND usename = %s",
                        [db, USER])
            return set(cur.fetchall())
    finally:
        con.close()


def test_each_store_keeps_one_connection_and_replaces_one_the_server_closed(cluster, tmp_path, monkeypatch):
    """deploy/production/dagster.yaml's storage (instance_storage/postgres.py): a hundred storage calls are
    served by the same three connections, one per store (dagster-postgres alone opens one per
    call and keeps none); connections the server closed are replaced without a failed call; the
    instance's dispose closes the run and event-log stores' ones."""
    import dagster as dg

    cluster.create_database("haic_held", USER, PASSWORD)
    env = deployment(tmp_path, cluster, "haic_held")
    for k, v in env.items():
        if k.startswith(("HAIC_", "DAGSTER_")):
            monkeypatch.setenv(k, v)
    instance = dg.DagsterInstance.get()
    try:
        def use_every_store(i: int) -> None:
            run = instance.create_run_for_job(dg.GraphDefinition(name="nothing").to_job(), run_id=None,
                                              tags={"call": str(i)})
            instance.report_engine_event("a stored event", run)
            assert instance.get_run_by_id(run.run_id) is not None
            assert instance.all_logs(run.run_id)
            instance.all_instigator_state()

        use_every_store(0)
        held = _backends(cluster, "haic_held")
        assert len(held) == 3, held
        for i in range(1, 34):
            use_every_store(i)
        assert _backends(cluster, "haic_held") == held
        assert len(instance.get_runs()) == 34

        con = cluster.connect()     # the server ends them, as a restart of PostgreSQL would
        try:
            with con.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", ["haic_held"])
        finally:
            con.close()
        wait_for("the ended connections gone", lambda: not _backends(cluster, "haic_held"), [], timeout=30, every=0.1)
        use_every_store(34)         # no call fails: each store connects again
        replaced = _backends(cluster, "haic_held")
        assert len(replaced) == 3 and not replaced & held, replaced
        instance.dispose()   # closes the run and event-log stores' connections (Dagster never disposes
        wait_for("the connections closed by dispose", lambda: len(_backends(cluster, "haic_held")) == 1, [],
                 timeout=30, every=0.1)    # an instance's schedule store: the process's exit closes it)
    finally:
        instance.dispose()


def _run_ids(cluster) -> list[str]:
    con = cluster.connect(DB, USER, PASSWORD)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT run_id FROM runs")
            return [r for (r,) in cur.fetchall()]
    finally:
        con.close()


def _graphql_runs(port: int):
    try:
        data = graphql(port, "{ runsOrError { ... on Runs { results { runId status } } } }")
        return data["data"]["runsOrError"]["results"] or None
    except Exception:  # noqa: BLE001 - not up yet
        return None


@contextmanager
def unwritable(folder: Path):
    """`folder`, which its user cannot write: a read-only bind mount as root (permission bits do
    not stop root), mode 500 otherwise. Where mounting is not permitted, a folder that cannot be
    created (under a regular file) instead. Yields the folder to use."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield folder
        finally:
            folder.chmod(0o700)
        return
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bind.returncode != 0:
        (folder / "file").write_text("")
        yield folder / "file" / "backups"
        return
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fail_line(output: str, check: str) -> str:
    lines = [l for l in output.splitlines() if l.split()[:1] == ["FAIL"] and f" {check}" in l]
    assert lines, f"no FAIL line for {check!r}:\n{output}"
    return lines[0]


def test_doctor_names_the_setting_on_each_bad_configuration(cluster, tmp_path):
    """Real faults: a wrong password against the real cluster, a port nothing listens on, a key file
    that does not exist, a backup folder that cannot be written, a password variable missing. Each
    is one FAIL line naming the setting, exit status 1, no traceback."""
    cluster.create_database("haic_doctor", USER, PASSWORD)
    env = deployment(tmp_path, cluster, "haic_doctor")
    with unwritable(tmp_path / "readonly") as backups:
        cases = {
            "wrong password, no key file, backup folder read-only": dict(
                env, DAGSTER_PG_PASSWORD="not-the-password", HAIC_PSEUDONYM_KEY_FILE=str(tmp_path / "missing.key"),
                HAIC_BACKUP_DIR=str(backups)),
            "unreachable server": dict(env, DAGSTER_PG_PORT=str(free_port())),
            "password not set": {k: v for k, v in env.items() if k != "DAGSTER_PG_PASSWORD"},
        }
        procs = {name: subprocess.Popen([str(BIN / "haic"), "doctor"], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True) for name, e in cases.items()}
        # the pipeline itself refuses to start on the missing key file, and on the wrong password,
        # with the same words
        run = subprocess.run([str(BIN / "haic"), "run", "--no-demo"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, env=cases["wrong password, no key file, backup folder read-only"])
        run_pg = subprocess.run([str(BIN / "haic"), "run", "--no-demo"], cwd=ROOT, capture_output=True, text=True,
                                timeout=120, env=dict(env, DAGSTER_PG_PASSWORD="not-the-password"))
        out = {}
        try:
            for name, proc in procs.items():
                stdout, stderr = proc.communicate(timeout=120)
                out[name] = (proc.returncode, stdout, stderr)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
    for name, (code, stdout, stderr) in out.items():
        assert code == 1, f"{name}: exit {code}\n{stdout}{stderr}"
        assert "Traceback" not in stdout + stderr, f"{name}:\n{stdout}{stderr}"

    code, stdout, _ = out["wrong password, no key file, backup folder read-only"]
    line = _fail_line(stdout, "instance storage")
    assert "refused the password" in line and "DAGSTER_PG_PASSWORD" in line
    line = _fail_line(stdout, "pseudonym key")
    assert "HAIC_PSEUDONYM_KEY_FILE" in line and "does not exist" in line and "missing.key" in line
    line = _fail_line(stdout, "backup folder")
    assert "HAIC_BACKUP_DIR" in line and str(backups) in line
    assert _fail_line(stdout, "configuration").count("HAIC_PSEUDONYM_KEY_FILE") >= 1

    line = _fail_line(out["unreachable server"][1], "instance storage")
    assert "unreachable" in line and "DAGSTER_PG_HOST" in line and "DAGSTER_PG_PORT" in line
    line = _fail_line(out["password not set"][1], "instance storage")
    assert "DAGSTER_PG_PASSWORD" in line and "not set" in line

    assert run.returncode == 2 and "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    assert "HAIC_PSEUDONYM_KEY_FILE" in run.stderr and "missing.key" in run.stderr
    assert run_pg.returncode == 2 and "Traceback" not in run_pg.stdout + run_pg.stderr, run_pg.stdout + run_pg.stderr
    assert "refused the password" in run_pg.stderr and "DAGSTER_PG_PASSWORD" in run_pg.stderr
