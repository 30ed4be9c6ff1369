"""Hand-built EMR extract drops for tests: real CSV files and a real manifest in a temp folder,
and `land`, which puts the drops of an inbox into a warehouse as the pipeline does."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from haic_pipeline.contracts import load_contracts
from haic_pipeline.ingest import find_complete_drops, load_drop
from haic_pipeline.warehouse.staging import build_staging

from .conftest import TEST_KEY

HEADERS = {
    "patients.csv": ["patient_id", "patient_name", "birth_date", "sex", "etiology", "hcc_diagnosis_date", "consent_status"],
    "treatments.csv": ["patient_id", "regimen", "start_date", "end_date", "cycles", "stop_reason"],
    "assessments.csv": ["patient_id", "assessment_date", "ecog", "ascites", "encephalopathy", "tumor_count",
                        "max_tumor_size_cm", "portal_vein_invasion", "extrahepatic_metastasis"],
    "labs.csv": ["patient_id", "collected_at", "test_code", "value", "unit"],
    "imaging.csv": ["patient_id", "scan_date", "modality", "mrecist_response"],
    "vital_status.csv": ["patient_id", "last_contact_date", "death_date"],
}


def csv_text(name: str, rows: list[dict], header: list[str] | None = None) -> str:
    header = header or HEADERS[name]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if row.get(c) is None else row.get(c) for c in header])
    return buf.getvalue()


def write_drop(
    inbox: Path,
    extract_id: str,
    files: dict[str, list[dict] | str],
    *,
    encoding: str = "utf-8",
    bom: bool = False,
    data_cutoff: str | None = None,
    manifest_overrides: dict | None = None,
    write_manifest: bool = True,
) -> Path:
    """Write `<inbox>/<extract_id>/` with the given files (rows as dicts, or raw CSV text)."""
    folder = Path(inbox) / extract_id
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, content in files.items():
        text = content if isinstance(content, str) else csv_text(name, content)
        data = text.encode("cp949" if encoding == "cp949" else "utf-8")
        if bom:
            data = b"\xef\xbb\xbf" + data
        (folder / name).write_bytes(data)
        nrows = len(list(csv.reader(io.StringIO(text)))) - 1
        entries[name] = {"rows": nrows, "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {
        "extract_id": extract_id,
        "extracted_at": f"{extract_id[0:4]}-{extract_id[4:6]}-{extract_id[6:8]}T{extract_id[9:11]}:{extract_id[11:13]}:{extract_id[13:15]}Z",
        "data_cutoff": data_cutoff or f"{extract_id[0:4]}-{extract_id[4:6]}-{extract_id[6:8]}",
        "source_system": "TEST-CDW",
        "encoding": encoding,
        "files": entries,
    }
    manifest.update(manifest_overrides or {})
    if write_manifest:
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def patient(pid: str, **kw) -> dict:
    base = {"patient_id": pid, "patient_name": "홍길동", "birth_date": "1958-04-01", "sex": "M",
            "etiology": "HBV", "hcc_diagnosis_date": "2021-11-02", "consent_status": "active"}
    base.update(kw)
    return base


def land(con, inbox: Path, contracts=None) -> None:
    """Load every complete drop in `inbox` not loaded yet with the real loader (in extract_id
    order), then rebuild every staging table, patients first (the others read it)."""
    contracts = contracts or load_contracts()
    loaded = set()
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ops' AND table_name = 'drops'"
                   ).fetchall()[0][0]:
        loaded = {e for (e,) in con.execute("SELECT extract_id FROM ops.drops WHERE status = 'loaded'").fetchall()}
    for drop in find_complete_drops(Path(inbox)):
        if drop.extract_id not in loaded:
            load_drop(con, drop, contracts, TEST_KEY)
    for domain in ["patients"] + [d for d in contracts if d != "patients"]:
        build_staging(con, domain)
