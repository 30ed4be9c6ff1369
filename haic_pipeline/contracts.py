"""The data contracts in `data_contracts/*.yaml`, loaded into typed objects.

`data_contracts/` is the single source of column names, types, codes, natural keys,
identifier handling and rule severities (see its README). The ingest parser
(`haic_pipeline.ingest`), the staging SQL (`haic_pipeline.warehouse.compile`) and the data
quality suites all read these objects; none of them lists a column by hand.

Every threshold is settled here, once: a column's or rule's `max_share` is the contract's own or
the `_defaults.yaml` value of its class (values, plausibility, orphans; structural rules and
`duplicate_key_conflict` read theirs from the same `Defaults`), and its `min_count` the
contract's own or the default of the rule's unit (rows, or patients for patient-level rules:
orphans, the one-row-per-patient patients domain, cross-table rules). Downstream code reads
the settled numbers and never falls back to a default of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from haic_pipeline.settings import project_root

COLUMN_TYPES = {"string", "date", "datetime", "integer", "decimal", "code", "lab_value"}
IDENTIFIER_KINDS = {"pseudonymise", "drop", "raw_only"}
RULE_KINDS = {"date_order", "not_future", "orphan", "lab_unit", "censoring_only_for"}
SEVERITIES = {"error", "warn"}

#: The order in which domains are staged: patients first (orphan checks need them).
DOMAIN_ORDER = ("patients", "treatments", "assessments", "labs", "imaging", "vital_status")


class ContractError(ValueError):
    """A contract file is malformed."""


UNIT_ROW, UNIT_PATIENT = "row", "patient"


@dataclass(frozen=True)
class Defaults:
    """`_defaults.yaml`: the threshold of each class of rule and the minimum count of each unit."""

    structural_max_share: float = 0.0     # missing column, duplicate natural key after latest-wins
    value_max_share: float = 0.02         # unparseable value, unknown code, out-of-range value
    plausibility_max_share: float = 0.05  # date order, future dates, cross-table plausibility
    orphan_max_share: float = 0.02        # rows whose patient is in no patients.csv
    min_count_rows: int = 5
    min_count_patients: int = 3
    source_sha256: str = ""

    def min_count(self, max_share: float, unit: str, own: int | None = None) -> int:
        """Offences from which a rule can fail: 1 for a zero threshold (structural), else the
        rule's own `min_count`, else this file's minimum of the rule's unit."""
        if max_share <= 0:
            return 1
        if own is not None:
            return own
        return self.min_count_patients if unit == UNIT_PATIENT else self.min_count_rows


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    identifier: str | None = None
    required: bool = False
    codes: tuple[str, ...] = ()
    case: str | None = None
    min: float | None = None
    min_exclusive: float | None = None
    max: float | None = None
    pattern: str | None = None
    severity: str = "error"
    max_share: float = 0.02          # settled: the contract's, else Defaults.value_max_share
    min_count: int = 1               # settled: the contract's, else the Defaults minimum of the unit

    @property
    def in_raw(self) -> bool:
        """Landed in raw.<domain> (patient_id lands as patient_key)."""
        return self.identifier != "drop"

    @property
    def in_staging(self) -> bool:
        return self.identifier not in ("drop", "raw_only")

    @property
    def warehouse_name(self) -> str:
        return "patient_key" if self.identifier == "pseudonymise" else self.name


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    severity: str
    max_share: float
    columns: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    min_count: int = 1               # settled: the contract's, else the Defaults minimum of the unit
    unit: str = UNIT_ROW             # what one offence is: a row, or a patient (orphans)


@dataclass(frozen=True)
class CrossTableRule:
    """A rule on the staging tables joined per patient (a contract's `cross_table:` section):
    every date of `later` on or after every date of `earlier` (`index_date`, or domain.column)."""

    name: str
    severity: str
    earlier: tuple[str, ...]
    later: tuple[str, ...]
    max_share: float                 # settled: the contract's, else Defaults.plausibility_max_share
    min_count: int                   # settled, counted in patients
    source: str = ""                 # the contract file it is written in


@dataclass(frozen=True)
class Contract:
    domain: str
    file: str
    description: str
    natural_key: tuple[str, ...]
    columns: tuple[Column, ...]
    rules: tuple[Rule, ...]
    units: dict = field(default_factory=dict)
    source_sha256: str = ""
    #: share of rows repeating a natural key with different values within one drop above which
    #: the drop fails `duplicate_key_conflict` (contract `duplicate_key_max_share`, else the
    #: `value_max_share` of _defaults.yaml), and its settled minimum count
    duplicate_key_max_share: float = 0.02
    duplicate_key_min_count: int = 1
    defaults: Defaults = field(default_factory=Defaults)
    #: the `cross_table:` section: its rules and the regimen that defines the index date
    cross_table: tuple[CrossTableRule, ...] = ()
    index_regimen: str | None = None

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.domain}: no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_in_file(self) -> list[str]:
        """Columns a delivered file must have (identifiers that are dropped may be absent)."""
        return [c.name for c in self.columns if c.in_raw]

    @property
    def raw_columns(self) -> list[str]:
        """Columns of raw.<domain>, in order, before the lineage columns."""
        out: list[str] = []
        for c in self.columns:
            if not c.in_raw:
                continue
            out.append(c.warehouse_name)
            if c.identifier == "pseudonymise":
                out.append("_patient_id_valid")
        return out

    @property
    def staging_key(self) -> list[str]:
        return [self.column(k).warehouse_name for k in self.natural_key]

    @property
    def has_patient(self) -> bool:
        return any(c.identifier == "pseudonymise" for c in self.columns)

    @property
    def unit(self) -> str:
        """The unit of the domain's row rules: patients where a row is a patient."""
        return UNIT_PATIENT if self.staging_key == ["patient_key"] else UNIT_ROW


def contracts_dir() -> Path:
    return project_root() / "data_contracts"


DEFAULTS_FILE = "_defaults.yaml"


@lru_cache(maxsize=4)
def load_defaults(folder: str | None = None) -> Defaults:
    """`_defaults.yaml` of the contracts folder (the dataclass defaults where it is absent)."""
    path = (Path(folder) if folder else contracts_dir()) / DEFAULTS_FILE
    if not path.exists():
        return Defaults()
    text = path.read_text(encoding="utf-8")
    raw = (load_yaml(text) or {}).get("defaults", {}) or {}
    known = {f for f in Defaults.__dataclass_fields__ if f != "source_sha256"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ContractError(f"{DEFAULTS_FILE}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    values = {}
    for key, value in raw.items():
        if key.endswith("max_share"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ContractError(f"{DEFAULTS_FILE}: {key} is {value!r}; expected a share in [0, 1)")
            values[key] = float(value)
        else:
            values[key] = _count(value, f"{DEFAULTS_FILE}: {key}")
    return Defaults(**values, source_sha256=hashlib.sha256(text.encode()).hexdigest())


def _parse(path: Path, defaults: Defaults) -> Contract:
    text = path.read_text(encoding="utf-8")
    doc = load_yaml(text)
    where = f"{path.name}"
    for key in ("domain", "file", "natural_key", "columns"):
        if key not in doc:
            raise ContractError(f"{where}: missing '{key}'")
    names = {raw.get("name") for raw in doc["columns"]}
    for k in doc["natural_key"]:
        if k not in names:
            raise ContractError(f"{where}: natural key column {k!r} is not a column")
    key_ids = [raw.get("identifier") for raw in doc["columns"] if raw.get("name") in doc["natural_key"]]
    unit = UNIT_PATIENT if key_ids == ["pseudonymise"] else UNIT_ROW   # = Contract.unit
    cols = []
    for raw in doc["columns"]:
        ctype = raw.get("type")
        if ctype not in COLUMN_TYPES:
            raise ContractError(f"{where}: column {raw.get('name')!r} has unknown type {ctype!r}")
        ident = raw.get("identifier")
        if ident is not None and ident not in IDENTIFIER_KINDS:
            raise ContractError(f"{where}: column {raw['name']!r} has unknown identifier {ident!r}")
        if ctype == "code" and not raw.get("codes"):
            raise ContractError(f"{where}: code column {raw['name']!r} lists no codes")
        sev = raw.get("severity", "error")
        if sev not in SEVERITIES:
            raise ContractError(f"{where}: column {raw['name']!r} has unknown severity {sev!r}")
        max_share = _share(raw, defaults.value_max_share, where)
        cols.append(
            Column(
                name=raw["name"],
                type=ctype,
                identifier=ident,
                required=bool(raw.get("required", False)),
                codes=tuple(str(c) for c in raw.get("codes", ())),
                case=raw.get("case"),
                min=raw.get("min"),
                min_exclusive=raw.get("min_exclusive"),
                max=raw.get("max"),
                pattern=raw.get("pattern"),
                severity=sev,
                max_share=max_share,
                min_count=defaults.min_count(max_share, unit, _min_count(raw, where)),
            )
        )
    rules = []
    for raw in doc.get("rules", []) or []:
        if raw.get("kind") not in RULE_KINDS:
            raise ContractError(f"{where}: rule {raw.get('name')!r} has unknown kind {raw.get('kind')!r}")
        if raw.get("severity") not in SEVERITIES:
            raise ContractError(f"{where}: rule {raw.get('name')!r} needs severity error|warn")
        for c in raw.get("columns", []) or []:
            if c not in names:
                raise ContractError(f"{where}: rule {raw['name']!r} names unknown column {c!r}")
        orphan = raw["kind"] == "orphan"
        max_share = _share(raw, defaults.orphan_max_share if orphan else defaults.plausibility_max_share, where)
        rule_unit = UNIT_PATIENT if orphan else unit
        rules.append(
            Rule(
                name=raw["name"],
                kind=raw["kind"],
                severity=raw["severity"],
                max_share=max_share,
                columns=tuple(raw.get("columns", []) or []),
                tests=tuple(raw.get("tests", []) or []),
                min_count=defaults.min_count(max_share, rule_unit, _min_count(raw, where)),
                unit=rule_unit,
            )
        )
    section = doc.get("cross_table") or {}
    cross = []
    for raw in section.get("rules", []) or []:
        sev = raw.get("severity", "warn")
        if sev not in SEVERITIES:
            raise ContractError(f"{where}: cross_table rule {raw.get('name')!r} needs severity error|warn")
        max_share = _share(raw, defaults.plausibility_max_share, where)
        cross.append(CrossTableRule(
            name=raw["name"], severity=sev, earlier=tuple(raw.get("earlier", []) or []),
            later=tuple(raw.get("later", []) or []), max_share=max_share,
            min_count=defaults.min_count(max_share, UNIT_PATIENT, _min_count(raw, where)), source=path.name))
    dup_share = float(doc.get("duplicate_key_max_share", defaults.value_max_share))
    return Contract(
        domain=doc["domain"],
        file=doc["file"],
        description=doc.get("description", ""),
        natural_key=tuple(doc["natural_key"]),
        columns=tuple(cols),
        rules=tuple(rules),
        units=doc.get("units", {}) or {},
        source_sha256=hashlib.sha256(text.encode()).hexdigest(),
        duplicate_key_max_share=dup_share,
        duplicate_key_min_count=defaults.min_count(dup_share, unit),
        defaults=defaults,
        cross_table=tuple(cross),
        index_regimen=section.get("index_regimen"),
    )


def _share(raw: dict, default: float, where: str) -> float:
    value = raw.get("max_share", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ContractError(f"{where}: {raw.get('name')!r} has max_share {value!r}; expected a share in [0, 1)")
    return float(value)


def _count(value, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ContractError(f"{where} is {value!r}; expected an integer >= 1")
    return value


def _min_count(raw: dict, where: str) -> int | None:
    value = raw.get("min_count")
    return None if value is None else _count(value, f"{where}: {raw.get('name')!r} min_count")


def load_yaml(text: str):
    """yaml.safe_load with libyaml's C parser when PyYAML has it (the same documents, parsed in
    C: the checks read the contract files on every run)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (a safe loader)


@lru_cache(maxsize=4)
def load_contracts(folder: str | None = None) -> dict[str, Contract]:
    """All contracts, keyed by domain, in staging order."""
    base = Path(folder) if folder else contracts_dir()
    defaults = load_defaults(folder)
    found = {}
    for path in sorted(base.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        contract = _parse(path, defaults)
        found[contract.domain] = contract
    missing = [d for d in DOMAIN_ORDER if d not in found]
    if missing:
        raise ContractError(f"{base}: no contract for domain(s) {', '.join(missing)}")
    for rule in (r for c in found.values() for r in c.cross_table):
        for ref in rule.earlier + rule.later:
            domain, _, column = ref.partition(".")
            if ref != "index_date" and (domain not in found or column not in found[domain].column_names):
                raise ContractError(f"{rule.source}: cross_table rule {rule.name!r} names unknown column {ref!r}")
    return {d: found[d] for d in DOMAIN_ORDER}


def cross_table_rules(contracts: dict[str, Contract]) -> tuple[list[CrossTableRule], str | None]:
    """Every contract's cross-table rules (in file order) and the index regimen they name."""
    ordered = sorted(contracts.values(), key=lambda c: c.file)
    regimen = next((c.index_regimen for c in reversed(ordered) if c.index_regimen), None)
    return [r for c in ordered for r in c.cross_table], regimen


def defaults_of(contracts: dict[str, Contract]) -> Defaults:
    """The `_defaults.yaml` the contracts were settled with."""
    return next(iter(contracts.values())).defaults if contracts else Defaults()


def contract_by_file(contracts: dict[str, Contract]) -> dict[str, Contract]:
    return {c.file: c for c in contracts.values()}


def contracts_fingerprint(contracts: dict[str, Contract]) -> str:
    """The contract files and their `_defaults.yaml`: a change of either changes the suites."""
    h = hashlib.sha256()
    for c in contracts.values():
        h.update(c.source_sha256.encode())
    h.update(defaults_of(contracts).source_sha256.encode())
    return h.hexdigest()
