"""The Dagster layer, really run: the sensor's evaluation on a real inbox, partitioned ingest runs
and the refresh job on a real DuckDB file, with a real (temporary) Dagster instance."""

import json
import os

import dagster as dg
import duckdb

from haic_pipeline.definitions import load
from haic_pipeline.defs.ingest.assets import DROPS, RAW_KEYS
from haic_pipeline.defs.ingest.sensors import inbox_sensor
from haic_pipeline.defs.resources import HaicConfig, WarehouseResource, resources_for
from haic_pipeline.settings import load_settings

from .conftest import local_instance
from .dropkit import patient, write_drop

E1, E2 = "20240101T020000Z", "20240201T020000Z"


def _files(pid="10000001"):
    return {"patients.csv": [patient(pid)],
            "vital_status.csv": [{"patient_id": pid, "last_contact_date": "2023-12-01"}]}


def _ingest(instance, extract_id, raise_on_error=True):
    if not instance.has_dynamic_partition(DROPS.name, extract_id):
        instance.add_dynamic_partitions(DROPS.name, [extract_id])
    job = load().resolve_job_def("ingest_drop")
    return job.execute_in_process(partition_key=extract_id, instance=instance, raise_on_error=raise_on_error,
                                  resources=resources_for(load_settings()))


def _refresh(instance):
    return load().resolve_job_def("refresh").execute_in_process(instance=instance,
                                                                resources=resources_for(load_settings()))


def test_definitions_load_with_every_asset(env):
    defs = load()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for domain in ("patients", "treatments", "assessments", "labs", "imaging", "vital_status"):
        assert f"raw/{domain}" in keys and f"staging/{domain}" in keys
    assert defs.resolve_sensor_def("inbox_sensor") is not None


def _tick(instance):
    """One evaluation of the inbox sensor, its resources open for the evaluation only."""
    with dg.build_sensor_context(instance=instance, resources=resources_for(load_settings())) as context:
        return inbox_sensor(context)


def test_sensor_requests_one_run_per_complete_drop(env):
    write_drop(env / "inbox", E1, _files())
    write_drop(env / "inbox", E2, _files("10000002"), write_manifest=False)  # still being written
    (env / "inbox" / "not-a-drop").mkdir()
    with local_instance() as instance:
        result = _tick(instance)
        assert [r.partition_key for r in result.run_requests] == [E1]
        assert result.dynamic_partitions_requests[0].partition_keys == [E1]
        first_key = result.run_requests[0].run_key

        # the same drop again -> same run key (Dagster starts no second run); a changed manifest -> new key
        instance.add_dynamic_partitions(DROPS.name, [E1])
        again = _tick(instance)
        assert [r.run_key for r in again.run_requests] == [first_key]
        assert again.dynamic_partitions_requests == []
        # once landed (e.g. by `make run`), the sensor asks for nothing more
        assert _ingest(instance, E1).success
        landed = _tick(instance)
        assert landed.run_requests == []
        manifest = json.loads((env / "inbox" / E1 / "manifest.json").read_text())
        manifest["source_system"] = "CHANGED"
        (env / "inbox" / E1 / "manifest.json").write_text(json.dumps(manifest))
        changed = _tick(instance)
        assert changed.run_requests[0].run_key != first_key


def test_ingest_run_per_partition_then_refresh(env):
    write_drop(env / "inbox", E1, _files())
    write_drop(env / "inbox", E2, _files("10000002"))
    with dg.DagsterInstance.ephemeral() as instance:
        for eid in (E1, E2):
            assert _ingest(instance, eid).success
        mat = instance.get_latest_materialization_event(RAW_KEYS["patients"]).asset_materialization
        assert mat.partition == E2 and mat.metadata["rows_in_drop"].value == 1
        result = _refresh(instance)
        assert result.success
        meta = result.asset_materializations_for_node("staging__patients")[0].metadata
        assert meta["dagster/row_count"].value == 2 and meta["rebuilt"].value is True

        # a second refresh with no new drop changes nothing and rebuilds nothing
        with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
            before = con.execute("SELECT * FROM staging.patients ORDER BY 1").fetchall()
        again = _refresh(instance)
        assert again.asset_materializations_for_node("staging__patients")[0].metadata["rebuilt"].value is False
        with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
            assert con.execute("SELECT * FROM staging.patients ORDER BY 1").fetchall() == before


def test_rejected_drop_fails_its_run_with_the_reason(env):
    folder = write_drop(env / "inbox", E1, _files())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["patients.csv"]["rows"] = 3
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with local_instance() as instance:
        result = _ingest(instance, E1, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.event_specific_data.error.message
        assert "patients.csv" in message and "manifest says 3" in message
        assert "10000001" not in message
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.patients").fetchall()[0][0] == 0
        assert con.execute("SELECT DISTINCT status FROM ops.load_log").fetchall() == [("rejected",)]
    assert folder.exists()


def test_demo_key_warns_loudly_in_the_run_log(env, monkeypatch):
    monkeypatch.delenv("HAIC_PSEUDONYM_KEY")
    write_drop(env / "inbox", E1, _files())
    with local_instance() as instance:
        result = _ingest(instance, E1)
        warnings = [e for e in instance.all_logs(result.run_id)
                    if e.level >= 30 and "PUBLIC DEMO KEY" in (e.user_message or "")]
        assert warnings


def test_production_without_key_refuses_to_run(env, monkeypatch):
    monkeypatch.delenv("HAIC_PSEUDONYM_KEY")
    monkeypatch.setenv("HAIC_ENV", "production")
    write_drop(env / "inbox", E1, _files())
    resources = {"haic": HaicConfig(inbox=os.environ["HAIC_INBOX"], warehouse=os.environ["HAIC_WAREHOUSE"],
                                    reports=str(env / "reports")),
                 "duckdb": WarehouseResource(database=os.environ["HAIC_WAREHOUSE"])}
    with local_instance() as instance:
        instance.add_dynamic_partitions(DROPS.name, [E1])
        result = load().resolve_job_def("ingest_drop").execute_in_process(
            partition_key=E1, instance=instance, raise_on_error=False, resources=resources)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "HAIC_PSEUDONYM_KEY" in failure.event_specific_data.error.message
    assert not os.path.exists(os.environ["HAIC_WAREHOUSE"])
