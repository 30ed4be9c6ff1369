"""The rule catalogue: every row rule of `data_contracts/`, written once.

Each rule is a `RuleSpec`: a Great Expectations expectation over named frame columns, the SQL
of those columns over `t` (the typed view `raw.typed_<domain>`), a severity, a threshold
(`max_share`, `min_count`, both settled by the contracts layer), a unit (rows or patients) and the reason text a quarantined row
carries. Both judges of a row are generated from it, so they cannot drift apart:

- the staging SQL (`haic_pipeline.warehouse.compile`) routes each offending row to
  `ops.quarantine` (error) or `ops.row_flags` (warn) with `offending_sql(rule)`, the
  expectation's own definition of an unexpected row, written as a DuckDB predicate;
- the data-quality gate (`haic_pipeline.quality`) validates the same columns with the same
  expectation in Great Expectations and judges each drop's share (`validate.verdict`).

A test runs every rule kind through both and requires the same offending rows
(`haic_pipeline_tests/quality/test_catalogue.py`). `duplicate_key_conflict` is the one rule the
staging SQL decides (it ranks the keys delivered more than once); its frame column reads that
decision back. Plain data: nothing here imports GX or opens DuckDB.

Frame columns: delivered text never leaves DuckDB: `<col>__delivered` is true where a value was
delivered (NULL otherwise) and `<col>__parsed` is NULL where nothing was delivered, else whether
the text parsed as its type. Conditional rules are read as such flags (NULL where the rule does
not apply: GX ignores missing values, and so does a NULL predicate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from haic_pipeline.contracts import UNIT_ROW, Column, Contract, Rule

SCOPE_DROP = "drop"          # rows delivered by one drop (raw.typed_<domain>)
SCOPE_DROP_PATIENT = "drop_patient"  # patients one drop delivered rows of, in one domain
SCOPE_SCHEMA = "schema"      # the staging table's columns and types
SCOPE_STAGING = "staging"    # staging.<domain> itself
SCOPE_PATIENT = "patient"    # one row per patient delivered by one drop, staging tables joined

WITHDRAWN = "(SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')"


@dataclass
class RuleSpec:
    """One expectation, generated from a contract, over frame columns whose SQL it names; a rule
    that applies to some rows only reads a column that is NULL elsewhere (GX ignores missing
    values, and a NULL predicate is no offence), so no GX row condition is needed."""

    check: str
    domain: str | None
    name: str
    family: str
    severity: str
    max_share: float
    scope: str
    expectation: str
    kwargs: dict
    identifier: bool = False
    description: str = ""
    sql: dict = field(default_factory=dict)      # drop frame: column -> SQL over t (typed view)
    source: dict = field(default_factory=dict)   # cross-table: the contract entry (frames.py)
    #: what one offence is: a row, or a patient (patient-level rules: one patient's 24 orphan
    #: lab rows are one offence)
    unit: str = UNIT_ROW
    #: a rule with a non-zero max_share fails only from this many offences on (validate.verdict)
    min_count: int = 1
    #: SQL (over the typed view's columns) of the reason a quarantined or flagged row carries
    reason: str = ""

    @property
    def mostly(self) -> float:
        return 1.0 - self.max_share

    @property
    def columns(self) -> list[str]:
        cols = [self.kwargs[k] for k in ("column", "column_A", "column_B") if k in self.kwargs]
        cols += list(self.kwargs.get("column_list", ()))
        return list(dict.fromkeys(cols))

    def as_dict(self) -> dict:
        return {"check": self.check, "domain": self.domain, "name": self.name, "family": self.family,
                "severity": self.severity, "max_share": self.max_share, "scope": self.scope,
                "expectation": self.expectation, "kwargs": self.kwargs,
                "sql": self.sql,
                "source": self.source, "unit": self.unit, "min_count": self.min_count}


# --------------------------------------------------------------------------------------------
# frame columns


def quote(text) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def _in_list(values) -> str:
    return ", ".join(quote(v) for v in values)


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


def _show(col: Column) -> str:
    """The delivered text of a column for a reason (never for identifier columns)."""
    if col.identifier:
        return "'(withheld)'"
    return f"coalesce(raw_{col.name}, '')"


def lower_bound(col: Column) -> tuple[float, bool] | None:
    """The column's lower bound (value, strict): `min` and `min_exclusive` together are the
    stricter of the two."""
    if col.min_exclusive is not None and (col.min is None or col.min_exclusive >= col.min):
        return col.min_exclusive, True
    if col.min is not None:
        return col.min, False
    return None


# --------------------------------------------------------------------------------------------
# the rules


def _pair_not_before(a: str, b: str) -> dict:
    """b >= a, rows with either value missing ignored."""
    return {"column_A": b, "column_B": a, "or_equal": True, "ignore_row_if": "either_value_is_missing"}


def column_rules(c: Contract, col: Column, check_of) -> list[RuleSpec]:
    out = []
    ident = col.identifier is not None

    def add(name, family, severity, expectation, kwargs, sql, reason, description=""):
        out.append(RuleSpec(check=check_of(severity), domain=c.domain, name=name, family=family,
                            severity=severity, max_share=col.max_share, scope=SCOPE_DROP,
                            expectation=expectation, kwargs=kwargs, sql=dict(sql),
                            identifier=ident, description=description, reason=reason,
                            unit=c.unit, min_count=col.min_count))

    if col.identifier == "pseudonymise":
        col_d, sql_d = delivered(col)
        add(f"{col.name}_required", "required", "error", "ExpectColumnValuesToNotBeNull",
            {"column": col_d}, {col_d: sql_d}, quote(f"{col.name} is missing"),
            description=f"{col.name} delivered (counts only)")
        if col.pattern:
            name = f"{col.name}__valid"
            add(f"{col.name}_pattern", "pattern", "error", "ExpectColumnValuesToBeInSet",
                {"column": name, "value_set": [True]},
                {name: "CASE WHEN t.patient_key IS NOT NULL THEN t._patient_id_valid END"},
                quote(f"{col.name} does not match {col.pattern} (value withheld)"),
                description=f"{col.name} matches {col.pattern} (checked at landing; counts only)")
        return out
    sev = col.severity
    typed = col.type in ("date", "datetime", "integer", "decimal", "lab_value")
    present = parsed(col) if typed else delivered(col)
    if col.required or col.name in c.natural_key:
        add(f"{col.name}_required", "required", sev, "ExpectColumnValuesToNotBeNull",
            {"column": present[0]}, [present], quote(f"{col.name} is missing"), description=f"{col.name} delivered")
    if typed:
        kind = {"date": "a YYYY-MM-DD date", "datetime": "a YYYY-MM-DD[ HH:MM[:SS]] date-time",
                "integer": "an integer", "decimal": "a number",
                "lab_value": "a number with an optional < or > sign"}[col.type]
        add(f"{col.name}_type", "type", sev, "ExpectColumnValuesToBeInSet",
            {"column": present[0], "value_set": [True]}, [present],
            f"{quote(col.name + ' ')} || {_show(col)} || {quote(' is not ' + kind)}",
            description=f"{col.name} parses as {col.type}")
    if col.type == "code":
        add(f"{col.name}_code", "code", sev, "ExpectColumnValuesToBeInSet",
            {"column": col.name, "value_set": list(col.codes)}, [(col.name, f"t.{col.name}")],
            f"{quote(col.name + ' ')} || {_show(col)} || {quote(' is not one of ' + ', '.join(col.codes))}",
            description=f"{col.name} in {', '.join(col.codes)}")
    lower = lower_bound(col)
    if lower is not None or col.max is not None:
        vcol = value_column(col)
        kwargs = {"column": vcol[0]}
        bounds = []
        if lower is not None:
            kwargs["min_value"] = lower[0]
            if lower[1]:
                kwargs["strict_min"] = True
            bounds.append(f"{'>' if lower[1] else '>='} {lower[0]}")
        if col.max is not None:
            kwargs["max_value"] = col.max
            bounds.append(f"<= {col.max}")
        add(f"{col.name}_range", "range", sev, "ExpectColumnValuesToBeBetween", kwargs, [vcol],
            f"{quote(col.name + ' ')} || {_show(col)} || {quote(' outside the allowed range (' + ' and '.join(bounds) + ')')}",
            description=f"{col.name} {' and '.join(bounds)}")
    return out


def contract_rule(c: Contract, rule: Rule, check_of) -> RuleSpec:
    def spec(family, expectation, kwargs, sql, reason, identifier=False, description=""):
        return RuleSpec(check=check_of(rule.severity), domain=c.domain, name=rule.name, family=family,
                        severity=rule.severity, max_share=rule.max_share, scope=SCOPE_DROP,
                        expectation=expectation, kwargs=kwargs, sql=dict(sql),
                        identifier=identifier, description=description, reason=reason,
                        unit=rule.unit, min_count=rule.min_count)

    if rule.kind == "date_order":
        a, b = (c.column(x) for x in rule.columns)
        da, db = as_date(a), as_date(b)
        return spec("date_order", "ExpectColumnPairValuesAToBeGreaterThanB", _pair_not_before(da[0], db[0]),
                    [da, db], f"{quote(b.name + ' ')} || {_show(b)} || {quote(' is before ' + a.name + ' ')} || {_show(a)}",
                    identifier=bool(a.identifier or b.identifier), description=f"{b.name} on or after {a.name}")
    if rule.kind == "not_future":
        (a,) = (c.column(x) for x in rule.columns)
        da = as_date(a)
        return spec("not_future", "ExpectColumnPairValuesAToBeGreaterThanB",
                    {"column_A": "_extract_date", "column_B": da[0], "or_equal": True,
                     "ignore_row_if": "either_value_is_missing"},
                    [("_extract_date", "t._extract_date"), da],
                    f"{quote(a.name + ' ')} || {_show(a)} || ' is after the drop''s extraction date ' || _extract_date::VARCHAR",
                    identifier=bool(a.identifier), description=f"{a.name} not after the drop's extraction date")
    if rule.kind == "orphan":
        # judged per patient by the gate (frames.drop_patient_frame_sql: one row per drop and patient)
        out = spec("orphan", "ExpectColumnValuesToBeInSet", {"column": "patient_in_staging", "value_set": [True]},
                   [("patient_in_staging", "CASE WHEN t.patient_key IS NOT NULL THEN t.patient_key IN "
                                           "(SELECT patient_key FROM staging.patients) END")],
                   quote("patient is in no delivered patients.csv (or its patient row is quarantined)"),
                   description="patients of the drop's rows present in staging.patients (counted per patient)")
        out.scope = SCOPE_DROP_PATIENT
        return out
    if rule.kind == "lab_unit":
        return spec("lab_unit", "ExpectColumnValuesToBeInSet", {"column": "unit_accepted", "value_set": [True]},
                    [("unit_accepted", f"CASE WHEN t.test_code IN ({_in_list(c.units)}) "
                                       "THEN t._unit_divisor IS NOT NULL END")],
                    "'unit ''' || coalesce(raw_unit, '') || ''' is not accepted for ' || test_code",
                    description="unit accepted for the test (data_contracts units:)")
    if rule.kind == "censoring_only_for":
        return spec("censoring", "ExpectColumnValuesToBeInSet", {"column": "censoring_allowed", "value_set": [True]},
                    [("censoring_allowed", f"CASE WHEN t.test_code NOT IN ({_in_list(rule.tests)}) "
                                           "THEN t.value_censoring IS NULL END")],
                    "'censored value ' || coalesce(raw_value, '') || ' for ' || test_code || ' (expected only for "
                    + ", ".join(rule.tests) + ")'",
                    description=f"censored values only for {', '.join(rule.tests)}")
    raise ValueError(f"{c.domain}: rule kind {rule.kind!r} has no expectation")


def duplicate_key_rule(c: Contract, check_of) -> RuleSpec:
    """`duplicate_key_conflict` (error): the share of a drop's rows that repeat a natural key of
    the same drop with different values and are not its last data row (latest-wins within a
    drop; an exact duplicate is not a conflict and is dropped silently).

    Which rows those are is decided in one place, the staging model (its step 3 ranks the keys
    delivered more than once and quarantines the conflicting rows under this check_name); the
    frame column `duplicate_key__last_or_same` reads that decision back from ops.quarantine:
    false for a quarantined conflict, NULL where staging does not rank the row (incomplete key).
    Judged when the drop is validated, then on what the drop still contributes (gate.rejudge):
    a later drop re-delivering the key supersedes the row."""
    key = ", ".join(c.staging_key)
    applies = " AND ".join(f"t.{k} IS NOT NULL" for k in c.staging_key)
    quarantined = (f"SELECT 1 FROM ops.quarantine AS q WHERE q.domain = '{c.domain}' "
                   "AND q.check_name = 'duplicate_key_conflict' AND q.extract_id = t._extract_id "
                   "AND q.row_number = t._row_number")
    column = "duplicate_key__last_or_same"
    return RuleSpec(check=check_of("error"), domain=c.domain, name="duplicate_key_conflict",
                    family="duplicate_key", severity="error", max_share=c.duplicate_key_max_share,
                    min_count=c.duplicate_key_min_count, unit=c.unit, scope=SCOPE_DROP, expectation="ExpectColumnValuesToBeInSet",
                    kwargs={"column": column, "value_set": [True]},
                    sql={column: f"CASE WHEN {applies} THEN NOT EXISTS ({quarantined}) END"},
                    identifier=True,
                    description=(f"({key}) not repeated within the drop with different values (the "
                                 "last row of a key wins, the others are quarantined)"))


def row_rules(c: Contract) -> list[RuleSpec]:
    """Every row rule of one contract, in order: column rules, contract rules,
    duplicate_key_conflict; (patients) with the consent gate. Thresholds, minimum counts and
    units are the contract's, as the contracts layer settled them."""

    def check_of(severity: str) -> str:
        return f"{c.domain}_{severity}_rules"

    rules: list[RuleSpec] = []
    for col in c.columns:
        if col.in_raw:
            rules.extend(column_rules(c, col, check_of))
    rules.extend(contract_rule(c, r, check_of) for r in c.rules)
    if c.domain == "patients":
        for r in rules:
            if not r.name.startswith("patient_id"):
                consent_gate(r)
    if c.natural_key:
        # after the consent gate: staging ranks a withdrawn patient's key like any other
        rules.append(duplicate_key_rule(c, check_of))
    return rules


CONSENTED = "t.consent_status IS DISTINCT FROM 'withdrawn'"


def consent_gate(rule: RuleSpec) -> None:
    """A withdrawn patient's row of patients.csv is judged on its key only (staging keeps nothing
    else of it): each of the rule's frame columns is NULL for it. A required-value rule becomes
    "present is true" over `<col>__present` (true / false, NULL when withdrawn), since a
    not-null expectation would count the NULL as missing."""
    if rule.expectation == "ExpectColumnValuesToNotBeNull":
        base = rule.name.removesuffix("_required")
        name = f"{base}__present"
        rule.expectation, rule.kwargs = "ExpectColumnValuesToBeInSet", {"column": name, "value_set": [True]}
        rule.sql = {name: f"t.raw_{base} IS NOT NULL"}
    rule.sql = {k: f"CASE WHEN {CONSENTED} THEN {v} END" for k, v in rule.sql.items()}


def judged_rows(c: Contract, alias: str = "") -> str:
    """SQL condition on the rows both judges see (empty: every row): outside patients, the rows
    of a patient who withdrew consent are neither judged nor staged."""
    if c.domain == "patients":
        return ""
    return f"({alias}patient_key IS NULL OR {alias}patient_key NOT IN {WITHDRAWN})"


def offending_sql(rule: RuleSpec) -> str:
    """The expectation's unexpected rows as a DuckDB predicate over the frame columns' SQL:
    true where the row offends, false or NULL where it does not or is not evaluated (a missing
    value: a row the rule does not apply to), as GX's pandas engine reads them."""
    k = rule.kwargs

    def col(name: str) -> str:
        return f"({rule.sql[name]})"

    e = rule.expectation
    if e == "ExpectColumnValuesToNotBeNull":
        pred = f"{col(k['column'])} IS NULL"
    elif e == "ExpectColumnValuesToBeInSet":
        values = k["value_set"]
        pred = (f"NOT {col(k['column'])}" if values == [True]
                else f"{col(k['column'])} NOT IN ({_in_list(values)})")
    elif e == "ExpectColumnValuesToBeBetween":
        x, parts = col(k["column"]), []
        if k.get("min_value") is not None:
            parts.append(f"{x} {'<=' if k.get('strict_min') else '<'} {k['min_value']}")
        if k.get("max_value") is not None:
            parts.append(f"{x} {'>=' if k.get('strict_max') else '>'} {k['max_value']}")
        pred = " OR ".join(parts)
    elif e == "ExpectColumnPairValuesAToBeGreaterThanB" and k.get("ignore_row_if") == "either_value_is_missing":
        pred = f"NOT ({col(k['column_A'])} {'>=' if k.get('or_equal') else '>'} {col(k['column_B'])})"
    else:
        raise ValueError(f"{rule.name}: no SQL for expectation {e} {k}")
    return f"({pred})"
