"""Figures of the study, drawn from the analysis tables (so a figure shows exactly what the
tables hold): Kaplan-Meier curves per group in the style of the paper's Figures 1-2 and of
R survminer's ``ggsurvplot(conf.int = TRUE, surv.median.line = "hv", risk.table = TRUE,
pval = TRUE)``, a forest plot of the Cox models of each endpoint, and beyond the paper
(study_spec §5) a Love plot of the covariate balance, the two groups' propensity-score
distributions (positivity) and the IPTW-adjusted curves.

Matplotlib's object API with the Agg canvas (no pyplot, no global backend state). Outputs are
deterministic: SVG without a date and with a fixed hash salt, PNG without a software stamp,
so a rerun on the same data writes byte-identical files. Every figure carries a provenance
footnote (drops, data cutoff). Nothing patient-level is drawn (no patient_key, no dates of
individual patients: only the aggregated curve steps of analysis.km_curves).
"""

from __future__ import annotations

import base64
import io
import math
import struct
import textwrap
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from haic_pipeline.stats import format_estimate_ci, format_median_ci, format_p
from haic_pipeline.warehouse.files import write_atomic

from .agg import Canvas
from .data import GROUPS, Provenance

matplotlib.rcParams["svg.hashsalt"] = "haic-study"  # deterministic SVG element ids
# SVG text as <text> elements, not glyph outlines: editable and searchable in the journal's
# vector figure, smaller and faster to write (the viewer draws the font: DejaVu Sans, or its
# generic sans-serif fallback)
matplotlib.rcParams["svg.fonttype"] = "none"

GROUP_LABELS = {"first_line": "First-line HAIC", "post_ate_beva": "Post-ate-beva HAIC",
                "overall": "All patients"}
GROUP_COLORS = {"first_line": "#D55E00", "post_ate_beva": "#0072B2", "overall": "#444444"}
ENDPOINT_TITLES = {"OS": "Overall survival", "PFS": "Progression-free survival"}
TERM_LABELS = {
    "group": "Post-ate-beva vs first-line",
    "age_ge_65": "Age \u2265 65 years",
    "sex_male": "Male sex",
    "etiology_hbv": "HBV vs other aetiology",
    "ecog_0": "ECOG 0 vs \u2265 1",
    "child_pugh_a": "Child-Pugh A vs B/C",
    "bclc_c_d": "BCLC C/D vs A/B",
    "afp_ge_400": "AFP \u2265 400 ng/mL",
    "multiple_tumors": "Multiple tumours",
    "tumor_size_gt_10": "Tumour size > 10 cm",
    "portal_vein_invasion": "Portal vein invasion",
    "extrahepatic_metastasis": "Extrahepatic metastasis",
}
#: the figures of study_spec §5 (file names containing ``love`` / ``iptw``)
BEYOND_FIGURES = ("love", "propensity_overlap", "iptw_km_os", "iptw_km_pfs")
DPI = 150
PREVIEW_WIDTH = 640  # px of the inline copy shown in the Dagster UI (keeps the event log small)


def _time_break(max_time: float) -> float:
    for step in (1, 3, 6, 12, 24):
        if max_time / step <= 8:
            return float(step)
    return 48.0


def at_risk(curve: pd.DataFrame, t: float) -> int:
    """Number at risk at time t from a curve's steps (subjects with time >= t): n_at_risk
    of the first step at or after t; 0 after the last step."""
    later = curve[curve["time_months"] >= t - 1e-12]
    return int(later["n_at_risk"].iloc[0]) if len(later) else 0


def _p_text(tests: pd.DataFrame, test: str) -> str:
    row = tests[tests["test"] == test] if len(tests) else tests
    if not len(row) or pd.isna(row["p_value"].iloc[0]):
        return "= NA (not computable)"
    p = format_p(row["p_value"].iloc[0])
    return p if p.startswith("<") else f"= {p}"


def _iptw_text(effects: pd.DataFrame, endpoint: str) -> str:
    """The text box of an IPTW curve: the weighted HR (robust CI, nominal p) and the robust score
    test, from the ``stabilized`` row of analysis.iptw_effects, and the overlap-weighted HR."""
    def row(weighting):
        r = effects[(effects["endpoint"] == endpoint) & (effects["weighting"] == weighting)] \
            if len(effects) else effects
        return r.iloc[0] if len(r) else None

    def p_text(p):
        f = "NA" if pd.isna(p) else format_p(p)
        return f if f.startswith("<") else "= " + f

    r = row("stabilized")
    if r is None:
        return "IPTW hazard ratio: not computable"
    score = f"Robust score test nominal p {p_text(r['robust_score_p'])}"
    if pd.isna(r["hr"]):
        return f"IPTW hazard ratio: not computable\n{score}"
    text = (f"IPTW HR {format_estimate_ci(r['hr'], r['hr_lower'], r['hr_upper'], 2)}, "
            f"nominal p {p_text(r['p_value'])}\n{score}")
    o = row("overlap")
    if o is not None and pd.notna(o["hr"]):
        text += f"\nOverlap-weighted HR {format_estimate_ci(o['hr'], o['hr_lower'], o['hr_upper'], 2)}"
    return text


def km_figure(curves: pd.DataFrame, summary: pd.DataFrame, tests: pd.DataFrame, endpoint: str,
              provenance: Provenance, *, iptw: pd.DataFrame | None = None) -> Figure:
    """Kaplan-Meier curves of ``endpoint`` ('OS'/'PFS') per group from the analysis tables
    (``curves`` = analysis.km_curves, ``summary`` = analysis.km_summary, ``tests`` =
    analysis.survival_tests; rows of other endpoints are ignored): step curves, shaded 95%
    CI, '+' at censoring times, dotted lines at each group's median, the log-rank and
    12-month p-values, a number-at-risk table on the same time axis, provenance footnote.

    With ``iptw`` (analysis.iptw_effects) the curves are the IPTW ones (``curves`` /
    ``summary`` = the ``stabilized`` rows of analysis.iptw_km_curves / iptw_km_summary): the
    legend adds each group's effective sample size, the text box gives the weighted HR and the
    robust score test instead of the log-rank, and the numbers at risk stay patients."""
    curves = curves[curves["endpoint"] == endpoint]
    summary = summary[summary["endpoint"] == endpoint]
    tests = tests[tests["endpoint"] == endpoint] if len(tests) else tests
    title = ENDPOINT_TITLES.get(endpoint, endpoint)

    fig = Figure(figsize=(10, 7.6), dpi=DPI)
    Canvas(fig)
    left, width = 0.20, 0.76
    ax = fig.add_axes((left, 0.38, width, 0.54))
    risk = fig.add_axes((left, 0.11, width, 0.16), sharex=ax)

    max_time = float(curves["time_months"].max()) if len(curves) else 12.0
    brk = _time_break(max_time)
    xmax = max(brk, math.ceil(max_time / brk - 1e-9) * brk)
    ticks = np.arange(0.0, xmax + brk / 2, brk)

    handles, labels = [], []
    for group in GROUPS:
        color = GROUP_COLORS[group]
        c = curves[curves["group"] == group].sort_values("time_months")
        srow = summary[summary["group"] == group]
        n = int(srow["n"].iloc[0]) if len(srow) else 0
        med = (srow["median_months"].iloc[0], srow["median_lower"].iloc[0], srow["median_upper"].iloc[0]) \
            if len(srow) else (None, None, None)
        ess = (f", ESS = {srow['ess'].iloc[0]:.0f}" if iptw is not None and len(srow)
               and pd.notna(srow["ess"].iloc[0]) else "")
        label = f"{GROUP_LABELS[group]} (n = {n}{ess}): median {format_median_ci(*med)} mo"
        if len(c):
            t = np.r_[0.0, c["time_months"].to_numpy(float)]
            s = np.r_[1.0, c["survival"].to_numpy(float)]
            lo = np.r_[1.0, pd.to_numeric(c["lower"]).to_numpy(float)]
            hi = np.r_[1.0, pd.to_numeric(c["upper"]).to_numpy(float)]
            ok = ~(np.isnan(lo) | np.isnan(hi))
            ax.fill_between(t, np.nan_to_num(lo), np.nan_to_num(hi), where=ok, step="post",
                            color=color, alpha=0.15, linewidth=0)
            (line,) = ax.step(t, s, where="post", color=color, linewidth=2.0)
            cens = c[c["n_censored"] > 0]
            ax.plot(cens["time_months"], cens["survival"], linestyle="none", marker="+",
                    markersize=8, markeredgewidth=1.3, color=color)
            m = med[0]
            if m is not None and not pd.isna(m):
                ax.plot([0, m], [0.5, 0.5], linestyle=":", color="#555555", linewidth=1.2)
                ax.plot([m, m], [0, 0.5], linestyle=":", color=color, linewidth=1.4)
        else:
            line = Line2D([], [], color=color, linewidth=2.0)
        handles.append(line)
        labels.append(label)
        # number at risk row (first_line on top, as the legend)
        y = len(GROUPS) - 1 - GROUPS.index(group)
        for tk in ticks:
            risk.text(tk, y, str(at_risk(c, tk) if len(c) else 0), ha="center", va="center",
                      fontsize=10, color=color)

    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(ticks)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_yticklabels(["0.00", "0.25", "0.50", "0.75", "1.00"])
    ax.set_ylabel(f"{title} probability", fontsize=11)
    ax.set_xlabel("Months since first HAIC", fontsize=11)
    ax.tick_params(labelsize=10)
    ax.grid(True, color="#e6e6e6", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    heading = f"{title} by group" + ("" if iptw is None else ", IPTW-adjusted")
    ax.set_title(heading, fontsize=13, loc="left", fontweight="bold")
    legend = ax.legend(handles, labels, loc="upper right", fontsize=9.5, frameon=True, framealpha=0.85,
                       edgecolor="none", facecolor="white")
    legend.set_zorder(5)
    box = (f"Log-rank, nominal p {_p_text(tests, 'logrank')}\n12-month rate, nominal p {_p_text(tests, 'rate_12m')}"
           if iptw is None else _iptw_text(iptw, endpoint))
    ax.text(0.02, 0.05, box,
            transform=ax.transAxes, fontsize=10.5, ha="left", va="bottom", zorder=5,
            bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="none", alpha=0.85))

    risk.set_ylim(-0.5, len(GROUPS) - 0.5)
    risk.set_yticks(range(len(GROUPS)))
    risk.set_yticklabels([GROUP_LABELS[g] for g in reversed(GROUPS)], fontsize=10)
    for lab, g in zip(risk.get_yticklabels(), reversed(GROUPS)):
        lab.set_color(GROUP_COLORS[g])
    risk.tick_params(axis="y", length=0, pad=22)
    risk.tick_params(axis="x", labelsize=10)
    for side in ("top", "right", "left"):
        risk.spines[side].set_visible(False)
    risk.set_title("Number at risk", fontsize=11, loc="left", fontweight="bold")
    ax.tick_params(labelbottom=True)

    what = ("Kaplan-Meier estimates, shaded 95% CI (log scale)" if iptw is None else
            "IPTW Kaplan-Meier (stabilized weights), robust 95% CI (log scale); at risk: patients")
    fig.text(0.02, 0.015, f"{title}: {what}; + censored; "
             f"dotted lines: medians; months of 30.4375 days.\nData: {provenance.describe()}.",
             fontsize=8, color="#444444", ha="left", va="bottom", linespacing=1.4)
    return fig


def forest_figure(models: pd.DataFrame, excluded: pd.DataFrame, endpoint: str,
                  provenance: Provenance) -> Figure:
    """Forest plot of the univariable and multivariable Cox models of ``endpoint`` from
    analysis.cox_models / analysis.cox_excluded: HR with 95% CI on a log axis, the HR text,
    the p-value, n/events per model; candidates left out listed under the plot."""
    m = models[models["endpoint"] == endpoint] if len(models) else models
    x = excluded[excluded["endpoint"] == endpoint] if len(excluded) else excluded
    title = ENDPOINT_TITLES.get(endpoint, endpoint)
    rows: list[tuple] = []  # (kind, text, row or None)
    for model, heading in (("univariable", "Univariable"), ("multivariable", "Multivariable")):
        part = m[m["model"] == model] if len(m) else m
        if not len(part):
            if model == "multivariable" and len(x) and (x["reason"] == "multivariable_not_estimable").any():
                rows.append(("head", f"{heading}: not estimable (see note)", None))
            elif model == "multivariable" and len(m):
                rows.append(("head", f"{heading}: not fitted (group not estimable and no other "
                                     "candidate with univariable p < 0.1)", None))
            continue
        if model == "multivariable":
            heading += f" (n = {int(part['n'].iloc[0])}, events = {int(part['events'].iloc[0])})"
        else:
            heading += " (each term on its complete cases)"
        rows.append(("head", heading, None))
        for _, r in part.iterrows():
            rows.append(("term", TERM_LABELS.get(r["term"], r["term"]), r))

    notes = []
    if len(x):
        left_out = [f"{TERM_LABELS.get(t, t)} ({reason})" for t, reason in zip(x["term"], x["reason"])
                    if reason != "multivariable_not_estimable"]
        if left_out:
            notes.append("Candidates left out: " + "; ".join(left_out) + ".")
        failed = x[x["reason"] == "multivariable_not_estimable"]
        if len(failed):
            notes.append("Multivariable model not estimable: " + str(failed["detail"].iloc[0])[:300] + ".")
    notes.append("Efron ties, Wald CI and p; multivariable = group + candidates with univariable p < 0.1. "
                 "Bold: nominal p < 0.05 (every p of a refresh is nominal: the study is judged at its formal looks).")
    notes.append(f"Data: {provenance.describe()}.")
    note_lines = [line for n in notes for line in textwrap.wrap(n, 150)]

    n_rows = max(len(rows), 1)
    bottom_in, top_in = 0.75 + 0.16 * len(note_lines), 0.55
    height = bottom_in + top_in + 0.30 * n_rows + 0.15
    fig = Figure(figsize=(11, height), dpi=DPI)
    Canvas(fig)
    ax = fig.add_axes((0.34, bottom_in / height, 0.34, 1 - (bottom_in + top_in) / height))
    fig.text(0.02, 1 - 0.22 / height, f"{title}: Cox proportional hazards models", fontsize=13,
             fontweight="bold", ha="left", va="top")
    if not any(k == "term" for k, _, _ in rows):
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No Cox model could be fitted on these data", ha="center", va="center",
                fontsize=11, transform=ax.transAxes)
    else:
        terms = [r for k, _, r in rows if k == "term"]
        lows = np.array([float(r["hr_lower"]) for r in terms])
        highs = np.array([float(r["hr_upper"]) for r in terms])
        lo_lim = max(0.02, min(0.5, float(np.min(lows)) / 1.3))
        hi_lim = min(50.0, max(2.0, float(np.max(highs)) * 1.3))
        ax.set_xscale("log")
        ax.set_xlim(lo_lim, hi_lim)
        ax.set_ylim(n_rows - 0.5, -0.5)
        cand = [0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50]
        ticks = [t for t in cand if lo_lim <= t <= hi_lim]
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.axvline(1.0, color="#888888", linewidth=1, linestyle="--")
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.set_yticks([])
        ax.set_xlabel("Hazard ratio (95% CI, log scale)", fontsize=10)
        label_tr = blended_transform_factory(fig.transFigure, ax.transData)
        text_tr = blended_transform_factory(ax.transAxes, ax.transData)
        for i, (kind, text, r) in enumerate(rows):
            if kind == "head":
                ax.text(0.02, i, text, transform=label_tr, fontsize=10.5, fontweight="bold",
                        ha="left", va="center")
                continue
            hr, lo, hi, p = float(r["hr"]), float(r["hr_lower"]), float(r["hr_upper"]), float(r["p_value"])
            sig = p < 0.05
            color = "#0b3d91" if sig else "#333333"
            ax.plot([max(lo, lo_lim), min(hi, hi_lim)], [i, i], color=color, linewidth=1.6)
            if lo < lo_lim:
                ax.annotate("", xy=(lo_lim, i), xytext=(lo_lim * 1.25, i),
                            arrowprops=dict(arrowstyle="->", color=color))
            if hi > hi_lim:
                ax.annotate("", xy=(hi_lim, i), xytext=(hi_lim / 1.25, i),
                            arrowprops=dict(arrowstyle="->", color=color))
            if lo_lim <= hr <= hi_lim:
                ax.plot([hr], [i], marker="s", markersize=7, color=color)
            weight = "bold" if sig else "normal"
            ax.text(0.04, i, text, transform=label_tr, fontsize=10, ha="left", va="center")
            ax.text(1.04, i, format_estimate_ci(hr, lo, hi, 2), transform=text_tr, fontsize=10,
                    ha="left", va="center", fontweight=weight)
            ax.text(1.64, i, format_p(p), transform=text_tr, fontsize=10, ha="right", va="center",
                    fontweight=weight)
            if kind == "term" and r["model"] == "univariable":
                ax.text(1.69, i, f"{int(r['n'])}/{int(r['events'])}", transform=text_tr, fontsize=9,
                        ha="left", va="center", color="#555555")
        ax.text(1.04, -0.5, "HR (95% CI)", transform=text_tr, fontsize=10, fontweight="bold",
                ha="left", va="bottom")
        ax.text(1.64, -0.5, "nominal p", transform=text_tr, fontsize=10, fontweight="bold", ha="right", va="bottom")
        ax.text(1.69, -0.5, "n/events", transform=text_tr, fontsize=9, fontweight="bold",
                ha="left", va="bottom", color="#555555")
    fig.text(0.02, 0.1 / height, "\n".join(note_lines), fontsize=8, color="#444444", ha="left",
             va="bottom", linespacing=1.35)
    return fig


def _finish(ax, grid_axis: str, legend_loc: str) -> None:
    """The beyond-the-paper figures' axes: a light grid on one axis, no top and right spines."""
    ax.grid(True, axis=grid_axis, color="#e6e6e6", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc=legend_loc, fontsize=9.5, frameon=True, framealpha=0.9, edgecolor="none")


def _with_notes(fig, note_lines: list[str], height: float):
    """The figure with its notes (what was modelled, the data, the provenance) at the bottom."""
    fig.text(0.02, 0.1 / height, "\n".join(note_lines), fontsize=8, color="#444444", ha="left",
             va="bottom", linespacing=1.35)
    return fig


def love_figure(balance: pd.DataFrame, propensity: pd.DataFrame, provenance: Provenance,
                threshold: float = 0.1) -> Figure:
    """Love plot from analysis.balance: |SMD| of each covariate before weighting (open grey
    circles), after the stabilized IPTW weights (filled blue) and after the overlap weights
    (green diamonds; 0 for every modelled covariate), one row per covariate in the
    propensity model's order, a dashed line at ``threshold`` (0.1 = balanced). When the weights
    could not be computed only the "before" points are drawn and the reason (from
    analysis.propensity_model) is printed under the plot."""
    rows = balance[balance["covariate"].notna()] if len(balance) else balance
    n_rows = max(len(rows), 1)
    notes = []
    failed = propensity[propensity["status"].isin(["separation", "not_converged", "no_variation", "too_few"])] \
        if len(propensity) else propensity
    if len(failed):
        notes.append(f"Weights not computed: {failed['note'].iloc[0]}.")
    left = propensity[propensity["status"] == "left_out"] if len(propensity) else propensity
    if len(left):
        notes.append("Not in the propensity model: " + "; ".join(
            f"{TERM_LABELS.get(t, t)} ({str(n).split(': ', 1)[-1]})" for t, n in zip(left["term"], left["note"])) + ".")
    notes.append("|SMD| = |difference in shares| / pooled SD of the unweighted groups (cobalt convention); "
                 f"|SMD| < {threshold:g} counts as balanced.")
    notes.append(f"Data: {provenance.describe()}.")
    note_lines = [line for n in notes for line in textwrap.wrap(n, 150)]
    bottom_in, top_in = 0.85 + 0.16 * len(note_lines), 0.6
    height = bottom_in + top_in + 0.32 * n_rows
    fig = Figure(figsize=(10, height), dpi=DPI)
    Canvas(fig)
    ax = fig.add_axes((0.30, bottom_in / height, 0.64, 1 - (bottom_in + top_in) / height))
    fig.text(0.02, 1 - 0.2 / height, "Covariate balance before and after weighting (Love plot)", fontsize=13,
             fontweight="bold", ha="left", va="top")
    if not len(rows):
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No covariate to balance", ha="center", va="center", fontsize=11,
                transform=ax.transAxes)
    else:
        y = np.arange(len(rows))
        before = pd.to_numeric(rows["smd_before"], errors="coerce").abs().to_numpy(float)
        after = pd.to_numeric(rows["smd_after"], errors="coerce").abs().to_numpy(float)
        overlap = pd.to_numeric(rows.get("smd_after_overlap", pd.Series(np.nan, index=rows.index)),
                                errors="coerce").abs().to_numpy(float)
        top = np.nanmax(np.r_[before, after, overlap, threshold * 2])
        ax.set_xlim(0, top * 1.1)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        for i in y:  # a thin line from before to after shows the change
            if np.isfinite(before[i]) and np.isfinite(after[i]):
                ax.plot([before[i], after[i]], [i, i], color="#bbbbbb", linewidth=1, zorder=1)
        ax.scatter(before, y, s=46, facecolors="white", edgecolors="#666666", linewidths=1.4, zorder=3,
                   label="Before weighting")
        if np.isfinite(after).any():
            ax.scatter(after, y, s=46, color="#0072B2", zorder=4, label="After IPTW (stabilized weights)")
        if np.isfinite(overlap).any():
            ax.scatter(overlap, y, s=40, marker="D", color="#009E73", zorder=5, label="After overlap weights")
        ax.axvline(threshold, color="#D55E00", linestyle="--", linewidth=1.2, zorder=2)
        ax.text(threshold, -0.5, f" {threshold:g}", color="#D55E00", fontsize=9, ha="left", va="bottom")
        ax.set_yticks(y)
        ax.set_yticklabels([TERM_LABELS.get(c, c) for c in rows["covariate"]], fontsize=10)
        ax.set_xlabel("Absolute standardized mean difference", fontsize=10.5)
        _finish(ax, "x", "lower right")
    return _with_notes(fig, note_lines, height)


def propensity_figure(histogram: pd.DataFrame, overlap: pd.DataFrame, propensity: pd.DataFrame,
                      provenance: Provenance) -> Figure:
    """Positivity (study_spec §5.6): the propensity scores of the two groups as a mirrored
    histogram from analysis.propensity_histogram (post-ate-beva above the axis, first-line
    below, bins of 0.05), with each group's range and the number of its patients outside the
    other group's range (analysis.propensity_overlap). Where the bars of one group have no
    counterpart in the other, that group's patients have no comparable patients in the other:
    the ATE weights lean on few of them, the overlap weights give them little weight."""
    title = "Propensity scores by group (positivity)"
    if not len(histogram):
        why = next((str(n) for n in overlap["note"] if isinstance(n, str)), "no propensity score") \
            if len(overlap) else "no propensity score"
        return message_figure(title, textwrap.fill(f"Not drawn: {why}", 110), provenance)
    notes = []
    ov = overlap.set_index("group") if len(overlap) else overlap
    for g in GROUPS:
        if g in ov.index and pd.notna(ov.loc[g, "ps_min"]):
            r = ov.loc[g]
            notes.append(f"{GROUP_LABELS[g]}: n = {int(r['n'])}, ps {r['ps_min']:.3f} to {r['ps_max']:.3f} "
                         f"(median {r['ps_median']:.3f}); {int(r['n_outside_other_range'])} outside the other "
                         "group's range.")
    left = propensity[propensity["status"] == "left_out"] if len(propensity) else propensity
    if len(left):
        notes.append("Not in the propensity model: " + ", ".join(TERM_LABELS.get(t, t) for t in left["term"]) + ".")
    notes.append("Propensity score = fitted probability of post-ate-beva HAIC (logistic model, R glm). "
                 "Positivity needs patients of both groups across the range of scores.")
    notes.append(f"Data: {provenance.describe()}.")
    note_lines = [line for n in notes for line in textwrap.wrap(n, 150)]
    bottom_in, top_in, plot_in = 0.85 + 0.16 * len(note_lines), 0.6, 3.6
    height = bottom_in + top_in + plot_in
    fig = Figure(figsize=(10, height), dpi=DPI)
    Canvas(fig)
    ax = fig.add_axes((0.09, bottom_in / height, 0.86, plot_in / height))
    fig.text(0.02, 1 - 0.2 / height, title, fontsize=13, fontweight="bold", ha="left", va="top")
    top = 0
    for g, sign in (("post_ate_beva", 1), ("first_line", -1)):
        h = histogram[histogram["group"] == g]
        lo, hi = h["bin_lower"].to_numpy(float), h["bin_upper"].to_numpy(float)
        n = h["n"].to_numpy(float)
        top = max(top, float(n.max()) if len(n) else 0)
        ax.bar(lo, sign * n, width=hi - lo, align="edge", color=GROUP_COLORS[g], alpha=0.85,
               edgecolor="white", linewidth=0.6, label=GROUP_LABELS[g])
    top = max(top, 1) * 1.15
    ax.set_ylim(-top, top)
    ax.set_xlim(0, 1)
    ax.axhline(0, color="#444444", linewidth=0.8)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{abs(v):g}"))
    ax.set_xlabel("Propensity score (probability of post-ate-beva HAIC)", fontsize=10.5)
    ax.set_ylabel("Patients (post-ate-beva \u2191, first-line \u2193)", fontsize=10)
    _finish(ax, "y", "upper right")
    return _with_notes(fig, note_lines, height)


def message_figure(title: str, message: str, provenance: Provenance) -> Figure:
    """A placeholder figure saying why the real one cannot be drawn (e.g. no patients)."""
    fig = Figure(figsize=(10, 3), dpi=DPI)
    Canvas(fig)
    fig.text(0.02, 0.85, title, fontsize=13, fontweight="bold", ha="left", va="top")
    fig.text(0.02, 0.5, message, fontsize=11, ha="left", va="center")
    fig.text(0.02, 0.05, f"Data: {provenance.describe()}.", fontsize=8, color="#444444")
    return fig


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------
@dataclass
class SavedFigure:
    name: str
    png: Path
    svg: Path
    width_px: int
    height_px: int
    preview_png_base64: str  # small PNG for the Dagster UI (markdown data URI)

    def markdown_image(self, alt: str) -> str:
        return f"![{alt}](data:image/png;base64,{self.preview_png_base64})"


def figure_texts(fig: Figure) -> list[str]:
    """Every text drawn on the figure (titles, labels, tick labels, legend, annotations)."""
    out = []
    for t in fig.findobj(matplotlib.text.Text):
        s = t.get_text()
        if s:
            out.append(s)
    return out


def svg_bytes(fig: Figure) -> bytes:
    """The figure as SVG, without a date (byte-identical reruns)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, facecolor="white")
    return buf.getvalue()


def rendered(fig: Figure, dpi: int = DPI):
    """The figure drawn by Agg at `dpi` on white, as a PIL RGBA image (what `savefig` would encode)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="rgba", dpi=dpi, facecolor="white")
    raw = buf.getvalue()
    width, height = int(fig.get_figwidth() * dpi), int(fig.get_figheight() * dpi)  # as Agg sizes its canvas
    if len(raw) != 4 * width * height:
        raise ValueError(f"figure rendered at {dpi} dpi: {len(raw)} bytes, not {width} x {height} RGBA pixels")
    return Image.frombuffer("RGBA", (width, height), raw, "raw", "RGBA", 0, 1)


def encoded_png(image, dpi: int = DPI) -> bytes:
    """`image` as PNG, byte for byte what `fig.savefig(format="png", dpi=dpi, metadata={"Software":
    None})` writes (matplotlib's `imsave`: PIL, the dpi in a pHYs chunk, no text chunk)."""
    from PIL import PngImagePlugin

    buf = io.BytesIO()
    image.save(buf, format="png", dpi=(dpi, dpi), pnginfo=PngImagePlugin.PngInfo())
    return buf.getvalue()


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    return encoded_png(rendered(fig, dpi), dpi)


def preview_png(image, width: int = PREVIEW_WIDTH) -> bytes:
    """A downscaled copy of a rendered figure, in 96 colours (for the Dagster UI: keeps the event
    log small)."""
    from PIL import Image

    im = image.convert("RGB")
    if im.width > width:
        # halved by a box filter first, then Lanczos to the width (reducing_gap): the same picture
        # at the preview's size, in about half the time of Lanczos from the full drawing
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS, reducing_gap=1.1)
    im = im.quantize(colors=96, method=Image.Quantize.FASTOCTREE)  # a few times smaller
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's header (its IHDR chunk)."""
    return struct.unpack(">II", png[16:24])


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data)


#: the figures last drawn in this process, by inputs key: (png, svg, preview) bytes
_drawn: OrderedDict[str, tuple[bytes, bytes, bytes]] = OrderedDict()
DRAWN_KEPT = 64   # about 13 MB


def save_figure(fig: Figure, folder: Path, name: str, inputs_key: str | None = None) -> SavedFigure:
    """Write ``<folder>/<name>.png`` (150 dpi) and ``.svg`` (no date: byte-identical reruns),
    only replacing a file whose content changed; ``inputs_key`` (if given) is stored beside
    them as ``<name>.inputs``, with the UI's preview as ``<name>.preview.png``, so an unchanged
    figure need not be drawn, nor its preview scaled, again (:func:`load_saved`), and the bytes
    are kept in this process for another folder that needs the same figure (:func:`save_drawn`)."""
    image = rendered(fig)   # drawn once: the PNG and its preview come from the same pixels
    drawn = (encoded_png(image), svg_bytes(fig), preview_png(image))
    if inputs_key is not None:
        _drawn[inputs_key] = drawn
        while len(_drawn) > DRAWN_KEPT:
            _drawn.popitem(last=False)
    return _save(folder, name, inputs_key, *drawn)


def save_drawn(folder: Path, name: str, inputs_key: str) -> SavedFigure | None:
    """The figure drawn from the same inputs earlier in this process (into another folder: a
    snapshot's, another warehouse's), written into `folder` without drawing it again; else None.
    The inputs key covers the tables drawn, the provenance and the drawing code, and a drawing is
    deterministic, so the bytes are those a new drawing would give."""
    drawn = _drawn.get(inputs_key)
    if drawn is None:
        return None
    _drawn.move_to_end(inputs_key)
    return _save(folder, name, inputs_key, *drawn)


def forget_drawn() -> None:
    """Drop the figures kept in this process (the next `build_figures` of a folder draws)."""
    _drawn.clear()


def _save(folder: Path, name: str, inputs_key: str | None, png: bytes, svg: bytes, preview: bytes) -> SavedFigure:
    folder.mkdir(parents=True, exist_ok=True)
    _write_if_changed(folder / f"{name}.png", png)
    _write_if_changed(folder / f"{name}.svg", svg)
    if inputs_key is not None:
        _write_if_changed(folder / f"{name}.preview.png", preview)
        _write_if_changed(folder / f"{name}.inputs", inputs_key.encode())
    w, h = png_size(png)
    return SavedFigure(name=name, png=folder / f"{name}.png", svg=folder / f"{name}.svg", width_px=w, height_px=h,
                       preview_png_base64=base64.b64encode(preview).decode("ascii"))


def load_saved(folder: Path, name: str, inputs_key: str) -> SavedFigure | None:
    """The figure already on disk if it was drawn from the same inputs, else None."""
    png, svg, preview, key = (folder / f"{name}.png", folder / f"{name}.svg", folder / f"{name}.preview.png",
                              folder / f"{name}.inputs")
    if not all(p.exists() for p in (png, svg, preview, key)) or key.read_text() != inputs_key:
        return None
    w, h = png_size(png.read_bytes())
    return SavedFigure(name=name, png=png, svg=svg, width_px=w, height_px=h,
                       preview_png_base64=base64.b64encode(preview.read_bytes()).decode("ascii"))
