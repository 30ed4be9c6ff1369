"""Expectation suites generated from `data_contracts/` (one source of truth, no hand-written
per-column expectations).

Each contract yields `RuleSpec`s, plain data (no GX import), grouped into checks:

| check                      | frame (what is validated)                                  | rules |
|----------------------------|------------------------------------------------------------|-------|
| `<domain>_error_rules`     | the rows a drop delivered (`raw.typed_<domain>`, per drop)  | every `error` rule: `<col>_required`, `<col>_type`, `<col>_code`, `<col>_range`, `patient_id_pattern`, `lab_unit`, error `date_order` / `not_future` |
|                            | the patients a drop delivered rows of (per drop)            | `orphan` (a patient-level rule: counted in patients) |
|                            |                                                             | `duplicate_key_conflict`: a natural key repeated within the drop with different values (the rows the staging SQL quarantines under that name) |
|                            | the staging table's schema                                  | `columns_present`, `column_types` (structural) |
|                            | `staging.<domain>` itself (after latest-wins)               | `natural_key_unique` (structural) |
| `<domain>_warn_rules`      | the rows a drop delivered                                   | every `warn` rule |
| `cross_table_rules`        | one row per patient the drop delivered, staging tables joined | `cross_table.rules` of the contracts (death on/after index date, no treatment after death, last contact on/after every dated event) |

Rule names are the staging SQL's `check_name`s (`haic_pipeline/warehouse/compile.py`), so a
failed expectation points at its rows in `ops.quarantine` / `ops.row_flags`.

Thresholds: every expectation gets `mostly = 1 - max_share` (the contract's `max_share`, or the
`_defaults.yaml` value of its class: structural 0, values 2 %, plausibility 5 %, orphans 2 %;
`duplicate_key_conflict`: the contract's `duplicate_key_max_share`, else values). A rule counts
offences in its unit (`RuleSpec.unit`): rows, or patients for patient-level rules (orphans, the
one-row-per-patient patients domain, cross-table rules); a rule with a non-zero threshold fails
only when its offences also reach `min_count` (`_defaults.yaml`, or the rule's own), so a small
drop never blocks on one or two offenders (`validate.verdict` is the one judge).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from haic_pipeline.contracts import Column, Contract, Rule, contracts_dir, contracts_fingerprint, load_yaml

#: Bump when the meaning of a generated suite changes without a contract change: every drop is
#: validated again under the new suite version.
SUITE_LOGIC_VERSION = "5"

#: DuckDB type of a staging column per contract type (lab values are converted to DOUBLE).
STAGING_TYPES = {"string": "VARCHAR", "code": "VARCHAR", "date": "DATE", "datetime": "TIMESTAMP",
                 "integer": "INTEGER", "decimal": "DOUBLE", "lab_value": "DOUBLE"}
LINEAGE_COLUMNS = (("dq_warnings", "VARCHAR[]"), ("_extract_id", "VARCHAR"), ("_row_number", "BIGINT"))

SCOPE_DROP = "drop"          # rows delivered by one drop (raw.typed_<domain>)
SCOPE_DROP_PATIENT = "drop_patient"  # patients one drop delivered rows of, in one domain
SCOPE_SCHEMA = "schema"      # the staging table's columns and types
SCOPE_STAGING = "staging"    # staging.<domain> itself
SCOPE_PATIENT = "patient"    # one row per patient delivered by one drop, staging tables joined


@dataclass
class RuleSpec:
    """One expectation, generated from a contract. `condition` is a list of (column, op, value)
    AND-ed into a GX row condition (op: not_null, in, not_in, ne)."""

    check: str
    domain: str | None
    name: str
    family: str
    severity: str
    max_share: float
    scope: str
    expectation: str
    kwargs: dict
    condition: list = field(default_factory=list)
    identifier: bool = False
    description: str = ""
    sql: dict = field(default_factory=dict)      # drop frame: column -> SQL over t (typed view), p
    source: dict = field(default_factory=dict)   # cross-table: the contract entry (frames.py)
    #: what one offence is: a row, or a patient (patient-level rules: one patient's 24 orphan
    #: lab rows are one offence)
    unit: str = "row"
    #: a rule with a non-zero max_share fails only from this many offences on (validate.verdict)
    min_count: int = 1

    @property
    def mostly(self) -> float:
        return 1.0 - self.max_share

    @property
    def columns(self) -> list[str]:
        cols = [self.kwargs[k] for k in ("column", "column_A", "column_B") if k in self.kwargs]
        cols += list(self.kwargs.get("column_list", ()))
        cols += [c for c, _op, _v in self.condition]
        return list(dict.fromkeys(cols))

    def as_dict(self) -> dict:
        return {"check": self.check, "domain": self.domain, "name": self.name, "family": self.family,
                "severity": self.severity, "max_share": self.max_share, "scope": self.scope,
                "expectation": self.expectation, "kwargs": self.kwargs,
                "condition": [list(c) for c in self.condition], "sql": self.sql,
                "source": self.source, "unit": self.unit, "min_count": self.min_count}


@dataclass
class CheckSpec:
    """One Dagster asset check: the rules of one severity for one staging asset."""

    name: str
    asset: str                      # "staging/<domain>"
    severity: str                   # error -> blocking check, warn -> plain check
    rules: list[RuleSpec]
    description: str
    additional_assets: tuple[str, ...] = ()
    #: checks of one group run together, in one Dagster step (one read of a domain's drop rows
    #: serves its error and its warn rules): `<domain>_rules`, `drop_checks`, `cross_table_rules`
    group: str = ""

    @property
    def blocking(self) -> bool:
        return self.severity == "error"


# --------------------------------------------------------------------------------------------
# contract folder extras: _defaults.yaml and the cross_table section (read from the same files)


def load_defaults(folder: str | Path | None = None) -> dict:
    base = Path(folder) if folder else contracts_dir()
    path = base / "_defaults.yaml"
    doc = load_yaml(path.read_text()) if path.exists() else None
    defaults = (doc or {}).get("defaults", {}) or {}
    return {
        "structural_max_share": float(defaults.get("structural_max_share", 0.0)),
        "value_max_share": float(defaults.get("value_max_share", 0.02)),
        "plausibility_max_share": float(defaults.get("plausibility_max_share", 0.05)),
        "orphan_max_share": float(defaults.get("orphan_max_share", 0.02)),
        "min_count_rows": int(defaults.get("min_count_rows", 5)),
        "min_count_patients": int(defaults.get("min_count_patients", 3)),
    }


def load_cross_table(contracts: dict[str, Contract], folder: str | Path | None = None) -> dict:
    """The `cross_table:` sections of the contract files (rules on joined staging tables)."""
    base = Path(folder) if folder else contracts_dir()
    index_regimen, rules = None, []
    for path in sorted(base.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        doc = load_yaml(path.read_text(encoding="utf-8")) or {}
        section = doc.get("cross_table")
        if not section:
            continue
        index_regimen = section.get("index_regimen", index_regimen)
        for raw in section.get("rules", []) or []:
            for side in ("earlier", "later"):
                for ref in raw.get(side, []) or []:
                    if ref == "index_date":
                        continue
                    domain, _, column = ref.partition(".")
                    if domain not in contracts or column not in contracts[domain].column_names:
                        raise ValueError(f"{path.name}: cross_table rule {raw.get('name')!r} names "
                                         f"unknown column {ref!r}")
            rules.append(raw)
    return {"index_regimen": index_regimen, "rules": rules}


def suite_fingerprint(contracts: dict[str, Contract], folder: str | Path | None = None) -> str:
    """The suite version: the contracts (incl. _defaults.yaml) and the generator's logic version."""
    base = Path(folder) if folder else contracts_dir()
    h = hashlib.sha256(contracts_fingerprint(contracts).encode())
    defaults = base / "_defaults.yaml"
    if defaults.exists():
        h.update(defaults.read_bytes())
    h.update(SUITE_LOGIC_VERSION.encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# frame columns: each rule names the SQL of the drop-frame columns it reads (over `t`, the typed
# view raw.typed_<domain>, and `p`, staging.patients left-joined). Delivered text never leaves
# DuckDB: `<col>__delivered` is true where a value was delivered (NULL otherwise) and
# `<col>__parsed` is NULL where nothing was delivered, else whether the text parsed as its type.
# Conditional rules are read as such flags (NULL where the rule does not apply: GX ignores
# missing values), not as GX row conditions, which copy the whole frame per metric.


def _q(text) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _in_list(values) -> str:
    return ", ".join(_q(v) for v in values)


def delivered(col: Column) -> tuple[str, str]:
    if col.identifier == "pseudonymise":
        return f"{col.name}__delivered", "CASE WHEN t.patient_key IS NOT NULL THEN true END"
    return f"{col.name}__delivered", f"CASE WHEN t.raw_{col.name} IS NOT NULL THEN true END"


def parsed(col: Column) -> tuple[str, str]:
    value = f"t.{col.name}_number" if col.type == "lab_value" else f"t.{col.name}"
    return f"{col.name}__parsed", f"CASE WHEN t.raw_{col.name} IS NOT NULL THEN {value} IS NOT NULL END"


def value_column(col: Column) -> tuple[str, str]:
    name = f"{col.name}_number" if col.type == "lab_value" else col.name
    return name, f"t.{name}"


def as_date(col: Column) -> tuple[str, str]:
    if col.type == "datetime":
        return f"{col.name}__date", f"t.{col.name}::DATE"
    return col.name, f"t.{col.name}"


# --------------------------------------------------------------------------------------------
# generation


def _pair_not_before(a: str, b: str) -> dict:
    """b >= a, rows with either value missing ignored."""
    return {"column_A": b, "column_B": a, "or_equal": True, "ignore_row_if": "either_value_is_missing"}


def column_rules(c: Contract, col: Column, check_of) -> list[RuleSpec]:
    out = []
    ident = col.identifier is not None
    share = col.max_share if col.max_share is not None else 0.02

    def add(name, family, severity, expectation, kwargs, sql, description=""):
        out.append(RuleSpec(check=check_of(severity), domain=c.domain, name=name, family=family,
                            severity=severity, max_share=float(share), scope=SCOPE_DROP,
                            expectation=expectation, kwargs=kwargs, sql=dict(sql),
                            identifier=ident, description=description))

    if col.identifier == "pseudonymise":
        col_d, sql_d = delivered(col)
        add(f"{col.name}_required", "required", "error", "ExpectColumnValuesToNotBeNull",
            {"column": col_d}, {col_d: sql_d}, description=f"{col.name} delivered (counts only)")
        if col.pattern:
            name = f"{col.name}__valid"
            add(f"{col.name}_pattern", "pattern", "error", "ExpectColumnValuesToBeInSet",
                {"column": name, "value_set": [True]},
                {name: "CASE WHEN t.patient_key IS NOT NULL THEN t._patient_id_valid END"},
                description=f"{col.name} matches {col.pattern} (checked at landing; counts only)")
        return out
    sev = col.severity
    typed = col.type in ("date", "datetime", "integer", "decimal", "lab_value")
    present = parsed(col) if typed else delivered(col)
    if col.required or col.name in c.natural_key:
        add(f"{col.name}_required", "required", sev, "ExpectColumnValuesToNotBeNull",
            {"column": present[0]}, [present], description=f"{col.name} delivered")
    if typed:
        add(f"{col.name}_type", "type", sev, "ExpectColumnValuesToBeInSet",
            {"column": present[0], "value_set": [True]}, [present],
            description=f"{col.name} parses as {col.type}")
    if col.type == "code":
        add(f"{col.name}_code", "code", sev, "ExpectColumnValuesToBeInSet",
            {"column": col.name, "value_set": list(col.codes)}, [(col.name, f"t.{col.name}")],
            description=f"{col.name} in {', '.join(col.codes)}")
    if col.min is not None or col.min_exclusive is not None or col.max is not None:
        vcol = value_column(col)
        kwargs = {"column": vcol[0]}
        bounds = []
        if col.min_exclusive is not None:
            kwargs.update(min_value=col.min_exclusive, strict_min=True)
            bounds.append(f"> {col.min_exclusive}")
        elif col.min is not None:
            kwargs["min_value"] = col.min
            bounds.append(f">= {col.min}")
        if col.max is not None:
            kwargs["max_value"] = col.max
            bounds.append(f"<= {col.max}")
        add(f"{col.name}_range", "range", sev, "ExpectColumnValuesToBeBetween", kwargs, [vcol],
            description=f"{col.name} {' and '.join(bounds)}")
    return out


def contract_rule(c: Contract, rule: Rule, check_of) -> RuleSpec:
    def spec(family, expectation, kwargs, sql, identifier=False, description=""):
        return RuleSpec(check=check_of(rule.severity), domain=c.domain, name=rule.name, family=family,
                        severity=rule.severity, max_share=rule.max_share, scope=SCOPE_DROP,
                        expectation=expectation, kwargs=kwargs, sql=dict(sql),
                        identifier=identifier, description=description)

    if rule.kind == "date_order":
        a, b = (c.column(x) for x in rule.columns)
        da, db = as_date(a), as_date(b)
        return spec("date_order", "ExpectColumnPairValuesAToBeGreaterThanB", _pair_not_before(da[0], db[0]),
                    [da, db], identifier=bool(a.identifier or b.identifier),
                    description=f"{b.name} on or after {a.name}")
    if rule.kind == "not_future":
        (a,) = (c.column(x) for x in rule.columns)
        da = as_date(a)
        return spec("not_future", "ExpectColumnPairValuesAToBeGreaterThanB",
                    {"column_A": "_extract_date", "column_B": da[0], "or_equal": True,
                     "ignore_row_if": "either_value_is_missing"},
                    [("_extract_date", "t._extract_date"), da], identifier=bool(a.identifier),
                    description=f"{a.name} not after the drop's extraction date")
    if rule.kind == "orphan":
        # judged per patient (frames.drop_patient_frame_sql: one row per drop and patient)
        out = spec("orphan", "ExpectColumnValuesToBeInSet", {"column": "patient_in_staging", "value_set": [True]},
                   [("patient_in_staging", "CASE WHEN t.patient_key IS NOT NULL THEN p.patient_key IS NOT NULL END")],
                   description="patients of the drop's rows present in staging.patients (counted per patient)")
        out.scope, out.unit = SCOPE_DROP_PATIENT, "patient"
        return out
    if rule.kind == "lab_unit":
        return spec("lab_unit", "ExpectColumnValuesToBeInSet", {"column": "unit_accepted", "value_set": [True]},
                    [("unit_accepted", f"CASE WHEN t.test_code IN ({_in_list(c.units)}) "
                                       "THEN t._unit_divisor IS NOT NULL END")],
                    description="unit accepted for the test (data_contracts units:)")
    if rule.kind == "censoring_only_for":
        return spec("censoring", "ExpectColumnValuesToBeInSet", {"column": "censoring_allowed", "value_set": [True]},
                    [("censoring_allowed", f"CASE WHEN t.test_code NOT IN ({_in_list(rule.tests)}) "
                                           "THEN t.value_censoring IS NULL END")],
                    description=f"censored values only for {', '.join(rule.tests)}")
    raise ValueError(f"{c.domain}: rule kind {rule.kind!r} has no expectation")


def duplicate_key_rule(c: Contract, check_of) -> RuleSpec:
    """`duplicate_key_conflict` (error): the share of a drop's rows that repeat a natural key of
    the same drop with different values and are not its last data row (latest-wins within a
    drop; an exact duplicate is not a conflict and is dropped silently).

    Which rows those are is decided in one place, the staging model (its step 3 ranks the keys
    delivered more than once and quarantines the conflicting rows under this check_name); the
    frame column `duplicate_key__last_or_same` reads that decision back from ops.quarantine:
    false for a quarantined conflict, NULL where staging does not rank the row (incomplete key;
    outside patients, a patient who withdrew consent). Judged when the drop is validated: a later
    drop re-delivering the key supersedes the row (staging then lists it as an older version),
    and the drop's stored result stays as it was. (Recomputing the conflicts here with a window
    per drop cost +2 s per 2.4 M lab rows; this is a join on a small table.)"""
    key = ", ".join(c.staging_key)
    applies = " AND ".join(f"t.{k} IS NOT NULL" for k in c.staging_key)
    if c.domain != "patients":
        applies += (" AND t.patient_key NOT IN "
                    "(SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')")
    quarantined = (f"SELECT 1 FROM ops.quarantine AS q WHERE q.domain = '{c.domain}' "
                   "AND q.check_name = 'duplicate_key_conflict' AND q.extract_id = t._extract_id "
                   "AND q.row_number = t._row_number")
    column = "duplicate_key__last_or_same"
    return RuleSpec(check=check_of("error"), domain=c.domain, name="duplicate_key_conflict",
                    family="duplicate_key", severity="error", max_share=float(c.duplicate_key_max_share),
                    scope=SCOPE_DROP, expectation="ExpectColumnValuesToBeInSet",
                    kwargs={"column": column, "value_set": [True]},
                    sql={column: f"CASE WHEN {applies} THEN NOT EXISTS ({quarantined}) END"},
                    identifier=True,
                    description=(f"({key}) not repeated within the drop with different values (the "
                                 "last row of a key wins, the others are quarantined)"))


def staging_columns(c: Contract) -> list[tuple[str, str]]:
    """(column, DuckDB type) that staging.<domain> must have, from the contract."""
    out = []
    for col in c.columns:
        if not col.in_staging:
            continue
        out.append((col.warehouse_name if col.type != "lab_value" else col.name, STAGING_TYPES[col.type]))
        if col.type == "lab_value":
            out.append((f"{col.name}_censoring", "VARCHAR"))
    return out + list(LINEAGE_COLUMNS)


def structural_rules(c: Contract, check: str, defaults: dict) -> list[RuleSpec]:
    share = defaults["structural_max_share"]
    common = {"check": check, "domain": c.domain, "severity": "error", "max_share": share}
    return [
        RuleSpec(**common, name="columns_present", family="presence", scope=SCOPE_SCHEMA,
                 expectation="ExpectColumnValuesToNotBeNull", kwargs={"column": "actual_type"},
                 description=f"every contract column present in staging.{c.domain}"),
        RuleSpec(**common, name="column_types", family="types", scope=SCOPE_SCHEMA,
                 expectation="ExpectColumnPairValuesToBeEqual",
                 kwargs={"column_A": "actual_type", "column_B": "expected_type",
                         "ignore_row_if": "either_value_is_missing"},
                 description=f"staging.{c.domain} column types as the contract says"),
        RuleSpec(**common, name="natural_key_unique", family="unique", scope=SCOPE_STAGING,
                 expectation="ExpectColumnValuesToBeUnique", kwargs={"column": "natural_key_hash"},
                 identifier=True,
                 description=f"({', '.join(c.staging_key)}) unique in staging.{c.domain} after latest-wins"),
    ]


def cross_table_rules(contracts: dict[str, Contract], defaults: dict, folder=None) -> list[RuleSpec]:
    section = load_cross_table(contracts, folder)
    out = []
    for raw in section["rules"]:
        sev = raw.get("severity", "warn")
        out.append(RuleSpec(
            check="cross_table_rules", domain=None, name=raw["name"], family="cross_table",
            severity=sev, max_share=float(raw.get("max_share", defaults["plausibility_max_share"])),
            scope=SCOPE_PATIENT, expectation="ExpectColumnPairValuesAToBeGreaterThanB",
            kwargs={"column_A": f"{raw['name']}__later", "column_B": f"{raw['name']}__earlier",
                    "or_equal": True, "ignore_row_if": "either_value_is_missing"},
            description=(f"per patient: {' / '.join(raw['later'])} on or after "
                         f"{' / '.join(raw['earlier'])}"),
            source={"earlier": list(raw["earlier"]), "later": list(raw["later"]),
                    "index_regimen": section["index_regimen"]},
            unit="patient",
        ))
        out[-1].min_count = min_count(out[-1].max_share, out[-1].unit, raw.get("min_count"), defaults)
    return out


def domain_rules(c: Contract, defaults: dict) -> list[RuleSpec]:
    def check_of(severity: str) -> str:
        return f"{c.domain}_{severity}_rules"

    rules: list[RuleSpec] = []
    withdrawn_aware = c.domain == "patients"
    for col in c.columns:
        if col.in_raw:
            rules.extend(column_rules(c, col, check_of))
    rules.extend(contract_rule(c, r, check_of) for r in c.rules)
    if withdrawn_aware:
        # as in the staging SQL: a withdrawn patient is judged on its key only
        for r in rules:
            if not r.name.startswith("patient_id"):
                r.condition.append(("consent_status", "ne", "withdrawn"))
                r.sql["consent_status"] = "t.consent_status"
    if c.natural_key:
        # after the consent conditions: staging ranks a withdrawn patient's key like any other
        rules.append(duplicate_key_rule(c, check_of))
    rules.extend(structural_rules(c, check_of("error"), defaults))
    if c.staging_key == ["patient_key"]:
        for r in rules:   # one row per patient: a patient's missing or conflicting demographics
            if r.scope == SCOPE_DROP:
                r.unit = "patient"
    overrides = {x.name: x.min_count for x in c.rules} | {
        name: col.min_count for col in c.columns
        for name in (f"{col.name}_{k}" for k in ("required", "type", "code", "range", "pattern"))}
    for r in rules:
        r.min_count = min_count(r.max_share, r.unit, overrides.get(r.name), defaults)
    return rules


def min_count(max_share: float, unit: str, override: int | None, defaults: dict) -> int:
    """Offences from which a rule with a non-zero threshold can fail: the contract's own
    `min_count`, else the _defaults.yaml one of the rule's unit (rows or patients). A rule with a
    zero threshold (structural) fails on one."""
    if max_share <= 0:
        return 1
    if override is not None:
        return int(override)
    return defaults["min_count_patients"] if unit == "patient" else defaults["min_count_rows"]


def generate_checks(contracts: dict[str, Contract], folder: str | Path | None = None) -> list[CheckSpec]:
    """Every check and its rules, generated from the contracts (in staging order)."""
    defaults = load_defaults(folder)
    checks: list[CheckSpec] = []
    for domain, c in contracts.items():
        rules = domain_rules(c, defaults)
        for severity in ("error", "warn"):
            mine = [r for r in rules if r.severity == severity]
            if not mine:
                continue
            checks.append(CheckSpec(
                name=f"{domain}_{severity}_rules", asset=f"staging/{domain}", severity=severity, rules=mine,
                group=f"{domain}_rules",
                description=(
                    f"{'Blocking: ' if severity == 'error' else ''}the share of offending rows (patients, for "
                    f"patient-level rules) per {severity} rule of data_contracts/{domain}.yaml, per delivered "
                    f"drop (GX suite generated from the contract; fails above the rule's max_share and from "
                    f"its min_count offences on)."),
            ))
    xt = cross_table_rules(contracts, defaults, folder)
    if xt:
        severity = "error" if any(r.severity == "error" for r in xt) else "warn"
        domains = [d for d in contracts if d != "vital_status"]
        checks.append(CheckSpec(
            name="cross_table_rules", asset="staging/vital_status", severity=severity, rules=xt,
            group="cross_table_rules",
            additional_assets=tuple(f"staging/{d}" for d in domains),
            description="Cross-table date order per patient (death on or after the index date, no "
                        "treatment after death, last contact on or after every dated event), "
                        "on the staging tables joined, for the patients each drop delivered.",
        ))
    return checks


def suite_document(check: CheckSpec) -> str:
    """A stable JSON rendering of a check's generated suite (for tests and the report)."""
    return json.dumps([r.as_dict() for r in check.rules], sort_keys=True, indent=1, default=str)


def build_suite(gx, check: CheckSpec, scope: str, condition_builder):
    """The GX `ExpectationSuite` for the rules of `check` validated on frames of `scope`."""
    suite = gx.ExpectationSuite(name=f"{check.name}.{scope}")
    for r in check.rules:
        if r.scope != scope:
            continue
        cls = getattr(gx.expectations, r.expectation)
        kwargs = dict(r.kwargs)
        kwargs["mostly"] = r.mostly
        if r.condition:
            kwargs["row_condition"] = condition_builder(r.condition)
        suite.add_expectation(cls(**kwargs, meta={"rule": r.name, "severity": r.severity,
                                                  "max_share": r.max_share}))
    return suite
