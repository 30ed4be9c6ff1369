"""Backups of the whole warehouse (`haic backup`, `haic restore`, the nightly `ops/backup` asset).

`ops.interventions` (who retracted or waived what, and why), the load and quality history and
every result live only in the warehouse file; the drops stay in the inbox, the audit trail does
not. A backup is a folder `<backup folder>/<name>/` holding

- `haic.duckdb`: every schema, table, view and sequence of the warehouse (raw, ops, staging,
  analysis), copied by DuckDB's `COPY FROM DATABASE` from the warehouse attached READ_ONLY. A
  read-only attach fails at once while a process writes the warehouse, and while it is attached no
  process can open it for writing, so the copy is one consistent state. The callers make sure no
  refresh is waiting to write: `haic backup` holds the lock `haic run` holds, the nightly asset
  runs in the `duckdb_writer` pool;
- `manifest.json`: per table its row count and content hash (haic_pipeline.snapshot.table_hashes,
  every column), per view a hash of its SQL, the source path, the time, the last landed drop and
  the software versions (the DuckDB version decides which versions can open the file).

The folder is written as `.<name>.tmp-<pid>` beside its final place and renamed when complete, so
a backup folder that exists is whole. `restore` verifies the backup against its manifest (every
table re-hashed), refuses to replace an existing warehouse unless forced, copies the file next to
the target and renames it into place, then republishes the analysts' copy from it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from haic_pipeline import provenance
from haic_pipeline.snapshot import table_hashes
from haic_pipeline.warehouse.faults import StorageFault, check_writable, describe, lock_message, locked

MANIFEST = "manifest.json"
DATABASE = "haic.duckdb"
#: names of the backups `prune` may remove (those named by the time they were taken)
TIMESTAMP_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")


class BackupError(RuntimeError):
    """A backup cannot be taken, verified or restored (the message says why; nothing was changed)."""


@dataclass
class Backup:
    folder: Path
    manifest: dict
    seconds: float = 0.0

    @property
    def database(self) -> Path:
        return self.folder / DATABASE


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _connect(memory_limit: str, spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that attaches the files it copies or hashes, within the
    warehouse's memory limit, spilling to `spill` (a folder of ours, removed afterwards)."""
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": str(spill)})
    con.execute("SET enable_progress_bar = false")
    return con


def _attach_read_only(con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> None:
    """ATTACH `path` READ_ONLY: refused at once (a clear message) while another process writes it."""
    try:
        con.execute(f"ATTACH {_q(path)} AS {alias} (READ_ONLY)")
    except duckdb.Error as exc:
        if locked(str(exc)):
            raise BackupError(lock_message(path, str(exc))) from None
        raise


def _contents(con: duckdb.DuckDBPyConnection, db: str) -> tuple[dict, dict]:
    """(tables, views) of attached database `db`: schema.table -> {rows, sha256}; schema.view ->
    sha256 of its SQL."""
    hashes = table_hashes(con, schemas=None, volatile={}, database=db)
    counts = _row_counts(con, db)
    tables = {}
    for name, digest in hashes.items():
        tables[name] = {"rows": counts[name], "sha256": digest}
    views = {f"{s}.{v}": hashlib.sha256(sql.encode()).hexdigest() for s, v, sql in con.execute(
        "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal "
        "ORDER BY 1, 2", [db]).fetchall()}
    return tables, views


def _unique_name(out: Path, name: str) -> str:
    candidate, n = name, 1
    while (out / candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _remove_leftovers(out: Path) -> None:
    """The temporary folders of backups whose process is gone (killed, machine restarted)."""
    for folder in out.glob(".*.tmp-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass   # alive, another user's


def take(warehouse: Path, out: Path, name: str | None = None, what: str = "backup folder",
         memory_limit: str = "2GB") -> Backup:
    """Copy the whole warehouse into `out/<name>/` (default name: the UTC time, 20261206T030000Z).
    `what` names the folder's setting in messages (e.g. "backup folder (HAIC_BACKUP_DIR)")."""
    warehouse, out = Path(warehouse), Path(out)
    t0 = time.perf_counter()
    if not warehouse.is_file():
        raise BackupError(f"no warehouse at {warehouse} (HAIC_WAREHOUSE): nothing to back up")
    check_writable(out, what)   # StorageFault naming the folder and the setting
    taken_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    if name is None:
        name = _unique_name(out, taken_at.strftime("%Y%m%dT%H%M%SZ"))
    elif "/" in name or name.startswith("."):
        raise BackupError(f"backup name {name!r}: a plain folder name is needed")
    final = out / name
    if final.exists():
        raise BackupError(f"{final} exists: a backup goes to a new folder (another name, or remove it)")
    _remove_leftovers(out)
    tmp = out / f".{name}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
        with _connect(memory_limit, tmp / ".spill") as con:
            _attach_read_only(con, warehouse, "src")
            con.execute(f"ATTACH {_q(tmp / DATABASE)} AS dst")
            con.execute("COPY FROM DATABASE src TO dst")
            con.execute("CHECKPOINT dst")
            source_rows = _row_counts(con, "src")
            tables, views = _contents(con, "dst")
            last = con.execute("SELECT max(extract_id), max(data_cutoff)::VARCHAR FROM dst.ops.drops "
                               "WHERE status = 'loaded'").fetchall()[0] if "ops.drops" in tables else (None, None)
            storage = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = 'dst'").fetchall()
            con.execute("DETACH dst")
            con.execute("DETACH src")
        shutil.rmtree(tmp / ".spill", ignore_errors=True)
        copied = {t: r["rows"] for t, r in tables.items()}
        if copied != source_rows:
            raise BackupError(f"the copy of {warehouse} does not hold the warehouse's tables and rows; nothing kept")
        manifest = {
            "kind": "haic warehouse backup",
            "source": str(warehouse),
            "taken_at": taken_at.isoformat().replace("+00:00", "Z"),
            "last_extract_id": last[0],
            "last_data_cutoff": last[1],
            "database": DATABASE,
            "bytes": (tmp / DATABASE).stat().st_size,
            "software": provenance.software(),
            "duckdb_storage_version": (storage[0][0] or {}).get("storage_version") if storage else None,
            "tables": tables,
            "views": views,
            "hashing": "per table: sha256 of its rows, each row as DuckDB writes row(...)::VARCHAR, sorted, joined "
                       "by newlines (haic_pipeline.snapshot.table_hashes, every column); per view: sha256 of its SQL",
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for f in (tmp / DATABASE, tmp / MANIFEST, tmp):
            _fsync(f)
        os.replace(tmp, final)
        _fsync(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, duckdb.Error)) and not isinstance(exc, BackupError):
            problem = describe(str(exc), tmp)
            if problem is not None:
                raise StorageFault(f"{what} {out}: {problem}") from None
        raise
    return Backup(final, manifest, time.perf_counter() - t0)


def _row_counts(con: duckdb.DuckDBPyConnection, db: str) -> dict[str, int]:
    """schema.table -> rows, for every table of attached database `db`."""
    return {f"{s}.{t}": con.execute(f'SELECT count(*) FROM "{db}".{s}."{t}"').fetchall()[0][0]
            for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
                                    "AND NOT temporary", [db]).fetchall()}


def read_manifest(folder: Path) -> dict:
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder}: no readable {MANIFEST} ({exc}); is it a backup folder?") from None
    if manifest.get("kind") != "haic warehouse backup":
        raise BackupError(f"{folder}: its {MANIFEST} is not a warehouse backup's")
    return manifest


def verify(folder: Path, database: Path | None = None, memory_limit: str = "2GB") -> list[str]:
    """What differs between the backup in `folder` (or `database`, a copy of its file) and its
    manifest: every table re-hashed and counted, every view's SQL; [] when it is whole."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    database = Path(database) if database is not None else folder / DATABASE
    if not database.is_file():
        return [f"{database}: missing"]
    spill = Path(tempfile.mkdtemp(prefix="haic-verify-"))
    try:
        with _connect(memory_limit, spill) as con:
            con.execute(f"ATTACH {_q(database)} AS bak (READ_ONLY)")
            tables, views = _contents(con, "bak")
            con.execute("DETACH bak")
    except duckdb.Error as exc:
        return [f"{database}: DuckDB cannot read it ({str(exc).splitlines()[0]})"]
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    expected = manifest["tables"]
    problems = [f"{t}: in the manifest, not in the backup" for t in sorted(set(expected) - set(tables))]
    problems += [f"{t}: in the backup, not in its manifest" for t in sorted(set(tables) - set(expected))]
    for t in sorted(set(expected) & set(tables)):
        if tables[t]["rows"] != expected[t]["rows"]:
            problems.append(f"{t}: {tables[t]['rows']} rows, the manifest says {expected[t]['rows']}")
        elif tables[t]["sha256"] != expected[t]["sha256"]:
            problems.append(f"{t}: its rows differ from the manifest's hash")
    problems += [f"view {v}: missing or changed" for v in sorted(manifest.get("views", {}))
                 if views.get(v) != manifest["views"][v]]
    return problems


def restore(folder: Path, target: Path, force: bool = False, memory_limit: str = "2GB") -> dict:
    """Put the backup in `folder` in place of the warehouse at `target`: see the module docstring.
    Returns the backup's manifest."""
    folder, target = Path(folder), Path(target)
    manifest = read_manifest(folder)
    if target.exists() and not force:
        raise BackupError(f"a warehouse exists at {target} (HAIC_WAREHOUSE): `haic restore` replaces it only with "
                          f"--force, and everything it holds since the backup ({manifest['taken_at']}) is then lost "
                          "(take `haic backup` of it first); nothing was changed")
    check_writable(target.parent, "warehouse folder (HAIC_WAREHOUSE)")
    tmp = target.with_name(f".{target.name}.restore-{os.getpid()}.tmp")
    try:
        shutil.copyfile(folder / DATABASE, tmp)
        _fsync(tmp)
        problems = verify(folder, tmp, memory_limit)   # the copy that goes into place is the one checked
        if problems:
            raise BackupError(f"backup {folder} does not verify against its manifest, so it was not restored "
                              f"(nothing was changed): {'; '.join(problems[:5])}"
                              + (f"; and {len(problems) - 5} more" if len(problems) > 5 else ""))
        if target.exists():
            _release(target)
        else:   # a write-ahead log left by a lost warehouse would be replayed into the restored one
            Path(f"{target}.wal").unlink(missing_ok=True)
        os.replace(tmp, target)
        _fsync(target.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, duckdb.Error)):
            problem = describe(str(exc), target)
            if problem is not None:
                raise StorageFault(problem) from None
        raise
    _republish(target, memory_limit)
    return manifest


def _release(target: Path) -> None:
    """Open the warehouse being replaced for writing (refused while another process holds it) and
    checkpoint it, so no write-ahead log of the old file is left to be replayed into the new one."""
    try:
        with duckdb.connect(str(target)) as con:
            con.execute("CHECKPOINT")
    except duckdb.Error as exc:
        if locked(str(exc)):
            raise BackupError(lock_message(target, str(exc))) from None
        raise
    Path(f"{target}.wal").unlink(missing_ok=True)


def _republish(target: Path, memory_limit: str) -> None:
    """The analysts' copy beside the restored warehouse, written from it (its refresh state already
    names this content, so the next refresh would not see a reason to)."""
    from haic_pipeline.warehouse.publish import publish_analytics_copy  # noqa: PLC0415

    spill = Path(tempfile.mkdtemp(prefix="haic-restore-"))
    with _connect(memory_limit, spill) as con:
        con.execute(f"ATTACH {_q(target)} AS haic (READ_ONLY)")
        con.execute("USE haic")
        state = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'haic' "
                            "AND schema_name = 'ops' AND table_name = 'refresh_state'").fetchall()[0][0]
        if state:
            publish_analytics_copy(con, target.parent / "analytics.duckdb", force=True, record=False)
        con.execute("USE memory")
        con.execute("DETACH haic")
    shutil.rmtree(spill, ignore_errors=True)


def prune(out: Path, keep: int) -> list[Path]:
    """Remove the oldest backups named by their time in `out`, keeping the newest `keep`; returns
    those removed. Folders with another name (a `haic backup --name`) are never removed."""
    backups = sorted(p for p in Path(out).iterdir() if p.is_dir() and TIMESTAMP_NAME.match(p.name)
                     and (p / MANIFEST).is_file())
    removed = backups[:-keep] if keep > 0 else []
    for p in removed:
        shutil.rmtree(p)
    return removed
