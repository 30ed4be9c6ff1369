"""The monitoring figure (study_spec §6.4), drawn from analysis.monitoring_looks,
analysis.monitoring_boundaries, analysis.monitoring_status and analysis.refresh_history: the
log-rank z of post_ate_beva over the information fraction, the nightly (nominal) z's of the
refresh history as a grey line, the formal looks as points, and the boundaries ±c at the looks
taken (solid) and planned at the milestones ahead (dashed). Drawn as the other figures
(haic_pipeline.analysis.figures: object API, Agg canvas, deterministic output, provenance
footnote); nothing patient-level.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .agg import Canvas
from .data import Provenance
from .figures import DPI, ENDPOINT_TITLES

LOOK = "#0072B2"
CROSSED = "#D55E00"
NIGHTLY = "#999999"
BOUNDARY = "#333333"


def _nightly(history: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
    """(information_fraction, z) per refresh of the history that has them, and the status now."""
    cols = ["extract_id", "information_fraction", "z"]
    parts = []
    if len(history) and "decision" in history:
        h = history[history["decision"].notna()]
        parts.append(h[cols].drop_duplicates("extract_id"))
    if len(status):
        parts.append(status[cols])
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts).drop_duplicates("extract_id").dropna(subset=["information_fraction", "z"])
    return out.sort_values("extract_id")


def monitoring_figure(looks: pd.DataFrame, boundaries: pd.DataFrame, status: pd.DataFrame,
                      history: pd.DataFrame, provenance: Provenance) -> Figure:
    endpoint = str(status["endpoint"].iloc[0]) if len(status) else "OS"
    fig = Figure(figsize=(10, 6.2), dpi=DPI)
    Canvas(fig)
    ax = fig.add_axes((0.09, 0.27, 0.60, 0.63))
    fig.text(0.02, 0.975, f"Monitoring of {ENDPOINT_TITLES.get(endpoint, endpoint).lower()}: log-rank z over the "
             "information", fontsize=13, fontweight="bold", ha="left", va="top")
    nightly = _nightly(history, status)
    if len(nightly):
        ax.plot(nightly["information_fraction"], nightly["z"], color=NIGHTLY, linewidth=1.3, marker="o",
                markersize=3, zorder=2, label="Nightly z (nominal)")
    b = boundaries.dropna(subset=["critical_z"]) if len(boundaries) else boundaries
    for kind, style, label in (("look", "-", "Boundary at the looks taken"),
                               ("planned", "--", "Planned boundary at\nthe milestones ahead")):
        part = b[b["kind"] == kind] if len(b) else b
        if not len(part):
            continue
        x, c = part["information_fraction"].to_numpy(float), part["critical_z"].to_numpy(float)
        if kind == "planned":   # join the planned boundaries to the last one taken
            taken = b[b["kind"] == "look"]
            if len(taken):
                x = np.r_[taken["information_fraction"].to_numpy(float)[-1], x]
                c = np.r_[taken["critical_z"].to_numpy(float)[-1], c]
        for sign in (1, -1):
            ax.plot(x, sign * c, linestyle=style, color=BOUNDARY, linewidth=1.4, marker="_", markersize=12,
                    zorder=3, label=label if sign == 1 else None)
    if len(looks):
        lk = looks.dropna(subset=["z"])
        crossed = lk["crossed"].astype(bool).to_numpy()
        ax.scatter(lk["information_fraction"][~crossed], lk["z"][~crossed], s=70, color=LOOK, zorder=5,
                   label="Formal look (not crossed)")
        if crossed.any():
            ax.scatter(lk["information_fraction"][crossed], lk["z"][crossed], s=90, color=CROSSED, marker="D",
                       zorder=6, label="Formal look crossing\nits boundary")
        for _, r in lk.iterrows():
            ax.annotate(f"look {int(r['look'])}", (r["information_fraction"], r["z"]), textcoords="offset points",
                        xytext=(6, 6), fontsize=8.5, color=LOOK)
    ax.axhline(0, color="#cccccc", linewidth=0.8, zorder=1)
    for sign in (1, -1):
        ax.axhline(sign * 1.959964, color="#bbbbbb", linestyle=":", linewidth=1, zorder=1)
    ax.text(1.0, 1.959964, " \u00b11.96: nominal 5%,\n not a boundary", fontsize=7.5, color="#888888",
            va="center", ha="left", transform=ax.get_yaxis_transform(), clip_on=False)
    ymax = max([4.5] + [abs(v) for v in np.r_[nightly["z"].to_numpy(float) if len(nightly) else [],
                                              b["critical_z"].to_numpy(float) if len(b) else []]
                        if np.isfinite(v)])
    ax.set_ylim(-min(ymax * 1.08, 8.5), min(ymax * 1.08, 8.5))
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("Information fraction (events / planned events)", fontsize=10.5)
    ax.set_ylabel("Log-rank z, post-ate-beva vs first-line\n(< 0: fewer events than expected)", fontsize=10)
    ax.grid(True, color="#eeeeee", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.1, 1.0), fontsize=8.5, frameon=False)
    notes = []
    if len(status):
        s = status.iloc[0]
        notes.append(f"Decision so far: {s['decision']}. {int(s['events'])} of {int(s['planned_events'])} planned "
                     f"events (information {s['information_fraction']:.2f}); {int(s['looks_taken'])} formal look(s).")
        if isinstance(s.get("plan"), str):
            notes.append(f"Plan: {s['plan']}.")
    notes.append("A nightly z is nominal: crossing \u00b11.96 on some night is expected by chance and is not a "
                 "finding. Only a formal look whose z crosses its boundary establishes a difference.")
    notes.append(f"Data: {provenance.describe()}.")
    lines = [line for n in notes for line in textwrap.wrap(n, 150)]
    fig.text(0.02, 0.02, "\n".join(lines), fontsize=8, color="#444444", ha="left", va="bottom", linespacing=1.35)
    return fig
