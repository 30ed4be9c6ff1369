"""A full disk or a read-only warehouse folder: `haic run` fails with a clear message naming the path,
never a corrupt file. The last good refresh stays readable (pipeline file and analysts' copy), no
temporary file is left behind, and the run after the fault is fixed completes.

Real faults, no mocks: the warehouse folder is a small tmpfs (full disk) or a read-only bind mount
(as root, permission bits do not stop writes). Mounting needs root (CAP_SYS_ADMIN); elsewhere these
tests skip. Every mount is undone in teardown (lazily if still busy)."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from haic_pipeline.synthetic import write_drops

from .test_crash_safety import _results, _sha

KEY = "test-pseudonym-key"

# Sizes measured, DuckDB 1.x: the good refresh (the first five demo drops, 100 patients) holds
# haic.duckdb ~12 MB, analytics.duckdb ~7 MB and reports ~3 MB (~22 MB in all). A first run of the
# small demo (60 patients, seed 3; the first drop holds 23 of them) needs ~0.5 MB to land the drop
# and ~2 MB more to refresh (files grow in 256 KB blocks, plus a WAL of up to ~0.8 MB). Tmpfs sizes
# below are derived from the measured good build.


# --- mounts --------------------------------------------------------------------------------------

class Mounts:
    """Mounts made by one test, undone in reverse order at teardown."""

    def __init__(self):
        self.points: list[Path] = []

    def _mount(self, *args: str) -> None:
        proc = subprocess.run(["mount", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot `mount {' '.join(args)}` here ({proc.stderr.strip()}): "
                        "the fault tests need root (CAP_SYS_ADMIN) to mount a tmpfs / a read-only bind")

    def tmpfs(self, point: Path, size: str) -> Path:
        point.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point))
        self.points.append(point)
        return point

    def read_only(self, point: Path) -> Path:
        """`point` (a folder) becomes read-only for everyone, root included."""
        point.mkdir(parents=True, exist_ok=True)
        self._mount("--bind", str(point), str(point))
        self.points.append(point)
        self._mount("-o", "remount,bind,ro", str(point))
        return point

    def resize(self, point: Path, size: str) -> None:
        self._mount("-o", f"remount,size={size}", str(point))

    def undo(self) -> None:
        for point in reversed(self.points):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
        self.points.clear()


@pytest.fixture
def mounts():
    m = Mounts()
    try:
        yield m
    finally:
        m.undo()


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory):
    """Skip the module early (before the slow good build) where mounting is not permitted."""
    m = Mounts()
    try:
        m.tmpfs(tmp_path_factory.mktemp("probe"), "64k")
    finally:
        m.undo()


# --- running the pipeline ------------------------------------------------------------------------

def _env(base: Path, wh: Path, dagster_home: Path) -> dict:
    env = dict(os.environ)
    env.pop("HAIC_REPORTS", None)  # reports in <warehouse folder>/reports, as by default
    env.update(HAIC_INBOX=str(base / "inbox"), HAIC_WAREHOUSE=str(wh / "haic.duckdb"),
               DAGSTER_HOME=str(dagster_home), HAIC_PSEUDONYM_KEY=KEY, HAIC_ENV="test")
    return env


def _haic(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "haic_pipeline.cli", "run", "--no-demo"], env=env,
                          capture_output=True, text=True, timeout=600)


def _identifiers(drops: list[Path]) -> set[str]:
    """Every patient_id and patient_name delivered (they must never show in an error)."""
    found = set()
    for drop in drops:
        encoding = json.loads((drop / "manifest.json").read_text())["encoding"]
        encoding = "utf-8-sig" if encoding == "utf-8" else encoding   # a byte-order mark, as in the demo
        with open(drop / "patients.csv", encoding=encoding, newline="") as fh:
            for row in csv.DictReader(fh):
                found |= {row["patient_id"].strip(), row["patient_name"].strip()} - {""}
    return found


def _fails_clearly(proc, *expected: str, identifiers: set[str]) -> str:
    """Non-zero exit, the last line of stderr is our one-line error (holding `expected`), no Python
    traceback of the CLI, no identifier anywhere in the output. Returns that line."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), out[-3000:]
    for text in expected:
        assert text in last, last
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr[-3000:]
    leaked = [v for v in identifiers if re.search(rf"(?<!\w){re.escape(v)}(?!\w)", out)]
    assert not leaked, "patient identifiers in the output"
    return last


def _stray(folder: Path) -> list[str]:
    """Temporary files a failed write could leave (the analysts' copy's temp file and its WAL)."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name or p.name.startswith(".haic"))


def _fill(folder: Path, leave: int, name: str = "filler") -> Path:
    """Fill the disk holding `folder` until `leave` bytes are free."""
    st = os.statvfs(folder)
    size = max(st.f_bavail * st.f_frsize - leave, 0)
    path = folder / name
    if size:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    return path


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _drop_status(db: Path, extract_id: str) -> str | None:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT status FROM ops.drops WHERE extract_id = ?", [extract_id]).fetchall()
    return row[0][0] if row else None


@pytest.fixture(scope="module")
def good(refreshed_five_of_six, can_mount):
    """One good refresh of the first five demo drops on a disk with room; the sixth is held back
    (the 'new drop' of each test). Built once per test run for every worker (refreshed.py); tests
    copy this warehouse into their own faulty folder and never write here."""
    base = refreshed_five_of_six.succeeded().folder
    drops = sorted(p for p in (base / "all").iterdir() if p.is_dir())
    wh = base / "wh"
    return SimpleNamespace(base=base, wh=wh, dagster_home=base / "dagster_home", new_drop=drops[5],
                           copy_sha=_sha(wh / "analytics.duckdb"), results=_results(wh / "haic.duckdb"),
                           identifiers=_identifiers(drops))


def _stage(good, base: Path, wh: Path, dagster_home: Path | None = None) -> dict:
    """The good warehouse (and its run history and inbox) copied to `wh` / `base`; the held-back
    drop delivered to the inbox. Returns the environment of `haic run` there."""
    shutil.copytree(good.wh, wh, dirs_exist_ok=True)
    dagster_home = dagster_home or base / "dagster_home"
    shutil.copytree(good.dagster_home, dagster_home, dirs_exist_ok=True)
    shutil.copytree(good.base / "inbox", base / "inbox")
    shutil.copytree(good.new_drop, base / "inbox" / good.new_drop.name)
    return _env(base, wh, dagster_home)


# --- full disk -----------------------------------------------------------------------------------

def test_first_run_on_a_too_small_disk_fails_clearly(tmp_path, mounts):
    drops = write_drops(tmp_path / "all", patients=60, drops=1, seed=3)
    (tmp_path / "inbox").mkdir()
    shutil.copytree(drops[0], tmp_path / "inbox" / drops[0].name)
    wh = mounts.tmpfs(tmp_path / "wh", "256k")  # the demo's first drop needs about 2 MB
    proc = _haic(_env(tmp_path, wh, tmp_path / "dagster_home"))

    _fails_clearly(proc, "disk full while writing", str(wh), "free space and rerun",
                   identifiers=_identifiers(drops))
    assert not _stray(wh)
    assert not (wh / "analytics.duckdb").exists()  # never a half-written analysts' copy
    if (wh / "haic.duckdb").exists():  # what was written opens, and the drop is not marked rejected
        assert _drop_status(wh / "haic.duckdb", drops[0].name) in (None, "loaded")
    assert not (tmp_path / "inbox" / drops[0].name / "_REJECTED.txt").exists()


def test_full_disk_keeps_the_last_good_refresh_then_the_next_run_completes(good, tmp_path, mounts, monkeypatch):
    import dagster as dg

    from haic_pipeline.defs.automation.sensors import run_failure_to_ops_log
    from haic_pipeline.defs.resources import resources_for
    from haic_pipeline.settings import load_settings
    from haic_pipeline.warehouse.faults import StorageFault

    # the good warehouse (~22 MB) plus room for the next refresh and its new analysts'
    # copy (written beside the old one, then renamed)
    size_mb = _du(good.wh) // (1 << 20) + 16
    wh = mounts.tmpfs(tmp_path / "wh", f"{size_mb}m")
    env = _stage(good, tmp_path, wh)
    filler = _fill(wh, leave=1 << 20)  # 1 MB left: not enough for the new drop's refresh
    new = good.new_drop.name

    proc = _haic(env)
    _fails_clearly(proc, "disk full while writing", str(wh), "the previous results are intact",
                   identifiers=good.identifiers)
    assert _sha(wh / "analytics.duckdb") == good.copy_sha  # the analysts' copy, byte for byte
    assert _results(wh / "haic.duckdb") == good.results  # the pipeline file opens, previous results
    assert not _stray(wh)
    assert _drop_status(wh / "haic.duckdb", new) in (None, "loaded")  # never 'rejected' for a full disk
    assert not (tmp_path / "inbox" / new / "_REJECTED.txt").exists()

    # Dagster recorded the run as failed. The run-failure sensor (which writes ops.run_log), evaluated
    # on a completely full disk, fails its tick with a clear message and writes nothing; once there
    # is space, the same evaluation records the failure. (The pipeline file is first checkpointed
    # with some space free, so DuckDB's write-ahead log has no slack left to absorb the sensor's row.)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    resources = resources_for(load_settings(env))
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        assert run.status == dg.DagsterRunStatus.FAILURE and run.job_name in ("refresh", "ingest_drop")
        failure = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[-1].dagster_event
        filler.unlink()
        duckdb.connect(str(wh / "haic.duckdb")).close()
        assert not (wh / "haic.duckdb.wal").exists()
        filler = _fill(wh, leave=0)
        with dg.build_run_status_sensor_context(
                sensor_name="run_failure_to_ops_log", dagster_instance=instance, dagster_run=run,
                dagster_event=failure, resources=resources).for_run_failure() as context:
            with pytest.raises(StorageFault, match="not written to ops.run_log .*disk full while writing"):
                run_failure_to_ops_log(context)
            filler.unlink()
            run_failure_to_ops_log(context)
    with duckdb.connect(str(wh / "haic.duckdb"), read_only=True) as con:
        logged = con.execute("SELECT run_id, status, message FROM ops.run_log").fetchall()
    assert [(r, s) for r, s, _ in logged] == [(run.run_id, "failed")]
    assert "No space left on device" in logged[0][2]

    proc = _haic(env)  # the next run completes
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _drop_status(wh / "haic.duckdb", new) == "loaded"
    assert _sha(wh / "analytics.duckdb") != good.copy_sha
    assert _results(wh / "analytics.duckdb") == _results(wh / "haic.duckdb") != good.results
    assert not _stray(wh)


def test_full_disk_holding_dagster_home_too_fails_clearly(good, tmp_path, mounts):
    """`make run`'s layout: DAGSTER_HOME (Dagster's SQLite run storage) inside the full warehouse
    folder. SQLite then says only "disk I/O error"; the CLI still names the full disk."""
    wh = mounts.tmpfs(tmp_path / "wh", f"{_du(good.wh) // (1 << 20) + 8}m")
    env = _stage(good, tmp_path, wh, dagster_home=wh / "dagster_home")
    _fill(wh, leave=0)

    proc = _haic(env)
    _fails_clearly(proc, "disk full while writing", str(wh), identifiers=good.identifiers)
    assert _sha(wh / "analytics.duckdb") == good.copy_sha
    assert _results(wh / "haic.duckdb") == good.results
    assert not _stray(wh)


def test_publish_on_a_full_disk_keeps_the_old_copy_and_leaves_no_temp_file(good, tmp_path, mounts):
    from haic_pipeline.warehouse.publish import publish_analytics_copy
    from haic_pipeline.warehouse.refresh import last_fingerprint

    shutil.copy(good.wh / "haic.duckdb", tmp_path / "haic.duckdb")
    old = good.wh / "analytics.duckdb"
    out = mounts.tmpfs(tmp_path / "out", f"{old.stat().st_size // (1 << 20) + 2}m")  # the old copy + 2 MB
    target = out / "analytics.duckdb"
    shutil.copy(old, target)
    with duckdb.connect(str(tmp_path / "haic.duckdb")) as con:
        con.execute("CREATE TABLE analysis.fault_marker AS SELECT 1 AS x")  # new content to publish
        recorded = last_fingerprint(con, "analytics_copy")
        with pytest.raises(duckdb.Error, match="No space left on device"):
            publish_analytics_copy(con, target)
        assert sorted(p.name for p in out.iterdir()) == ["analytics.duckdb"]  # no temp file, no WAL
        assert _sha(target) == good.copy_sha
        assert last_fingerprint(con, "analytics_copy") == recorded  # so the next refresh publishes again

        mounts.resize(out, "32m")
        result = publish_analytics_copy(con, target)
    assert result.published and sorted(p.name for p in out.iterdir()) == ["analytics.duckdb"]
    with duckdb.connect(str(target), read_only=True) as con:
        assert con.execute("SELECT x FROM analysis.fault_marker").fetchall() == [(1,)]


# --- read-only warehouse folder ------------------------------------------------------------------

@pytest.mark.parametrize("read_only", ["warehouse folder", "DAGSTER_HOME folder"])
def test_fresh_run_on_a_read_only_folder_fails_clearly_before_writing(tmp_path, mounts, read_only):
    drops = write_drops(tmp_path / "all", patients=60, drops=1, seed=3)
    (tmp_path / "inbox").mkdir()
    shutil.copytree(drops[0], tmp_path / "inbox" / drops[0].name)
    wh, dagster_home = tmp_path / "wh", tmp_path / "dagster_home"
    folder = mounts.read_only(wh if read_only == "warehouse folder" else dagster_home)
    proc = _haic(_env(tmp_path, wh, dagster_home))

    _fails_clearly(proc, f"{read_only} {folder} is read-only / not writable", identifiers=_identifiers(drops))
    assert list(folder.iterdir()) == []
    if read_only == "DAGSTER_HOME folder":  # stopped before the warehouse was touched
        assert not (wh / "haic.duckdb").exists()


def test_read_only_folder_holding_a_good_refresh_is_left_unchanged(good, tmp_path, mounts):
    wh = tmp_path / "wh"
    env = _stage(good, tmp_path, wh)
    before = {p.relative_to(wh): _sha(p) for p in wh.rglob("*") if p.is_file()}
    mounts.read_only(wh)

    proc = _haic(env)
    _fails_clearly(proc, f"warehouse folder {wh} is read-only / not writable", identifiers=good.identifiers)
    assert {p.relative_to(wh): _sha(p) for p in wh.rglob("*") if p.is_file()} == before
    assert _sha(wh / "analytics.duckdb") == good.copy_sha
    assert _results(wh / "haic.duckdb") == good.results  # opens read-only, previous results
    assert _drop_status(wh / "haic.duckdb", good.new_drop.name) is None  # not landed, not rejected
    assert not (tmp_path / "inbox" / good.new_drop.name / "_REJECTED.txt").exists()


def test_disk_filling_during_a_large_insert_does_not_reject_the_drop(tmp_path, mounts):
    """The INSERT of a big file hits the full disk: the drop is not called an invalid CSV, nothing
    of it lands, and once there is room it loads."""
    from haic_pipeline.contracts import load_contracts
    from haic_pipeline.ingest import find_complete_drops, load_drop
    from haic_pipeline.warehouse.faults import describe

    inbox = tmp_path / "inbox"
    write_drops(inbox, patients=3000, drops=1, seed=5)   # ~0.5 M lab rows
    wh = mounts.tmpfs(tmp_path / "wh", "3m")
    db = wh / "haic.duckdb"
    contracts = load_contracts()
    drop = find_complete_drops(inbox)[0]
    with pytest.raises(duckdb.Error) as caught:
        with duckdb.connect(str(db)) as con:
            load_drop(con, drop, contracts, KEY)
    assert "not a valid CSV" not in str(caught.value)
    assert describe(str(caught.value)) and "disk full" in describe(str(caught.value))
    mounts.resize(wh, "200m")
    with duckdb.connect(str(db)) as con:
        statuses = con.execute("SELECT status FROM ops.drops").fetchall() \
            if con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ops' "
                           "AND table_name = 'drops'").fetchall()[0][0] else []
        assert ("rejected",) not in statuses
        assert load_drop(con, drop, contracts, KEY).status == "loaded"
        assert con.execute("SELECT count(*) FROM raw.labs").fetchall()[0][0] > 100_000


def test_report_file_on_a_full_disk_keeps_the_old_version_and_no_litter(tmp_path, mounts):
    from haic_pipeline.warehouse.files import write_atomic

    folder = mounts.tmpfs(tmp_path / "reports", "1m")
    page = folder / "study_report.html"
    write_atomic(page, "<p>old</p>")
    with pytest.raises(OSError):
        write_atomic(page, "x" * (2 << 20))   # 2 MB on a 1 MB disk
    assert page.read_text() == "<p>old</p>"
    assert sorted(p.name for p in folder.iterdir()) == ["study_report.html"]
