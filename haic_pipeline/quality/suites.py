"""Expectation suites generated from `data_contracts/` (one source of truth, no hand-written
per-column expectations).

The row rules come from the rule catalogue (`haic_pipeline/catalogue.py`), which also generates
the staging SQL's quarantine predicates; this module adds the structural and cross-table rules
and groups them, plain data (no GX import), into checks:

| check                      | frame (what is validated)                                  | rules |
|----------------------------|------------------------------------------------------------|-------|
| `<domain>_error_rules`     | the rows a drop delivered (`raw.typed_<domain>`, per drop)  | every `error` rule: `<col>_required`, `<col>_type`, `<col>_code`, `<col>_range`, `patient_id_pattern`, `lab_unit`, error `date_order` / `not_future` |
|                            | the patients a drop delivered rows of (per drop)            | `orphan` (a patient-level rule: counted in patients) |
|                            |                                                             | `duplicate_key_conflict`: a natural key repeated within the drop with different values (the rows the staging SQL quarantines under that name) |
|                            | the staging table's schema                                  | `columns_present`, `column_types` (structural) |
|                            | `staging.<domain>` itself (after latest-wins)               | `natural_key_unique` (structural) |
| `<domain>_warn_rules`      | the rows a drop delivered                                   | every `warn` rule |
| `cross_table_rules`        | one row per patient the drop delivered, staging tables joined | `cross_table.rules` of the contracts (death on/after index date, no treatment after death, last contact on/after every dated event) |

Rule names are the staging SQL's `check_name`s (the same catalogue entries), so a failed
expectation points at its rows in `ops.quarantine` / `ops.row_flags`.

Thresholds: every expectation gets `mostly = 1 - max_share`. Each rule's `max_share`, `min_count`
and unit are the ones the contracts layer settled (`haic_pipeline/contracts.py`: the contract's
own, else `_defaults.yaml`); nothing here falls back to a number of its own. A rule with a
non-zero threshold fails only when its offences, in its unit, also reach `min_count`, so a small
drop never blocks on one or two offenders (`validate.verdict` is the one judge).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from haic_pipeline.catalogue import (  # noqa: F401 (the catalogue's names, re-exported for the quality package)
    SCOPE_DROP,
    SCOPE_DROP_PATIENT,
    SCOPE_PATIENT,
    SCOPE_SCHEMA,
    SCOPE_STAGING,
    RuleSpec,
    row_rules,
)
from haic_pipeline.contracts import UNIT_PATIENT, Contract, contracts_fingerprint
from haic_pipeline.contracts import cross_table_rules as contract_cross_table

#: Bump when the meaning of a generated suite changes without a contract change: every drop is
#: validated again under the new suite version.
SUITE_LOGIC_VERSION = "6"

#: DuckDB type of a staging column per contract type (lab values are converted to DOUBLE).
STAGING_TYPES = {"string": "VARCHAR", "code": "VARCHAR", "date": "DATE", "datetime": "TIMESTAMP",
                 "integer": "INTEGER", "decimal": "DOUBLE", "lab_value": "DOUBLE"}
LINEAGE_COLUMNS = (("dq_warnings", "VARCHAR[]"), ("_extract_id", "VARCHAR"), ("_row_number", "BIGINT"))


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


def suite_fingerprint(contracts: dict[str, Contract]) -> str:
    """The suite version: the contracts (incl. _defaults.yaml) and the generator's logic version."""
    h = hashlib.sha256(contracts_fingerprint(contracts).encode())
    h.update(SUITE_LOGIC_VERSION.encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# checks: the catalogue's row rules, the structural and cross-table rules, grouped per check


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


def structural_rules(c: Contract, check: str) -> list[RuleSpec]:
    share = c.defaults.structural_max_share
    common = {"check": check, "domain": c.domain, "severity": "error", "max_share": share,
              "min_count": c.defaults.min_count(share, c.unit)}
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


def cross_table_rules(contracts: dict[str, Contract]) -> list[RuleSpec]:
    """The contracts' cross-table rules (contracts.CrossTableRule), one expectation each on the
    joined frame of one row per patient (frames.py)."""
    rules, regimen = contract_cross_table(contracts)
    return [RuleSpec(
        check="cross_table_rules", domain=None, name=r.name, family="cross_table", severity=r.severity,
        max_share=r.max_share, min_count=r.min_count, unit=UNIT_PATIENT, scope=SCOPE_PATIENT,
        expectation="ExpectColumnPairValuesAToBeGreaterThanB",
        kwargs={"column_A": f"{r.name}__later", "column_B": f"{r.name}__earlier",
                "or_equal": True, "ignore_row_if": "either_value_is_missing"},
        description=f"per patient: {' / '.join(r.later)} on or after {' / '.join(r.earlier)}",
        source={"earlier": list(r.earlier), "later": list(r.later), "index_regimen": regimen},
    ) for r in rules]


def domain_rules(c: Contract) -> list[RuleSpec]:
    """The catalogue's row rules of one contract, then its structural rules."""
    return row_rules(c) + structural_rules(c, f"{c.domain}_error_rules")


def generate_checks(contracts: dict[str, Contract]) -> list[CheckSpec]:
    """Every check and its rules, generated from the contracts (in staging order)."""
    checks: list[CheckSpec] = []
    for domain, c in contracts.items():
        rules = domain_rules(c)
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
    xt = cross_table_rules(contracts)
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


def build_suite(gx, check: CheckSpec, scope: str):
    """The GX `ExpectationSuite` for the rules of `check` validated on frames of `scope`."""
    suite = gx.ExpectationSuite(name=f"{check.name}.{scope}")
    for r in check.rules:
        if r.scope != scope:
            continue
        cls = getattr(gx.expectations, r.expectation)
        suite.add_expectation(cls(**r.kwargs, mostly=r.mostly, meta={"rule": r.name, "severity": r.severity,
                                                                     "max_share": r.max_share}))
    return suite
