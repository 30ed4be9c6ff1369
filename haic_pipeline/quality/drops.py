"""Drop-level checks: each loaded drop compared with the previous loaded one.

`drop_sequence` (error, blocking): the drop's `data_cutoff` must not go backwards and its
`extracted_at` must not be older than the previous drop's (latest-wins would let an older
extract overwrite newer rows, and follow-up would shrink).

`drop_changes` (warn): a sharp change from one drop to the next, with the figures:
- rows per domain: the ratio to the previous drop's rows at or beyond ROW_RATIO_MIN (half the
  rows is a sharp change) or ROW_RATIO_MAX (twice), and the rows gained or lost at least
  `min_count_rows` (`_defaults.yaml`), so a small domain is compared too but never flagged on a
  handful of rows; a domain that vanishes (0 rows) is flagged, one the previous drop lacked is
  not (nothing to compare with);
- share of new patients in patients.csv (never delivered before) moving by more than
  SHARE_JUMP from the previous drop's share;
- per domain, share of changed rows (natural key already delivered by an earlier drop) moving by
  more than SHARE_JUMP.
Plain SQL on raw.* (no GX): figures are counts and shares, never a value.
"""

from __future__ import annotations

import hashlib

import duckdb

from haic_pipeline.contracts import Contract, defaults_of
from haic_pipeline.quality import store
from haic_pipeline.quality.suites import CheckSpec, RuleSpec

SEQUENCE, CHANGES = "drop_sequence", "drop_changes"
ROW_RATIO_MIN = 0.5
ROW_RATIO_MAX = 2.0
SHARE_JUMP = 0.5


def drop_checks() -> list[CheckSpec]:
    def rule(check, name, severity, description):
        return RuleSpec(check=check, domain=None, name=name, family="drop", severity=severity,
                        max_share=0.0, scope=check, expectation="", kwargs={}, description=description)

    return [
        CheckSpec(
            name="drop_sequence", asset="staging/patients", severity="error",
            rules=[rule("drop_sequence", "data_cutoff_not_backwards", "error",
                        "data_cutoff on or after the previous drop's"),
                   rule("drop_sequence", "extracted_at_not_older", "error",
                        "extracted_at on or after the previous drop's")],
            description="Blocking: each drop's data_cutoff and extraction time are not older than "
                        "the previous loaded drop's.",
            group="drop_checks",
        ),
        CheckSpec(
            name="drop_changes", asset="staging/patients", severity="warn",
            rules=[rule("drop_changes", "row_count_change", "warn",
                        f"rows per domain more than x{ROW_RATIO_MIN:g} and less than x{ROW_RATIO_MAX:g} "
                        "the previous drop's, or fewer than min_count_rows rows apart"),
                   rule("drop_changes", "new_patient_share_change", "warn",
                        f"share of new patients within +/-{SHARE_JUMP:g} of the previous drop's"),
                   rule("drop_changes", "changed_row_share_change", "warn",
                        f"share of changed rows per domain within +/-{SHARE_JUMP:g} of the previous drop's")],
            description="Each drop compared with the previous one: rows per domain, share of new "
                        "patients, share of changed rows (warn, with the figures).",
            group="drop_checks",
        ),
    ]


def is_drop_check(check: CheckSpec) -> bool:
    return check.name in (SEQUENCE, CHANGES)


def pair_fingerprint(drops: list[tuple], i: int) -> str:
    """A drop is judged with the one before it: its key is the pair of their manifests."""
    prev = drops[i - 1][1] if i > 0 else ""
    return hashlib.sha256(f"{drops[i][1]}|{prev}".encode()).hexdigest()


def pending(con: duckdb.DuckDBPyConnection, check: CheckSpec, suite_fp: str,
            drops: list[tuple]) -> tuple[list[dict], list[tuple[str, str]]]:
    """(the stored rows of every drop still judged with the same previous drop, the drops to
    judge now as (extract_id, pair fingerprint)): a retracted or a newly loaded drop changes its
    successor's pair, which is judged again."""
    keys = [(d[0], pair_fingerprint(drops, i)) for i, d in enumerate(drops)]
    stored = store.latest_rows(con, check.name, suite_fp, keys)
    todo = [k for k in keys if not store.usable(stored.get(k))]
    return [r for k in keys if k not in todo for r in stored.get(k, [])], todo


def validate(con: duckdb.DuckDBPyConnection, check: CheckSpec, contracts: dict[str, Contract], suite_fp: str,
             refresh: str, drops: list[tuple], todo: list[tuple[str, str]]) -> list[dict]:
    """The rows of `check` (drop_sequence or drop_changes) for each drop of `todo`, each compared
    with the loaded drop before it (not written here)."""
    rules = {r.name: r for r in check.rules}
    index = {d[0]: i for i, d in enumerate(drops)}
    figures = {}
    if check.name == CHANGES:  # the pending drops and the drops they are compared with
        wanted = {eid for eid, _ in todo} | {drops[index[eid] - 1][0] for eid, _ in todo if index[eid] > 0}
        figures = drop_figures(con, contracts, sorted(wanted))
    rows = []
    for eid, data_fp in todo:
        i = index[eid]
        prev = drops[i - 1] if i > 0 else None
        if check.name == SEQUENCE:
            outcome = sequence(drops[i], prev)
        else:
            outcome = compare(figures[eid], figures[prev[0]] if prev else None, previous_is_first=i == 1,
                              min_count=defaults_of(contracts).min_count_rows)
        at = store.now()
        rows += [store.result_row(refresh, check, rules[name], scope=check.name, extract_id=eid, passed=o["passed"],
                                  evaluated=1, unexpected=0 if o["passed"] else 1, gx_success=None, exception=None,
                                  suite_fp=suite_fp, data_fp=data_fp, details=o["details"], checked_at=at)
                 for name, o in outcome.items()]
    return rows


def _key_expr(c: Contract) -> str:
    parts = []
    for k in c.natural_key:
        col = c.column(k)
        if col.identifier == "pseudonymise":
            parts.append("patient_key")
        elif col.case == "upper":
            parts.append(f"upper(trim({col.name}))")
        elif col.case == "lower":
            parts.append(f"lower(trim({col.name}))")
        else:
            parts.append(f"trim({col.name})")
    return f"hash({', '.join(parts)})"


def drop_figures(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract], extract_ids: list[str]) -> dict[str, dict]:
    """extract_id -> rows per domain, share of new patients and of changed rows, for each of
    `extract_ids`. Each domain's natural keys are hashed once into a TEMP table (the key's text
    is trimmed and cased: a string pass over every row), with each row's drop as its number in
    extract_id order (ops.drops: a drop's raw rows land in the transaction that records it), then
    each drop's rows are semi-joined to the earlier drops' hashes (every row is hashed once,
    however long the history; drops are compared by their numbers, integers, which is cheaper
    than comparing extract_id texts)."""
    out = {eid: {"rows": {}, "changed_row_share": {}} for eid in extract_ids}
    last = max(extract_ids)
    order = [r[0] for r in con.execute(
        "SELECT DISTINCT extract_id FROM ops.drops WHERE extract_id <= ? ORDER BY extract_id", [last]).fetchall()]
    number = {eid: i + 1 for i, eid in enumerate(order)}
    for d, c in contracts.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE _dq_keys AS SELECT list_position($order, _extract_id) AS e, "
                    f"{_key_expr(c)} AS k FROM raw.{d} WHERE _extract_id <= $last", {"order": order, "last": last})
        try:
            for eid in extract_ids:
                n, seen = con.execute(
                    """WITH mine AS (SELECT k FROM _dq_keys WHERE e = $e)
                       SELECT (SELECT count(*) FROM mine),
                              (SELECT count(*) FROM mine SEMI JOIN
                                  (SELECT k FROM _dq_keys WHERE e < $e) AS earlier USING (k))""",
                    {"e": number.get(eid, -1)}).fetchall()[0]
                out[eid]["rows"][d] = int(n)
                out[eid]["changed_row_share"][d] = (seen / n) if n else None
        finally:
            con.execute("DROP TABLE IF EXISTS _dq_keys")
    for eid in extract_ids:
        n_pat, new_pat = con.execute(
            """SELECT count(DISTINCT patient_key), count(DISTINCT patient_key) FILTER (WHERE patient_key NOT IN
                   (SELECT patient_key FROM raw.patients WHERE _extract_id < ? AND patient_key IS NOT NULL))
               FROM raw.patients WHERE _extract_id = ? AND patient_key IS NOT NULL""", [eid, eid]).fetchall()[0]
        out[eid].update({"patients_delivered": int(n_pat), "new_patient_share": (new_pat / n_pat) if n_pat else None})
    return out


def compare(figures: dict, previous: dict | None, previous_is_first: bool, min_count: int) -> dict[str, dict]:
    """rule -> {passed, details} for drop_changes; `min_count`: the fewest rows gained or lost that
    flag a domain (`min_count_rows` of `_defaults.yaml`, contracts.Defaults). Shares of changed
    rows are not compared with the first drop's (nothing came before it: its share is 0 by
    definition)."""
    out = {}
    ratios, flagged = {}, []
    for d, n in figures["rows"].items():
        p = (previous or {}).get("rows", {}).get(d)
        if not p:  # the previous drop lacked the domain: nothing to compare with
            continue
        ratios[d] = round(n / p, 4)
        sharp = not (ROW_RATIO_MIN < n / p < ROW_RATIO_MAX)   # half the rows is a sharp change
        if sharp and abs(n - p) >= min_count:
            flagged.append(d)
    out["row_count_change"] = {"passed": not flagged, "details": {
        "rows": figures["rows"], "previous_rows": (previous or {}).get("rows"), "ratio": ratios,
        "min_count": min_count, "flagged_domains": flagged}}
    s, ps = figures["new_patient_share"], (previous or {}).get("new_patient_share")
    jump = previous is not None and s is not None and ps is not None and abs(s - ps) > SHARE_JUMP
    out["new_patient_share_change"] = {"passed": not jump, "details": {
        "new_patient_share": s, "previous_new_patient_share": ps,
        "patients_delivered": figures["patients_delivered"]}}
    flagged_c = []
    for d, s in figures["changed_row_share"].items():
        ps = (previous or {}).get("changed_row_share", {}).get(d)
        if (previous is not None and not previous_is_first and s is not None and ps is not None
                and abs(s - ps) > SHARE_JUMP):
            flagged_c.append(d)
    out["changed_row_share_change"] = {"passed": not flagged_c, "details": {
        "changed_row_share": {d: (round(v, 4) if v is not None else None)
                              for d, v in figures["changed_row_share"].items()},
        "previous_changed_row_share": (previous or {}).get("changed_row_share"),
        "flagged_domains": flagged_c}}
    return out


def sequence(drop: tuple, previous: tuple | None) -> dict[str, dict]:
    """rule -> {passed, details} for drop_sequence. drop = (extract_id, sha, extracted_at, cutoff)."""
    _eid, _sha, extracted, cutoff = drop
    p_eid, p_extracted, p_cutoff = (previous[0], previous[2], previous[3]) if previous else (None, None, None)
    back = bool(cutoff and p_cutoff and cutoff < p_cutoff)
    older = bool(extracted and p_extracted and extracted < p_extracted)
    return {
        "data_cutoff_not_backwards": {"passed": not back, "details": {
            "data_cutoff": str(cutoff) if cutoff else None, "previous_data_cutoff": str(p_cutoff) if p_cutoff else None,
            "previous_extract_id": p_eid}},
        "extracted_at_not_older": {"passed": not older, "details": {
            "extracted_at": str(extracted) if extracted else None,
            "previous_extracted_at": str(p_extracted) if p_extracted else None, "previous_extract_id": p_eid}},
    }
