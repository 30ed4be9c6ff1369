"""Find, verify and land EMR extract drops (extract_spec "Delivery", "Delta semantics").

A drop is `<inbox>/<extract_id>/` with CSV files and `manifest.json`, written last. Landing a
drop is all or nothing:

1. the manifest is read and checked (extract_id pattern and folder name, encoding, cutoff);
2. every listed file's sha256 is checked against the manifest, before anything is written;
3. an extract_id already loaded is a `duplicate` if its file hashes are the same (nothing
   changes) and is refused otherwise (drops are immutable);
4. every file is parsed with explicit column types (all text: the raw landing keeps what was
   delivered) into a temporary table of this connection (patient_name is never read) and its
   data-row count is checked against the manifest; the warehouse is not touched yet;
5. in ONE DuckDB transaction, patient_id is replaced by patient_key and the rows are inserted
   into raw.<domain> with `_extract_id`, `_row_number`, `_loaded_at`; then ops.load_log and
   ops.drops are written and the transaction commits.

Any failure rolls the whole transaction back: a crash half-way (even SIGKILL) leaves the
warehouse as it was, because DuckDB discards an uncommitted transaction on restart. A rejected
drop is recorded in ops.load_log / ops.drops with the reason, stays in the inbox untouched, and
gets a `_REJECTED.txt` note beside its manifest when the inbox is writable.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from haic_pipeline.contracts import Contract, contract_by_file
from haic_pipeline.ingest.pseudonym import PATIENT_ID_PATTERN, hmac_pads, patient_key_sql
from haic_pipeline.warehouse.interventions import retracted_drops
from haic_pipeline.warehouse.schema import ensure_schema
from haic_pipeline.warehouse.faults import describe as describe_storage_fault
from haic_pipeline.warehouse.transaction import transaction

log = logging.getLogger(__name__)

EXTRACT_ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}Z?$")
MANIFEST = "manifest.json"
REJECTED_NOTE = "_REJECTED.txt"
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8", "cp949": "cp949", "ms949": "cp949"}


class DropRejected(Exception):
    """The drop cannot be loaded; nothing of it landed. `file` and `row` locate the problem."""

    def __init__(self, extract_id: str, reason: str, file: str | None = None, row: int | None = None):
        self.extract_id = extract_id
        self.file = file
        self.row = row
        self.reason = reason
        where = f"{file}" if file else "drop"
        if row is not None:
            where += f", data row {row}"
        super().__init__(f"drop {extract_id} rejected ({where}): {reason}")


class DropRefused(DropRejected):
    """An extract_id that was already loaded came again with different content."""


@dataclass(frozen=True)
class Drop:
    path: Path
    extract_id: str

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_path.read_bytes()).hexdigest()


@dataclass
class FileResult:
    file: str
    domain: str | None
    rows: int
    sha256: str


@dataclass
class LoadResult:
    extract_id: str
    status: str  # loaded | duplicate
    data_cutoff: dt.date
    files: list[FileResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def rows_by_domain(self) -> dict[str, int]:
        return {f.domain: f.rows for f in self.files if f.domain}


def find_complete_drops(inbox: Path) -> list[Drop]:
    """Every folder of the inbox that holds a manifest.json, oldest extract_id first.

    A folder without a manifest is still being written by the data warehouse: it is left alone.
    """
    inbox = Path(inbox)
    if not inbox.is_dir():
        return []
    drops = [
        Drop(path=p, extract_id=p.name)
        for p in inbox.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
    ]
    return sorted(drops, key=lambda d: d.extract_id)


@dataclass(frozen=True)
class Manifest:
    extract_id: str
    extracted_at: dt.datetime
    data_cutoff: dt.date
    source_system: str
    encoding: str
    files: dict[str, dict]
    sha256: str


def read_manifest(drop: Drop) -> Manifest:
    """Parse and check manifest.json; raises DropRejected naming the rule that failed."""
    eid = drop.extract_id
    raw = drop.manifest_path.read_bytes()
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DropRejected(eid, f"manifest is not valid JSON: {exc}", file=MANIFEST) from exc
    if not isinstance(doc, dict):
        raise DropRejected(eid, "manifest must be a JSON object", file=MANIFEST)
    for key in ("extract_id", "data_cutoff", "encoding", "files"):
        if key not in doc:
            raise DropRejected(eid, f"manifest lacks the required field '{key}'", file=MANIFEST)
    mid = str(doc["extract_id"])
    if not EXTRACT_ID_PATTERN.match(mid):
        raise DropRejected(eid, f"extract_id {mid!r} does not match {EXTRACT_ID_PATTERN.pattern}", file=MANIFEST)
    if mid != drop.extract_id:
        raise DropRejected(eid, f"manifest extract_id {mid!r} differs from the folder name {drop.extract_id!r}", file=MANIFEST)
    encoding = ENCODINGS.get(str(doc["encoding"]).strip().lower())
    if encoding is None:
        raise DropRejected(eid, f"encoding {doc['encoding']!r} is not one of utf-8, cp949", file=MANIFEST)
    try:
        cutoff = dt.date.fromisoformat(str(doc["data_cutoff"]))
    except ValueError as exc:
        raise DropRejected(eid, f"data_cutoff {doc['data_cutoff']!r} is not a YYYY-MM-DD date", file=MANIFEST) from exc
    extracted_raw = doc.get("extracted_at")
    try:
        if extracted_raw:
            extracted = dt.datetime.fromisoformat(str(extracted_raw).replace("Z", "+00:00"))
            extracted = extracted.replace(tzinfo=None)
        else:
            extracted = dt.datetime.strptime(mid.rstrip("Z"), "%Y%m%dT%H%M%S")
    except ValueError as exc:
        raise DropRejected(eid, f"extracted_at {extracted_raw!r} is not an ISO date-time", file=MANIFEST) from exc
    files = doc["files"]
    if not isinstance(files, dict):
        raise DropRejected(eid, "manifest 'files' must be an object of file -> {rows, sha256}", file=MANIFEST)
    for name, meta in files.items():
        if not isinstance(meta, dict) or "rows" not in meta or "sha256" not in meta:
            raise DropRejected(eid, f"manifest entry for {name} needs 'rows' and 'sha256'", file=MANIFEST)
        if not isinstance(meta["rows"], int) or meta["rows"] < 0:
            raise DropRejected(eid, f"manifest rows for {name} must be a non-negative integer", file=MANIFEST)
    return Manifest(
        extract_id=mid,
        extracted_at=extracted,
        data_cutoff=cutoff,
        source_system=str(doc.get("source_system", "")),
        encoding=encoding,
        files=files,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _sha256_and_decode_check(path: Path, encoding: str) -> tuple[str, tuple[int, str] | None]:
    """One pass over the file: its sha256, and the first place (data row, reason) where it does not
    decode as the manifest's encoding (DuckDB would not notice bad bytes in columns it skips)."""
    h = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    newlines, error = 0, None
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 << 20), b""):
            h.update(block)
            if error is None:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    row = newlines + block[: max(exc.start, 0)].count(b"\n")
                    error = (row, f"bytes not valid {encoding} ({exc.reason})")
                newlines += block.count(b"\n")
    if error is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            error = (newlines, f"file ends inside a {encoding} character ({exc.reason})")
    return h.hexdigest(), error


def _read_header(path: Path, encoding: str, eid: str, name: str) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        text = first.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        raise DropRejected(eid, f"header is not valid {encoding}: {exc}", file=name, row=0) from exc
    header = next(csv.reader(io.StringIO(text)), [])
    cols = [h.strip().lower() for h in header]
    if not cols or cols == [""]:
        raise DropRejected(eid, "file has no header line", file=name, row=0)
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        raise DropRejected(eid, f"header repeats column(s) {', '.join(dupes)}", file=name, row=0)
    return cols


TRANSCODE_BLOCK = 8 << 20  # bytes read at a time when transcoding to UTF-8


def _transcode_to_utf8(src: Path, dst: Path, encoding: str, eid: str, name: str) -> None:
    """Stream a cp949 file into UTF-8, naming the data row of the first undecodable byte.

    Decoded in TRANSCODE_BLOCK (8 MB) blocks of whole lines (line by line took seconds for a
    100 MB file): a block is cut after its last newline, which is safe because no byte of a cp949
    multi-byte character is 0x0A."""
    lines_before = 0
    carry = b""
    with open(src, "rb") as fin, open(dst, "w", encoding="utf-8", newline="") as fout:
        while True:
            block = fin.read(TRANSCODE_BLOCK)
            data = carry + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            whole, carry = data[:cut], data[cut:]
            try:
                fout.write(whole.decode(encoding, errors="strict"))
            except UnicodeDecodeError as exc:
                row = lines_before + whole.count(b"\n", 0, exc.start)
                raise DropRejected(eid, f"bytes not valid {encoding}: {exc.reason}", file=name, row=row) from exc
            lines_before += whole.count(b"\n")
            if not block:
                return


def _read_csv_sql(path: Path, header: list[str]) -> str:
    cols = ", ".join(f"'{c}': 'VARCHAR'" for c in header)
    p = str(path).replace("'", "''")
    return (
        f"read_csv('{p}', header = true, auto_detect = false, columns = {{{cols}}}, "
        "delim = ',', quote = '\"', escape = '\"', strict_mode = true, null_padding = false, "
        "encoding = 'utf-8')"
    )


def _duckdb_error_row(message: str) -> int | None:
    m = re.search(r"[Ll]ine:?\s*(\d+)", message)
    return int(m.group(1)) - 1 if m else None


def _record_rejection(con, manifest_files: dict, eid: str, manifest_sha: str | None, exc: DropRejected,
                      manifest: Manifest | None, now: dt.datetime) -> None:
    files = list(manifest_files) or [exc.file or MANIFEST]
    with transaction(con):
        for name in files:
            meta = manifest_files.get(name, {}) if isinstance(manifest_files, dict) else {}
            reason = exc.reason if (exc.file in (None, name, MANIFEST)) else f"drop rejected because of {exc.file}"
            if exc.file == name and exc.row is not None:
                reason = f"data row {exc.row}: {exc.reason}"
            con.execute(
                "INSERT INTO ops.load_log VALUES (?, ?, ?, ?, 'rejected', ?, ?)",
                [eid, name, meta.get("rows"), meta.get("sha256"), reason, now],
            )
        if manifest_sha:
            con.execute("DELETE FROM ops.drops WHERE extract_id = ? AND manifest_sha256 = ? AND status = 'rejected'",
                        [eid, manifest_sha])
            con.execute(
                # OR IGNORE: the same version of a retracted drop keeps its row (load_log has the refusal)
                "INSERT OR IGNORE INTO ops.drops VALUES (?, ?, 'rejected', ?, ?, ?, ?, ?, ?)",
                [eid, manifest_sha, str(exc), manifest.extracted_at if manifest else None,
                 manifest.data_cutoff if manifest else None, manifest.source_system if manifest else None,
                 manifest.encoding if manifest else None, now],
            )


def _write_rejected_note(drop: Drop, exc: DropRejected) -> None:
    try:
        (drop.path / REJECTED_NOTE).write_text(
            f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}\n{exc}\n", encoding="utf-8"
        )
    except OSError:
        log.warning("drop %s: inbox not writable, rejection recorded in ops.load_log only", drop.extract_id)


def _scratch_dir(drop: Drop) -> Path:
    """A private (0700) folder for a drop's UTF-8 copies, which hold what the drop holds,
    identifiers included: a hidden folder in the inbox beside the drop (the inbox already holds
    those files; find_complete_drops skips hidden folders), so nothing leaves the project's
    folders; the system temp folder only when the inbox is read-only. What a killed landing of
    the same drop left there is removed first."""
    prefix = f".haic-{drop.extract_id}-"
    for leftover in drop.path.parent.glob(f"{prefix}*"):   # from a landing of this drop that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=drop.path.parent))
    except OSError:
        log.warning("drop %s: inbox not writable, transcoding in the system temp folder", drop.extract_id)
        return Path(tempfile.mkdtemp(prefix=prefix))


def load_drop(
    con: duckdb.DuckDBPyConnection,
    drop: Drop,
    contracts: dict[str, Contract],
    pseudonym_key: str,
    now: dt.datetime | None = None,
) -> LoadResult:
    """Land one drop in raw.* atomically (see module docstring). Raises DropRejected."""
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ensure_schema(con, contracts)
    eid = drop.extract_id
    manifest: Manifest | None = None
    manifest_files: dict = {}
    try:
        manifest = read_manifest(drop)
        manifest_files = manifest.files
        result = _verify_and_load(con, drop, manifest, contracts, pseudonym_key, now)
    except DropRejected as exc:  # the drop's own transaction, if any, is already rolled back
        sha = manifest.sha256 if manifest else drop.manifest_sha256()
        _record_rejection(con, manifest_files, eid, sha, exc, manifest, now)
        if not isinstance(exc, DropRefused):
            _write_rejected_note(drop, exc)
        log.error("%s", exc)
        raise
    note = drop.path / REJECTED_NOTE
    if result.status == "loaded" and note.exists():
        try:
            note.unlink()
        except OSError:
            pass
    return result


def _verify_and_load(con, drop: Drop, manifest: Manifest, contracts, pseudonym_key, now) -> LoadResult:
    """Verify the drop, then land it in one transaction: its files against the manifest, the
    extract_id against what was landed or retracted, the headers against the contracts, every file
    parsed and counted; nothing is written to the warehouse before all of these pass."""
    by_file = contract_by_file(contracts)
    result = LoadResult(extract_id=drop.extract_id, status="loaded", data_cutoff=manifest.data_cutoff)
    _verify_files(drop, manifest, by_file, result)
    if _refuse_or_repeat(con, drop.extract_id, manifest, by_file, result, now):
        return result
    headers = _verify_headers(drop, manifest, by_file, result)
    workdir = None  # a scratch folder, only for a drop to transcode to UTF-8
    try:
        parsed: dict[str, ParsedFile] = {}
        for name, header in headers.items():
            path = drop.path / name
            if manifest.encoding != "utf-8":
                workdir = workdir or _scratch_dir(drop)
                path = workdir / name
                _transcode_to_utf8(drop.path / name, path, manifest.encoding, drop.extract_id, name)
            parsed[name] = _parse_counted(con, by_file[name], path, header, drop.extract_id, name, manifest)
        _land_drop(con, parsed, by_file, manifest, contracts, pseudonym_key, result, now)
    finally:
        for name in headers:  # parsed or not: a failed parse may have left its table
            try:
                con.execute(f"DROP TABLE IF EXISTS {_landing_table(by_file[name])}")
            except duckdb.Error:
                pass  # e.g. the connection failed on a full disk: the original error counts
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    for w in result.warnings:
        log.warning("drop %s: %s", drop.extract_id, w)
    return result


def _verify_files(drop: Drop, manifest: Manifest, by_file, result: LoadResult) -> None:
    """Every listed file exists, has the manifest's sha256 and decodes in its encoding (before
    anything is written); files the spec or the manifest does not name are ignored, with a warning."""
    eid = drop.extract_id
    for name, meta in manifest.files.items():
        path = drop.path / name
        if not path.is_file():
            raise DropRejected(eid, "listed in the manifest but missing from the drop", file=name)
        digest, decode_error = _sha256_and_decode_check(path, manifest.encoding)
        if digest.lower() != str(meta["sha256"]).lower():
            raise DropRejected(
                eid, f"sha256 {digest[:12]}… differs from the manifest's {str(meta['sha256'])[:12]}… "
                "(file truncated or altered in transfer)", file=name)
        if decode_error is not None and name in by_file:
            raise DropRejected(eid, f"{decode_error[1]}; the manifest says encoding {manifest.encoding}",
                               file=name, row=decode_error[0])
        if name not in by_file:
            result.warnings.append(f"{name}: not an extract domain of the spec, ignored")
    for path in sorted(drop.path.glob("*.csv")):
        if path.name not in manifest.files:
            result.warnings.append(f"{path.name}: present but not in the manifest, ignored")


def _refuse_or_repeat(con, eid: str, manifest: Manifest, by_file, result: LoadResult, now) -> bool:
    """A retracted extract_id is refused until restored (whatever its content). One loaded before:
    identical content is a no-op, recorded as a duplicate (returns True); different content is
    refused. Returns False for an extract_id not seen before."""
    retracted = next((r for r in retracted_drops(con) if r["extract_id"] == eid), None)
    if retracted:
        raise DropRefused(
            eid,
            f"extract_id {eid} was retracted on {retracted['retracted_at']:%Y-%m-%d %H:%M} UTC by "
            f"{retracted['retracted_by']} ({retracted['reason']}); a re-delivery is "
            f"refused while it stands. Undo the retraction first: haic drop restore {eid} --reason \"...\"",
            file=MANIFEST,
        )
    loaded = con.execute(
        "SELECT file, sha256, loaded_at FROM ops.load_log WHERE extract_id = ? AND status = 'loaded'", [eid]
    ).fetchall()
    if not loaded:
        return False
    before = {f: s for f, s, _ in loaded}
    now_files = {f: str(m["sha256"]).lower() for f, m in manifest.files.items()}
    if before != now_files:
        changed = sorted(set(before.items()) ^ set(now_files.items()))
        raise DropRefused(
            eid,
            f"extract_id {eid} was already loaded on {loaded[0][2]:%Y-%m-%d %H:%M} with different content "
            f"({', '.join(sorted({c[0] for c in changed}))} differ). Drops are immutable: deliver the "
            "change as a new drop with a later extract_id.",
            file=MANIFEST,
        )
    with transaction(con):
        for name, meta in manifest.files.items():
            con.execute(
                "INSERT INTO ops.load_log VALUES (?, ?, ?, ?, 'duplicate', ?, ?)",
                [eid, name, meta["rows"], now_files[name],
                 f"already loaded on {loaded[0][2]:%Y-%m-%d %H:%M}; re-delivery changes nothing", now],
            )
    result.status = "duplicate"
    result.files = [FileResult(n, by_file[n].domain if n in by_file else None, m["rows"], now_files[n])
                    for n, m in manifest.files.items()]
    return True


def _verify_headers(drop: Drop, manifest: Manifest, by_file, result: LoadResult) -> dict[str, list[str]]:
    """The header of every domain file: every contract column present (extra columns ignored,
    with a warning)."""
    headers = {}
    for name in manifest.files:
        if name not in by_file:
            continue
        contract = by_file[name]
        header = _read_header(drop.path / name, manifest.encoding, drop.extract_id, name)
        missing = [c for c in contract.required_in_file if c not in header]
        if missing:
            raise DropRejected(drop.extract_id, f"required column(s) {', '.join(missing)} missing from the header",
                               file=name, row=0)
        extra = [c for c in header if c not in contract.column_names]
        if extra:
            result.warnings.append(f"{name}: column(s) {', '.join(extra)} not in the contract, ignored")
        headers[name] = header
    return headers


def _parse_counted(con, contract, path: Path, header, eid: str, name: str, manifest: Manifest) -> ParsedFile:
    """One file parsed into a temporary table (the warehouse is not touched), with as many data
    rows as the manifest says."""
    parsed = _parse_file(con, contract, path, header, eid, name)
    expected = manifest.files[name]["rows"]
    if parsed.rows != expected:
        raise DropRejected(eid, f"{parsed.rows} data rows, the manifest says {expected}", file=name)
    return parsed


def _land_drop(con, parsed, by_file, manifest: Manifest, contracts, pseudonym_key, result: LoadResult, now) -> None:
    """Every parsed file into raw (identifiers pseudonymised), its ops.load_log row and the drop's
    ops.drops row, in one transaction."""
    eid = result.extract_id
    id_col = next(c for contract in contracts.values() for c in contract.columns if c.identifier == "pseudonymise")
    key_params = {**hmac_pads(pseudonym_key), "haic_id_pattern": id_col.pattern or PATIENT_ID_PATTERN}
    with transaction(con):
        for name, file in parsed.items():
            contract = by_file[name]
            sha = str(manifest.files[name]["sha256"]).lower()
            _land_file(con, contract, file, eid, key_params, now)
            result.files.append(FileResult(name, contract.domain, file.rows, sha))
            con.execute(
                "INSERT INTO ops.load_log VALUES (?, ?, ?, ?, 'loaded', ?, ?)",
                [eid, name, file.rows, sha, "; ".join(w for w in result.warnings if w.startswith(name)) or None, now],
            )
        con.execute("DELETE FROM ops.drops WHERE extract_id = ?", [eid])
        con.execute(
            "INSERT INTO ops.drops VALUES (?, ?, 'loaded', NULL, ?, ?, ?, ?, ?)",
            [eid, manifest.sha256, manifest.extracted_at, manifest.data_cutoff, manifest.source_system,
             manifest.encoding, now],
        )


@dataclass
class ParsedFile:
    """A verified file parsed into a temporary table: `rows` data rows, numbered by `row_number`
    (an SQL expression over the table)."""

    table: str
    rows: int
    row_number: str


def _landing_table(contract: Contract) -> str:
    return f"_haic_landing_{contract.domain}"


def _parse_file(con, contract: Contract, path: Path, header: list[str], eid: str, name: str) -> ParsedFile:
    """Parse one CSV into a temporary table with DuckDB's parallel reader, outside any transaction.

    DuckDB keeps a file's row order in a table it creates (`preserve_insertion_order`, on by
    default), so in a new committed table `rowid` runs 0..n-1 in file order and `rowid + 1` is the
    data row number: checked here, with WITH ORDINALITY (same numbers, but read on one thread)
    as the fallback. Inside a transaction the rowids of new
    rows are not 0-based, which is why this runs before the drop's transaction."""
    source = _read_csv_sql(path, header)
    table = _landing_table(contract)
    read = [c.name for c in contract.columns if c.in_raw]  # e.g. patient_name: never read
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {', '.join(read)} FROM {source}")
        rows, first, last = con.execute(f"SELECT count(*), min(rowid), max(rowid) FROM {table}").fetchall()[0]
        if rows and (first, last) != (0, rows - 1):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS "
                        f"SELECT {', '.join(read)}, ordinality AS _ordinality FROM {source} WITH ORDINALITY")
            return ParsedFile(table, int(rows), "s._ordinality")
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.IOException) or describe_storage_fault(str(exc)):
            raise  # a full disk / read-only folder is not the drop's fault: never reject it for that
        msg = str(exc).splitlines()[0]
        raise DropRejected(eid, f"not a valid CSV per the spec: {msg}", file=name,
                           row=_duckdb_error_row(str(exc))) from exc
    return ParsedFile(table, int(rows), "s.rowid + 1")


def _land_file(con, contract: Contract, file: ParsedFile, eid: str, key_params: dict, now: dt.datetime) -> None:
    """Insert one parsed file into raw.<domain>. The patient ids are keyed in DuckDB, once per
    distinct id (pseudonym.patient_key_sql with `key_params`: the HMAC pads and the id pattern;
    `valid`: the id matches the contract's pattern, anchored at its start as Python's re.match)."""
    id_col = next(c for c in contract.columns if c.identifier == "pseudonymise")
    select = []
    for col in contract.columns:
        if not col.in_raw:
            continue
        if col.identifier == "pseudonymise":
            select += ["k.patient_key", "coalesce(k.valid, false)"]
        else:
            select.append(f"s.{col.name}")
    target = ", ".join(contract.raw_columns + ["_extract_id", "_row_number", "_loaded_at"])
    con.execute(
        f"""INSERT INTO raw.{contract.domain} ({target})
            WITH ids AS (SELECT DISTINCT nullif(trim({id_col.name}), '') AS pid FROM {file.table}),
                 k AS (SELECT pid, {patient_key_sql('pid')} AS patient_key,
                              regexp_matches(pid, '^(?:' || $haic_id_pattern || ')') AS valid
                       FROM ids WHERE pid IS NOT NULL)
            SELECT {', '.join(select)}, $eid, {file.row_number}, $now
            FROM {file.table} AS s
            LEFT JOIN k ON k.pid = trim(s.{id_col.name})""",
        {"eid": eid, "now": now, **key_params},
    )
