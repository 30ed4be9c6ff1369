"""Build the ``analysis.*`` tables, the figures and the report from the warehouse.

    build_baseline(con)          -> analysis.baseline_characteristics                  (Table 1)
    build_survival(con)          -> analysis.km_summary, km_curves, survival_tests, follow_up
    build_response(con)          -> analysis.response_summary, response_tests          (Table 2)
    build_cox(con)               -> analysis.cox_models, cox_excluded                  (Tables 3-4)
    build_refresh_history(con)   -> analysis.refresh_history (+1 snapshot per new drop; needs km_summary)
    build_monitoring(con)        -> analysis.monitoring_looks, monitoring_status (§6; + refresh_history's
                                    monitoring columns; needs refresh_history)
    build_software(con, refresh) -> analysis.software (+ ops.software: the versions per refresh)
    build_beyond(con)            -> analysis.propensity_model, propensity_overlap, propensity_histogram,
                                    balance, iptw_weights, iptw_km_summary, iptw_km_curves, iptw_effects,
                                    rmst, ph_tests (§5; needs cox_models)
    build_figures(con, reports)  -> <reports>/figures/km_os|km_pfs|forest_os|forest_pfs.png/.svg,
                                    and love|propensity_overlap|iptw_km_os|iptw_km_pfs (BEYOND_FIGURES)
    build_report(con, reports)   -> <reports>/study_report.html and .md
    build_analysis(con, reports) -> all of the above, in that order

Inputs: staging.cohort and staging.endpoints only (plus ops.drops for the list of drops in
the provenance line). Each table build writes its tables in ONE transaction. Each returns a
:class:`BuildResult` whose ``metadata`` is plain JSON-able values and whose ``headline``
holds clinician-readable strings (median OS per group, p-values formatted). No Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from haic_pipeline import provenance
from haic_pipeline.stats import (
    format_count_percent,
    format_estimate_ci,
    format_median_ci,
    format_p,
)
from haic_pipeline.study.plan import load_plan
from haic_pipeline.warehouse.schema import ensure_ops

from . import beyond as B
from . import figures as F
from . import monitoring as M
from . import tables as T
from .data import ENDPOINTS, GROUPS, Provenance, load_study_data, read_provenance
from .render import FIGURES, Tables, draw_figure, figure_inputs, inputs_key, table_provenance
from .report import write_report
from .warehouse import (
    HISTORY_MONITORING_COLUMNS,
    append_history,
    ensure_history,
    read_table,
    write_tables,
)
from .warehouse import MONITORING_TABLES as MONITORING_COLUMNS


@dataclass
class BuildResult:
    tables: dict[str, int]                      # analysis table -> rows written
    provenance: Provenance
    headline: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # name -> path written

    def metadata(self) -> dict:
        return {**self.provenance.metadata(), "tables": dict(self.tables), **self.headline,
                "problems": list(self.problems)}


def _km_headline(summary: pd.DataFrame, tests: pd.DataFrame) -> dict[str, str]:
    out = {}
    for _, r in summary.iterrows():
        out[f"median_{r['endpoint'].lower()}_{r['group']}"] = (
            f"{format_median_ci(r['median_months'], r['median_lower'], r['median_upper'])} months "
            f"(n = {int(r['n'])}, events = {int(r['events'])})")
    for _, r in tests.iterrows():
        out[f"nominal_p_{r['test']}_{r['endpoint'].lower()}"] = format_p(r["p_value"])
    return out


def build_baseline(con: duckdb.DuckDBPyConnection) -> BuildResult:
    data = load_study_data(con)
    table = T.baseline_characteristics(data.frame)
    rows = write_tables(con, {"baseline_characteristics": table}, data.provenance)
    n = {g: int((data.frame["group"] == g).sum()) for g in GROUPS}
    headline = {"patients": f"{data.n} included ({n['first_line']} first-line, {n['post_ate_beva']} post-ate-beva)"}
    tested = table.dropna(subset=["p_value"]).drop_duplicates("variable")
    headline["nominal_p_values"] = ", ".join(f"{v} {format_p(p)}" for v, p in zip(tested["variable"], tested["p_value"]))
    return BuildResult(tables=rows, provenance=data.provenance, headline=headline)


def build_survival(con: duckdb.DuckDBPyConnection) -> BuildResult:
    data = load_study_data(con)
    res = T.survival_tables(data.frame)
    rows = write_tables(con, {"km_summary": res.km_summary, "km_curves": res.km_curves,
                              "survival_tests": res.survival_tests, "follow_up": res.follow_up},
                        data.provenance)
    headline = _km_headline(res.km_summary, res.survival_tests)
    fu = res.follow_up[res.follow_up["group"] == "overall"]
    if len(fu):
        r = fu.iloc[0]
        headline["median_follow_up_overall"] = f"{format_median_ci(r['median_months'], r['lower'], r['upper'])} months"
    problems = data.problems() + [f"{r['endpoint']} {r['test']}: {r['note']}"
                                  for _, r in res.survival_tests.iterrows() if r["note"]]
    return BuildResult(tables=rows, provenance=data.provenance, headline=headline, problems=problems)


def build_response(con: duckdb.DuckDBPyConnection) -> BuildResult:
    data = load_study_data(con)
    summary = T.response_summary(data.frame)
    tests = T.response_tests(data.frame)
    rows = write_tables(con, {"response_summary": summary, "response_tests": tests}, data.provenance)
    headline = {}
    for _, r in summary.iterrows():
        headline[f"orr_{r['group']}"] = format_count_percent(r["cr"] + r["pr"], r["n"])
        headline[f"dcr_{r['group']}"] = format_count_percent(r["cr"] + r["pr"] + r["sd"], r["n"])
    for _, r in tests.iterrows():
        headline[f"nominal_p_{r['measure'].lower()}"] = f"{format_p(r['p_value'])} ({r['test'] or 'not computed'})"
    problems = [f"{r['measure']}: {r['note']}" for _, r in tests.iterrows() if r["note"]]
    return BuildResult(tables=rows, provenance=data.provenance, headline=headline, problems=problems)


def build_cox(con: duckdb.DuckDBPyConnection) -> BuildResult:
    data = load_study_data(con)
    res = T.cox_tables(data.frame)
    rows = write_tables(con, {"cox_models": res.cox_models, "cox_excluded": res.cox_excluded},
                        data.provenance)
    headline = {}
    for endpoint in ENDPOINTS:
        multi = res.cox_models[(res.cox_models["endpoint"] == endpoint)
                               & (res.cox_models["model"] == "multivariable")]
        headline[f"multivariable_{endpoint.lower()}"] = "; ".join(
            f"{r['term']} HR {r['hr']:.3f} ({r['hr_lower']:.3f}\u2013{r['hr_upper']:.3f}), nominal p {format_p(r['p_value'])}"
            for _, r in multi.iterrows()) or "not fitted"
        excl = res.cox_excluded[res.cox_excluded["endpoint"] == endpoint]
        headline[f"excluded_{endpoint.lower()}"] = ", ".join(
            f"{t} ({r})" for t, r in zip(excl["term"], excl["reason"])) or "none"
    return BuildResult(tables=rows, provenance=data.provenance, headline=headline,
                       problems=data.problems() + res.problems)


def _hr_text(e: pd.Series) -> str:
    if pd.isna(e["hr"]):
        score = ("" if pd.isna(e["robust_score_p"]) else
                 f"robust score nominal p {format_p(e['robust_score_p'])}; ")
        return f"{score}{e['note']}"
    text = f"{format_estimate_ci(e['hr'], e['hr_lower'], e['hr_upper'], 3)}, nominal p {format_p(e['p_value'])}"
    if pd.notna(e["robust_score_p"]):
        text += f", robust score nominal p {format_p(e['robust_score_p'])}"
    if pd.notna(e["e_value"]):
        text += f", E-value {e['e_value']:.2f} (CI {e['e_value_ci']:.2f})"
    return text


def _beyond_headline(res: B.BeyondTables) -> dict[str, str]:
    ps = res.propensity
    out = {"propensity_model": (
        f"{ps.status}: {len(res.covariates) - len(res.weighting.left_out)} covariates, {ps.n} patients modelled, "
        f"{ps.n_excluded_missing} left out for a missing covariate"
        + ("" if ps.ok else f" ({ps.reason})"))}
    left = {**res.left_out, **res.weighting.left_out}
    if left:
        out["propensity_left_out"] = ", ".join(f"{t} ({r.split(' ')[0].rstrip(':')})" for t, r in left.items())
    ov = res.propensity_overlap.dropna(subset=["n_outside_other_range"])
    if len(ov):
        out["propensity_overlap"] = ", ".join(
            f"{g}: ps {r['ps_min']:.3f}\u2013{r['ps_max']:.3f}, {int(r['n_outside_other_range'])} outside the other "
            "group's range" for g, r in ov.set_index("group").iterrows())
    if res.weighting.clipped is not None:
        out["truncation_clipped"] = f"{int(res.weighting.clipped[0])} low, {int(res.weighting.clipped[1])} high"
    bal = res.balance[res.balance["covariate"].notna()]
    for when in ("before", "after"):
        known = bal[f"balanced_{when}"].dropna()
        out[f"balanced_{when}"] = (f"{int(known.astype(bool).sum())} of {len(bal)} covariates with |SMD| < "
                                   f"{B.BALANCE_THRESHOLD:g}" if len(known) else "not computed")
    for endpoint in ENDPOINTS:
        eff = res.iptw_effects[res.iptw_effects["endpoint"] == endpoint].set_index("weighting")
        out[f"iptw_hr_{endpoint.lower()}"] = _hr_text(eff.loc["stabilized"])
        out[f"overlap_hr_{endpoint.lower()}"] = _hr_text(eff.loc["overlap"])
        for weighting in B.RMST_WEIGHTINGS:
            r = res.rmst[(res.rmst["endpoint"] == endpoint) & (res.rmst["weighting"] == weighting)].iloc[0]
            out[f"rmst_difference_{endpoint.lower()}_{weighting}"] = (
                f"{format_estimate_ci(r['difference'], r['difference_lower'], r['difference_upper'], 2)} months "
                f"at {r['tau_months']:g} months, nominal p {format_p(r['difference_p'])}"
                if pd.notna(r["difference"]) else str(r["note"]))
        g = res.ph_tests[(res.ph_tests["endpoint"] == endpoint) & (res.ph_tests["model"] == "multivariable")
                         & (res.ph_tests["term"] == "GLOBAL")]
        out[f"ph_global_{endpoint.lower()}"] = (f"multivariable model GLOBAL nominal p {format_p(g['p_value'].iloc[0])}"
                                                if len(g) else "no multivariable model")
    return out


def build_beyond(con: duckdb.DuckDBPyConnection) -> BuildResult:
    """The tables of study_spec §5.5 (haic_pipeline.analysis.beyond). The proportional-hazards
    tests take their models from analysis.cox_models; a table from another drop than staging
    (or none) is recomputed here, so the tests always belong to the models of this drop."""
    data = load_study_data(con)
    cox_models = read_table(con, "cox_models")
    problems = data.problems()
    if not len(cox_models) or str(cox_models["extract_id"].iloc[0]) != str(data.provenance.extract_id):
        cox_models = T.cox_tables(data.frame).cox_models
    res = B.beyond_tables(data.frame, cox_models)
    rows = write_tables(con, res.tables(), data.provenance)
    return BuildResult(tables=rows, provenance=data.provenance, headline=_beyond_headline(res),
                       problems=problems + res.problems)


def build_refresh_history(con: duckdb.DuckDBPyConnection) -> BuildResult:
    """Append the headline figures of analysis.km_summary under its extract_id, unless a
    snapshot for that extract_id is already in analysis.refresh_history."""
    summary = read_table(con, "km_summary")
    prov = Provenance(None, None)
    if len(summary) and pd.notna(summary["extract_id"].iloc[0]):
        prov = Provenance(extract_id=str(summary["extract_id"].iloc[0]),
                          data_cutoff=str(pd.Timestamp(summary["data_cutoff"].iloc[0]).date()))
    added = append_history(con, T.history_snapshot(summary), prov)  # no drop -> adds nothing
    total, snapshots = con.execute(
        "SELECT count(*), count(DISTINCT extract_id) FROM analysis.refresh_history").fetchall()[0]
    headline = {"rows_added": str(added), "snapshots": str(snapshots),
                "new_snapshot": prov.extract_id if added else "none (no new drop since the last snapshot)"}
    return BuildResult(tables={"refresh_history": int(total)}, provenance=prov, headline=headline)


def _monitoring_headline(res, status: pd.DataFrame, plan) -> dict[str, str]:
    out = {"plan": plan.describe(), "plan_file": plan.source}
    if not len(status):
        return {**out, "decision": "no drop loaded"}
    s = status.iloc[-1]
    z = "not computed" if pd.isna(s["z"]) else f"z = {s['z']:.3f}, nominal p {format_p(s['nominal_p'])}"
    out["decision"] = str(s["decision"])
    out["information"] = f"{int(s['events'])} of {int(s['planned_events'])} planned events (t = {s['information_fraction']:.3f})"
    out["nightly_logrank"] = f"{z} (nominal: a nightly look, not a formal test)"
    out["boundary_now"] = "none" if pd.isna(s["boundary_now"]) else f"|z| \u2265 {s['boundary_now']:.3f}"
    out["conditional_power"] = "not computed" if pd.isna(s["conditional_power"]) else f"{s['conditional_power']:.3f}"
    for what, col in (("next_milestone", "next_milestone"), ("planned_events", "planned_events")):
        m = s[f"months_to_{col}"]
        out[f"projected_{what}"] = "not projected" if pd.isna(m) else f"{m:.2f} months ({s[f'date_{col}']})"
    looks = res.looks
    out["looks"] = "; ".join(
        f"look {int(r['look'])} at {r['extract_id']}: t = {r['information_fraction']:.3f}, z = "
        + ("NA" if pd.isna(r["z"]) else f"{r['z']:.3f}") + ", boundary "
        + ("+inf" if pd.isna(r["critical_z"]) else f"{r['critical_z']:.3f}")
        + (" (crossed: statistically significant)" if r["crossed"] else " (not crossed)")
        for _, r in looks.iterrows()) or "none yet"
    return out


def _fill_history(con: duckdb.DuckDBPyConnection, status: pd.DataFrame) -> int:
    """The §6.3 columns of analysis.refresh_history: each drop's rows not filled yet get the
    monitoring state after that drop; a drop no longer loaded gets a note."""
    ensure_history(con)
    if len(status):
        df = status.rename(columns={"endpoint": "monitoring_endpoint", "events": "monitoring_events",
                                    "note": "monitoring_note"})
        df = df[["extract_id", *HISTORY_MONITORING_COLUMNS]].astype(object)
        df = df.where(pd.notna(df), None)
        con.register("_monitoring_status", df)
        try:
            sets = ", ".join(f'"{c}" = s."{c}"' for c in HISTORY_MONITORING_COLUMNS)
            con.execute(f"UPDATE analysis.refresh_history AS h SET {sets} FROM _monitoring_status AS s "
                        "WHERE h.extract_id = s.extract_id AND h.decision IS NULL")
        finally:
            con.unregister("_monitoring_status")
    con.execute("UPDATE analysis.refresh_history SET monitoring_note = 'no monitoring state: the drop is not loaded "
                "now (retracted)' WHERE decision IS NULL AND monitoring_note IS NULL")
    return con.execute("SELECT count(*) FROM analysis.refresh_history WHERE decision IS NOT NULL").fetchall()[0][0]


def build_monitoring(con: duckdb.DuckDBPyConnection, plan=None) -> BuildResult:
    """analysis.monitoring_looks and analysis.monitoring_status (study_spec §6), and the §6.3
    columns of analysis.refresh_history. `plan`: a MonitoringPlan (default: the plan file,
    read and checked before anything is written)."""
    plan = plan or load_plan()
    inputs = M.update_drop_inputs(con)
    res = M.monitoring_tables(inputs, plan)
    status = res.status.tail(1).assign(plan=plan.describe())
    for c in [c for c, _ in MONITORING_COLUMNS["monitoring_status"] if c not in status]:
        status[c] = None
    prov = read_provenance(con)
    rows = write_tables(con, {"monitoring_looks": res.looks, "monitoring_status": status,
                              "monitoring_boundaries": res.boundaries}, prov)
    _fill_history(con, res.status)
    return BuildResult(tables=rows, provenance=prov, headline=_monitoring_headline(res, res.status, plan),
                       problems=[str(n) for n in status["note"] if isinstance(n, str)])


def build_software(con: duckdb.DuckDBPyConnection, refresh: str) -> BuildResult:
    """analysis.software: the versions this refresh computes with (haic_pipeline.provenance),
    replaced each refresh; the same rows appended to ops.software under the refresh's id, so the
    software behind any earlier result stays on record."""
    prov = read_provenance(con)
    versions = provenance.software()
    at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    frame = pd.DataFrame({"component": list(versions), "version": list(versions.values()), "recorded_at": at})
    counts = write_tables(con, {"software": frame}, prov)
    ensure_ops(con)
    con.execute("INSERT INTO ops.software SELECT ?, recorded_at, extract_id, data_cutoff, component, version "
                "FROM analysis.software", [refresh])
    return BuildResult(tables=counts, provenance=prov, headline={"software": provenance.describe(versions)})


# ---------------------------------------------------------------------------------------
# figures and report (read the analysis tables: a figure shows what the tables hold)
# ---------------------------------------------------------------------------------------
def build_figures(con: duckdb.DuckDBPyConnection, reports: Path,
                  names: tuple[str, ...] = FIGURES) -> dict[str, F.SavedFigure]:
    """Draw and save each figure under ``<reports>/figures/``; a figure whose inputs (tables,
    provenance, drawing code) are unchanged since it was written, or were drawn earlier in this
    process, is not drawn again."""
    out = {}
    folder = Path(reports) / "figures"
    tables = Tables(con)
    for name in names:
        inputs = figure_inputs(con, name, tables)
        key = inputs_key(name, inputs)
        saved = F.load_saved(folder, name, key) or F.save_drawn(folder, name, key)
        out[name] = saved or F.save_figure(draw_figure(inputs), folder, name, inputs_key=key)
    return out


def build_report(con: duckdb.DuckDBPyConnection, reports: Path) -> BuildResult:
    prov = table_provenance(con, "km_summary")
    paths = write_report(con, Path(reports), prov)
    return BuildResult(tables={}, provenance=prov, files={k: str(v) for k, v in paths.items()})


def build_analysis(con: duckdb.DuckDBPyConnection, reports: Path, refresh: str = "manual") -> dict[str, BuildResult]:
    """Every analysis table, the figures and the report (what the Dagster assets do, in order);
    `refresh`: the id the software versions are recorded under in ops.software."""
    out = {
        "baseline": build_baseline(con),
        "survival": build_survival(con),
        "response": build_response(con),
        "cox": build_cox(con),
        "refresh_history": build_refresh_history(con),
        "beyond": build_beyond(con),
        "monitoring": build_monitoring(con),
        "software": build_software(con, refresh),
    }
    build_figures(con, reports)
    out["report"] = build_report(con, reports)
    return out
