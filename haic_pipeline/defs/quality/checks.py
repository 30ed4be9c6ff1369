"""Data-quality gates as Dagster asset checks on the staging assets (wiring only: the suites,
thresholds, caching and report live in `haic_pipeline.quality`, which imports Great Expectations
lazily, inside a check's run, never when the definitions load).

One step per check group (`quality.suites.CheckSpec.group`): `<domain>_rules` runs that domain's
error and warn checks from one read of its new rows, `drop_checks` the two drop-level checks,
`cross_table_rules` its own. Each check is still its own asset check, with its own result:

- `<domain>_error_rules` (blocking): a failure stops every asset downstream of staging/<domain>
  in the run (staging/patients is upstream of every other staging table and of the study).
- `<domain>_warn_rules`, `cross_table_rules`, `drop_changes`: shown in the UI, the run goes on.
- `drop_sequence` (blocking): data_cutoff going backwards, or a drop older than the previous one.
"""

import dagster as dg

from haic_pipeline.contracts import load_contracts
from haic_pipeline.defs.resources import DUCKDB_POOL, HaicConfig, WarehouseResource
from haic_pipeline.quality.gate import (
    CheckOutcome,
    all_checks,
    check_groups,
    run_checks,
)
from haic_pipeline.quality.suites import CheckSpec

REPORT_FOLDER = "quality"  # under HAIC_REPORTS (default warehouse/reports/quality/index.html)


def _key(asset: str) -> dg.AssetKey:
    return dg.AssetKey(asset.split("/"))


def check_metadata(outcome: CheckOutcome) -> dict:
    per_rule = outcome.per_rule()
    failed = [a for a in per_rule if not a["passed"]]
    waived = outcome.waived_extract_ids
    meta: dict = {
        "result": dg.MetadataValue.text(
            (f"passed (waived for drop(s) {', '.join(waived)}: see waivers)" if waived else "passed")
            if outcome.passed else
            ("NOT MEASURED: an expectation raised" if outcome.exceptions else
             f"FAILED: {', '.join(a['rule'] for a in failed)}")),
        "summary": dg.MetadataValue.md(outcome.markdown()),
        "rules_failed": len(failed),
        "rules_evaluated": len(per_rule),
        "extract_ids": dg.MetadataValue.text(", ".join(outcome.extract_ids) or "-"),
        "extract_ids_failing": dg.MetadataValue.text(", ".join(outcome.failing_extract_ids) or "-"),
        "validated_in_this_run": dg.MetadataValue.text(", ".join(outcome.validated_now) or "none (no new drop)"),
        "cached": outcome.cached,
        "seconds": round(outcome.seconds, 3),
        "expectations": dg.MetadataValue.json(per_rule),
    }
    if outcome.waivers:
        meta["waivers"] = dg.MetadataValue.md("\n".join(
            ["| drop | failing rules | waived by | at (UTC) | reason |", "|---|---|---|---|---|"]
            + [f"| {eid} | {', '.join(w['rules'])} | {w['waived_by']} | {str(w['waived_at'])[:16]} | {w['reason']} |"
               for eid, w in sorted(outcome.waivers.items())]))
    if outcome.cached and outcome.rows:
        last = max(outcome.rows, key=lambda r: r["checked_at"])
        meta["note"] = dg.MetadataValue.text(
            f"nothing new to validate: stored result (ops.dq_results), last validated {str(last['checked_at'])[:19]} "
            f"UTC in refresh {last['refresh']}")
    for a in per_rule:
        verdict = "passed" if a["passed"] else ("not measured" if a["exception"] else "FAILED")
        meta[f"rule: {a['rule']}"] = dg.MetadataValue.text(
            f"{a['unexpected']:,} unexpected / {a['evaluated']:,} evaluated ({a['unexpected_pct']:.2f} %, "
            f"max {a['max_share_pct']:g} %): {verdict}")
    if outcome.exceptions:
        meta["exceptions"] = dg.MetadataValue.text("\n".join(outcome.exceptions)[:4000])
    if outcome.report is not None:
        meta["report"] = dg.MetadataValue.path(str(outcome.report))
        meta["report_url"] = dg.MetadataValue.url(outcome.report.as_uri())
    return meta


def _check_group(group: str, specs: list[CheckSpec]) -> dg.AssetChecksDefinition:
    """The checks of one group as one step (one read of a domain's new rows serves its error and
    its warn rules, quality.gate.run_checks); each check keeps its own spec, result, severity
    and blocking flag, so a failed `<domain>_error_rules` fails the step and stops what is
    downstream, a failed warn check does not. A run may select some of the group's checks."""
    by_key = {dg.AssetCheckKey(_key(s.asset), s.name): s for s in specs}

    @dg.multi_asset_check(
        name=group,
        specs=[dg.AssetCheckSpec(s.name, asset=_key(s.asset), description=s.description, blocking=s.blocking,
                                 additional_deps=[_key(a) for a in s.additional_assets]) for s in specs],
        description="; ".join(f"{s.name}: {s.description}" for s in specs),
        can_subset=True,
        pool=DUCKDB_POOL,
    )
    def _checks(context: dg.AssetCheckExecutionContext, haic: HaicConfig, duckdb: WarehouseResource):
        selected = [by_key[k].name for k in by_key if k in context.selected_asset_check_keys]
        reports = haic.settings().reports / REPORT_FOLDER
        with duckdb.get_connection() as con:
            outcomes = run_checks(con, selected, reports_dir=reports, refresh=context.run.run_id)
        for outcome in outcomes:
            spec = outcome.check
            if outcome.exceptions:
                context.log.error("%s: %d expectation(s) raised, the check fails (not measured): %s",
                                  spec.name, len(outcome.exceptions), "; ".join(outcome.exceptions)[:2000])
            context.log.info("%s: %s%s; report %s", spec.name, "passed" if outcome.passed else "FAILED",
                             " (stored result, nothing new)" if outcome.cached else "", outcome.report)
            yield dg.AssetCheckResult(
                asset_key=_key(spec.asset),
                check_name=spec.name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR if outcome.severity == "error" else dg.AssetCheckSeverity.WARN,
                metadata=check_metadata(outcome),
                description=spec.description,
            )
        context.log.info("%s: %d check(s) in %.1f s", group, len(outcomes), outcomes[0].seconds if outcomes else 0.0)

    return _checks


quality_checks = [_check_group(group, specs) for group, specs in check_groups(all_checks(load_contracts())).items()]
