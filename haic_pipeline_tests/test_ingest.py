"""Landing drops in raw.*: every ingestion rule of the foundation issue, on real files and a real
DuckDB file."""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from haic_pipeline.ingest import DropRefused, DropRejected, find_complete_drops, load_drop, patient_key
from haic_pipeline.ingest.drops import REJECTED_NOTE
from haic_pipeline.settings import DEMO_PSEUDONYM_KEY, ConfigurationError, load_settings

from .conftest import TEST_KEY, all_text_values, table_counts
from .dropkit import csv_text, patient, write_drop

E1, E2, E3 = "20240101T020000Z", "20240201T020000Z", "20240301T020000Z"


def _files():
    return {
        "patients.csv": [patient("10000001", patient_name="김철수"), patient("10000002", patient_name="Lee Young")],
        "treatments.csv": [{"patient_id": "10000001", "regimen": "HAIC_FP", "start_date": "2023-05-01", "cycles": 2}],
        "labs.csv": [{"patient_id": "10000001", "collected_at": "2023-04-28 08:00", "test_code": "AFP",
                      "value": ">60000", "unit": "ng/mL"}],
        "vital_status.csv": [{"patient_id": "10000001", "last_contact_date": "2023-12-01"}],
    }


def _load_all(con, inbox, contracts, key=TEST_KEY):
    return [load_drop(con, d, contracts, key) for d in find_complete_drops(inbox)]


def test_clean_drop_lands_with_lineage_and_load_log(env, con, contracts):
    write_drop(env / "inbox", E1, _files())
    (result,) = _load_all(con, env / "inbox", contracts)
    assert result.status == "loaded"
    assert table_counts(con, "raw") == {"assessments": 0, "imaging": 0, "labs": 1, "patients": 2,
                                        "treatments": 1, "vital_status": 1}
    rows = con.execute("SELECT _extract_id, _row_number, _loaded_at IS NOT NULL FROM raw.patients ORDER BY 2").fetchall()
    assert rows == [(E1, 1, True), (E1, 2, True)]
    log = con.execute("SELECT file, rows, status FROM ops.load_log ORDER BY file").fetchall()
    assert log == [("labs.csv", 1, "loaded"), ("patients.csv", 2, "loaded"),
                   ("treatments.csv", 1, "loaded"), ("vital_status.csv", 1, "loaded")]
    assert con.execute("SELECT value FROM raw.labs").fetchall() == [(">60000",)]


def test_row_count_mismatch_rejects_whole_drop_and_keeps_it_in_inbox(env, con, contracts):
    folder = write_drop(env / "inbox", E1, _files())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["vital_status.csv"]["rows"] = 5  # the last file is wrong: nothing before it may land
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DropRejected, match=r"vital_status.csv.*1 data rows, the manifest says 5"):
        _load_all(con, env / "inbox", contracts)
    assert sum(table_counts(con, "raw").values()) == 0
    reasons = dict(con.execute("SELECT file, reason FROM ops.load_log WHERE status = 'rejected'").fetchall())
    assert "1 data rows, the manifest says 5" in reasons["vital_status.csv"]
    assert "because of vital_status.csv" in reasons["patients.csv"]
    assert folder.exists() and (folder / "manifest.json").exists()
    assert "manifest says 5" in (folder / REJECTED_NOTE).read_text()
    assert con.execute("SELECT status FROM ops.drops").fetchall() == [("rejected",)]


def test_sha256_mismatch_rejects_before_anything_is_read(env, con, contracts):
    folder = write_drop(env / "inbox", E1, _files())
    with open(folder / "labs.csv", "a") as fh:  # altered in transfer, rows still right
        fh.write("")
    data = (folder / "labs.csv").read_bytes()
    (folder / "labs.csv").write_bytes(data.replace(b"60000", b"60001"))
    with pytest.raises(DropRejected, match=r"labs.csv.*sha256"):
        _load_all(con, env / "inbox", contracts)
    assert sum(table_counts(con, "raw").values()) == 0


def test_listed_file_missing_is_rejected(env, con, contracts):
    folder = write_drop(env / "inbox", E1, _files())
    (folder / "labs.csv").unlink()
    with pytest.raises(DropRejected, match="labs.csv.*missing"):
        _load_all(con, env / "inbox", contracts)


@pytest.mark.parametrize("bom", [False, True])
def test_utf8_with_and_without_bom(env, con, contracts, bom):
    write_drop(env / "inbox", E1, _files(), bom=bom)
    _load_all(con, env / "inbox", contracts)
    assert con.execute("SELECT count(*) FROM raw.patients WHERE sex = 'M'").fetchall()[0][0] == 2


def test_cp949_drop_is_decoded(env, con, contracts, monkeypatch):
    files = _files()
    files["assessments.csv"] = [{"patient_id": "10000001", "assessment_date": "2023-04-30", "ecog": 1,
                                 "ascites": "없음"}]  # a Korean free-text value survives decoding
    write_drop(env / "inbox", E1, files, encoding="cp949")
    killed = env / "inbox" / f".haic-{E1}-killed"   # a copy a killed landing left behind
    killed.mkdir()
    (killed / "patients.csv").write_text("patient_id\n10000001\n")
    made = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real_mkdtemp(*a, **k)) or made[-1])
    _load_all(con, env / "inbox", contracts)
    assert con.execute("SELECT ascites FROM raw.assessments").fetchall() == [("없음",)]
    # the UTF-8 copy (identifiers included) was made in a hidden folder of the inbox, not in the
    # system temp folder, and is gone
    assert len(made) == 1 and Path(made[0]).parent == env / "inbox" and Path(made[0]).name.startswith(".")
    assert not Path(made[0]).exists() and not killed.exists()


@pytest.mark.parametrize("block", [7, 1 << 20])
def test_cp949_is_decoded_across_blocks_and_a_bad_byte_names_its_row(env, con, contracts, monkeypatch, block):
    from haic_pipeline.ingest import drops as ingest_drops

    monkeypatch.setattr(ingest_drops, "TRANSCODE_BLOCK", block)  # 7 bytes: blocks end mid-character
    files = _files()
    files["assessments.csv"] = [{"patient_id": "10000001", "assessment_date": f"2023-04-{d:02d}", "ecog": 1,
                                 "ascites": "없음 약간"} for d in range(1, 4)]
    write_drop(env / "inbox", E1, files, encoding="cp949")
    _load_all(con, env / "inbox", contracts)
    assert con.execute("SELECT DISTINCT ascites FROM raw.assessments").fetchall() == [("없음 약간",)]

    folder = write_drop(env / "inbox", E2, {"assessments.csv": files["assessments.csv"]}, encoding="cp949")
    data = (folder / "assessments.csv").read_bytes().splitlines(keepends=True)
    data[2] = data[2].replace("없음".encode("cp949"), b"\xff\xfe")  # data row 2: not cp949
    bad = b"".join(data)
    (folder / "assessments.csv").write_bytes(bad)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["assessments.csv"]["sha256"] = hashlib.sha256(bad).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DropRejected, match="cp949") as caught:
        load_drop(con, find_complete_drops(env / "inbox")[1], contracts, TEST_KEY)
    assert caught.value.file == "assessments.csv" and caught.value.row == 2


def test_cp949_bytes_declared_utf8_are_rejected_naming_the_file(env, con, contracts):
    folder = write_drop(env / "inbox", E1, _files())
    text = csv_text("patients.csv", [patient("10000001", patient_name="김철수")])
    data = text.encode("cp949")
    (folder / "patients.csv").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["patients.csv"] = {"rows": 1, "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DropRejected, match="patients.csv"):
        _load_all(con, env / "inbox", contracts)
    assert sum(table_counts(con, "raw").values()) == 0


def test_missing_column_rejects_and_extra_column_is_ignored_with_warning(env, con, contracts):
    header = ["patient_id", "scan_date", "mrecist_response", "modality", "reader"]  # reordered + extra
    text = "\n".join([",".join(header), "10000001,2023-07-01,PR,CT,Dr X", ""])
    write_drop(env / "inbox", E1, {**_files(), "imaging.csv": text})
    (result,) = _load_all(con, env / "inbox", contracts)
    assert any("reader" in w for w in result.warnings)
    assert con.execute("SELECT modality, mrecist_response FROM raw.imaging").fetchall() == [("CT", "PR")]

    text = "patient_id,scan_date,modality\n10000001,2023-09-01,CT\n"
    write_drop(env / "inbox", E2, {"imaging.csv": text})
    with pytest.raises(DropRejected, match="imaging.csv.*mrecist_response missing"):
        load_drop(con, find_complete_drops(env / "inbox")[1], contracts, TEST_KEY)


def test_redelivery_changes_nothing_and_changed_content_is_refused(env, con, contracts):
    write_drop(env / "inbox", E1, _files())
    _load_all(con, env / "inbox", contracts)
    before = table_counts(con, "raw")
    raw_before = con.execute("SELECT * FROM raw.patients ORDER BY _row_number").fetchall()
    (again,) = _load_all(con, env / "inbox", contracts)
    assert again.status == "duplicate"
    assert table_counts(con, "raw") == before
    assert con.execute("SELECT * FROM raw.patients ORDER BY _row_number").fetchall() == raw_before

    changed = _files()
    changed["patients.csv"].append(patient("10000003"))
    write_drop(env / "inbox", E1, changed)  # same extract_id, new content
    with pytest.raises(DropRefused, match=r"already loaded .* different content .*patients.csv.*immutable"):
        _load_all(con, env / "inbox", contracts)
    assert table_counts(con, "raw") == before
    statuses = [s for (s,) in con.execute("SELECT DISTINCT status FROM ops.load_log ORDER BY 1").fetchall()]
    assert statuses == ["duplicate", "loaded", "rejected"]


def test_folder_without_manifest_is_left_alone(env, con, contracts):
    folder = write_drop(env / "inbox", E1, _files(), write_manifest=False)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    assert find_complete_drops(env / "inbox") == []
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before


@pytest.mark.parametrize("override, message", [
    ({"extract_id": "20240101T020000"}, "differs from the folder name"),
    ({"encoding": "latin-1"}, "encoding"),
    ({"data_cutoff": "31/12/2023"}, "data_cutoff"),
])
def test_bad_manifest_is_rejected_with_the_rule(env, con, contracts, override, message):
    write_drop(env / "inbox", E1, _files(), manifest_overrides=override)
    with pytest.raises(DropRejected, match=message):
        _load_all(con, env / "inbox", contracts)


def test_malformed_csv_row_is_rejected_naming_file_and_row(env, con, contracts):
    text = 'patient_id,scan_date,modality,mrecist_response\n10000001,2023-07-01,CT,PR\n10000001,"2023-08-01,CT,PD\n'
    write_drop(env / "inbox", E1, {**_files(), "imaging.csv": text}, manifest_overrides=None)
    with pytest.raises(DropRejected, match="imaging.csv"):
        _load_all(con, env / "inbox", contracts)
    assert sum(table_counts(con, "raw").values()) == 0


def test_patient_id_is_pseudonymised_and_name_never_lands(env, con, contracts):
    write_drop(env / "inbox", E1, _files())
    _load_all(con, env / "inbox", contracts)
    expected = patient_key("10000001", TEST_KEY)
    assert len(expected) == 16
    import hmac as _hmac
    assert expected == _hmac.new(TEST_KEY.encode(), b"10000001", hashlib.sha256).hexdigest()[:16]
    assert con.execute("SELECT patient_key FROM raw.treatments").fetchall() == [(expected,)]
    values = all_text_values(con)
    for leaked in ("10000001", "10000002", "김철수", "Lee Young"):
        assert not any(leaked in v for v in values), leaked
    columns = {c for (c,) in con.execute("SELECT DISTINCT column_name FROM information_schema.columns").fetchall()}
    assert "patient_id" not in columns and "patient_name" not in columns


@pytest.mark.parametrize("key", ["k", TEST_KEY, "é-키-" * 30, ""])  # "é-키-" * 30: longer than a SHA-256 block
def test_landing_hmac_in_duckdb_equals_python_hmac(key):
    import duckdb

    from haic_pipeline.ingest.pseudonym import hmac_pads, patient_key_sql

    ids = ["10000001", "00000000", " 1234", "환자-7", "x" * 100]
    with duckdb.connect() as con:
        got = con.execute(f"SELECT {patient_key_sql('pid')} FROM unnest($ids) AS t(pid)",
                          {"ids": ids, **hmac_pads(key)}).fetchall()
    assert [g for (g,) in got] == [patient_key(i, key) for i in ids]


def test_pseudonym_key_required_in_production(monkeypatch):
    monkeypatch.delenv("HAIC_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("HAIC_ENV", "production")
    with pytest.raises(ConfigurationError, match="HAIC_PSEUDONYM_KEY"):
        load_settings()
    monkeypatch.setenv("HAIC_ENV", "demo")
    settings = load_settings()
    assert settings.key_is_demo and settings.pseudonym_key == DEMO_PSEUDONYM_KEY


def test_failure_in_a_later_file_rolls_back_earlier_files(env, con, contracts):
    files = _files()
    files["vital_status.csv"] = 'patient_id,last_contact_date,death_date\n10000001,"2023-12-01\n'  # unterminated quote
    write_drop(env / "inbox", E1, files)
    with pytest.raises(DropRejected):
        _load_all(con, env / "inbox", contracts)
    assert sum(table_counts(con, "raw").values()) == 0
    assert con.execute("SELECT count(*) FROM ops.load_log WHERE status = 'loaded'").fetchall()[0][0] == 0


def test_sigkill_half_way_leaves_the_warehouse_as_before(env, contracts):
    """A real crash: the loading process is killed (SIGKILL) after some files were inserted inside
    the transaction. On reopening, DuckDB has discarded the uncommitted drop."""
    write_drop(env / "inbox", E1, _files())
    write_drop(env / "inbox", E2, {"patients.csv": [patient("10000009")],
                                   "vital_status.csv": [{"patient_id": "10000009", "last_contact_date": "2024-01-02"}]})
    warehouse = os.environ["HAIC_WAREHOUSE"]
    script = textwrap.dedent(f"""
        import os, duckdb
        from haic_pipeline.contracts import load_contracts
        from haic_pipeline.ingest import drops as d
        con = duckdb.connect({warehouse!r})
        inbox = d.find_complete_drops(__import__('pathlib').Path({str(env / 'inbox')!r}))
        d.load_drop(con, inbox[0], load_contracts(), {TEST_KEY!r})
        con.execute("CHECKPOINT")
        real = d._land_file
        calls = []
        def crashing(*a, **k):
            n = real(*a, **k)
            calls.append(n)
            if len(calls) == 1:   # first file of the second drop inserted, transaction open
                os.kill(os.getpid(), 9)
            return n
        d._land_file = crashing
        d.load_drop(con, inbox[1], load_contracts(), {TEST_KEY!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    import duckdb
    with duckdb.connect(warehouse) as con:
        assert con.execute("SELECT DISTINCT _extract_id FROM raw.patients").fetchall() == [(E1,)]
        assert con.execute("SELECT count(*) FROM raw.patients").fetchall()[0][0] == 2
        assert con.execute("SELECT DISTINCT extract_id FROM ops.load_log").fetchall() == [(E1,)]
        # and the next attempt completes
        load_drop(con, find_complete_drops(env / "inbox")[1], contracts, TEST_KEY)
        assert con.execute("SELECT count(*) FROM raw.patients").fetchall()[0][0] == 3


def test_row_numbers_follow_the_file_in_a_file_read_in_parallel(env, con, contracts):
    """A labs.csv of ~20 MB is parsed by DuckDB's parallel reader: `_row_number` must still be
    each row's data-row number in the file (here also written into the row, as its value)."""
    n = 400_000
    lines = ["patient_id,collected_at,test_code,value,unit"]
    lines += [f"1000000{1 + i % 2},2023-04-{1 + i % 28:02d} 08:{i % 60:02d},ALT,{i + 1},U/L" for i in range(n)]
    write_drop(env / "inbox", E1, {"patients.csv": [patient("10000001"), patient("10000002")],
                                   "labs.csv": "\n".join(lines) + "\n"})
    (result,) = _load_all(con, env / "inbox", contracts)
    assert result.status == "loaded"
    assert (env / "inbox" / E1 / "labs.csv").stat().st_size > 15e6
    counts = con.execute("SELECT count(*), count(*) FILTER (WHERE _row_number = value::BIGINT), "
                         "min(_row_number), max(_row_number) FROM raw.labs").fetchall()[0]
    assert counts == (n, n, 1, n)
