"""The inbox sensor: one run of the ingest job per new complete drop.

It never opens the warehouse (DuckDB allows one writer, and a run may be writing): it lists the
inbox, and keys each run request by extract_id + manifest sha256, so Dagster starts exactly one
run per delivered drop version. A re-delivered identical drop has the same run key and starts
nothing; the same extract_id with a different manifest starts a run that the loader refuses with
a clear message. Folders without manifest.json are still being written and are left alone.

No drop is skipped. The sensor keeps no cursor: every tick lists the whole inbox again, so a
failed tick (the inbox or Dagster's storage unreadable, the partition request refused) leaves
nothing behind. A drop folder that cannot be read (manifest.json unreadable, a directory, a FIFO)
fails the tick naming the folder, and no drop is requested until it is readable, because a later
drop landing first would put it out of order. A run key is spent once a run used it, so a drop
version whose ingest run failed without rejecting it (warehouse busy or read-only, run killed)
is requested again under a new key, after a wait doubling with each attempt; a rejected drop is
not (the same content would be refused again).
"""

import hashlib
import os
import stat
import time
from pathlib import Path

import dagster as dg

from haic_pipeline.defs.executor import EXECUTOR, RUN_CONFIG
from haic_pipeline.defs.ingest.assets import DROPS, RAW_KEYS
from haic_pipeline.defs.resources import HaicConfig
from haic_pipeline.ingest import Drop
from haic_pipeline.ingest.drops import EXTRACT_ID_PATTERN, MANIFEST
from haic_pipeline.settings import sensor_interval_seconds

#: Wait after the second failed attempt at a drop version, doubled for each further one up to
#: RETRY_MAX_SECONDS (the first retry is at the next tick): a warehouse busy for an hour costs a
#: handful of failed runs, not one per tick.
RETRY_SECONDS = 60
RETRY_MAX_SECONDS = 30 * 60
RUN_KEY = "dagster/run_key"
_FINISHED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


class InboxUnreadable(RuntimeError):
    """The inbox, or a drop folder in it, cannot be read: the tick fails and requests nothing."""


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def scan_inbox(inbox: Path) -> tuple[list[tuple[Drop, str]], list[str]]:
    """(drop, manifest sha256) for every complete drop, oldest extract_id first, and the names of
    complete folders that are not extract_ids. Hidden folders (the loader's scratch copies) and
    folders without manifest.json are left alone, as `ingest.find_complete_drops` does. Raises
    InboxUnreadable naming every folder that cannot be read; a manifest that is not a regular
    file is never opened (a FIFO would block the tick)."""
    inbox = Path(inbox)
    if not os.path.lexists(inbox):
        return [], []
    try:
        folders = sorted(p for p in inbox.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise InboxUnreadable(f"inbox {inbox} cannot be read ({exc.strerror or exc}): no drop requested; "
                              "the sensor tries again at its next tick") from None
    drops, ignored, faults = [], [], []
    for folder in folders:
        manifest = folder / MANIFEST
        if not EXTRACT_ID_PATTERN.match(folder.name):
            if os.path.isdir(folder) and os.path.lexists(manifest):
                ignored.append(folder.name)
            continue
        try:
            if not folder.is_dir():
                continue
            try:
                manifest.lstat()
            except FileNotFoundError:
                continue  # still being written
            mode = manifest.stat().st_mode  # through a symlink: a dangling or looping one raises
            if not stat.S_ISREG(mode):
                faults.append(f"{folder}: {MANIFEST} is {_file_kind(mode)}")
                continue
            sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
        except OSError as exc:
            faults.append(f"{folder}: {MANIFEST} cannot be read ({exc.strerror or exc})")
            continue
        drops.append((Drop(path=folder, extract_id=folder.name), sha))
    if faults:
        raise InboxUnreadable(
            f"inbox {inbox}: {len(faults)} drop folder(s) cannot be read, so no drop is requested (none may "
            f"land ahead of them); the sensor tries again at its next tick: {'; '.join(faults)}")
    return drops, ignored


def _already_landed(instance: dg.DagsterInstance, extract_id: str, manifest_sha: str) -> bool:
    """True when raw/patients has a materialization of this drop version (same manifest)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_KEYS["patients"], asset_partitions=[extract_id]), limit=1
    ).records
    if not records:
        return False
    meta = records[0].asset_materialization.metadata
    return "manifest_sha256" in meta and meta["manifest_sha256"].value == manifest_sha


def _rejected(instance: dg.DagsterInstance, run_id: str) -> bool:
    """True when the run's step failed on the loader's refusal of the drop: the ingest asset's
    Failure then carries the refusal's `reason` (defs/ingest/assets.py)."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data if entry.dagster_event else None
        if data is not None and data.user_failure_data is not None and "reason" in data.user_failure_data.metadata:
            return True
    return False


def run_key_for(instance: dg.DagsterInstance, extract_id: str, manifest_sha: str,
                now: float | None = None) -> tuple[str | None, str | None]:
    """(run key to request or None, a line for the tick's log or None) for a drop version not
    landed. Its first key is `extract_id:sha`; after an ingest run of it failed or was canceled
    without rejecting the drop, `extract_id:sha:retry-N` once the wait is over."""
    base = f"{extract_id}:{manifest_sha}"
    records = [r for r in instance.get_run_records(
        dg.RunsFilter(job_name="ingest_drop", tags={"haic/extract_id": extract_id}), limit=100)
        if r.dagster_run.tags.get(RUN_KEY, "") == base or r.dagster_run.tags.get(RUN_KEY, "").startswith(f"{base}:retry-")]
    if not records:
        return base, None
    last = records[0].dagster_run  # newest first
    if last.status not in _FINISHED:
        return last.tags[RUN_KEY], None  # queued or running (or created, not launched: Dagster launches it)
    if _rejected(instance, last.run_id):
        return None, None  # the same content would be refused again; ops.load_log has the reason
    attempts = len(records)
    wait = 0 if attempts == 1 else min(RETRY_SECONDS * 2 ** (attempts - 2), RETRY_MAX_SECONDS)
    ended = records[0].end_time or records[0].update_timestamp.timestamp()
    left = ended + wait - (time.time() if now is None else now)
    if left > 0:
        return None, (f"drop {extract_id}: ingest run {last.run_id[:8]} ended {last.status.value} without "
                      f"rejecting the drop; requested again in {left:.0f} s (attempt {attempts + 1})")
    return f"{base}:retry-{attempts}", (f"drop {extract_id}: ingest run {last.run_id[:8]} ended "
                                        f"{last.status.value} without rejecting the drop; requested again "
                                        f"(attempt {attempts + 1})")


ingest_drop_job = dg.define_asset_job(
    name="ingest_drop",
    selection=dg.AssetSelection.assets(*RAW_KEYS.values()),
    partitions_def=DROPS,
    description="Land one drop (partition = extract_id) in raw.*",
    executor_def=EXECUTOR,
    config=RUN_CONFIG,
)


@dg.sensor(
    job=ingest_drop_job,
    minimum_interval_seconds=sensor_interval_seconds(),  # HAIC_SENSOR_INTERVAL_SECONDS, default 30
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches HAIC_INBOX; starts one ingest run per new complete drop (folder with manifest.json).",
)
def inbox_sensor(context: dg.SensorEvaluationContext, haic: HaicConfig):
    settings = haic.settings()
    drops, skipped = scan_inbox(settings.inbox)
    known = set(context.instance.get_dynamic_partitions(DROPS.name))
    new_partitions, requests = [], []
    for drop, manifest_sha in drops:
        if drop.extract_id not in known:
            new_partitions.append(drop.extract_id)
            run_key, note = f"{drop.extract_id}:{manifest_sha}", None
        elif _already_landed(context.instance, drop.extract_id, manifest_sha):
            continue  # landed by an earlier run (e.g. `make run`): nothing to do
        else:
            run_key, note = run_key_for(context.instance, drop.extract_id, manifest_sha)
        if note:
            context.log.warning(note)
        if run_key is None:
            continue
        requests.append(
            dg.RunRequest(
                run_key=run_key,
                partition_key=drop.extract_id,
                tags={"haic/extract_id": drop.extract_id},
            )
        )
    if skipped:
        context.log.warning("inbox folders whose name is not an extract_id, ignored: %s", ", ".join(skipped))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[DROPS.build_add_request(new_partitions)] if new_partitions else [],
    )
