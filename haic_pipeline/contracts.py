"""The data contracts in `data_contracts/*.yaml`, loaded into typed objects.

`data_contracts/` is the single source of column names, types, codes, natural keys,
identifier handling and rule severities (see its README). The ingest parser
(`haic_pipeline.ingest`), the staging SQL (`haic_pipeline.warehouse.compile`) and the data
quality suites all read these objects; none of them lists a column by hand.
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
    max_share: float | None = None
    min_count: int | None = None     # None: the _defaults.yaml minimum of the rule's unit

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
    min_count: int | None = None     # None: the _defaults.yaml minimum of the rule's unit


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
    #: `value_max_share` of _defaults.yaml)
    duplicate_key_max_share: float = 0.02

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


def contracts_dir() -> Path:
    return project_root() / "data_contracts"


def _load_defaults(folder: Path) -> dict:
    path = folder / "_defaults.yaml"
    return (load_yaml(path.read_text()) or {}).get("defaults", {}) if path.exists() else {}


def _parse(path: Path, defaults: dict) -> Contract:
    text = path.read_text(encoding="utf-8")
    doc = load_yaml(text)
    where = f"{path.name}"
    for key in ("domain", "file", "natural_key", "columns"):
        if key not in doc:
            raise ContractError(f"{where}: missing '{key}'")
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
                max_share=raw.get("max_share", defaults.get("value_max_share", 0.02)),
                min_count=_min_count(raw, where),
            )
        )
    names = {c.name for c in cols}
    for k in doc["natural_key"]:
        if k not in names:
            raise ContractError(f"{where}: natural key column {k!r} is not a column")
    rules = []
    for raw in doc.get("rules", []) or []:
        if raw.get("kind") not in RULE_KINDS:
            raise ContractError(f"{where}: rule {raw.get('name')!r} has unknown kind {raw.get('kind')!r}")
        if raw.get("severity") not in SEVERITIES:
            raise ContractError(f"{where}: rule {raw.get('name')!r} needs severity error|warn")
        for c in raw.get("columns", []) or []:
            if c not in names:
                raise ContractError(f"{where}: rule {raw['name']!r} names unknown column {c!r}")
        rules.append(
            Rule(
                name=raw["name"],
                kind=raw["kind"],
                severity=raw["severity"],
                max_share=float(raw.get("max_share", defaults.get("plausibility_max_share", 0.05))),
                columns=tuple(raw.get("columns", []) or []),
                tests=tuple(raw.get("tests", []) or []),
                min_count=_min_count(raw, where),
            )
        )
    return Contract(
        domain=doc["domain"],
        file=doc["file"],
        description=doc.get("description", ""),
        natural_key=tuple(doc["natural_key"]),
        columns=tuple(cols),
        rules=tuple(rules),
        units=doc.get("units", {}) or {},
        source_sha256=hashlib.sha256(text.encode()).hexdigest(),
        duplicate_key_max_share=float(doc.get("duplicate_key_max_share",
                                              defaults.get("value_max_share", 0.02))),
    )


def _min_count(raw: dict, where: str) -> int | None:
    value = raw.get("min_count")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ContractError(f"{where}: {raw.get('name')!r} has min_count {value!r}; expected an integer >= 1")
    return value


def load_yaml(text: str):
    """yaml.safe_load with libyaml's C parser when PyYAML has it (the same documents, parsed in
    C: the checks read the contract files on every run)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (a safe loader)


@lru_cache(maxsize=4)
def load_contracts(folder: str | None = None) -> dict[str, Contract]:
    """All contracts, keyed by domain, in staging order."""
    base = Path(folder) if folder else contracts_dir()
    defaults = _load_defaults(base)
    found = {}
    for path in sorted(base.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        contract = _parse(path, defaults)
        found[contract.domain] = contract
    missing = [d for d in DOMAIN_ORDER if d not in found]
    if missing:
        raise ContractError(f"{base}: no contract for domain(s) {', '.join(missing)}")
    return {d: found[d] for d in DOMAIN_ORDER}


def contract_by_file(contracts: dict[str, Contract]) -> dict[str, Contract]:
    return {c.file: c for c in contracts.values()}


def contracts_fingerprint(contracts: dict[str, Contract]) -> str:
    h = hashlib.sha256()
    for c in contracts.values():
        h.update(c.source_sha256.encode())
    return h.hexdigest()
