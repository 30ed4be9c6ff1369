"""The analysts' copy: published after every refresh, atomically, and an analyst holding it open
(another process, read-only) never blocks a refresh."""

import subprocess
import sys
import textwrap

import dagster as dg
import duckdb

from haic_pipeline.definitions import load
from haic_pipeline.defs.ingest.assets import DROPS
from haic_pipeline.defs.resources import resources_for
from haic_pipeline.settings import load_settings

from .dropkit import patient, write_drop

E1, E2 = "20240101T020000Z", "20240201T020000Z"

READER = textwrap.dedent("""
    import sys, duckdb
    path = sys.argv[1]
    con = duckdb.connect(path, read_only=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "reconnect":
            con.close()
            con = duckdb.connect(path, read_only=True)
            print("ok", flush=True)
        elif cmd == "count":
            print(con.execute("SELECT count(*) FROM staging.patients").fetchall()[0][0], flush=True)
        elif cmd == "quit":
            break
""")


def _land_and_refresh(instance, extract_id):
    instance.add_dynamic_partitions(DROPS.name, [extract_id])
    defs = load()
    resources = resources_for(load_settings())
    assert defs.resolve_job_def("ingest_drop").execute_in_process(
        partition_key=extract_id, instance=instance, resources=resources).success
    result = defs.resolve_job_def("refresh").execute_in_process(instance=instance, resources=resources)
    assert result.success
    return result


def _ask(proc, cmd):
    proc.stdin.write(cmd + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _holds_staging_and_analysis_only(copy) -> None:
    assert copy.exists() and copy.parent == load_settings().warehouse.parent
    with duckdb.connect(str(copy), read_only=True) as con:
        schemas = {s for (s,) in con.execute("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()}
        assert schemas == {"staging", "analysis"}
        assert con.execute("SELECT count(*) FROM staging.patients").fetchall()[0][0] == 1
    assert not [p for p in copy.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_analysts_copy_holds_staging_and_analysis_and_an_open_reader_never_blocks_a_refresh(env):
    """The copy beside the warehouse holds the staging and analysis schemas only, and no temporary
    file is left; an analyst's open session on it never blocks the next refresh, keeps its
    consistent old copy, and sees the new data once reconnected."""
    write_drop(env / "inbox", E1, {"patients.csv": [patient("10000001")]})
    with dg.DagsterInstance.ephemeral() as instance:
        _land_and_refresh(instance, E1)
        copy = load_settings().analytics_copy
        _holds_staging_and_analysis_only(copy)
        reader = subprocess.Popen([sys.executable, "-c", READER, str(copy)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert _ask(reader, "count") == "1"
            write_drop(env / "inbox", E2, {"patients.csv": [patient("10000002"), patient("10000003")]})
            _land_and_refresh(instance, E2)  # succeeds while the analyst's session is open
            assert _ask(reader, "count") == "1"  # the open session keeps its consistent old copy
            assert _ask(reader, "reconnect") == "ok"
            assert _ask(reader, "count") == "3"
        finally:
            reader.stdin.write("quit\n")
            reader.stdin.close()
            reader.wait(timeout=30)


def test_the_copy_waits_for_every_analysis_table_figure_and_report():
    """The analysts' copy names its upstream assets; an analysis or report asset added without
    being named there would be published late, so every one of them must be upstream of it."""
    import dagster as dg

    from haic_pipeline.definitions import load

    graph = load().resolve_asset_graph()
    copy = dg.AssetKey(["analytics", "analysts_copy"])
    upstream = set(graph.get(copy).parent_keys)
    produced = {k for k in graph.get_all_asset_keys() if k.path[0] in ("analysis", "reports")}
    assert produced and produced <= upstream, sorted(k.to_user_string() for k in produced - upstream)
