"""The study report: Tables 1-4, the survival summary, the figures, the CONSORT counts, how
the estimates moved as drops arrived, and "Beyond the paper" (study_spec §5: balance, IPTW,
RMST, proportional hazards, each with a plain sentence on what it means for the comparison),
regenerated on every refresh from the analysis tables.

Two files under the reports folder: ``study_report.html`` (self-contained: tables as HTML,
figures inlined as PNG data URIs, the paper's and the beyond-the-paper ones alike) and
``study_report.md`` (the same tables, figures linked as ``figures/<name>.png``).
Deterministic: no clock time, only the provenance (drops, data cutoff). Nothing
patient-level: only aggregated tables.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from haic_pipeline.stats import (
    format_count_percent,
    format_estimate_ci,
    format_median_ci,
    format_p,
)
from haic_pipeline.warehouse.files import write_atomic

from . import figures as F
from .data import ENDPOINTS, GROUPS, Provenance
from .render import render_figure
from .warehouse import read_table

VARIABLE_LABELS = {
    "n": "Patients, n",
    "age": "Age, years",
    "sex": "Sex",
    "etiology": "Aetiology",
    "ecog": "ECOG performance status",
    "child_pugh_class": "Child-Pugh class",
    "bclc_stage": "BCLC stage",
    "afp_ge_400": "AFP \u2265 400 ng/mL",
    "multiple_tumors": "Multiple tumours",
    "tumor_size_gt_10": "Tumour size > 10 cm",
    "portal_vein_invasion": "Portal vein invasion",
    "extrahepatic_metastasis": "Extrahepatic metastasis",
}
TEST_LABELS = {"t_test": "Student's t", "chi2": "\u03c7\u00b2", "fisher": "Fisher", None: ""}
GROUP_HEAD = {"first_line": "First-line HAIC", "post_ate_beva": "Post-ate-beva HAIC", "overall": "Overall"}


@dataclass
class Section:
    title: str
    table: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (figure name, caption)
    level: int = 2  # heading level: 2 = a section, 3 = a part of the one before
    lead: list[str] = field(default_factory=list)  # plain sentences shown before the table


def _s(x) -> str:
    return "" if x is None or (isinstance(x, float) and pd.isna(x)) else str(x)


def _group_n(table1: pd.DataFrame) -> dict[str, str]:
    row = table1[table1["variable"] == "n"]
    return {g: _s(row[g].iloc[0]) if len(row) else "0" for g in (*GROUPS, "overall")}


def table1_section(t1: pd.DataFrame) -> Section:
    n = _group_n(t1)
    rows, seen = [], set()
    for _, r in t1.iterrows():
        if r["variable"] == "n":
            continue
        first = r["variable"] not in seen
        seen.add(r["variable"])
        rows.append({
            "Characteristic": VARIABLE_LABELS.get(r["variable"], r["variable"]) if first else "",
            "Level": r["level"],
            **{f"{GROUP_HEAD[g]} (n = {n[g]})": _s(r[g]) for g in (*GROUPS, "overall")},
            "Nominal p": format_p(r["p_value"]) if first and r["test"] else "",
            "Test": TEST_LABELS.get(r["test"], _s(r["test"])) if first else "",
        })
    return Section("Table 1. Baseline characteristics", pd.DataFrame(rows), notes=[
        "Mean \u00b1 SD with Student's t-test (pooled variance); n (%) of non-missing values with "
        "Pearson \u03c7\u00b2 (no continuity correction) or Fisher's exact test when an expected count is < 5. "
        "Missing values are counted on a 'missing' row and excluded from percentages and tests."])


def survival_section(summary: pd.DataFrame, tests: pd.DataFrame, follow_up: pd.DataFrame) -> Section:
    rows = []
    for _, r in summary.iterrows():
        rate = (format_estimate_ci(*(100 * r[c] if pd.notna(r[c]) else None
                                     for c in ("rate_12m", "rate_12m_lower", "rate_12m_upper")), digits=1))
        rows.append({"Endpoint": r["endpoint"], "Group": GROUP_HEAD.get(r["group"], r["group"]),
                     "n": int(r["n"]), "Events": int(r["events"]),
                     "Median, months (95% CI)": format_median_ci(r["median_months"], r["median_lower"],
                                                                 r["median_upper"]),
                     "12-month rate, % (95% CI)": rate})
    notes = []
    for _, r in tests.iterrows():
        what = "log-rank" if r["test"] == "logrank" else "12-month rate (cloglog z-test)"
        stat = (f"\u03c7\u00b2 = {r['statistic']:.3f}, df = {int(r['df'])}" if r["test"] == "logrank"
                and pd.notna(r["statistic"]) else
                f"z = {r['statistic']:.3f}" if pd.notna(r["statistic"]) else _s(r.get("note")))
        notes.append(f"{r['endpoint']} {what}: {stat}; nominal p = {format_p(r['p_value'])}")
    for _, r in follow_up.iterrows():
        notes.append(f"Median follow-up (reverse Kaplan-Meier), {GROUP_HEAD.get(r['group'], r['group'])}: "
                     f"{format_median_ci(r['median_months'], r['lower'], r['upper'])} months")
    return Section("Survival outcomes", pd.DataFrame(rows), notes=notes,
                   figures=[("km_os", "Figure 1. Overall survival by group"),
                            ("km_pfs", "Figure 2. Progression-free survival by group")])


def response_section(summary: pd.DataFrame, tests: pd.DataFrame) -> Section:
    by = {r["group"]: r for _, r in summary.iterrows()}
    groups = [g for g in (*GROUPS, "overall") if g in by]
    rows = []
    for code, label in (("cr", "Complete response"), ("pr", "Partial response"), ("sd", "Stable disease"),
                        ("pd", "Progressive disease"), ("ne", "Not evaluable")):
        rows.append({"Best response (mRECIST)": label,
                     **{f"{GROUP_HEAD[g]} (n = {int(by[g]['n'])})": format_count_percent(by[g][code], by[g]["n"])
                        for g in groups}, "Nominal p": "", "Test": ""})
    for measure, parts in (("ORR", ("cr", "pr")), ("DCR", ("cr", "pr", "sd"))):
        t = tests[tests["measure"] == measure]
        rows.append({"Best response (mRECIST)": {"ORR": "Objective response (CR + PR)",
                                                 "DCR": "Disease control (CR + PR + SD)"}[measure],
                     **{f"{GROUP_HEAD[g]} (n = {int(by[g]['n'])})":
                        format_count_percent(sum(int(by[g][c]) for c in parts), by[g]["n"]) for g in groups},
                     "Nominal p": format_p(t["p_value"].iloc[0]) if len(t) else "NA",
                     "Test": TEST_LABELS.get(t["test"].iloc[0], _s(t["test"].iloc[0])) if len(t) else ""})
    return Section("Table 2. Best overall response", pd.DataFrame(rows), notes=[
        "Denominator: every included patient (NE counts as neither response nor control). "
        "Pearson \u03c7\u00b2 without continuity correction, or Fisher's exact test when an expected count is < 5."])


def cox_section(number: int, endpoint: str, models: pd.DataFrame, excluded: pd.DataFrame) -> Section:
    title = {"OS": "overall survival", "PFS": "progression-free survival"}[endpoint]
    m = models[models["endpoint"] == endpoint] if len(models) else models
    uni = m[m["model"] == "univariable"] if len(m) else m
    multi = m[m["model"] == "multivariable"] if len(m) else m
    rows = []
    for _, r in uni.iterrows():
        mr = multi[multi["term"] == r["term"]]
        rows.append({
            "Variable": F.TERM_LABELS.get(r["term"], r["term"]), "term": r["term"],
            "Univariable HR (95% CI)": format_estimate_ci(r["hr"], r["hr_lower"], r["hr_upper"], 3),
            "Nominal p (uni)": format_p(r["p_value"]), "n/events (uni)": f"{int(r['n'])}/{int(r['events'])}",
            "Multivariable HR (95% CI)": format_estimate_ci(mr["hr"].iloc[0], mr["hr_lower"].iloc[0],
                                                            mr["hr_upper"].iloc[0], 3) if len(mr) else "",
            "Nominal p (multi)": format_p(mr["p_value"].iloc[0]) if len(mr) else "",
        })
    notes = ["Cox proportional hazards, Efron ties; Wald 95% CI and p. Each model on the complete cases of its "
             "own terms. Multivariable model: group + every candidate with univariable p < 0.1."]
    if len(multi):
        notes.append(f"Multivariable model: n = {int(multi['n'].iloc[0])}, events = {int(multi['events'].iloc[0])}.")
    x = excluded[excluded["endpoint"] == endpoint] if len(excluded) else excluded
    for _, r in x.iterrows():
        notes.append(f"Left out: {F.TERM_LABELS.get(r['term'], r['term'])} ({r['term']}): {r['reason']}"
                     + (f" \u2014 {r['detail']}" if _s(r.get('detail')) else ""))
    fig = "forest_os" if endpoint == "OS" else "forest_pfs"
    return Section(f"Table {number}. Cox regression for {title}", pd.DataFrame(rows), notes=notes,
                   figures=[(fig, f"Figure {number}. Hazard ratios for {title} (forest plot)")])


def attrition_section(attrition: pd.DataFrame) -> Section | None:
    if not len(attrition):
        return None
    t = attrition[["step", "description", "n_excluded", "n_remaining"]].copy()
    t["n_excluded"] = [_s(int(v)) if pd.notna(v) else "" for v in t["n_excluded"]]
    t.columns = ["Step", "Description", "Excluded", "Remaining"]
    return Section("Study population (CONSORT)", t)


def history_section(history: pd.DataFrame) -> Section | None:
    if not len(history):
        return None
    rows = []
    for _, r in history.sort_values(["extract_id", "endpoint", "group"], kind="stable").iterrows():
        rows.append({"Drop": r["extract_id"], "Data cutoff": str(pd.Timestamp(r["data_cutoff"]).date()),
                     "Endpoint": r["endpoint"], "Group": GROUP_HEAD.get(r["group"], r["group"]),
                     "n": int(r["n"]), "Events": int(r["events"]),
                     "Median, months": "NA" if pd.isna(r["median_months"]) else f"{r['median_months']:.1f}",
                     "12-month rate, %": "NA" if pd.isna(r["rate_12m"]) else f"{100 * r['rate_12m']:.1f}"})
    return Section("How the estimates moved as drops arrived (analysis.refresh_history)", pd.DataFrame(rows))


INF = "\u221e"


def _num(x, fmt: str, na: str = "NA") -> str:
    return na if x is None or pd.isna(x) else format(float(x), fmt)


def monitoring_paragraph(status: pd.DataFrame, looks: pd.DataFrame) -> str:
    """The monitoring state in one paragraph (study_spec §6.4), from analysis.monitoring_status
    and analysis.monitoring_looks."""
    if not len(status):
        return "Monitoring: no drop loaded yet, so no information and no formal look."
    s = status.iloc[0]
    what = {"OS": "deaths", "PFS": "progressions or deaths"}.get(s["endpoint"], "events")
    out = [f"Monitoring of {s['endpoint']} (the plan's primary comparison, log-rank of group): after drop "
           f"{s['extract_id']} (data cutoff {pd.Timestamp(s['data_cutoff']).date()}), {int(s['events'])} of the "
           f"{int(s['planned_events'])} planned {what} have been observed (information fraction "
           f"{_num(s['information_fraction'], '.2f')})."]
    if len(looks):
        parts = [f"look {int(r['look'])} at {_num(r['information_fraction'], '.2f')} (z = {_num(r['z'], '.2f')}, "
                 f"boundary \u00b1{_num(r['critical_z'], '.2f', INF)}, "
                 f"{'crossed' if r['crossed'] else 'not crossed'})" for _, r in looks.iterrows()]
        out.append(f"Formal looks taken ({len(looks)}): {'; '.join(parts)}.")
    else:
        out.append("No formal look has been taken yet (the first milestone is not reached).")
    out.append(f"This refresh's log-rank z is {_num(s['z'], '.2f')} ({_p_eq(s['nominal_p'])}); it is re-computed on "
               "every refresh, so on its own it is not a test at the 5% level.")
    decision = str(s["decision"])
    if decision == "continue":
        if pd.notna(s["boundary_now"]):
            out.append(f"A formal look now would need |z| \u2265 {s['boundary_now']:.2f}.")
        if pd.notna(s["conditional_power"]):
            out.append(f"If the current trend holds, the chance of crossing the boundary by the final look "
                       f"(conditional power) is {100 * s['conditional_power']:.0f}%.")
        when = [(label.format(n=int(n), what=what), f"in about {s[f'months_to_{col}']:.1f} months "
                 f"({pd.Timestamp(s[f'date_{col}']).date()})")
                for label, col, n in (("the next milestone ({n} {what})", "next_milestone", s["next_milestone_events"]),
                                      ("all {n} planned {what}", "planned_events", s["planned_events"]))
                if pd.notna(s[f"months_to_{col}"])]
        if when:
            out.append(f"At the current event and accrual rates, {when[0][0]} is expected {when[0][1]}"
                       + "".join(f" and {label} {at}" for label, at in when[1:]) + ".")
        out.append("No formal look has crossed its boundary: no difference between the groups is established yet.")
    elif decision.startswith("boundary crossed"):
        r = looks[looks["crossed"].astype(bool)].iloc[0]
        out.append(f"The boundary was crossed at look {int(r['look'])}: the difference is statistically significant "
                   f"at the study's overall two-sided \u03b1 (HR {_num(r['hr'], '.2f')}, repeated CI "
                   f"{_num(r['rci_lower'], '.2f')} to {_num(r['rci_upper'], '.2f')}); monitoring has ended.")
    else:
        out.append("The final look has been taken without crossing its boundary: the study did not establish a "
                   "difference; monitoring has ended.")
    return " ".join(out)


def monitoring_section(con: duckdb.DuckDBPyConnection) -> Section:
    status, looks = read_table(con, "monitoring_status"), read_table(con, "monitoring_looks")
    rows = [{"Look": int(r["look"]), "Drop": r["extract_id"], "Data cutoff": str(pd.Timestamp(r["data_cutoff"]).date()),
             "Events": int(r["events"]), "Information": _num(r["information_fraction"], ".3f"),
             "Cumulative \u03b1": _num(r["cumulative_alpha"], ".5f"), "Boundary \u00b1z":
             _num(r["critical_z"], ".3f", "\u221e"), "z": _num(r["z"], ".3f"), "Nominal p": format_p(r["nominal_p"]),
             "Crossed": "yes" if r["crossed"] else "no",
             "HR (repeated CI)": format_estimate_ci(r["hr"], r["rci_lower"], r["rci_upper"], 2),
             "Final": "yes" if r["final"] else "no"} for _, r in looks.iterrows()]
    notes = ["Formal looks are taken when the events of the plan's endpoint pass a milestone of the monitoring "
             "plan (study/monitoring_plan.yaml, or HAIC_STUDY_PLAN); each is judged against a group-sequential "
             "boundary that spends the study's \u03b1 over the looks (Lan-DeMets), so repeated looks keep the "
             "overall false-positive rate at \u03b1. The HR's repeated CI uses the look's boundary instead of 1.96. "
             "Every other p-value in this report is nominal."]
    if len(status) and isinstance(status["plan"].iloc[0], str):
        notes.append(f"Plan: {status['plan'].iloc[0]}.")
    return Section("Monitoring: where the study stands", pd.DataFrame(rows) if rows else None, notes=notes,
                   lead=[monitoring_paragraph(status, looks)],
                   figures=[("monitor", "Figure M. Log-rank z over the information fraction: nightly (nominal) z's, "
                                        "formal looks and their boundaries")])


def left_out_notes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Patients left out of the survival analyses for a negative time (see StudyData)."""
    try:
        rows = con.execute("""
            SELECT count(*) FILTER (WHERE os_months < 0 AND os_event = 0),
                   count(*) FILTER (WHERE os_months < 0 AND os_event = 1),
                   count(*) FILTER (WHERE pfs_months < 0 AND pfs_event = 0),
                   count(*) FILTER (WHERE pfs_months < 0 AND pfs_event = 1)
            FROM staging.endpoints""").fetchall()[0]
    except duckdb.Error:
        return []
    out = []
    for endpoint, cens, ev in (("OS", rows[0], rows[1]), ("PFS", rows[2], rows[3])):
        if cens:
            out.append(f"{endpoint}: {cens} patient(s) censored before the index date (no follow-up after "
                       "the first HAIC) are left out of the survival analyses.")
        if ev:
            out.append(f"{endpoint}: {ev} event(s) dated before the index date (source data error) are left "
                       "out of the survival analyses.")
    return out


def interventions_section(con: duckdb.DuckDBPyConnection) -> Section | None:
    """The retracted drops and standing waivers these results were computed under (who, when,
    why: ops.interventions), so a reader knows which data-quality failures were set aside."""
    from haic_pipeline.warehouse import interventions  # noqa: PLC0415

    try:
        retracted, waivers = interventions.retracted_drops(con), interventions.active_waivers(con)
    except duckdb.Error:
        return None
    rows = [{"Action": "drop retracted", "Drop": r["extract_id"], "Check": "-", "Rules": "-",
             "By": r["retracted_by"], "On (UTC)": str(r["retracted_at"])[:16], "Reason": r["reason"]} for r in retracted]
    rows += [{"Action": "check waived", "Drop": eid, "Check": check, "Rules": ", ".join(w["rules"]), "By": w["waived_by"],
              "On (UTC)": str(w["waived_at"])[:16], "Reason": w["reason"]} for (check, eid), w in waivers.items()]
    if not rows:
        return None
    return Section("Data-quality interventions in force (ops.interventions)", pd.DataFrame(rows), notes=[
        "A retracted drop's rows are left out of staging and of every result below (raw keeps them); a waived "
        "check passes for that drop although its rules fail (ops.dq_results keeps the failure)."])


def provenance_line(con: duckdb.DuckDBPyConnection, prov: Provenance) -> str:
    """The provenance sentence: the data (drops, cutoff), the interventions in force if any, and
    the software that computed it (haic_pipeline.provenance), as a methods section names it."""
    from haic_pipeline import provenance  # noqa: PLC0415

    computed = f"computed with {provenance.describe()}"
    sec = interventions_section(con)
    if sec is None:
        return f"{prov.describe()}; {computed}"
    acts = sec.table["Action"].value_counts()
    parts = [f"{n} {what}" for what, n in (("drop(s) retracted", acts.get("drop retracted", 0)),
                                            ("check waiver(s) in force", acts.get("check waived", 0))) if n]
    return f"{prov.describe()}; {', '.join(parts)} (see Data-quality interventions); {computed}"


# ---------------------------------------------------------------------------------------
# beyond the paper (study_spec §5): tables with one plain sentence per result
# ---------------------------------------------------------------------------------------
EVENTS = {"OS": "death", "PFS": "progression or death"}
LIVED = {"OS": "lived", "PFS": "lived without progression"}
BALANCED = 0.1
GROUP_SHORT = {"first_line": "first-line", "post_ate_beva": "post-ate-beva"}
#: how each weighting is named in the section: the estimand it targets
WEIGHTING_LABELS = {"none": "unweighted (same patients)", "stabilized": "stabilized IPTW (ATE)",
                    "truncated": "truncated IPTW (ATE)", "overlap": "overlap weights (ATO)"}
#: below this many events a proportional-hazards test that does not reject is said to have little power
PH_FEW_EVENTS = 100


def _p_eq(p) -> str:
    """``nominal p = 0.068`` / ``nominal p < 0.001`` (or ``p not computed``) for a sentence: every
    p of a refresh is nominal (study_spec §6)."""
    if p is None or pd.isna(p):
        return "p not computed"
    f = format_p(p)
    return f"nominal p < {f[1:]}" if f.startswith("<") else f"nominal p = {f}"


def _ci(est, lo, hi, digits: int = 2) -> str:
    """``0.47, 95% CI 0.21 to 1.06`` (for a parenthesis of a sentence); NA where missing."""
    def f(x):
        return "NA" if x is None or pd.isna(x) else f"{x:.{digits}f}"
    return f"{f(est)}, 95% CI {f(lo)} to {f(hi)}"


def _one(df: pd.DataFrame, **eq) -> pd.Series | None:
    if not len(df):
        return None
    mask = pd.Series(True, index=df.index)
    for c, v in eq.items():
        if c not in df:
            return None
        mask &= df[c] == v
    return df[mask].iloc[0] if mask.any() else None


def _weights_ok(pm: pd.DataFrame) -> bool:
    return bool(len(pm)) and bool((pm["status"] == "ok").any())


def _term(t) -> str:
    return F.TERM_LABELS.get(t, t)


def _e_words(r: pd.Series) -> str:
    """``E-value 2.07 (CI 1.32)`` of an iptw_effects row, or empty."""
    if r is None or "e_value" not in r or pd.isna(r["e_value"]):
        return ""
    ci = "" if pd.isna(r["e_value_ci"]) else f" (CI {float(r['e_value_ci']):.2f})"
    return f"E-value {float(r['e_value']):.2f}{ci}"


def balance_sentence(balance: pd.DataFrame, weighted: bool) -> str:
    """What the balance table means: which covariates differed before weighting and whether
    weighting removed the differences (|SMD| < 0.1 counts as balanced), on the measured
    covariates only."""
    rows = balance[balance["covariate"].notna()] if len(balance) else balance
    if not len(rows):
        return "No covariate entered the propensity model, so there is no balance to assess."
    m = len(rows)
    before = pd.to_numeric(rows["smd_before"], errors="coerce")
    bad = rows[before.isna() | (before.abs() >= BALANCED)]
    if len(bad):
        verb = "covariate differs" if len(bad) == 1 else "covariates differ"
        first = (f"Before weighting {len(bad)} of {m} {verb} between the groups "
                 f"(|SMD| \u2265 0.1: {', '.join(_term(c) for c in bad['covariate'])})")
    else:
        first = f"Before weighting the groups differ little on every one of the {m} covariates (|SMD| < 0.1)"
    if not weighted:
        return first + "; the weighted balance is not available because the propensity model could not be estimated."
    after = pd.to_numeric(rows["smd_after"], errors="coerce")
    still = rows[after.isna() | (after.abs() >= BALANCED)]
    if not len(still):
        out = first + ("; after the stabilized weights every one is balanced (|SMD| < 0.1)")
    else:
        worst = still.loc[after[still.index].abs().idxmax()]
        them = "it" if len(still) == 1 else "them"
        out = first + (f"; after the stabilized weights {len(still)} still differ{'s' if len(still) == 1 else ''} "
                       f"({', '.join(_term(c) for c in still['covariate'])}; largest |SMD| "
                       f"{abs(float(worst['smd_after'])):.2f}, {_term(worst['covariate'])}), so that comparison is "
                       f"only partly adjusted for {them}")
    if "smd_after_overlap" in rows:
        ov = pd.to_numeric(rows["smd_after_overlap"], errors="coerce")
        modelled = rows["in_propensity_model"].eq(True)
        if modelled.any() and ov[modelled].notna().all():
            out += (f"; the overlap weights balance the {int(modelled.sum())} modelled covariates exactly "
                    f"(largest |SMD| {float(ov[modelled].abs().max()):.0e})")
    return out + (". Balance is on these measured covariates only: it says nothing about covariates that were "
                  "not recorded.")


def hr_sentence(endpoint: str, effects: pd.DataFrame, models: pd.DataFrame,
                clipped: tuple[int, int] | None = None) -> str:
    """What the weighted hazard ratios say (ATE and ATO), beside the unweighted one on the same
    patients, with their E-values; truncation is mentioned only when it clipped weights."""
    eff = _one(effects, endpoint=endpoint, weighting="stabilized")
    none = _one(effects, endpoint=endpoint, weighting="none")
    ov = _one(effects, endpoint=endpoint, weighting="overlap")
    if eff is None or pd.isna(eff["hr"]):
        why = "" if eff is None else f" ({_s(eff['note']).split('; the robust score test')[0]})"
        out = f"{endpoint}: the IPTW-adjusted hazard ratio is not computed{why}"
        if eff is not None and pd.notna(eff["robust_score_p"]):
            out += (f"; the robust score test, which needs no fitted hazard ratio, compares the weighted curves: "
                    f"{_p_eq(eff['robust_score_p'])}")
        if ov is not None and pd.notna(ov["robust_score_p"]) and pd.isna(ov["hr"]):
            out += f" (overlap weights: {_p_eq(ov['robust_score_p'])})"
        return out + "."
    hr = float(eff["hr"])
    size = "the same as" if round(hr, 2) == 1 else (f"{abs(1 - hr) * 100:.0f}% {'lower' if hr < 1 else 'higher'} than")
    out = (f"{endpoint}: with stabilized weights (ATE), the hazard of {EVENTS[endpoint]} with post-ate-beva HAIC is "
           f"{size} with first-line HAIC (HR {_ci(eff['hr'], eff['hr_lower'], eff['hr_upper'])}, "
           f"{_p_eq(eff['p_value'])})")
    if ov is not None and pd.notna(ov["hr"]):
        out += (f"; with overlap weights (ATO) HR {_ci(ov['hr'], ov['hr_lower'], ov['hr_upper'])}, "
                f"{_p_eq(ov['p_value'])}")
    elif ov is not None:
        out += f"; the overlap-weighted HR is not computed ({_s(ov['note'])})"
    if none is not None and pd.notna(none["hr"]):
        out += (f"; unweighted on the same {int(none['n'])} patients HR "
                f"{_ci(none['hr'], none['hr_lower'], none['hr_upper'])}, {_p_eq(none['p_value'])}")
    out += "."
    if pd.notna(eff["e_value"]):
        ci = "" if pd.isna(eff["e_value_ci"]) else float(eff["e_value_ci"])
        out += (f" E-value {float(eff['e_value']):.2f}: an unmeasured confounder associated with both the treatment "
                f"and {EVENTS[endpoint]} by a risk ratio of {float(eff['e_value']):.2f} each, beyond the measured "
                "covariates, could explain the weighted hazard ratio away")
        if ci == 1.0:
            out += "; its confidence interval already includes 1"
        elif ci != "":
            out += f", one of {ci:.2f} could move its confidence interval to include 1"
        out += "."
    tr = _one(effects, endpoint=endpoint, weighting="truncated")
    if tr is not None and pd.notna(tr["hr"]) and clipped and sum(clipped):
        steady = abs(math.log(float(tr["hr"]) / hr)) < 0.1
        out += (f" Truncating the weights at their 1st and 99th percentiles clips {clipped[0]} low and {clipped[1]} "
                f"high and gives HR {_ci(tr['hr'], tr['hr_lower'], tr['hr_upper'])}: "
                + ("the clipped weights do not drive the result." if steady else
                   "the clipped weights move the result; read the weighted HR with caution."))
    return out


def clipped_counts(weights: pd.DataFrame) -> tuple[int, int] | None:
    """(low, high): how many weights truncation clipped (analysis.iptw_weights), or None."""
    tr = weights[weights["weighting"] == "truncated"] if len(weights) and "clipped_low" in weights else None
    if tr is None or not len(tr) or pd.isna(tr["clipped_low"].iloc[0]):
        return None
    return int(tr["clipped_low"].iloc[0]), int(tr["clipped_high"].iloc[0])


def median_sentence(endpoint: str, iptw: pd.DataFrame) -> str:
    """The weighted medians and 12-month rates of the two groups beside the unweighted ones of
    the same (modelled) patients."""
    w = {g: _one(iptw, endpoint=endpoint, group=g, weighting="stabilized") for g in GROUPS}
    u = {g: _one(iptw, endpoint=endpoint, group=g, weighting="none") for g in GROUPS}
    o = {g: _one(iptw, endpoint=endpoint, group=g, weighting="overlap") for g in GROUPS}
    if any(r is None or pd.isna(r["n"]) or pd.isna(r["ess"]) for r in w.values()):
        note = next((_s(r["note"]) for r in w.values() if r is not None and _s(r["note"])), "")
        return f"{endpoint}: the IPTW-adjusted Kaplan-Meier estimates are not computed ({note})."

    def med(r):
        if r is None:
            return "NA"
        return "not reached" if pd.isna(r["median_months"]) else f"{float(r['median_months']):.1f} months"

    def rate(r):
        return "NA" if r is None or pd.isna(r["rate_12m"]) else f"{100 * r['rate_12m']:.0f}%"

    out = (f"{endpoint}: weighted (ATE) median {med(w['first_line'])} with first-line vs {med(w['post_ate_beva'])} "
           f"with post-ate-beva HAIC (unweighted on the same patients {med(u['first_line'])} vs "
           f"{med(u['post_ate_beva'])}")
    if all(r is not None and pd.notna(r["ess"]) for r in o.values()):
        out += f"; overlap weights (ATO) {med(o['first_line'])} vs {med(o['post_ate_beva'])}"
    out += ")"
    if all(r is not None and pd.notna(r["rate_12m"]) for r in w.values()):
        out += (f"; at 12 months {rate(w['first_line'])} vs {rate(w['post_ate_beva'])} are free of "
                f"{EVENTS[endpoint]} after weighting (unweighted {rate(u['first_line'])} vs "
                f"{rate(u['post_ate_beva'])})")

    def gap(r):
        if any(x is None or pd.isna(x["median_months"]) for x in r.values()):
            return None
        return float(r["post_ate_beva"]["median_months"]) - float(r["first_line"]["median_months"])
    gw, gu = gap(w), gap(u)
    if gw is not None and gu is not None:
        out += (f". On the same patients, weighting for the baseline covariates changes the gap between the medians "
                f"from {gu:+.1f} to {gw:+.1f} months (post-ate-beva minus first-line)")
    elif gw is None:
        out += (". A median not reached leaves the weighted gap between the medians undetermined; the RMST below "
                "compares the groups without it")
    return out + "."


def rmst_sentence(endpoint: str, rmst: pd.DataFrame) -> str:
    """How many months longer (or shorter) post-ate-beva patients lived (without progression)
    on average within the first 12 months, weighted, beside the unweighted difference of the
    same patients and the overlap-weighted one."""
    w = _one(rmst, endpoint=endpoint, weighting="stabilized")
    u = _one(rmst, endpoint=endpoint, weighting="none")
    o = _one(rmst, endpoint=endpoint, weighting="overlap")
    main, other = (w, u) if w is not None and pd.notna(w["difference"]) else (u, None)
    if main is None or pd.isna(main["difference"]):
        why = "" if main is None else f" ({_s(main['note'])})"
        return f"{endpoint}: the restricted mean survival time is not computed{why}."
    d = float(main["difference"])
    tau = float(main["tau_months"])
    horizon = f"the first {tau:g} months"
    if bool(main["tau_truncated"]):
        horizon += f" (\u03c4 lowered from {float(main['tau_requested']):g} months: follow-up is shorter)"
    how = ("with stabilized weights (ATE)" if main["weighting"] == "stabilized"
           else "without weighting (no weighted estimate)")
    out = (f"{endpoint}: over {horizon}, post-ate-beva patients {LIVED[endpoint]} on average {abs(d):.2f} months "
           f"{'longer' if d >= 0 else 'shorter'} than first-line patients {how} (difference "
           f"{_ci(d, main['difference_lower'], main['difference_upper'])}, {_p_eq(main['difference_p'])}; restricted "
           f"means {float(main['rmst_post_ate_beva']):.2f} vs {float(main['rmst_first_line']):.2f} months")
    if o is not None and pd.notna(o["difference"]) and other is not None:
        out += f"; overlap weights (ATO) {float(o['difference']):+.2f} months, {_p_eq(o['difference_p'])}"
    if other is not None and pd.notna(other["difference"]):
        out += (f"; unweighted on the same patients {float(other['difference']):+.2f} months, "
                f"{_p_eq(other['difference_p'])}")
    return out + ")."


PH_MODEL_LABELS = {"univariable": "univariable", "multivariable": "multivariable",
                   "iptw_stabilized": "weighted (ATE)", "iptw_overlap": "weighted (ATO)"}


def ph_sentence(endpoint: str, ph: pd.DataFrame) -> str:
    """Whether the hazard ratios of this endpoint can be read as constant over follow-up: a test
    that rejects says they are not; one that does not is no evidence against it, and with few
    events the test has little power."""
    rows = ph[(ph["endpoint"] == endpoint) & ph["p_value"].notna()] if len(ph) else ph
    if not len(rows):
        note = next((_s(n) for n in ph.loc[ph["endpoint"] == endpoint, "note"] if _s(n)), "") if len(ph) else ""
        return f"{endpoint}: the proportional-hazards assumption is not tested ({note or 'no Cox model'})."
    group = rows[(rows["term"] == "group") & rows["model"].isin(list(PH_MODEL_LABELS))]
    multi = rows[(rows["model"] == "multivariable") & (rows["term"] != "GLOBAL")]
    glob = rows[(rows["model"] == "multivariable") & (rows["term"] == "GLOBAL")]
    bad_group = group[group["p_value"] < 0.05]
    if len(bad_group):
        ps = ", ".join(f"{_p_eq(p)} {PH_MODEL_LABELS[m]}" for m, p in zip(bad_group["model"], bad_group["p_value"]))
        return (f"{endpoint}: there is evidence that the hazard ratio of post-ate-beva vs first-line changes over "
                f"follow-up (cox.zph {ps}), so a single hazard ratio would average an effect that changes with "
                "time; the RMST difference does not assume proportional hazards and is the safer summary.")
    bad = multi[(multi["p_value"] < 0.05) & (multi["term"] != "group")]
    gp = ", ".join(f"{_p_eq(p)} {PH_MODEL_LABELS[m]}" for m, p in zip(group["model"], group["p_value"]))
    uni = group[group["model"] == "univariable"]
    events = int(uni["events"].iloc[0]) if len(uni) and pd.notna(uni["events"].iloc[0]) else \
        int(pd.to_numeric(rows["events"], errors="coerce").max())
    power = (f"with {events} events this test has little power" if events < PH_FEW_EVENTS else
             f"{events} events")
    if len(bad):
        names = ", ".join(f"{_term(t)} ({_p_eq(p)})" for t, p in zip(bad["term"], bad["p_value"]))
        return (f"{endpoint}: for the group effect there is no evidence against proportional hazards ({gp}; "
                f"{power}), but {names} depart from them, so their hazard ratios in the multivariable model "
                "average effects that change over time.")
    tail = f"; GLOBAL {_p_eq(glob['p_value'].iloc[0])} for the multivariable model" if len(glob) else ""
    return (f"{endpoint}: no term departs from proportional hazards (every nominal p \u2265 0.05{tail}): no "
            f"evidence against reading the hazard ratios, weighted ones included, as constant over follow-up "
            f"({power}).")


def _weights_table(weights: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in weights.iterrows():
        clipped = ("" if "clipped_low" not in r or pd.isna(r["clipped_low"]) else
                   f"{int(r['clipped_low'])} low, {int(r['clipped_high'])} high")
        rows.append({"Group": GROUP_HEAD.get(r["group"], r["group"]), "Weighting": r["weighting"],
                     "Estimand": _s(r.get("estimand")) or "-",
                     "n": "" if pd.isna(r["n"]) else int(r["n"]),
                     "Sum of weights": "" if pd.isna(r["sum_weights"]) else f"{r['sum_weights']:.1f}",
                     "Weights, min\u2013max": "" if pd.isna(r["weight_min"]) else
                     f"{r['weight_min']:.2f}\u2013{r['weight_max']:.2f}",
                     "Effective sample size": "" if pd.isna(r["ess"]) else f"{r['ess']:.1f}",
                     "Clipped": clipped,
                     "Note": _s(r["note"])})
    return pd.DataFrame(rows)


def _truncation_sentence(weights: pd.DataFrame) -> str | None:
    clipped = clipped_counts(weights)
    if clipped is None:
        return None
    low, high = clipped
    if not low and not high:
        return ("Truncating the stabilized weights at their 1st and 99th percentiles clipped no weight, so the "
                "truncated rows repeat the stabilized ones and no conclusion is drawn from them.")
    return (f"Truncating the stabilized weights at their 1st and 99th percentiles clipped {low} weight(s) low and "
            f"{high} high; the truncated rows show what those weights do to the result.")


ASSUMPTIONS = (
    "What the weighted comparisons assume, stated once for this whole section: (1) no unmeasured confounding: "
    "weighting balances the measured covariates only, and the E-values say how strong an unmeasured confounder "
    "would have to be to explain an estimate away; (2) positivity: patients of both groups across the range of "
    "propensity scores (see the positivity table and Figure 5); (3) consistency: the outcome a patient would have "
    "under the treatment received is the outcome observed; (4) the propensity score is treated as known in the "
    "variances (as R does; usually conservative). Every p-value in this section is nominal: the study is "
    "re-analysed after every drop (study_spec \u00a76), and a nominal p below 0.05 on one refresh is not a finding.")


def beyond_intro(pm: pd.DataFrame, weights: pd.DataFrame, n_included: int | None) -> Section:
    lead = ["The authors name as limitations that the two groups are non-randomised and unbalanced, and that "
            "follow-up is short with heavy censoring. This section answers them on every refresh (study_spec "
            "\u00a75): the groups are compared again with weights from a propensity score, by the restricted mean "
            "survival time (RMST) at 12 months, which needs no proportional hazards and no median, and the "
            "proportional-hazards assumption of each hazard ratio is tested."]
    model = pm[pm["status"] != "left_out"] if len(pm) else pm
    left = pm[pm["status"] == "left_out"] if len(pm) else pm
    notes = []
    n = int(pm["n"].iloc[0]) if len(pm) and pd.notna(pm["n"].iloc[0]) else None
    if n is not None:
        population = (f"Every comparison in this section is on the {n} modelled patients (complete cases of the "
                      "propensity covariates); its unweighted rows (weighting none) are on those same patients, so "
                      "what weighting changes is not mixed up with who is left out.")
        if n_included is not None:
            population += (f" Tables 1\u20134 and Figures 1\u20134 use all {n_included} included patients, "
                           f"{n_included - n} more than the modelled ones.")
        lead.append(population)
    if _weights_ok(pm):
        covs = [t for t in model["term"] if t != "intercept"]
        excl = int(model["n_excluded_missing"].iloc[0])
        sentence = (f"Propensity score: logistic regression of post-ate-beva vs first-line HAIC on {len(covs)} "
                    f"baseline covariates, fitted on {n} patients ({excl} left out for a missing covariate). Two "
                    "weightings answer two questions. Stabilized inverse-probability weights estimate the average "
                    "treatment effect over all modelled patients (ATE: had every one of them received post-ate-beva "
                    "rather than first-line HAIC). Overlap weights (each patient weighted by the probability of the "
                    "treatment not received) estimate it in the patients for whom both treatments were plausible "
                    "(ATO), and give little weight to patients with no counterpart in the other group.")
        st = weights[weights["weighting"] == "stabilized"] if len(weights) else weights
        if len(st) and st["ess"].notna().all():
            ess, size = float(st["ess"].sum()), int(st["n"].sum())
            sentence += (f" The effective sample size with the stabilized weights is {ess:.0f} of {size} patients "
                         f"({100 * ess / size:.0f}%; largest weight {float(st['weight_max'].max()):.2f}).")
        lead.append(sentence)
        trunc = _truncation_sentence(weights)
        if trunc:
            lead.append(trunc)
    else:
        status = model["status"].iloc[0] if len(model) else "not fitted"
        why = _s(model["note"].iloc[0]) if len(model) else "no patient"
        lead.append(f"The propensity model could not be estimated ({status}: {why}). The weighted analyses are "
                    "therefore not computed (their rows say why); the unweighted rows of the same patients, the "
                    "RMST and the proportional-hazards tests below still apply.")
    if len(left):
        lead.append("Left out of the propensity model: " + "; ".join(
            f"{_term(r['term'])} ({r['term']}): {_s(r['note']).split(': ', 1)[-1]}" for _, r in left.iterrows())
            + ".")
    lead.append(ASSUMPTIONS)
    notes.append("Stabilized ATE weights w = A\u00b7p\u0304/ps + (1 \u2212 A)(1 \u2212 p\u0304)/(1 \u2212 ps), "
                 "p\u0304 = share of post-ate-beva patients among those modelled (R glm, binomial); truncated = "
                 "the same weights clipped at their 1st and 99th percentiles (R quantile type 3), a sensitivity "
                 "analysis; overlap (ATO) weights w = A\u00b7(1 \u2212 ps) + (1 \u2212 A)\u00b7ps (Li, Morgan & "
                 "Zaslavsky 2018). Effective sample size = (\u03a3w)\u00b2/\u03a3w\u00b2 (Kish).")
    return Section("Beyond the paper", _weights_table(weights) if len(weights) else None, notes=notes, lead=lead)


def positivity_sentence(overlap: pd.DataFrame) -> str:
    rows = overlap.dropna(subset=["ps_min"]) if len(overlap) else overlap
    if not len(rows):
        note = _s(overlap["note"].iloc[0]) if len(overlap) else "no propensity model"
        return f"The propensity scores are not available ({note})."
    parts = [f"{GROUP_SHORT.get(r['group'], r['group'])} patients from {r['ps_min']:.2f} to {r['ps_max']:.2f} "
             f"(median {r['ps_median']:.2f})" for _, r in rows.iterrows()]
    outside = int(rows["n_outside_other_range"].sum())
    out = "Propensity scores: " + "; ".join(parts) + ". "
    if outside:
        out += (f"{outside} patient(s) have a score outside the other group's range (no patient of the other group "
                "has a score as extreme): for them the ATE weights extrapolate, while the overlap weights give them "
                "little weight.")
    else:
        out += ("Every patient lies within the other group's range of scores, so each has counterparts in the other "
                "group (which does not rule out sparse regions: see Figure 5).")
    return out


def positivity_part(overlap: pd.DataFrame) -> Section:
    rows = []
    for _, r in overlap.iterrows():
        def f(v):
            return "" if pd.isna(v) else f"{v:.3f}"
        rows.append({"Group": GROUP_HEAD.get(r["group"], r["group"]), "n": "" if pd.isna(r["n"]) else int(r["n"]),
                     "ps min": f(r["ps_min"]), "ps Q1": f(r["ps_q1"]), "ps median": f(r["ps_median"]),
                     "ps Q3": f(r["ps_q3"]), "ps max": f(r["ps_max"]),
                     "Outside the other group's range": "" if pd.isna(r["n_outside_other_range"]) else
                     int(r["n_outside_other_range"]), "Note": _s(r["note"])})
    return Section("Positivity: the propensity scores of the two groups", pd.DataFrame(rows) if rows else None,
                   level=3, lead=[positivity_sentence(overlap)],
                   notes=["Propensity score = fitted probability of post-ate-beva HAIC; quartiles as R quantile() "
                          "(type 7)."],
                   figures=[("propensity_overlap", "Figure 5. Propensity scores by group (mirrored histogram)")])


def balance_part(balance: pd.DataFrame, weighted: bool) -> Section:
    rows = []
    for _, r in (balance[balance["covariate"].notna()] if len(balance) else balance).iterrows():
        def smd(v):
            return "" if v is None or pd.isna(v) else f"{v:+.3f}"
        rows.append({"Covariate": _term(r["covariate"]),
                     "First-line, %": "" if pd.isna(r["share_first_line"]) else f"{100 * r['share_first_line']:.1f}",
                     "Post-ate-beva, %": "" if pd.isna(r["share_post_ate_beva"]) else
                     f"{100 * r['share_post_ate_beva']:.1f}",
                     "SMD before": smd(r["smd_before"]), "SMD after IPTW (ATE)": smd(r["smd_after"]),
                     "SMD after (truncated)": smd(r["smd_after_truncated"]),
                     "SMD after overlap (ATO)": smd(r.get("smd_after_overlap")),
                     "Balanced after IPTW": "" if pd.isna(r["balanced_after"]) else
                     ("yes" if r["balanced_after"] else "no"), "Note": _s(r["note"])})
    return Section("Covariate balance before and after weighting", pd.DataFrame(rows) if rows else None,
                   lead=[balance_sentence(balance, weighted)], level=3,
                   notes=["Standardized mean difference (cobalt convention, signed: positive = more frequent with "
                          "post-ate-beva HAIC) = difference in shares / \u221a((p\u2081(1 \u2212 p\u2081) + "
                          "p\u2080(1 \u2212 p\u2080))/2) from the unweighted shares; |SMD| < 0.1 counts as balanced. "
                          "Overlap weights balance every covariate of the propensity model exactly (to rounding)."],
                   figures=[("love", "Figure 6. Covariate balance before and after weighting (Love plot)")])


def effects_part(effects: pd.DataFrame, models: pd.DataFrame, clipped: tuple[int, int] | None = None) -> Section:
    rows = []

    def add(endpoint, label, r, robust=True):
        rows.append({"Endpoint": endpoint, "Analysis": label,
                     "HR post-ate-beva vs first-line (95% CI)": format_estimate_ci(r["hr"], r["hr_lower"],
                                                                                   r["hr_upper"], 3),
                     "Nominal p": format_p(r["p_value"]),
                     "Robust score test, nominal p": format_p(r["robust_score_p"]) if robust and
                     "robust_score_p" in r and pd.notna(r["robust_score_p"]) else "",
                     "E-value (CI)": _e_words(r).replace("E-value ", ""),
                     "n/events": "" if pd.isna(r.get("n")) else f"{int(r['n'])}/{int(r['events'])}",
                     "Note": _s(r.get("note"))})

    for endpoint in ENDPOINTS:
        uni = _one(models, endpoint=endpoint, model="univariable", term="group") if len(models) else None
        if uni is not None:
            add(endpoint, "Unadjusted, all included patients (Tables 3\u20134)", uni, robust=False)
        for weighting, label in (("none", "Unadjusted, modelled patients"),
                                 ("multivariable", "Multivariable Cox (Tables 3\u20134)"),
                                 ("stabilized", "IPTW, stabilized weights (ATE)"),
                                 ("truncated", "IPTW, truncated weights (ATE)"),
                                 ("overlap", "Overlap weights (ATO)")):
            r = _one(effects, endpoint=endpoint, weighting=weighting)
            if r is not None:
                add(endpoint, label, r)
    return Section("Hazard ratios, unadjusted and weighted", pd.DataFrame(rows) if rows else None, level=3,
                   lead=[hr_sentence(e, effects, models, clipped) for e in ENDPOINTS],
                   notes=["Weighted: R coxph(Surv ~ group, weights = w, robust = TRUE), Efron ties, robust (dfbeta) "
                          "standard error; the robust score test is the weighted comparison of the curves "
                          "(summary(fit)$robscore), taken at HR = 1, so it is given even when the HR cannot be "
                          "fitted. Unadjusted and multivariable: model-based standard error.",
                          "E-value (VanderWeele & Ding 2017): the minimum strength of association, on the risk-ratio "
                          "scale, that an unmeasured confounder would need with both treatment and outcome to explain "
                          "the HR away (CI: to move the confidence interval to include 1; 1 when it already does). "
                          "The HR is taken as a risk ratio when the outcome is rare (events in < 15% of the "
                          "patients), otherwise converted (VanderWeele 2020)."])


def medians_part(iptw: pd.DataFrame) -> Section:
    rows = []
    for endpoint in ENDPOINTS:
        for g in GROUPS:
            cells = {"Endpoint": endpoint, "Group": GROUP_HEAD[g]}
            for weighting, label in (("none", "Unweighted"), ("stabilized", "IPTW (ATE)"), ("overlap", "Overlap (ATO)")):
                r = _one(iptw, endpoint=endpoint, group=g, weighting=weighting)
                ok = r is not None and pd.notna(r["ess"])
                cells[f"{label} median, months (95% CI)"] = format_median_ci(*(r[c] for c in (
                    "median_months", "median_lower", "median_upper"))) if ok else ""
                cells[f"{label} 12-month rate, %"] = format_estimate_ci(
                    *(100 * r[c] if ok and pd.notna(r[c]) else None
                      for c in ("rate_12m", "rate_12m_lower", "rate_12m_upper")), digits=1) if ok else ""
            w = _one(iptw, endpoint=endpoint, group=g, weighting="stabilized")
            cells["IPTW ESS"] = "" if w is None or pd.isna(w["ess"]) else f"{w['ess']:.1f}"
            rows.append(cells)
    return Section("Medians and 12-month rates, unweighted and weighted (modelled patients)", pd.DataFrame(rows),
                   level=3, lead=[median_sentence(e, iptw) for e in ENDPOINTS],
                   notes=["Kaplan-Meier on the modelled patients: unweighted (Greenwood), or R survfit(..., weights = "
                          "w) with the weights, robust (infinitesimal-jackknife) variance; log-scale CI; medians by "
                          "R's rule, NA = not reached."],
                   figures=[("iptw_km_os", "Figure 7. Overall survival by group, IPTW-adjusted"),
                            ("iptw_km_pfs", "Figure 8. Progression-free survival by group, IPTW-adjusted")])


def _endpoint_part(title: str, rows: list[dict], sentence, table: pd.DataFrame, notes: list[str]) -> Section:
    """A part of "Beyond the paper" led by one sentence per endpoint (`sentence(endpoint, table)`)."""
    return Section(title, pd.DataFrame(rows) if rows else None, level=3,
                   lead=[sentence(e, table) for e in ENDPOINTS], notes=notes)


def rmst_part(rmst: pd.DataFrame) -> Section:
    rows = []
    for _, r in rmst.iterrows():
        def est(m, se):
            return "" if pd.isna(m) else f"{m:.2f} (\u00b1{1.959963984540054 * se:.2f})"
        rows.append({"Endpoint": r["endpoint"], "Weighting": WEIGHTING_LABELS.get(r["weighting"], r["weighting"]),
                     "\u03c4, months": "" if pd.isna(r["tau_months"]) else f"{r['tau_months']:g}",
                     "RMST first-line (\u00b1 95% CI)": est(r["rmst_first_line"], r["rmst_first_line_se"]),
                     "RMST post-ate-beva (\u00b1 95% CI)": est(r["rmst_post_ate_beva"], r["rmst_post_ate_beva_se"]),
                     "Difference, months (95% CI)": format_estimate_ci(r["difference"], r["difference_lower"],
                                                                       r["difference_upper"], 2),
                     "Nominal p (difference)": format_p(r["difference_p"]),
                     "Ratio (95% CI)": format_estimate_ci(r["ratio"], r["ratio_lower"], r["ratio_upper"], 3),
                     "Nominal p (ratio)": format_p(r["ratio_p"]), "Note": _s(r["note"])})
    return _endpoint_part("Restricted mean survival time at 12 months", rows, rmst_sentence, rmst,
                          ["RMST = area under the Kaplan-Meier curve up to \u03c4 = 12 months (the mean time alive, "
                           "or alive without progression, within the first 12 months), on the modelled patients. "
                           "Unweighted: survRM2 rmst2 (variance = survival's rmean); weighted (stabilized ATE, "
                           "overlap ATO): the infinitesimal-jackknife variance. Contrasts post-ate-beva minus / over "
                           "first-line. When follow-up is shorter than \u03c4, \u03c4 is lowered to the smaller of the "
                           "groups' longest observed times and the row says so."])


def ph_part(ph: pd.DataFrame) -> Section:
    rows = []
    if len(ph):
        shown = ph[ph["model"].isin(["multivariable", "iptw_stabilized", "iptw_overlap"])
                   | ((ph["model"] == "univariable") & (ph["term"] == "group"))]
        for _, r in shown.iterrows():
            rows.append({"Endpoint": r["endpoint"], "Model": PH_MODEL_LABELS.get(r["model"], r["model"]),
                         "Term": "GLOBAL" if r["term"] == "GLOBAL" else _term(r["term"]),
                         "\u03c7\u00b2": "" if pd.isna(r["chisq"]) else f"{r['chisq']:.3f}",
                         "df": "" if pd.isna(r["df"]) else int(r["df"]), "Nominal p": format_p(r["p_value"]),
                         "Events": "" if pd.isna(r["events"]) else int(r["events"]), "Note": _s(r["note"])})
    return _endpoint_part("Proportional-hazards tests", rows, ph_sentence, ph,
                          ["R cox.zph(fit, transform = \"km\") (survival \u2265 3 score test) for every Cox model of "
                           "Tables 3\u20134 and for the weighted Cox fits of group (stabilized ATE and overlap ATO "
                           "weights), per term and GLOBAL; shown: the multivariable models, the univariable group "
                           "model and the weighted models (every univariable model is in analysis.ph_tests). A small "
                           "nominal p is evidence that the hazard ratio changes over follow-up; a larger one is no evidence "
                           "against proportional hazards, and with few events the test has little power."])


def beyond_sections(con: duckdb.DuckDBPyConnection) -> list[Section]:
    """The "Beyond the paper" section (study_spec §5) and its parts, from the analysis tables."""
    pm = read_table(con, "propensity_model")
    if not len(pm):
        return []
    weighted = _weights_ok(pm)
    t1 = read_table(con, "baseline_characteristics")
    n_row = t1[t1["variable"] == "n"] if len(t1) else t1
    n_included = int(n_row["overall"].iloc[0]) if len(n_row) and str(n_row["overall"].iloc[0]).isdigit() else None
    weights = read_table(con, "iptw_weights")
    return [beyond_intro(pm, weights, n_included),
            positivity_part(read_table(con, "propensity_overlap")),
            balance_part(read_table(con, "balance"), weighted),
            effects_part(read_table(con, "iptw_effects"), read_table(con, "cox_models"), clipped_counts(weights)),
            medians_part(read_table(con, "iptw_km_summary")),
            rmst_part(read_table(con, "rmst")),
            ph_part(read_table(con, "ph_tests"))]


def sections(con: duckdb.DuckDBPyConnection) -> list[Section]:
    out = [monitoring_section(con)]   # the results open with the monitoring state (study_spec §6.4)
    inter = interventions_section(con)
    if inter:
        out.append(inter)
    att = attrition_section(read_table(con, "attrition"))
    if att:
        out.append(att)
    out.append(table1_section(read_table(con, "baseline_characteristics")))
    surv = survival_section(read_table(con, "km_summary"), read_table(con, "survival_tests"),
                            read_table(con, "follow_up"))
    surv.notes += left_out_notes(con)
    out.append(surv)
    out.append(response_section(read_table(con, "response_summary"), read_table(con, "response_tests")))
    models, excluded = read_table(con, "cox_models"), read_table(con, "cox_excluded")
    out.append(cox_section(3, "OS", models, excluded))
    out.append(cox_section(4, "PFS", models, excluded))
    out += beyond_sections(con)
    hist = history_section(read_table(con, "refresh_history"))
    if hist:
        out.append(hist)
    return out


TITLE = ("HAIC first-line vs after atezolizumab-bevacizumab failure: study report "
         "(living reproduction of Lee JY et al., Front. Oncol. 2024;14:1495321)")
METHODS = ("Times in months of 30.4375 days. Kaplan-Meier with Greenwood variance and log-scale 95% CI "
           "(R survfit conf.type = \"log\"); medians by R's rule, NA = not reached. 12-month rates with "
           "log-scale CI, compared on the complementary log-log scale (Klein et al. 2007). Log-rank = R survdiff. "
           "p-values shown with 3 decimals (<0.001 below); the analysis.* tables hold them unrounded. Every p-value "
           "is nominal: the study is re-analysed after every drop, and only a formal look crossing its boundary "
           "(Monitoring) can establish a difference.")


def _figure_bytes(reports: Path, name: str, con: duckdb.DuckDBPyConnection) -> bytes:
    """The figure's PNG as written by build_figures, drawn here if it is not on disk. Every
    figure is embedded as PNG, so the report's figures look alike and the markdown's links
    (``figures/<name>.png``) show what the HTML shows."""
    path = reports / "figures" / f"{name}.png"
    if path.exists():
        return path.read_bytes()
    return F.png_bytes(render_figure(con, name))


def _md_table(df: pd.DataFrame) -> str:
    cols = [c for c in df.columns if c != "term"]
    esc = lambda v: _s(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    cols = [c for c in df.columns if c != "term"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_s(r[c]))}</td>" for c in cols) + "</tr>"
                   for _, r in df.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.4}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
.note{color:#555;font-size:.88em;margin:.2em 0}.prov{background:#f7f7f0;padding:.5em .8em;border-left:4px solid #bba}
figure{margin:1em 0}figure img{max-width:100%}figcaption{font-weight:bold;font-size:.95em}
h3{margin-top:1.4em}"""


def render_markdown(secs: list[Section], prov: str) -> str:
    out = [f"# {TITLE}", "", f"> Provenance: {prov}.", "", METHODS, ""]
    for s in secs:
        out += [f"{'#' * s.level} {s.title}", ""]
        for sentence in s.lead:
            out += [sentence, ""]
        if s.table is not None:
            out += [_md_table(s.table), ""]
        out += [f"- {n}" for n in s.notes]
        if s.notes:
            out.append("")
        for name, caption in s.figures:
            out += [f"**{caption}**", "", f"![{caption}](figures/{name}.png)", ""]
    return "\n".join(out)


def render_html(secs: list[Section], prov: str, images: dict[str, bytes]) -> str:
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{html.escape(TITLE)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(TITLE)}</h1>",
           f"<p class=\"prov\">Provenance: {html.escape(prov)}.</p>",
           f"<p class=\"note\">{html.escape(METHODS)}</p>"]
    for s in secs:
        out.append(f"<h{s.level}>{html.escape(s.title)}</h{s.level}>")
        out += [f"<p>{html.escape(sentence)}</p>" for sentence in s.lead]
        if s.table is not None:
            out.append(_html_table(s.table))
        out += [f"<p class=\"note\">{html.escape(n)}</p>" for n in s.notes]
        for name, caption in s.figures:
            b64 = base64.b64encode(images[name]).decode("ascii")
            out.append(f"<figure><figcaption>{html.escape(caption)}</figcaption>"
                       f"<img alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,{b64}\"></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(con: duckdb.DuckDBPyConnection, reports: Path, prov: Provenance) -> dict[str, Path]:
    reports.mkdir(parents=True, exist_ok=True)
    secs = sections(con)
    images = {name: _figure_bytes(reports, name, con) for s in secs for name, _ in s.figures}
    paths = {"html": reports / "study_report.html", "md": reports / "study_report.md"}
    line = provenance_line(con, prov)
    write_atomic(paths["html"], render_html(secs, line, images))
    write_atomic(paths["md"], render_markdown(secs, line))
    return paths
