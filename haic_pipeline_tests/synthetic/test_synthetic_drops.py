"""Synthetic EMR drops: format, manifest, encodings, determinism, CLI."""

import csv
import datetime as dt
import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from haic_pipeline.synthetic import (BOM_DROP_INDEX, CP949_DROP_INDEX, DOMAINS, drop_encodings,
                                     write_drops)

from ..dropkit import HEADERS

# the extract spec's header of each file (the test drops' kit writes the same headers)
SPEC_COLUMNS = {name.removesuffix(".csv"): columns for name, columns in HEADERS.items()}


def _manifest(folder):
    return json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))


def _text(folder, name, encoding):
    return (Path(folder) / name).read_bytes().decode("utf-8-sig" if encoding == "utf-8" else encoding)


def test_drop_folders_and_manifest_fields(default_drops):
    assert len(default_drops) == 6
    assert [f.name for f in default_drops] == sorted(f.name for f in default_drops)
    cutoffs = []
    for f in default_drops:
        man = _manifest(f)
        assert re.fullmatch(r"[0-9]{8}T[0-9]{6}Z?", f.name)
        assert man["extract_id"] == f.name
        assert set(man) >= {"extract_id", "extracted_at", "data_cutoff", "source_system", "encoding", "files"}
        assert man["encoding"] in ("utf-8", "cp949")
        cut = dt.date.fromisoformat(man["data_cutoff"])
        assert dt.datetime.fromisoformat(man["extracted_at"].replace("Z", "+00:00")).date() > cut
        cutoffs.append(cut)
        # files on disk are exactly the manifest's files (+ the manifest)
        on_disk = {p.name for p in f.iterdir()} - {"manifest.json"}
        assert on_disk == set(man["files"])
        assert set(man["files"]) <= {d + ".csv" for d in DOMAINS}
        # manifest written last
        mtime = (f / "manifest.json").stat().st_mtime_ns
        assert all((f / n).stat().st_mtime_ns <= mtime for n in man["files"])
    assert cutoffs == sorted(cutoffs) and len(set(cutoffs)) == len(cutoffs)
    assert cutoffs[-1] == dt.date(2024, 7, 31)
    assert dt.date(2022, 8, 1) <= cutoffs[0] <= dt.date(2022, 12, 31)


def test_manifest_rows_and_sha256_match_files(default_drops):
    for f in default_drops:
        man = _manifest(f)
        for name, info in man["files"].items():
            data = (f / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == info["sha256"], (f.name, name)
            rows = list(csv.reader(io.StringIO(_text(f, name, man["encoding"]))))
            assert len(rows) - 1 == info["rows"], (f.name, name)
            header = rows[0]
            assert set(SPEC_COLUMNS[name[:-4]]) <= set(header)
            assert all(len(r) == len(header) for r in rows[1:])


def test_each_drop_decodes_per_manifest_encoding(default_drops):
    encs = drop_encodings(6)
    assert [e[0] for e in encs] == [f.name for f in default_drops]
    for k, f in enumerate(default_drops):
        man = _manifest(f)
        assert man["encoding"] == encs[k][1]
        for name in man["files"]:
            raw = (f / name).read_bytes()
            assert raw.startswith(b"\xef\xbb\xbf") == (k == BOM_DROP_INDEX), (f.name, name)
            raw.decode(man["encoding"])  # strict: raises if wrong
    cp = default_drops[CP949_DROP_INDEX]
    assert _manifest(cp)["encoding"] == "cp949"
    raw = (cp / "patients.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("cp949")
    assert re.search("[\uac00-\ud7a3]", text)
    assert _manifest(default_drops[BOM_DROP_INDEX])["encoding"] == "utf-8"


def test_patient_ids_and_korean_names(raw_drops):
    for _, data in raw_drops:
        for df in data.values():
            assert df["patient_id"].str.fullmatch(r"[0-9]{8}").all()
        names = data["patients"]["patient_name"]
        assert names.str.fullmatch(r"[\uac00-\ud7a3]{2,4}").all()


def test_deterministic_for_seed(tmp_path, default_drops):
    again = write_drops(tmp_path / "a")
    assert [f.name for f in again] == [f.name for f in default_drops]
    for f1, f2 in zip(again, default_drops):
        assert (f1 / "manifest.json").read_bytes() == (f2 / "manifest.json").read_bytes()
    other = write_drops(tmp_path / "b", seed=2)
    assert _manifest(other[0])["files"]["labs.csv"]["sha256"] != _manifest(default_drops[0])["files"]["labs.csv"]["sha256"]


#: sha256 over the default drops' folder names and manifest.json bytes (each manifest holds the
#: sha256 of its CSVs), so every byte of every file is pinned
DEFAULT_DROPS_DIGEST = "4c76806a9a0103302d745f834a78519f77c6b88702157b9e844108fe62a4f233"


def test_default_drops_are_pinned(default_drops):
    """The seed-1 default drops are these bytes (with the libraries of uv.lock), whatever the
    generator's code looks like: a change to the random draws, their order or the formatting
    shows here. A change meant to alter the demo data updates the digest."""
    h = hashlib.sha256()
    for f in default_drops:
        h.update(f.name.encode())
        h.update((f / "manifest.json").read_bytes())
    assert h.hexdigest() == DEFAULT_DROPS_DIGEST


def test_cli_small(tmp_path):
    out = tmp_path / "inbox"
    res = subprocess.run([sys.executable, "-m", "haic_pipeline.synthetic", str(out), "--patients", "20",
                          "--drops", "3", "--seed", "7"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(folders) == 3
    assert all((p / "manifest.json").exists() for p in folders)
    assert _manifest(folders[-1])["data_cutoff"] == "2024-07-31"
    assert res.stdout.split() == [str(p) for p in folders]


def test_cli_rejects_bad_arguments(tmp_path):
    res = subprocess.run([sys.executable, "-m", "haic_pipeline.synthetic", str(tmp_path), "--patients", "x"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
