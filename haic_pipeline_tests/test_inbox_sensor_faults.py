"""The inbox sensor under storage faults: no drop is ever skipped.

Evaluated for real (`build_sensor_context` on a Dagster test instance, drop folders on disk). The
faults are real (tests run as root, so permission bits stop nothing): a manifest.json that is a
directory, a FIFO or a symlink loop, an inbox that is a file, and an ingest run that failed
because another process held the warehouse. Whether Dagster would start a requested run is
judged as its sensor daemon judges it: a run key already on a run starts nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import dagster as dg
import pytest

from haic_pipeline.definitions import load
from haic_pipeline.defs.ingest.assets import DROPS
from haic_pipeline.defs.ingest.sensors import inbox_sensor, run_key_for
from haic_pipeline.defs.resources import resources_for
from haic_pipeline.settings import load_settings

from .conftest import local_instance
from .dropkit import patient, write_drop

E1, E2, E3 = "20240101T020000Z", "20240201T020000Z", "20240301T020000Z"
PIDS = {E1: "10000001", E2: "10000002", E3: "10000003"}


def _files(extract_id: str) -> dict:
    pid = PIDS[extract_id]
    return {"patients.csv": [patient(pid)], "vital_status.csv": [{"patient_id": pid, "last_contact_date": "2023-12-01"}]}


def _tick(instance):
    """One evaluation of the sensor (its SensorResult); raises as a failed tick would."""
    with dg.build_sensor_context(instance=instance, resources=resources_for(load_settings())) as context:
        return inbox_sensor(context)


def _would_start(instance, result) -> list[str]:
    """The partitions of the requests Dagster's sensor daemon would start a run for."""
    return [r.partition_key for r in result.run_requests
            if not instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": r.run_key}))]


def _ingest_as_the_daemon_would(instance, request):
    """The run the daemon starts for `request` (its run key and sensor tags), executed here."""
    if not instance.has_dynamic_partition(DROPS.name, request.partition_key):
        instance.add_dynamic_partitions(DROPS.name, [request.partition_key])
    tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": "inbox_sensor"}
    return load().resolve_job_def("ingest_drop").execute_in_process(
        partition_key=request.partition_key, instance=instance, raise_on_error=False, tags=tags,
        resources=resources_for(load_settings()))


def _assert_fails_naming(instance, *texts: str) -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the tick fails, whatever Dagster wraps it in
        _tick(instance)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__
    message = " | ".join(chain)
    for text in texts:
        assert text in message, message
    assert not any(pid in message for pid in PIDS.values()), message
    return message


@pytest.mark.parametrize("fault", ["directory", "fifo", "symlink_loop"])
def test_an_unreadable_manifest_fails_the_tick_and_no_later_drop_goes_ahead(env, fault):
    inbox = env / "inbox"
    for eid in (E1, E2, E3):
        write_drop(inbox, eid, _files(eid))
    manifest = inbox / E2 / "manifest.json"
    good = manifest.read_bytes()
    manifest.unlink()
    if fault == "directory":
        manifest.mkdir()
        why = "manifest.json is a directory"
    elif fault == "fifo":
        os.mkfifo(manifest)  # opened, it would block the tick for ever
        why = "manifest.json is a FIFO"
    else:
        os.symlink(manifest, manifest)
        why = "manifest.json cannot be read (Too many levels of symbolic links)"
    with local_instance() as instance:
        t0 = time.monotonic()
        _assert_fails_naming(instance, str(inbox / E2), why, "no drop is requested")
        assert time.monotonic() - t0 < 10
        assert instance.get_dynamic_partitions(DROPS.name) == []

        # the folder repaired: the next tick requests every drop, in order
        if manifest.is_dir() and not manifest.is_symlink():
            manifest.rmdir()
        else:
            manifest.unlink()
        manifest.write_bytes(good)
        result = _tick(instance)
        assert [r.partition_key for r in result.run_requests] == [E1, E2, E3]
        assert result.dynamic_partitions_requests[0].partition_keys == [E1, E2, E3]


def test_an_inbox_that_cannot_be_listed_fails_the_tick(env, monkeypatch):
    inbox = env / "not-a-folder"
    inbox.write_text("the inbox share is mounted as a file")
    monkeypatch.setenv("HAIC_INBOX", str(inbox))
    with local_instance() as instance:
        _assert_fails_naming(instance, f"inbox {inbox} cannot be read (Not a directory)")


def test_a_tick_whose_partition_request_was_never_applied_loses_nothing(env):
    """The daemon adds the tick's partitions before it creates runs; if that fails (Dagster's
    storage unwritable), the tick fails and the next one asks for the same drops again."""
    write_drop(env / "inbox", E1, _files(E1))
    with local_instance() as instance:
        first = _tick(instance)  # its partition request and run request are dropped, as on a failed tick
        again = _tick(instance)
        assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]
        assert again.dynamic_partitions_requests[0].partition_keys == [E1]
        assert _would_start(instance, again) == [E1]


@pytest.fixture
def held_warehouse(env):
    """An analyst's read-only session on the warehouse, in another process (kill it to release)."""
    import duckdb

    path = os.environ["HAIC_WAREHOUSE"]
    duckdb.connect(path).close()
    proc = subprocess.Popen([sys.executable, "-c", "import duckdb, time\n"
                             f"con = duckdb.connect({path!r}, read_only=True)\n"
                             "print('held', flush=True)\ntime.sleep(300)"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_drop_whose_run_failed_on_a_busy_warehouse_is_requested_again(env, held_warehouse):
    write_drop(env / "inbox", E1, _files(E1))
    with local_instance() as instance:
        first = _tick(instance)
        (request,) = first.run_requests
        run = _ingest_as_the_daemon_would(instance, request)
        assert not run.success  # the warehouse is held: not landed, not rejected

        # Dagster would start nothing for the spent run key: the sensor asks again under a new one
        retry = _tick(instance)
        assert _would_start(instance, retry) == [E1]
        assert retry.run_requests[0].run_key.startswith(request.run_key)

        # a second failure: the next attempt waits (nothing requested meanwhile), then comes
        assert not _ingest_as_the_daemon_would(instance, retry.run_requests[0]).success
        assert _would_start(instance, _tick(instance)) == []
        sha = request.run_key.split(":")[1]
        later, note = run_key_for(instance, E1, sha, now=time.time() + 61)
        assert later == f"{request.run_key}:retry-2" and "attempt 3" in note and PIDS[E1] not in note

        # the warehouse released, the retried run lands the drop; nothing more is asked for
        held_warehouse.kill()
        held_warehouse.wait()
        landed = _ingest_as_the_daemon_would(instance, dg.RunRequest(
            run_key=later, partition_key=E1, tags={"haic/extract_id": E1}))
        assert landed.success
        assert _tick(instance).run_requests == []


def test_a_rejected_drop_is_not_requested_again(env):
    folder = write_drop(env / "inbox", E1, _files(E1))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["patients.csv"]["rows"] = 3  # the loader refuses the drop
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with local_instance() as instance:
        (request,) = _tick(instance).run_requests
        assert not _ingest_as_the_daemon_would(instance, request).success
        assert _would_start(instance, _tick(instance)) == []
        # a corrected re-delivery (a new manifest) is a new drop version: requested
        manifest["files"]["patients.csv"]["rows"] = 1
        (folder / "manifest.json").write_text(json.dumps(manifest))
        assert _would_start(instance, _tick(instance)) == [E1]
