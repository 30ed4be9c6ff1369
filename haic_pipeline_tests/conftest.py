import gc
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import duckdb
import pytest
import yaml

from haic_pipeline.contracts import load_contracts

TEST_KEY = "test-pseudonym-key"
MEMORY_DISK = Path("/dev/shm")
MEMORY_DISK_MIN_FREE = 1 << 30  # a run holds ~100 MB at a time (passed tests' tmp_path is removed)


@contextmanager
def local_instance(temp_dir: str | None = None, **kwargs):
    """`dg.instance_for_test` with the project's instance storage (deploy/dagster.yaml: Dagster's
    SQLite stores keeping their connections, `haic_pipeline/instance_storage/sqlite.py`) in its
    folder, as `haic run` and `make ui` have it; `kwargs` go to instance_for_test."""
    import dagster as dg

    with ExitStack() as stack:
        temp_dir = temp_dir or stack.enter_context(tempfile.TemporaryDirectory(ignore_cleanup_errors=True))
        storage = yaml.safe_load((Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml").read_text())["storage"]
        storage["custom"]["config"]["base_dir"] = str(temp_dir)
        yield stack.enter_context(dg.instance_for_test(overrides={"storage": storage}, temp_dir=str(temp_dir), **kwargs))


def _memory_disk_usable() -> bool:
    try:
        return os.access(MEMORY_DISK, os.W_OK | os.X_OK) and shutil.disk_usage(MEMORY_DISK).free >= MEMORY_DISK_MIN_FREE
    except OSError:
        return False


def pytest_configure(config):
    """Temporary files on a memory-backed disk (/dev/shm, where it has 1 GiB free) unless TMPDIR
    names another place: pytest's tmp_path, Dagster's instance_for_test, and the `haic` /
    `dagster dev` processes the tests start (they inherit TMPDIR). The files are the same real
    DuckDB and SQLite files; only the fsync of each commit (milliseconds on a disk, thousands per
    Dagster run) is gone."""
    if os.environ.get("TMPDIR") or not _memory_disk_usable():
        return
    os.environ["TMPDIR"] = str(MEMORY_DISK)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """The cyclic garbage collector held off while the test modules import Dagster, pandas, SciPy
    and the rest (each of its full collections would walk the growing heap again), and the heap they
    built frozen out of its reach afterwards, as `haic run` does (haic_pipeline/preload.py)."""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.freeze()
        gc.enable()


# The tests of several seconds and more (a `haic run` or `dagster dev` process, Dagster refreshes),
# roughly longest first. They start before the others, and xdist hands out one test at a time
# (maxschedchunk 1), so the short tests fill the end and the workers finish together instead of
# one running the browser test alone while the others idle. Order only: nothing depends on it.
LONG_FIRST = (
    "test_production_postgres.py::test_daemon_and_webserver",
    "test_ui_browser.py::",
    "test_crash_safety.py::",
    "test_snapshot.py::",
    "analysis/test_dagster_analysis.py::test_demo_refreshes",
    "test_production_postgres.py::",   # the doctor's faults: seconds of waiting on an unreachable server
    "test_cli.py::",
    "test_faults.py::",
    "test_backup.py::test_backup_destroy_restore",
    "quality/test_unblock.py::",
    "test_publish.py::",
    "analysis/test_dagster_beyond.py::",
    "quality/test_parallel.py::test_worker_processes",
    "analysis/test_dagster_analysis.py::",
    "test_dagster.py::",
    "analysis/test_beyond.py::test_beyond_tables_at_100k",
    "quality/test_quality.py::test_refresh",
    "quality/test_rule_kinds.py::test_rule_kind[",
)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's load scheduling, one test at a time (unless --maxschedchunk says otherwise)."""
    if config.getoption("maxschedchunk", None) is None and config.getoption("dist", "load") == "load":
        config.option.maxschedchunk = 1


def _rank(item) -> int:
    name = item.nodeid.split("haic_pipeline_tests/", 1)[-1]
    return next((i for i, prefix in enumerate(LONG_FIRST) if name.startswith(prefix)), len(LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)  # stable: collection order within a rank


@pytest.fixture
def env(tmp_path, monkeypatch):
    """HAIC_* variables pointing at a fresh inbox and warehouse in a temp dir."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("HAIC_INBOX", str(inbox))
    monkeypatch.setenv("HAIC_WAREHOUSE", str(tmp_path / "wh" / "haic.duckdb"))
    monkeypatch.setenv("HAIC_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("HAIC_ENV", "test")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "wh").mkdir()
    return tmp_path


@pytest.fixture(scope="session")
def refreshed_demo(tmp_path_factory):
    """The demo refreshed by `haic run` on an empty inbox, built once per test run (refreshed.py):
    read it, or copy_into your own folder."""
    from . import refreshed  # it imports this module

    return refreshed.demo(tmp_path_factory)


@pytest.fixture(scope="session")
def refreshed_five_of_six(tmp_path_factory):
    """The first five demo drops refreshed by `haic run`, all six in <folder>/all (refreshed.py)."""
    from . import refreshed

    return refreshed.five_of_six(tmp_path_factory)


@pytest.fixture(scope="session")
def refreshed_blocked(tmp_path_factory):
    """A study blocked by its first `haic run` (a delta drop with out-of-range ECOG values;
    refreshed.py)."""
    from . import refreshed

    return refreshed.blocked(tmp_path_factory)


@pytest.fixture
def contracts():
    return load_contracts()


@pytest.fixture
def con(env):
    c = duckdb.connect(os.environ["HAIC_WAREHOUSE"])
    yield c
    c.close()


def table_counts(con, schema: str) -> dict[str, int]:
    tables = [t for (t,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? ORDER BY 1", [schema]).fetchall()]
    return {t: con.execute(f"SELECT count(*) FROM {schema}.{t}").fetchall()[0][0] for t in tables}


def all_text_values(con) -> set[str]:
    """Every distinct text value stored anywhere in the warehouse (for identifier leak tests)."""
    values = set()
    cols = con.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE data_type IN ('VARCHAR', 'JSON')").fetchall()
    for schema, table, column in cols:
        for (v,) in con.execute(f'SELECT DISTINCT "{column}"::VARCHAR FROM {schema}.{table}').fetchall():
            if v is not None:
                values.add(v)
    return values


def inbox_path(env: Path) -> Path:
    return env / "inbox"
