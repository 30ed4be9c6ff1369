"""The study as it stood after each of a list of drops: staging, cohort and endpoints rebuilt in
a private in-memory DuckDB from the raw rows of the loaded drops up to that drop, with the same
SQL models as the live refresh (haic_pipeline/sql/staging, haic_pipeline/sql/study).

    replay(con, extract_ids, visit)   calls visit(mem, extract_id) once per drop, in extract_id
                                      order, with `con` (its default database then the in-memory
                                      one) holding staging.cohort / staging.endpoints
                                      as derived from the loaded drops up to that one

`con`'s own tables are only read (the live warehouse or a snapshot's database): an in-memory
database is attached to it and made the default while the models run. The raw rows are copied once,
then each drop's state is the same models run over the drops up to it (ops.drops says which
are loaded: the later ones are marked retracted, so the models' views leave them out). The
data-quality gate is not replayed: rows breaking an error rule are routed to quarantine by the
staging models themselves, and a drop that failed a blocking check either stopped the live
refresh (and was then retracted, or its check waived) or counts. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import duckdb

from haic_pipeline.contracts import load_contracts
from haic_pipeline.warehouse.schema import ensure_schema
from haic_pipeline.warehouse.staging import build_staging

from .build import build_cohort, build_endpoints


#: the name the in-memory database is attached under while a replay runs
REPLAY_DB = "haic_replay"


def replay(con: duckdb.DuckDBPyConnection, extract_ids: Sequence[str],
           visit: Callable[[duckdb.DuckDBPyConnection, str], None],
           domains: Sequence[str] | None = None) -> None:
    """For each drop of `extract_ids` (loaded drops of `con`), in order: rebuild the study as of
    that drop in an in-memory database attached to `con` and made its default (USE), and call
    visit(con, extract_id); `con`'s own database is its default again afterwards.

    `domains`: the staging domains whose rows what `visit` reads depends on (None: all); the
    others are built from no rows, so their tables exist but are empty (the cohort's inclusion,
    group and index date and the endpoints read only patients, treatments, vital_status and
    imaging; the baseline covariates, which also read assessments and labs, are then NULL)."""
    targets = sorted(extract_ids)
    if not targets:
        return
    contracts = load_contracts()
    home = con.execute("SELECT current_database()").fetchall()[0][0]
    drops = [e for (e,) in con.execute(
        "SELECT DISTINCT extract_id FROM ops.drops WHERE status = 'loaded' AND extract_id <= ? ORDER BY 1",
        [targets[-1]]).fetchall()]
    con.execute(f"ATTACH ':memory:' AS {REPLAY_DB}")
    try:
        con.execute(f"USE {REPLAY_DB}")
        ensure_schema(con, contracts)
        for domain in contracts if domains is None else domains:
            con.execute(f"INSERT INTO raw.{domain} BY NAME SELECT * FROM {home}.raw.{domain} "
                        "WHERE list_contains(?, _extract_id)", [drops])
        con.execute(f"INSERT INTO ops.drops BY NAME SELECT * FROM {home}.ops.drops WHERE status = 'loaded' "
                    "AND list_contains(?, extract_id)", [drops])
        order = ["patients"] + [d for d in contracts if d != "patients"]
        for eid in targets:
            con.execute("UPDATE ops.drops SET status = CASE WHEN extract_id <= ? THEN 'loaded' ELSE 'retracted' END",
                        [eid])
            for domain in order:
                build_staging(con, domain)
            build_cohort(con)
            build_endpoints(con)
            visit(con, eid)
    finally:
        con.execute(f"USE {home}")
        con.execute(f"DETACH {REPLAY_DB}")
