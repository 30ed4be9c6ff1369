"""A citable snapshot of the living study as of one drop: `haic snapshot --as-of EXTRACT_ID`.

A paper, a thesis or a safety board quotes the numbers as of one data cutoff. A snapshot rebuilds
them from the live warehouse's raw rows of the drops up to and including that one, into a
separate DuckDB file and report folder, never writing the live warehouse:

1. the raw rows, `ops.drops` and `ops.load_log` of the loaded drops up to EXTRACT_ID are copied
   (the live warehouse attached read-only), with the retractions and waivers as they stood then:
   the interventions recorded before the next drop landed (all of them for the newest drop);
2. staging, the data-quality gate (a blocking failure without a waiver stops the snapshot: the
   live pipeline published nothing new as of that drop either), the cohort and endpoints, every
   analysis table, the figures and the study report are built with the code that builds the live
   ones;
3. `manifest.json` records the input drops (their manifest's and each file's sha256), the
   software versions (haic_pipeline.provenance), the monitoring plan the formal looks were taken
   under, and a content hash of every output table: the
   sha256 of its rows as DuckDB writes them as text, sorted, so two snapshots of the same drop are
   the same exactly when their hashes are. `--verify DIR` re-hashes DIR's tables and rebuilds the
   snapshot from the live warehouse into a temporary folder, and compares both with the manifest.

Volatile columns are not hashed: `analysis.software.recorded_at` (when, not what). The refresh
history is the live one's up to EXTRACT_ID (a snapshot rebuilds one refresh, not the nightly
series), so it is copied rather than rebuilt. The formal looks (analysis.monitoring_looks) are
rebuilt: the state after each earlier drop is replayed from the copied raw rows
(haic_pipeline.study.replay), so a snapshot takes the looks the live pipeline took up to that drop.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from haic_pipeline import provenance
from haic_pipeline.contracts import load_contracts

MANIFEST = "manifest.json"
DATABASE = "snapshot.duckdb"
#: schemas whose tables are the snapshot's results
OUTPUT_SCHEMAS = ("staging", "analysis")
#: (schema, table) -> columns left out of the content hash (they say when, not what)
VOLATILE = {("analysis", "software"): ("recorded_at",)}


class SnapshotError(RuntimeError):
    """The snapshot cannot be taken or verified (the message says why)."""


@dataclass
class Snapshot:
    folder: Path      # the DuckDB file (DATABASE), the manifest (MANIFEST) and reports/
    manifest: dict


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def table_hashes(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...] | None = OUTPUT_SCHEMAS,
                 volatile: dict | None = None, database: str | None = None) -> dict[str, str]:
    """schema.table -> sha256 of its rows (each row as DuckDB writes it as text, sorted), for the
    tables of `schemas` (None: every schema) of `database` (default: the current one), the
    `volatile` columns left out (default: VOLATILE; `{}` hashes every column)."""
    volatile = VOLATILE if volatile is None else volatile
    db = database or con.execute("SELECT current_database()").fetchall()[0][0]
    where = "" if schemas is None else f"AND schema_name IN ({', '.join(repr(s) for s in schemas)}) "
    out = {}
    tables = con.execute(
        f"SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND NOT temporary {where}"
        "ORDER BY 1, 2", [db]).fetchall()
    for schema, table in tables:
        skip = volatile.get((schema, table), ())
        cols = [c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? "
            "AND schema_name = ? AND table_name = ? ORDER BY column_index", [db, schema, table]).fetchall()
            if c not in skip]
        row = "row(" + ", ".join(f'"{c}"' for c in cols) + ")::VARCHAR"
        source = f'(SELECT {row} AS r FROM "{db}".{schema}."{table}")'
        if con.execute(f'SELECT count(*) FROM "{db}".{schema}."{table}"').fetchall()[0][0] <= HASH_BLOCK_ROWS:
            digest = con.execute(f"SELECT sha256(coalesce(string_agg(r, chr(10) ORDER BY r), '')) FROM {source}"
                                 ).fetchall()[0][0]
        else:
            digest = _sorted_rows_sha256(con, source)
        out[f"{schema}.{table}"] = digest
    return out


#: rows above which a table's text is hashed block by block (see _sorted_rows_sha256)
HASH_BLOCK_ROWS = 250_000


def _sorted_rows_sha256(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """The same digest as `sha256(string_agg(r, chr(10) ORDER BY r))` over `source`, in bounded
    memory: the rows sorted once into a temporary table (DuckDB spills the sort to disk within its
    memory limit), then fed to sha256 HASH_BLOCK_ROWS at a time in that order. One string of a
    10-million-row table's text would need gigabytes."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _haic_hash_rows AS SELECT r FROM {source} ORDER BY r")
    try:
        n = con.execute("SELECT count(*) FROM _haic_hash_rows").fetchall()[0][0]
        h = hashlib.sha256()
        for start in range(0, n, HASH_BLOCK_ROWS):
            (chunk,) = con.execute("SELECT string_agg(r, chr(10) ORDER BY rowid) FROM _haic_hash_rows "
                                   "WHERE rowid >= ? AND rowid < ?", [start, start + HASH_BLOCK_ROWS]).fetchall()[0]
            h.update((chunk if start == 0 else "\n" + chunk).encode())
        return h.hexdigest()
    finally:
        con.execute("DROP TABLE IF EXISTS _haic_hash_rows")


def _copy_inputs(con: duckdb.DuckDBPyConnection, live_path: Path, extract_id: str) -> list[dict]:
    from haic_pipeline.warehouse.schema import ensure_schema  # noqa: PLC0415

    contracts = load_contracts()
    ensure_schema(con, contracts)
    con.execute(f"ATTACH {_q(live_path)} AS live (READ_ONLY)")
    try:
        drops, until = _drops_as_of(con, extract_id)
        params = [drops]
        for domain in contracts:
            con.execute(f"INSERT INTO raw.{domain} BY NAME SELECT * FROM live.raw.{domain} "
                        "WHERE list_contains(?, _extract_id)", params)
        con.execute("INSERT INTO ops.drops SELECT * FROM live.ops.drops WHERE list_contains(?, extract_id) "
                    "AND status IN ('loaded', 'retracted')", params)
        con.execute("UPDATE ops.drops SET status = 'loaded'")
        con.execute("INSERT INTO ops.load_log SELECT * FROM live.ops.load_log WHERE list_contains(?, extract_id) "
                    "AND status = 'loaded'", params)
        has_interventions = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'live' AND schema_name = 'ops' "
            "AND table_name = 'interventions'").fetchall()[0][0]
        if has_interventions:
            con.execute("INSERT INTO ops.interventions SELECT * FROM live.ops.interventions "
                        "WHERE list_contains(?, extract_id) AND (? IS NULL OR recorded_at < ?)",
                        [drops, until, until])
        history = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'live' AND schema_name = 'analysis' "
            "AND table_name = 'refresh_history'").fetchall()[0][0]
        if history:
            con.execute("CREATE SCHEMA IF NOT EXISTS analysis")
            con.execute("CREATE TABLE analysis.refresh_history AS SELECT * FROM live.analysis.refresh_history "
                        "WHERE extract_id <= ?", [extract_id])
        inputs = [{"extract_id": e, "manifest_sha256": m, "data_cutoff": str(c) if c else None}
                  for e, m, c in con.execute("SELECT extract_id, manifest_sha256, data_cutoff FROM ops.drops "
                                             "ORDER BY extract_id").fetchall()]
        files = con.execute("SELECT extract_id, file, sha256, rows FROM ops.load_log ORDER BY 1, 2").fetchall()
    finally:
        con.execute("DETACH live")
    # retractions as they stood: each drop's last retract / restore before `until`
    retracted = {eid for eid, action in con.execute(
        "SELECT extract_id, arg_max(action, recorded_at) FROM ops.interventions "
        "WHERE action IN ('retract', 'restore') GROUP BY 1").fetchall() if action == "retract"}
    con.execute("UPDATE ops.drops SET status = 'retracted' WHERE list_contains(?, extract_id)", [sorted(retracted)])
    by_drop: dict[str, dict] = {}
    for eid, file, sha, rows in files:
        by_drop.setdefault(eid, {})[file] = {"sha256": sha, "rows": rows}
    for item in inputs:
        item["files"] = by_drop.get(item["extract_id"], {})
        item["retracted"] = item["extract_id"] in retracted
    return inputs


def _drops_as_of(con: duckdb.DuckDBPyConnection, extract_id: str) -> tuple[list[str], object]:
    """The drops a snapshot as of `extract_id` reads from the attached live warehouse (`live`):
    loaded or retracted now, up to it; and the time until which interventions count (the next
    drop's landing; None: no later drop)."""
    statuses = {s for (s,) in con.execute("SELECT status FROM live.ops.drops WHERE extract_id = ?",
                                          [extract_id]).fetchall()}
    if not statuses or statuses == {"rejected"}:
        raise SnapshotError(f"drop {extract_id} was never loaded into this warehouse: a snapshot can be taken as of "
                            "a loaded drop only (`haic status` lists them)")
    if "loaded" not in statuses:
        raise SnapshotError(f"drop {extract_id} is retracted: its rows count in no result; take the snapshot as of "
                            "another drop, or restore it first (haic drop restore)")
    drops = [e for (e,) in con.execute(
        "SELECT DISTINCT extract_id FROM live.ops.drops WHERE status IN ('loaded', 'retracted') "
        "AND extract_id <= ? ORDER BY 1", [extract_id]).fetchall()]
    until = con.execute("SELECT min(attempted_at) FROM live.ops.drops WHERE status IN ('loaded', 'retracted') "
                        "AND extract_id > ?", [extract_id]).fetchall()[0][0]
    return drops, until


def _build(con: duckdb.DuckDBPyConnection, folder: Path, extract_id: str) -> dict:
    """Staging, the gate, the study, the analysis, figures and report in the snapshot database."""
    from haic_pipeline.analysis import build_analysis  # noqa: PLC0415
    from haic_pipeline.quality.gate import run_all  # noqa: PLC0415
    from haic_pipeline.study import build_study  # noqa: PLC0415
    from haic_pipeline.warehouse.staging import build_staging  # noqa: PLC0415

    for domain in load_contracts():
        build_staging(con, domain)
    refresh = f"snapshot-{extract_id}"
    outcomes = run_all(con, reports_dir=folder / "reports" / "quality", refresh=refresh)
    blocked = [f"{o.check.name} ({', '.join(o.failing_extract_ids) or 'staging'})"
               for o in outcomes if o.check.blocking and not o.passed]
    if blocked:
        raise SnapshotError(f"as of drop {extract_id} a blocking data-quality check fails without a waiver "
                            f"({'; '.join(blocked)}): the live pipeline published no results as of that drop "
                            "either. The gate's report is in " + str(folder / "reports" / "quality"))
    build_study(con)
    build_analysis(con, folder / "reports", refresh=refresh)
    return {o.check.name: "passed" for o in outcomes}


def _plan_record(plan) -> dict:
    """The monitoring plan the snapshot's formal looks were taken under (study_spec §6.1)."""
    from dataclasses import asdict  # noqa: PLC0415

    record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(plan).items() if k != "source"}
    record["file_sha256"] = hashlib.sha256(Path(plan.source).read_bytes()).hexdigest()
    return record


def take(live_path: Path, extract_id: str, out: Path) -> Snapshot:
    """Rebuild the study as of `extract_id` into `out` (a new or empty folder): see the module
    docstring. The live warehouse is only read."""
    from haic_pipeline.study.plan import load_plan  # noqa: PLC0415

    live_path, out = Path(live_path), Path(out)
    plan = load_plan()   # the formal looks depend on it: checked before anything is written
    if not live_path.exists():
        raise SnapshotError(f"no warehouse at {live_path}: run `make run` first")
    if out.exists() and any(out.iterdir()):
        raise SnapshotError(f"{out} is not empty: a snapshot goes to a new folder (--out DIR)")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with duckdb.connect(str(out / DATABASE)) as con:
            con.execute("SET enable_progress_bar = false")
            inputs = _copy_inputs(con, live_path, extract_id)
            checks = _build(con, out, extract_id)
            hashes = table_hashes(con)
            data_cutoff = con.execute("SELECT any_value(data_cutoff)::VARCHAR FROM staging.cohort").fetchall()[0][0]
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    manifest = {
        "as_of": extract_id,
        "data_cutoff": data_cutoff,
        "inputs": inputs,
        "software": provenance.software(),
        "environment_lock_sha256": provenance.lock_sha256(),
        "checks": checks,
        "monitoring_plan": _plan_record(plan),
        "tables": hashes,
        "hashing": "sha256 of each table's rows, each row as DuckDB writes row(...)::VARCHAR, sorted, "
                   "joined by newlines; volatile columns left out: "
                   + ", ".join(f"{s}.{t}.{c}" for (s, t), cols in VOLATILE.items() for c in cols),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Snapshot(out, manifest)


def verify(live_path: Path, folder: Path) -> tuple[list[str], list[str]]:
    """(problems, notes) of the snapshot in `folder` against its manifest and against the same
    snapshot rebuilt now from the live warehouse: a problem is a table or an input that differs
    (no problem: the snapshot is what it says); a note is a software version that differs (the
    tables are compared all the same: equal tables under other versions are worth knowing)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{folder}: no readable {MANIFEST} ({exc})") from None
    if not (folder / DATABASE).is_file():
        raise SnapshotError(f"{folder}: no {DATABASE}")
    with duckdb.connect(str(folder / DATABASE), read_only=True) as con:
        stored = table_hashes(con)
    problems = [f"{t}: the snapshot's table differs from its manifest" for t in sorted(manifest["tables"])
                if stored.get(t) != manifest["tables"][t]]
    problems += [f"{t}: in the snapshot, not in its manifest" for t in sorted(set(stored) - set(manifest["tables"]))]
    with tempfile.TemporaryDirectory(prefix="haic-verify-") as tmp:
        again = take(live_path, manifest["as_of"], Path(tmp) / "snapshot").manifest
    if again["inputs"] != manifest["inputs"]:
        problems.append(f"the live warehouse's drops up to {manifest['as_of']} are not the snapshot's inputs")
    problems += [f"{t}: rebuilt now from the live warehouse, the table differs" for t in sorted(manifest["tables"])
                 if again["tables"].get(t) != manifest["tables"][t]]
    notes = [f"{k}: {manifest['software'].get(k)} in the snapshot, {v} now" for k, v in again["software"].items()
             if manifest["software"].get(k) != v]
    old_plan, new_plan = manifest.get("monitoring_plan"), again["monitoring_plan"]
    if old_plan is not None and old_plan != new_plan:
        notes += [f"monitoring plan {k}: {old_plan.get(k)} in the snapshot, {v} now" for k, v in new_plan.items()
                  if old_plan.get(k) != v and k != "file_sha256"] or ["monitoring plan file: another file now"]
    return problems, notes
