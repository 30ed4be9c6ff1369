"""The speed layer (quality/speed/): worker processes for a large backlog, several drops per
frame, ENUM categoricals, staging parts. The verdicts and counts must be exactly those of the
in-process path, chunk boundaries included, and of the plain path (HAIC_DQ_FAST=0)."""

import shutil

import duckdb
import pytest

from haic_pipeline.quality.speed import attribution, parallel
from haic_pipeline.quality.speed import frames as fast
from haic_pipeline.quality.gate import run_all

from ..dropkit import land, patient, write_drop
from .test_quality import E1, E2, cohort, pid

COMPARE = ("SELECT check_name, rule, scope, coalesce(extract_id, '-'), passed, evaluated, unexpected, "
           "exception IS NULL FROM ops.dq_results ORDER BY ALL")


def _odd_drop(start: int) -> dict:
    files = cohort(1200, start=start, bad_ecog=30, bad_sex=2)  # 2,400 lab rows: two 2,048-row chunks
    p = pid(start)
    files["treatments.csv"].append({"patient_id": p, "regimen": "MAGIC", "start_date": "2023-09-01"})
    files["labs.csv"].append({"patient_id": p, "collected_at": "2023-05-04 08:00", "test_code": "XYZ",
                              "value": "-3", "unit": "U/L"})
    files["patients.csv"].append(patient(pid(start + 5000), birth_date="2099-01-01"))
    return files


def _landed_with_twins(env, *names: str):
    """The two odd drops landed in env/haic.duckdb, and a copy of it per name (same state)."""
    write_drop(env / "inbox", E1, _odd_drop(1))
    write_drop(env / "inbox", E2, _odd_drop(3001))
    db = env / "haic.duckdb"
    with duckdb.connect(str(db)) as con:
        land(con, env / "inbox")
    twins = {name: env / f"{name}.duckdb" for name in names}
    for twin in twins.values():
        shutil.copy(db, twin)
    return db, twins


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_worker_processes_give_the_in_process_results(env, monkeypatch, start_method):
    monkeypatch.setattr(fast, "CHUNK_VECTORS", 1)   # 2,048-row chunks: several per drop
    db, twins = _landed_with_twins(env, "twin")
    twin = twins["twin"]

    monkeypatch.setenv("HAIC_DQ_WORKERS", "1")
    with duckdb.connect(str(db)) as con:
        run_all(con)
        assert not parallel.started()
        expected = con.execute(COMPARE).fetchall()

    monkeypatch.setenv("HAIC_DQ_WORKERS", "2")
    monkeypatch.setenv("HAIC_DQ_PARALLEL_MIN_ROWS", "0")
    monkeypatch.setenv("HAIC_DQ_START_METHOD", start_method)
    try:
        with duckdb.connect(str(twin)) as con:
            run_all(con)
            assert parallel.started()
            got = con.execute(COMPARE).fetchall()
    finally:
        parallel.shutdown()

    assert got == expected
    failed = {(r[0], r[1]) for r in got if not r[4]}
    assert ("assessments_error_rules", "ecog_range") in failed       # 30 of 1,200: above 2 %
    assert ("patients_error_rules", "sex_code") not in failed        # 2 of 1,201: below 2 %
    chunked = [r for r in got if r[0] == "labs_error_rules" and r[1] == "test_code_code"]
    assert [r[5] for r in chunked] == [2401, 2401]                   # counted over both chunks


def test_a_duplicate_key_far_apart_in_staging_is_seen(env, con, monkeypatch):
    """Uniqueness is judged on the whole staging table, not chunk by chunk."""
    from haic_pipeline.contracts import load_contracts
    from haic_pipeline.quality.gate import run_check

    write_drop(env / "inbox", E1, cohort(1100))   # 2,200 lab rows in staging.labs
    land(con, env / "inbox")
    monkeypatch.setattr(fast, "CHUNK_VECTORS", 1)
    monkeypatch.setattr(fast, "STAGING_PART_ROWS", 500)
    assert run_check(con, "labs_error_rules").passed
    # the first row again, at the end of the table: 2,200 rows apart
    con.execute("INSERT INTO staging.labs SELECT * FROM staging.labs LIMIT 1")
    parts = [df["natural_key_hash"] for df in fast.staging_frames(con, load_contracts()["labs"])]
    assert len(parts) == 8 and sum(len(p) for p in parts) == 2201   # 2,201 / 500 rows: 8 parts (a power of two)
    assert len({h for p in parts for h in p}) == 2200                # ... the duplicate pair in one of them
    assert sum(p.duplicated().sum() for p in parts) == 1
    out = run_check(con, "labs_error_rules")
    unique = [r for r in out.rows if r["rule"] == "natural_key_unique"]
    assert not out.passed and unique[0]["unexpected"] == 2 and unique[0]["evaluated"] == 2201


def test_counts_attributed_to_each_drop_equal_drop_by_drop(env, monkeypatch):
    """Two drops validated in one frame (attribution.run_frame): each drop's counts and verdicts are
    those of validating it alone, and the fallbacks (more unexpected rows than the index list
    holds; rows the module cannot attribute) give the same results."""
    db, twins = _landed_with_twins(env, "alone", "capped")
    monkeypatch.setenv("HAIC_DQ_WORKERS", "1")
    fallbacks = []
    original = attribution._drop_by_drop
    monkeypatch.setattr(attribution, "_drop_by_drop", lambda *a: fallbacks.append(1) or original(*a))

    with duckdb.connect(str(db)) as con:
        run_all(con)
        attributed = con.execute(COMPARE).fetchall()
    assert not fallbacks  # every rule of every frame attributed from GX's own index list

    with duckdb.connect(str(twins["capped"])) as con:
        monkeypatch.setitem(attribution.ATTRIBUTION_FORMAT, "partial_unexpected_count", 3)  # ecog: 30 a drop
        run_all(con)
        capped = con.execute(COMPARE).fetchall()
    assert fallbacks
    monkeypatch.setitem(attribution.ATTRIBUTION_FORMAT, "partial_unexpected_count", attribution.ATTRIBUTION_CAP)

    with duckdb.connect(str(twins["alone"])) as con:
        monkeypatch.setattr(attribution, "_applies", lambda rule, df: None)  # every frame drop by drop
        run_all(con)
        alone = con.execute(COMPARE).fetchall()

    assert attributed == alone == capped
    by_drop = {(r[0], r[1], r[3]): r for r in attributed}
    for eid in (E1, E2):  # each drop judged on its own counts
        ecog = by_drop[("assessments_error_rules", "ecog_range", eid)]
        assert ecog[6] == 30 and not ecog[4]


def test_text_columns_come_as_the_same_values_in_categoricals():
    """frames.iter_chunks casts text to ENUMs of its values: same values and NULLs as plain
    strings, and a query with no rows (list() of no rows is NULL) still works."""
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t AS SELECT i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'c' || (i % 5) END AS code, "
                    "'it''s' AS quoted FROM range(5000) r(i)")
        sql = "SELECT i, code, quoted FROM t WHERE i >= ? ORDER BY i"
        (df,) = list(fast.iter_chunks(con, sql, [0]))
        plain = con.execute(sql, [0]).df()
        assert str(df["code"].dtype) == "category" and str(df["quoted"].dtype) == "category"
        assert df["code"].astype(object).where(df["code"].notna(), None).tolist() == \
            plain["code"].where(plain["code"].notna(), None).tolist()
        assert set(df["quoted"]) == {"it's"}
        (empty,) = list(fast.iter_chunks(con, sql, [10_000]))
        assert len(empty) == 0


def test_fast_paths_count_what_each_check_alone_counts_with_plain_gx(env, monkeypatch):
    """What makes validation fast changes no count or verdict: a domain's error and warn checks
    validated from one read of its rows (gate.run_checks, as run_all and the Dagster steps run
    them), flags handed to GX as int8 in consolidated frames, pandas copy-on-write and
    Batch.validate. Against: every check run alone, on frames with the booleans DuckDB gives,
    through ValidationDefinition.run."""
    import pandas as pd

    from haic_pipeline.quality import validate
    from haic_pipeline.quality.gate import all_checks, run_check

    db, twins = _landed_with_twins(env, "twin")
    monkeypatch.setenv("HAIC_DQ_WORKERS", "1")
    with duckdb.connect(str(db)) as con:
        run_all(con)
        grouped = con.execute(COMPARE).fetchall()

    fitted = fast.fit_dtypes
    seen = set()

    def booleans(df):   # the flags as DuckDB gives them: bool, or pandas' boolean with NULLs
        df = fitted(df)
        for col in df.columns:
            if df[col].dtype == "int8" or str(df[col].dtype) == "Int8":
                seen.add(str(df[col].dtype))
                df[col] = df[col].astype(bool if df[col].dtype == "int8" else "boolean")
        return df

    def plain(self, df, result_format):
        return self.definition.run(batch_parameters={"dataframe": df}, result_format=result_format)

    monkeypatch.setattr(fast, "fit_dtypes", booleans)
    monkeypatch.setattr(validate.SuiteRunner, "validate", plain)
    with duckdb.connect(str(twins["twin"])) as con:
        for check in all_checks():
            run_check(con, check.name)
        alone = con.execute(COMPARE).fetchall()

    assert seen == {"int8", "Int8"}   # both kinds of flag were compared
    assert grouped == alone
    assert not pd.get_option("mode.copy_on_write")   # only while GX runs
    failed = {(r[0], r[1]) for r in grouped if not r[4]}
    assert ("assessments_error_rules", "ecog_range") in failed


def test_the_speed_layer_switched_off_gives_the_same_verdicts(env, monkeypatch):
    """HAIC_DQ_FAST=0: each drop's frame read alone with DuckDB's own dtypes and validated alone
    (validate.FrameSource, through the same validate.validate dispatch), no worker, no attribution, no ENUM: every rule's counts and verdict
    per drop are those of the speed layer, chunks and several drops per frame included."""
    monkeypatch.setattr(fast, "CHUNK_VECTORS", 1)
    db, twins = _landed_with_twins(env, "plain")
    monkeypatch.setenv("HAIC_DQ_WORKERS", "2")
    monkeypatch.setenv("HAIC_DQ_PARALLEL_MIN_ROWS", "0")
    try:
        with duckdb.connect(str(db)) as con:
            run_all(con)
            fast_rows = con.execute(COMPARE).fetchall()
    finally:
        parallel.shutdown()
    monkeypatch.setenv("HAIC_DQ_FAST", "0")
    with duckdb.connect(str(twins["plain"])) as con:
        run_all(con)
        assert not parallel.started()
        plain_rows = con.execute(COMPARE).fetchall()
        chunks = {r for (r,) in con.execute("SELECT DISTINCT details->>'chunks' FROM ops.dq_results "
                                            "WHERE scope = 'drop'").fetchall()}
    assert plain_rows == fast_rows
    assert chunks == {"1"}   # one frame per drop: nothing shared, nothing attributed
    assert {(r[0], r[1]) for r in plain_rows if not r[4]} >= {("assessments_error_rules", "ecog_range")}
