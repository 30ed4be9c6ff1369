"""Write an :class:`~haic_pipeline.synthetic.model.Extract` as drop folders.

CSVs are written by DuckDB ``COPY ... TO`` straight from the pandas frames (numeric and
categorical columns, formatted in SQL), which is what makes 10 million lab rows take seconds.
``manifest.json`` is written last, with row counts and sha256 measured on the files on disk.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np

from haic_pipeline.settings import synth_debug

from . import model as m
from .codes import MISSING, NEVER

DOMAINS = ["patients", "treatments", "assessments", "labs", "imaging", "vital_status"]
SOURCE_SYSTEM = "SSMH-CDW"
BOM = b"\xef\xbb\xbf"


def _date(col: str) -> str:
    return f"CASE WHEN {col} <= {MISSING} OR {col} >= {NEVER} THEN NULL ELSE DATE '1970-01-01' + {col}::INTEGER END"


# spec column -> SQL expression over the frame
COLUMNS = {
    "patients": {
        "patient_id": "printf('%08d', patient_id)",
        "patient_name": "patient_name",
        "birth_date": _date("birth_date"),
        "sex": "sex::VARCHAR",
        "etiology": "etiology::VARCHAR",
        "hcc_diagnosis_date": _date("hcc_diagnosis_date"),
        "consent_status": "consent_status::VARCHAR",
    },
    "treatments": {
        "patient_id": "printf('%08d', patient_id)",
        "regimen": "regimen::VARCHAR",
        "start_date": _date("start_date"),
        "end_date": _date("end_date"),
        "cycles": "CASE WHEN cycles < 1 THEN NULL ELSE cycles END",
        "stop_reason": "stop_reason::VARCHAR",
    },
    "assessments": {
        "patient_id": "printf('%08d', patient_id)",
        "assessment_date": _date("assessment_date"),
        "ecog": "ecog",
        "ascites": "ascites::VARCHAR",
        "encephalopathy": "encephalopathy::VARCHAR",
        "tumor_count": "tumor_count",
        "max_tumor_size_cm": "printf('%.1f', max_tumor_size_cm)",
        "portal_vein_invasion": "portal_vein_invasion::VARCHAR",
        "extrahepatic_metastasis": "extrahepatic_metastasis::VARCHAR",
    },
    "labs": {
        "patient_id": "printf('%08d', patient_id)",
        "collected_at": "strftime(make_timestamp(collected_at * 60000000), '%Y-%m-%d %H:%M')",
        "test_code": "test_code::VARCHAR",
        "value": ("CASE WHEN fmt = 3 AND value >= 60000 THEN '>60000' "
                  "WHEN fmt = 3 AND value < 1 THEN '<1.0' "
                  "WHEN fmt = 1 THEN printf('%.2f', value) "
                  "WHEN fmt = 2 THEN printf('%d', round(value)::BIGINT) "
                  "ELSE printf('%.1f', value) END"),
        "unit": "unit::VARCHAR",
    },
    "imaging": {
        "patient_id": "printf('%08d', patient_id)",
        "scan_date": _date("scan_date"),
        "modality": "modality::VARCHAR",
        "mrecist_response": "mrecist_response::VARCHAR",
    },
    "vital_status": {
        "patient_id": "printf('%08d', patient_id)",
        "last_contact_date": _date("last_contact_date"),
        "death_date": _date("death_date"),
    },
}
EXTRA_COLUMN = ("assessments", "recorded_by", "printf('RN%03d', (patient_id % 37)::INTEGER)")


def _hash_and_count(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    lines = 0
    with open(path, "rb") as fh:
        while True:
            b = fh.read(1 << 23)
            if not b:
                break
            h.update(b)
            lines += b.count(b"\n")
    return h.hexdigest(), lines


def _slices(drop_col: np.ndarray, drops: int):
    bounds = np.searchsorted(drop_col, np.arange(drops + 1), "left")
    return [(int(bounds[k]), int(bounds[k + 1])) for k in range(drops)]


def write_extract(ex: m.Extract, outdir) -> list[Path]:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    plan = ex.plan
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = true")
    slices = {d: _slices(ex.tables[d]["drop"].to_numpy(), ex.drops) for d in DOMAINS}
    written = []
    for k, cutoff in enumerate(ex.cutoffs):
        extract_id = m.extract_id_for(cutoff)
        folder = outdir / extract_id
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        encoding = "cp949" if plan["cp949"] == k else "utf-8"
        files = {}
        for domain in DOMAINS:
            if domain == "imaging" and plan["absent_file"] == k:
                continue
            a, b = slices[domain][k]
            frame = ex.tables[domain].iloc[a:b]
            cols = dict(COLUMNS[domain])
            if plan["permuted_columns"] == k:
                cols = dict(reversed(list(cols.items())))
            if plan["extra_column"] == k and domain == EXTRA_COLUMN[0]:
                items = list(cols.items())
                items.insert(3, (EXTRA_COLUMN[1], EXTRA_COLUMN[2]))
                cols = dict(items)
            select = ", ".join(f"{expr} AS {name}" for name, expr in cols.items())
            path = folder / f"{domain}.csv"
            t0 = time.perf_counter()
            con.register("frame_view", frame)
            con.execute(f"COPY (SELECT {select} FROM frame_view) TO '{path}' (HEADER, DELIMITER ',')")
            con.unregister("frame_view")
            if encoding == "cp949" and domain == "patients":
                path.write_bytes(path.read_bytes().decode("utf-8").encode("cp949"))
            if plan["bom"] == k:
                tmp = path.with_suffix(".tmp")
                os.replace(path, tmp)
                with open(tmp, "rb") as src, open(path, "wb") as dst:
                    dst.write(BOM)
                    shutil.copyfileobj(src, dst, 1 << 24)
                tmp.unlink()
            digest, lines = _hash_and_count(path)
            if synth_debug():
                print(domain, k, b - a, round(time.perf_counter() - t0, 2))
            if lines - 1 != b - a:
                raise RuntimeError(f"{path}: {lines - 1} lines written for {b - a} rows")
            files[f"{domain}.csv"] = {"rows": b - a, "sha256": digest}
        manifest = {
            "extract_id": extract_id,
            "extracted_at": f"{(cutoff + _dt.timedelta(days=1)).isoformat()}T02:00:00Z",
            "data_cutoff": cutoff.isoformat(),
            "source_system": SOURCE_SYSTEM,
            "encoding": encoding,
            "files": files,
        }
        tmp = folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, folder / "manifest.json")
        written.append(folder)
    con.close()
    return written
