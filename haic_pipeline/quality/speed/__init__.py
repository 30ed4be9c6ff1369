"""The gate's speed layer: the same counts as `validate.validate_plain`, for a large history.

`validate(con, checks, contracts, pending, ids, results)` is the one entry point, with the
signature of the plain path, which `HAIC_DQ_FAST=0` uses instead (a test compares the verdicts
of both, rule by rule and drop by drop). What it adds:

- one read of a domain's pending rows for its error and its warn check (each suite sees only its
  own columns: the frame it would have on its own);
- several drops per ~2 M-row frame, each drop's counts attributed from GX's own unexpected-row
  positions (`attribution.py`);
- text as ENUM categoricals and the dtypes GX's pandas engine has fast paths for, the staging
  frame in parts split on the key's hash (`frames.py`);
- GX in worker processes for a large backlog, DuckDB read in the parent only (`parallel.py`);
  GX imported in a thread while other work runs (`haic_pipeline/preload.py`).
"""

from __future__ import annotations

import numpy as np

from haic_pipeline.quality import store
from haic_pipeline.quality import frames as plain   # not `frames`: the name of this package's own module
from haic_pipeline.quality.speed import frames as fast
from haic_pipeline.quality.speed import parallel
from haic_pipeline.quality.speed.attribution import run_members
from haic_pipeline.quality.suites import (
    SCOPE_DROP,
    SCOPE_DROP_PATIENT,
    SCOPE_PATIENT,
    SCOPE_SCHEMA,
    SCOPE_STAGING,
    CheckSpec,
)
from haic_pipeline.quality.validate import add_chunk


def validate(con, checks: list[CheckSpec], contracts: dict, pending: dict, ids: list[str], results: dict) -> None:
    """Every pending frame of `checks` (one staging asset's checks; pending: check name -> its
    pending drops and staging state) as one stream of ~2 M-row frames, in worker processes for a
    large backlog, else here; counts added to `results[(check, scope, extract_id or None)]`.
    Nothing is written to the connection until every frame is read (a statement would end the
    result being fetched)."""
    domain = checks[0].asset.split("/")[1]
    c = contracts.get(domain)
    rules_of = {(ch.name, scope): [r for r in ch.rules if r.scope == scope]
                for ch in checks for scope in {r.scope for r in ch.rules}}
    # a stream: (scope, [(check, its frame columns or None = all)], iterator of (frame, labels, codes))
    streams: list[tuple[str, list[tuple[CheckSpec, list[str] | None]], object]] = []

    def patient_stream(rules):
        plain.build_patient_dates(con, contracts, rules)
        try:
            sql, n = plain.patient_frame_sql(contracts, rules)
            yield from fast.iter_labelled(con, sql, ids, n)
            plain.flag_cross_table(con, rules)   # the frames are all read
        finally:
            con.execute(f"DROP TABLE IF EXISTS {plain.PATIENT_DATES}")

    def unlabelled(make_frames):
        for df in make_frames():
            yield df, [None], np.zeros(len(df), dtype=np.int8)

    drop_members = [ch for ch in checks if pending[ch.name][0] and (ch.name, SCOPE_DROP) in rules_of]
    if drop_members:
        union = [r for ch in drop_members for r in rules_of[(ch.name, SCOPE_DROP)]]
        sql = plain.drop_frame_sql(c, union)
        known = fast.typed_text_values(con, c, union, ids)
        members = [(ch, list(plain.frame_columns(rules_of[(ch.name, SCOPE_DROP)])) if len(drop_members) > 1 else None)
                   for ch in drop_members]
        streams.append((SCOPE_DROP, members, fast.iter_labelled(con, sql, ids, known=known)))
    for ch in checks:
        pending_drop, pending_staging = pending[ch.name]
        if pending_drop and (ch.name, SCOPE_DROP_PATIENT) in rules_of:
            sql = plain.drop_patient_frame_sql(c, rules_of[(ch.name, SCOPE_DROP_PATIENT)])
            streams.append((SCOPE_DROP_PATIENT, [(ch, None)], fast.iter_labelled(con, sql, ids)))
        if pending_drop and (ch.name, SCOPE_PATIENT) in rules_of:
            streams.append((SCOPE_PATIENT, [(ch, None)], patient_stream(rules_of[(ch.name, SCOPE_PATIENT)])))
        if pending_staging and (ch.name, SCOPE_SCHEMA) in rules_of:
            streams.append((SCOPE_SCHEMA, [(ch, None)], unlabelled(lambda: [plain.schema_frame(con, c)])))
        if pending_staging and (ch.name, SCOPE_STAGING) in rules_of:
            streams.append((SCOPE_STAGING, [(ch, None)], unlabelled(lambda: fast.staging_frames(con, c))))

    def on_result(scope: str, members, labels: list, per_member: list[dict]) -> None:
        for (ch, _cols), per_code in zip(members, per_member, strict=True):
            for code, got in per_code.items():
                add_chunk(results[(ch.name, scope, labels[code])], got)

    chunks = ((scope, members, df, labels, codes)
              for scope, members, stream in streams for df, labels, codes in stream)
    if parallel.wanted(store.delivered_rows(con, ids, [c.file for c in contracts.values()])):
        parallel.validate_chunks(chunks, on_result)
    else:
        for scope, members, df, labels, codes in chunks:
            on_result(scope, members, labels, run_members(members, scope, df, codes))
