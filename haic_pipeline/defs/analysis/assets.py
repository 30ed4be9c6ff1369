"""The study's results (study_spec §3-§5) and its figures and report, as Dagster assets.

Wiring only: every computation is in haic_pipeline.analysis (tables with haic_pipeline.stats,
figures with matplotlib). Each asset reads staging.cohort / staging.endpoints (or the analysis
tables) and writes its tables in one transaction. They carry STUDY_AUTOMATION, and they run
after staging/cohort and staging/endpoints, so a failed blocking data-quality check upstream
stops them (the run shows the failed check; the previous results stay in place).
"""


from pathlib import Path

import dagster as dg

from haic_pipeline import provenance
from haic_pipeline.defs.automation.conditions import STUDY_AUTOMATION
from haic_pipeline.defs.resources import DUCKDB_POOL, HaicConfig, WarehouseResource
from haic_pipeline.defs.study.assets import ATTRITION, COHORT, ENDPOINTS


def _analysis():
    """`haic_pipeline.analysis.build`, imported when an asset runs: it brings lifelines, SciPy and
    matplotlib (seconds to import), which loading the definitions (`dagster dev`, every `haic`
    command, the sensors) must not pay for."""
    from haic_pipeline.analysis import build  # noqa: PLC0415 (lazy on purpose)

    return build


def A(table: str) -> dg.AssetKey:
    return dg.AssetKey(["analysis", table])


def R(name: str) -> dg.AssetKey:
    return dg.AssetKey(["reports", name])


STUDY_INPUTS = [COHORT, ENDPOINTS]
SURVIVAL_TABLES = {
    "km_summary": "Kaplan-Meier summary per endpoint (OS/PFS) x group (overall/first_line/post_ate_beva): "
                  "n, events, median with 95% CI, 12-month rate with 95% CI (log scale), in months.",
    "km_curves": "Every step of the Kaplan-Meier curves (endpoint x group x time): at risk, events, "
                 "censored, survival and its 95% CI.",
    "survival_tests": "Log-rank (survdiff) and 12-month rate (cloglog z) comparisons of first_line vs "
                      "post_ate_beva, per endpoint; unrounded nominal p-values (re-tested every refresh: see analysis/monitoring_status).",
    "follow_up": "Median follow-up by the reverse Kaplan-Meier method, overall and per group.",
}
RESPONSE_TABLES = {
    "response_summary": "Best overall response (mRECIST) counts per group, ORR and DCR as proportions.",
    "response_tests": "ORR and DCR by group: Pearson chi-square (uncorrected) or Fisher's exact test.",
}
COX_TABLES = {
    "cox_models": "Tables 3-4: univariable and multivariable Cox models (Efron) for OS and PFS: HR, "
                  "Wald 95% CI and nominal p, n and events per model.",
    "cox_excluded": "Cox candidates left out per endpoint (missing_over_20pct, no_variation, "
                    "not_estimable, multivariable_not_estimable) with the reason's detail.",
}
BEYOND_TABLES = {
    "propensity_model": "Propensity score (study_spec §5.1, §5.6): logistic model of post_ate_beva vs first_line on "
                        "the §3 candidates that pass the exclusion rule, complete cases (the modelled patients); coef, "
                        "se, nominal p per term, n and n_excluded_missing; a covariate aliased or alone separating the groups "
                        "is a row with status left_out and why; status/note say why when the fit still separates or "
                        "does not converge.",
    "propensity_overlap": "Positivity (§5.6): per group n, min, quartiles, median and max of the propensity score, "
                          "and how many patients lie outside the other group's range.",
    "propensity_histogram": "The propensity scores per group in 20 bins of 0.05 (what the propensity figure draws).",
    "balance": "Covariate balance (§5.2): shares per group, standardized mean differences before and after the "
               "stabilized, truncated and overlap weights (cobalt convention, signed), balanced_after = |SMD| < 0.1; "
               "the overlap weights balance every modelled covariate exactly.",
    "iptw_weights": "The weights per group and weighting (none / stabilized ATE / truncated at the 1st and 99th "
                    "percentiles, with how many were clipped / overlap ATO): n, sum, min, max, Kish effective "
                    "sample size.",
    "iptw_km_summary": "Kaplan-Meier (§5.3) per endpoint x group x weighting on the modelled patients: n, ESS, "
                       "events, median and 12-month rate with log-scale 95% CI (robust IJ variance when weighted).",
    "iptw_km_curves": "Every step of those Kaplan-Meier curves: patients at risk / events / censored, the "
                      "weighted sums, survival and its 95% CI.",
    "iptw_effects": "Cox for group per endpoint x weighting on the modelled patients (§5.3, §5.6): HR post_ate_beva "
                    "vs first_line, robust (dfbeta) 95% CI and nominal p, robust score test (also when the HR cannot be "
                    "fitted), E-values; row multivariable: the multivariable HR of group with its E-value.",
    "rmst": "Restricted mean survival time at 12 months (§5.4) on the modelled patients, unweighted (survRM2), "
            "stabilized and overlap (IJ variance): per-group RMST with se, difference and ratio with CI and nominal p; "
            "tau lowered (and said) when follow-up is shorter.",
    "ph_tests": "Proportional-hazards tests (§5.4, §5.6): cox.zph (transform km) of every Cox model of "
                "analysis.cox_models and of the weighted Cox fits (iptw_stabilized, iptw_overlap), per term and "
                "GLOBAL.",
}


MONITORING_TABLES = {
    "monitoring_looks": "Formal looks of the group-sequential monitoring (study_spec §6.2), one row per look in drop "
                        "order: events, information fraction, cumulative alpha, boundary, log-rank z of "
                        "post_ate_beva with its nominal p, crossed, Cox HR with its repeated CI, final. A look is "
                        "taken at a drop whose events pass a milestone of the plan (HAIC_STUDY_PLAN); only a "
                        "crossed boundary establishes a difference.",
    "monitoring_status": "The monitoring state after the newest drop (study_spec §6.3): information so far, the "
                         "nightly z and its NOMINAL p (not a test at 5%), looks taken, the boundary a look now "
                         "would face, conditional power under the current trend, projected months and dates of "
                         "the next milestone and of the planned events, the decision so far.",
    "monitoring_boundaries": "The boundaries of the monitoring figure: +-c at each formal look taken, and the "
                             "planned ones at the milestones still ahead (given the looks taken so far).",
}
FIGURE_KEYS = {
    "km_os": (R("km_os_figure"), "Figure 1: Kaplan-Meier curves of overall survival by group",
              [A("km_curves"), A("km_summary"), A("survival_tests")]),
    "km_pfs": (R("km_pfs_figure"), "Figure 2: Kaplan-Meier curves of progression-free survival by group",
               [A("km_curves"), A("km_summary"), A("survival_tests")]),
    "forest_os": (R("forest_os_figure"), "Forest plot of the Cox models for overall survival",
                  [A("cox_models"), A("cox_excluded")]),
    "forest_pfs": (R("forest_pfs_figure"), "Forest plot of the Cox models for progression-free survival",
                   [A("cox_models"), A("cox_excluded")]),
}


BEYOND_FIGURE_KEYS = {
    "love": (R("love_figure"), "Love plot: |SMD| of each covariate before and after IPTW, line at 0.1",
             [A("balance"), A("propensity_model")]),
    "propensity_overlap": (R("propensity_figure"), "Propensity scores of the two groups (mirrored histogram): "
                           "positivity", [A("propensity_histogram"), A("propensity_overlap"), A("propensity_model")]),
    "iptw_km_os": (R("iptw_km_os_figure"), "IPTW-adjusted Kaplan-Meier curves of overall survival by group",
                   [A("iptw_km_curves"), A("iptw_km_summary"), A("iptw_effects")]),
    "iptw_km_pfs": (R("iptw_km_pfs_figure"), "IPTW-adjusted Kaplan-Meier curves of progression-free survival "
                    "by group", [A("iptw_km_curves"), A("iptw_km_summary"), A("iptw_effects")]),
}


MONITORING_FIGURE_KEYS = {
    "monitor": (R("monitoring_figure"), "Monitoring: log-rank z over the information fraction, nightly (nominal) "
                "z's, formal looks and their boundaries", [A("monitoring_looks"), A("monitoring_status"),
                                                           A("monitoring_boundaries"), A("refresh_history")]),
}


def _metadata(result, table: str | None = None) -> dict:
    meta: dict = {
        "extract_id": result.provenance.extract_id or "",
        "data_cutoff": result.provenance.data_cutoff or "",
        "provenance": result.provenance.describe(),
        "software": provenance.describe(),
    }
    if table is not None and table in result.tables:
        meta["dagster/row_count"] = result.tables[table]
    meta.update(result.headline)
    if result.problems:
        meta["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in result.problems))
    return meta


def _run(context, duckdb: WarehouseResource, build_name: str, *args):
    """Run `haic_pipeline.analysis.build.<build_name>` on the warehouse (and `args`); its BuildResult."""
    from haic_pipeline.analysis.data import AnalysisInputError  # noqa: PLC0415

    build = getattr(_analysis(), build_name)
    with duckdb.get_connection() as con:
        try:
            result = build(con, *args)
        except AnalysisInputError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
    for p in result.problems:
        context.log.warning(p)
    return result


def _table_multi_asset(name: str, tables: dict[str, str], build: str, extra_deps=()):
    specs = [dg.AssetSpec(A(t), deps=[*STUDY_INPUTS, *extra_deps], group_name="analysis",
                          kinds={"duckdb", "python"}, description=f"analysis.{t}: {d}",
                          automation_condition=STUDY_AUTOMATION)
             for t, d in tables.items()]

    @dg.multi_asset(name=name, specs=specs, pool=DUCKDB_POOL)
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
        result = _run(context, duckdb, build)
        for t in tables:
            yield dg.MaterializeResult(asset_key=A(t), metadata=_metadata(result, t))

    return _asset


def _table_asset(table: str, deps: list[dg.AssetKey], build: str, description: str, with_run_id: bool = False):
    """The asset of one analysis table, written by `haic_pipeline.analysis.build.<build>` (given the
    Dagster run's id too, `with_run_id`)."""
    @dg.asset(key=A(table), deps=deps, group_name="analysis", kinds={"duckdb", "python"}, pool=DUCKDB_POOL,
              automation_condition=STUDY_AUTOMATION, description=description)
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
        args = (context.run.run_id,) if with_run_id else ()
        return dg.MaterializeResult(metadata=_metadata(_run(context, duckdb, build, *args), table))

    return _asset


baseline_characteristics = _table_asset(
    "baseline_characteristics", STUDY_INPUTS, "build_baseline",
    "analysis.baseline_characteristics (Table 1): the paper's baseline variables by group, mean ± SD with Student's t, n (%) with chi-square / "
    "Fisher; unrounded nominal p-values.")
survival = _table_multi_asset("analysis_survival", SURVIVAL_TABLES, "build_survival")
response = _table_multi_asset("analysis_response", RESPONSE_TABLES, "build_response")
cox = _table_multi_asset("analysis_cox", COX_TABLES, "build_cox")
# beyond the paper (§5): one step, one read of the cohort; ph_tests needs the Cox models
beyond = _table_multi_asset("analysis_beyond", BEYOND_TABLES, "build_beyond", extra_deps=[A("cox_models")])


refresh_history = _table_asset(
    "refresh_history", [A("km_summary")], "build_refresh_history",
    "analysis.refresh_history: one snapshot of the headline figures (n, events, median, 12-month rate per endpoint x group) for each "
    "newly loaded drop; a refresh without a new drop adds nothing.")


@dg.multi_asset(
    name="analysis_monitoring",
    specs=[dg.AssetSpec(A(t), deps=[*STUDY_INPUTS, A("refresh_history")], group_name="analysis",
                        kinds={"duckdb", "python"}, description=f"analysis.{t}: {d}",
                        automation_condition=STUDY_AUTOMATION) for t, d in MONITORING_TABLES.items()],
    pool=DUCKDB_POOL,
)
def monitoring(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    """The formal looks and the monitoring state (one step: both come from the same per-drop inputs); the plan
    is read and checked before anything is written, a bad plan fails the step naming the key."""
    from haic_pipeline.study.plan import PlanError  # noqa: PLC0415

    try:
        result = _run(context, duckdb, "build_monitoring")
    except PlanError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    for t in MONITORING_TABLES:
        yield dg.MaterializeResult(asset_key=A(t), metadata=_metadata(result, t))


software = _table_asset(
    "software", STUDY_INPUTS, "build_software",
    "analysis.software: the versions this refresh computes with (Python, duckdb, pandas, numpy, scipy, lifelines, statsmodels, "
    "great-expectations, dagster, matplotlib, and the project's git commit); every refresh's versions stay in "
    "ops.software.", with_run_id=True)


@dg.asset_check(asset=A("km_summary"), blocking=True,
                description="n and events per endpoint x group equal the counts in staging.endpoints "
                "(same drop); blocks the figures and the report otherwise.")
def km_summary_matches_staging_endpoints(duckdb: WarehouseResource) -> dg.AssetCheckResult:
    from haic_pipeline.analysis.checks import km_summary_matches_endpoints  # noqa: PLC0415

    with duckdb.get_connection() as con:
        passed, details = km_summary_matches_endpoints(con)
    return dg.AssetCheckResult(
        passed=passed,
        metadata={"rows_compared": details["rows_compared"],
                  "mismatches": dg.MetadataValue.md("\n".join(f"- {m}" for m in details["mismatches"]) or "none")},
    )


def _finite_results(found: dict[str, list[str]]):
    """One stores_no_nan_or_inf result per table (analysis.checks.finite_values: its offending columns)."""
    for table, bad in found.items():
        yield dg.AssetCheckResult(
            asset_key=A(table), check_name="stores_no_nan_or_inf", passed=not bad,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if not bad else f"analysis.{table} stores NaN or infinite numbers: {'; '.join(bad)}",
            metadata={"non_finite": dg.MetadataValue.md("\n".join(f"- {b}" for b in bad) or "none")})


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec("stores_no_nan_or_inf", asset=A(t), blocking=True,
                             description=f"analysis.{t} holds no NaN and no infinite number (an analysis that "
                             "cannot be computed is NULL with a note); blocks the figures, the report and the "
                             "analysts' copy otherwise.")
           for t in BEYOND_TABLES],
    name="beyond_tables_are_finite",
)
def beyond_tables_are_finite(duckdb: WarehouseResource):
    from haic_pipeline.analysis.checks import finite_values  # noqa: PLC0415

    with duckdb.get_connection() as con:
        found = finite_values(con, tuple(BEYOND_TABLES))
    yield from _finite_results(found)


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec("stores_no_nan_or_inf", asset=A(t), blocking=True,
                             description=f"analysis.{t} holds no NaN and no infinite number (NULL with a note where "
                             "study_spec §6 says NULL)" + (", nor do the monitoring columns of analysis.refresh_history"
                                                           if t == "monitoring_status" else "")
                             + "; blocks the monitoring figure, the report and the analysts' copy otherwise.")
           for t in MONITORING_TABLES],
    name="monitoring_tables_are_finite",
)
def monitoring_tables_are_finite(duckdb: WarehouseResource):
    """The monitoring tables, and refresh_history (whose monitoring columns the monitoring step fills; checked
    on monitoring_status, as a check on refresh_history itself would block the step that fills it)."""
    from haic_pipeline.analysis.checks import finite_values  # noqa: PLC0415

    with duckdb.get_connection() as con:
        found = finite_values(con, (*MONITORING_TABLES, "refresh_history"))
    history = found.pop("refresh_history")
    found["monitoring_status"] = found["monitoring_status"] + [f"refresh_history.{b}" for b in history]
    yield from _finite_results(found)


@dg.asset_check(asset=A("balance"), blocking=False,
                description="The overlap (ATO) weights balance every covariate of the propensity model exactly "
                "(|SMD| <= 1e-6), as a logistic model with an intercept guarantees (study_spec §5.6); a larger SMD is "
                "a defect of the fit or the weights (warning).")
def overlap_weights_balance_exactly(duckdb: WarehouseResource) -> dg.AssetCheckResult:
    from haic_pipeline.analysis.checks import overlap_balance  # noqa: PLC0415

    with duckdb.get_connection() as con:
        passed, details = overlap_balance(con)
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.WARN,
        description=None if passed else "overlap weights leave modelled covariates unbalanced: "
        + "; ".join(details["unbalanced"]),
        metadata={"covariates_checked": details["covariates_checked"],
                  "largest_abs_smd": details["largest_abs_smd"],
                  "unbalanced": dg.MetadataValue.md("\n".join(f"- {u}" for u in details["unbalanced"]) or "none")})


def _figure_results(saved: dict, keys: dict, prov):
    for name, fig in saved.items():
        key, desc, _ = keys[name]
        yield dg.MaterializeResult(asset_key=key, metadata={
            "figure": dg.MetadataValue.md(fig.markdown_image(desc)),
            "png": dg.MetadataValue.path(str(fig.png)),
            "svg": dg.MetadataValue.path(str(fig.svg)),
            "size_px": f"{fig.width_px} x {fig.height_px}",
            "extract_id": prov.extract_id or "",
            "data_cutoff": prov.data_cutoff or "",
            "provenance": prov.describe(),
        })


def _figures_asset(name: str, keys: dict, provenance_table: str, note: str = "") -> dg.AssetsDefinition:
    """One step drawing the figures of `keys` (name -> (asset key, description, deps)) from the
    analysis tables; the provenance shown is that of `provenance_table`."""

    @dg.multi_asset(
        name=name,
        specs=[dg.AssetSpec(key, deps=deps, group_name="reports", kinds={"matplotlib", "png", "svg"},
                            description=f"{desc}{note}; <reports>/figures/{fig}.png and .svg",
                            automation_condition=STUDY_AUTOMATION)
               for fig, (key, desc, deps) in keys.items()],
        pool=DUCKDB_POOL,
    )
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource, haic: HaicConfig):
        reports = Path(haic.settings().reports)
        with duckdb.get_connection() as con:
            saved = _analysis().build_figures(con, reports, tuple(keys))
            prov = _analysis().table_provenance(con, provenance_table)
        yield from _figure_results(saved, keys, prov)

    return _asset


report_figures = _figures_asset("report_figures", FIGURE_KEYS, "km_curves")
beyond_figures = _figures_asset("beyond_figures", BEYOND_FIGURE_KEYS, "balance", " (study_spec §5)")
monitoring_figures = _figures_asset("monitoring_figures", MONITORING_FIGURE_KEYS, "monitoring_boundaries",
                                    " (study_spec §6.4)")


@dg.asset(
    key=R("study_report"),
    deps=[ATTRITION, A("baseline_characteristics"), *[A(t) for t in SURVIVAL_TABLES],
          *[A(t) for t in RESPONSE_TABLES], *[A(t) for t in COX_TABLES], A("refresh_history"),
          *[A(t) for t in BEYOND_TABLES], *[A(t) for t in MONITORING_TABLES],
          *[k for k, _, _ in FIGURE_KEYS.values()], *[k for k, _, _ in BEYOND_FIGURE_KEYS.values()],
          *[k for k, _, _ in MONITORING_FIGURE_KEYS.values()]],
    group_name="reports",
    kinds={"html", "markdown"},
    pool=DUCKDB_POOL,
    automation_condition=STUDY_AUTOMATION,
    description="The study report: the monitoring state and figure (study_spec §6), attrition, Tables 1-4, survival "
    "summary, Figures 1-4, 'Beyond the paper' (positivity, balance, IPTW and overlap weights, E-values, RMST, "
    "proportional hazards, Figures 5-8) and the refresh history; "
    "<reports>/study_report.html (self-contained) and study_report.md, regenerated on every refresh.",
)
def study_report(context: dg.AssetExecutionContext, duckdb: WarehouseResource, haic: HaicConfig) -> dg.MaterializeResult:
    reports = Path(haic.settings().reports)
    with duckdb.get_connection() as con:
        result = _analysis().build_report(con, reports)
    return dg.MaterializeResult(metadata={
        "html": dg.MetadataValue.path(result.files["html"]),
        "markdown": dg.MetadataValue.path(result.files["md"]),
        "extract_id": result.provenance.extract_id or "",
        "data_cutoff": result.provenance.data_cutoff or "",
        "provenance": result.provenance.describe(),
    })
