"""The study report: Tables 1-4, the survival summary, the figures, the CONSORT counts and how
the estimates moved as drops arrived, regenerated on every refresh from the analysis tables.

Two files under the reports folder: ``study_report.html`` (self-contained: tables as HTML,
figures inlined as PNG data URIs, opens anywhere) and ``study_report.md`` (the same tables,
figures linked as ``figures/<name>.png``). Deterministic: no clock time, only the provenance
(drops, data cutoff). Nothing patient-level: only aggregated tables.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from haic_pipeline.files import write_atomic
from haic_pipeline.stats import (
    format_count_percent,
    format_estimate_ci,
    format_median_ci,
    format_p,
)

from . import figures as F
from .data import GROUPS, Provenance
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
            "p": format_p(r["p_value"]) if first and r["test"] else "",
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
        notes.append(f"{r['endpoint']} {what}: {stat}; p = {format_p(r['p_value'])}")
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
                        for g in groups}, "p": "", "Test": ""})
    for measure, parts in (("ORR", ("cr", "pr")), ("DCR", ("cr", "pr", "sd"))):
        t = tests[tests["measure"] == measure]
        rows.append({"Best response (mRECIST)": {"ORR": "Objective response (CR + PR)",
                                                 "DCR": "Disease control (CR + PR + SD)"}[measure],
                     **{f"{GROUP_HEAD[g]} (n = {int(by[g]['n'])})":
                        format_count_percent(sum(int(by[g][c]) for c in parts), by[g]["n"]) for g in groups},
                     "p": format_p(t["p_value"].iloc[0]) if len(t) else "NA",
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
            "p (uni)": format_p(r["p_value"]), "n/events (uni)": f"{int(r['n'])}/{int(r['events'])}",
            "Multivariable HR (95% CI)": format_estimate_ci(mr["hr"].iloc[0], mr["hr_lower"].iloc[0],
                                                            mr["hr_upper"].iloc[0], 3) if len(mr) else "",
            "p (multi)": format_p(mr["p_value"].iloc[0]) if len(mr) else "",
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
    rows = [{"Action": "drop retracted", "Drop": r["extract_id"], "Check": "-", "By": r["retracted_by"],
             "On (UTC)": str(r["retracted_at"])[:16], "Reason": r["reason"]} for r in retracted]
    rows += [{"Action": "check waived", "Drop": eid, "Check": check, "By": w["waived_by"],
              "On (UTC)": str(w["waived_at"])[:16], "Reason": w["reason"]} for (check, eid), w in waivers.items()]
    if not rows:
        return None
    return Section("Data-quality interventions in force (ops.interventions)", pd.DataFrame(rows), notes=[
        "A retracted drop's rows are left out of staging and of every result below (raw keeps them); a waived "
        "check passes for that drop although its rules fail (ops.dq_results keeps the failure)."])


def provenance_line(con: duckdb.DuckDBPyConnection, prov: Provenance) -> str:
    """The provenance sentence, naming the interventions in force, if any."""
    sec = interventions_section(con)
    if sec is None:
        return prov.describe()
    acts = sec.table["Action"].value_counts()
    parts = [f"{n} {what}" for what, n in (("drop(s) retracted", acts.get("drop retracted", 0)),
                                            ("check waiver(s) in force", acts.get("check waived", 0))) if n]
    return f"{prov.describe()}; {', '.join(parts)} (see Data-quality interventions)"


def sections(con: duckdb.DuckDBPyConnection) -> list[Section]:
    out = []
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
    hist = history_section(read_table(con, "refresh_history"))
    if hist:
        out.append(hist)
    return out


TITLE = ("HAIC first-line vs after atezolizumab-bevacizumab failure: study report "
         "(living reproduction of Lee JY et al., Front. Oncol. 2024;14:1495321)")
METHODS = ("Times in months of 30.4375 days. Kaplan-Meier with Greenwood variance and log-scale 95% CI "
           "(R survfit conf.type = \"log\"); medians by R's rule, NA = not reached. 12-month rates with "
           "log-scale CI, compared on the complementary log-log scale (Klein et al. 2007). Log-rank = R survdiff. "
           "p-values shown with 3 decimals (<0.001 below); the analysis.* tables hold them unrounded.")


def _figure_png(reports: Path, name: str, con: duckdb.DuckDBPyConnection) -> bytes:
    path = reports / "figures" / f"{name}.png"
    if path.exists():
        return path.read_bytes()
    from .build import render_figure

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
figure{margin:1em 0}figure img{max-width:100%}figcaption{font-weight:bold;font-size:.95em}"""


def render_markdown(secs: list[Section], prov: str) -> str:
    out = [f"# {TITLE}", "", f"> Provenance: {prov}.", "", METHODS, ""]
    for s in secs:
        out += [f"## {s.title}", ""]
        if s.table is not None:
            out += [_md_table(s.table), ""]
        out += [f"- {n}" for n in s.notes]
        if s.notes:
            out.append("")
        for name, caption in s.figures:
            out += [f"**{caption}**", "", f"![{caption}](figures/{name}.png)", ""]
    return "\n".join(out)


def render_html(secs: list[Section], prov: str, pngs: dict[str, bytes]) -> str:
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{html.escape(TITLE)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(TITLE)}</h1>",
           f"<p class=\"prov\">Provenance: {html.escape(prov)}.</p>",
           f"<p class=\"note\">{html.escape(METHODS)}</p>"]
    for s in secs:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.table is not None:
            out.append(_html_table(s.table))
        out += [f"<p class=\"note\">{html.escape(n)}</p>" for n in s.notes]
        for name, caption in s.figures:
            b64 = base64.b64encode(pngs[name]).decode("ascii")
            out.append(f"<figure><figcaption>{html.escape(caption)}</figcaption>"
                       f"<img alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,{b64}\"></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(con: duckdb.DuckDBPyConnection, reports: Path, prov: Provenance) -> dict[str, Path]:
    reports.mkdir(parents=True, exist_ok=True)
    secs = sections(con)
    pngs = {name: _figure_png(reports, name, con) for s in secs for name, _ in s.figures}
    paths = {"html": reports / "study_report.html", "md": reports / "study_report.md"}
    line = provenance_line(con, prov)
    write_atomic(paths["html"], render_html(secs, line, pngs))
    write_atomic(paths["md"], render_markdown(secs, line))
    return paths
