"""The figures drawn from the analysis tables: which tables each figure reads (`figure_inputs`,
through `Tables`, which reads each table once for all the figures of a pass), the drawing
(`draw_figure`, by the plotting code of `figures.py` and `monitoring_figure.py`), and the key a
saved figure is redrawn on (`inputs_key`). A figure shows what the tables hold. Used by
`build.build_figures` and by the report for a figure not on disk."""

from __future__ import annotations

import functools
import hashlib
import textwrap
from pathlib import Path

import duckdb
import pandas as pd

from . import figures as F
from .data import Provenance, read_provenance
from .monitoring_figure import monitoring_figure
from .warehouse import read_table


class Tables:
    """The analysis tables and the provenance of staging as one step reads them: each table read
    once (`read_table`), each caller given its own copy of it. For drawing several figures, some
    from the same tables, in one pass over unchanged tables (`build_figures`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self._frames: dict[str, pd.DataFrame] = {}
        self._staging: Provenance | None = None

    def _frame(self, table: str) -> pd.DataFrame:
        if table not in self._frames:
            self._frames[table] = read_table(self.con, table)
        return self._frames[table]

    def read(self, table: str) -> pd.DataFrame:
        return self._frame(table).copy()

    def provenance(self, table: str) -> Provenance:
        """The provenance of analysis.<table>: staging's, or, for a table from an older state
        than staging, its own extract_id and data_cutoff with the drops loaded up to it."""
        if self._staging is None:
            self._staging = read_provenance(self.con)
        prov, df = self._staging, self._frame(table)
        if len(df) and "extract_id" in df:
            extract_id = str(df["extract_id"].iloc[0])
            if extract_id != prov.extract_id:  # tables from an older state than staging
                drops = tuple(d for d in prov.drops if d <= extract_id)
                return Provenance(extract_id, str(pd.Timestamp(df["data_cutoff"].iloc[0]).date()), drops)
        return prov


def table_provenance(con: duckdb.DuckDBPyConnection, table: str) -> Provenance:
    return Tables(con).provenance(table)


PAPER_FIGURES = ("km_os", "km_pfs", "forest_os", "forest_pfs")
BEYOND_FIGURES = F.BEYOND_FIGURES  # study_spec §5
MONITORING_FIGURES = ("monitor",)  # study_spec §6.4
FIGURES = PAPER_FIGURES + BEYOND_FIGURES + MONITORING_FIGURES


def figure_inputs(con: duckdb.DuckDBPyConnection, name: str, tables: Tables | None = None) -> dict:
    """What figure ``name`` (one of FIGURES) is drawn from: the analysis tables it reads
    and the provenance line (read through ``tables``, if given: figures drawn in one pass)."""
    tables = tables or Tables(con)
    if name == "monitor":
        frames = {t: tables.read(t) for t in ("monitoring_looks", "monitoring_boundaries", "monitoring_status",
                                              "refresh_history")}
        return {"kind": "monitor", "endpoint": None, "frames": frames,
                "provenance": tables.provenance("monitoring_boundaries")}
    if name == "love":
        frames = {t: tables.read(t) for t in ("balance", "propensity_model")}
        return {"kind": "love", "endpoint": None, "frames": frames,
                "provenance": tables.provenance("balance")}
    if name == "propensity_overlap":
        frames = {t: tables.read(t) for t in ("propensity_histogram", "propensity_overlap", "propensity_model")}
        return {"kind": "propensity", "endpoint": None, "frames": frames,
                "provenance": tables.provenance("propensity_overlap")}
    if name.startswith("iptw_km_"):
        frames = {t: tables.read(t) for t in ("iptw_km_curves", "iptw_km_summary", "iptw_effects")}
        return {"kind": "iptw_km", "endpoint": name.rsplit("_", 1)[1].upper(), "frames": frames,
                "provenance": tables.provenance("iptw_km_summary")}
    kind, endpoint = name.split("_")
    if kind == "km":
        frames = {t: tables.read(t) for t in ("km_curves", "km_summary", "survival_tests")}
        prov = tables.provenance("km_curves")
    else:
        frames = {t: tables.read(t) for t in ("cox_models", "cox_excluded")}
        prov = tables.provenance("cox_models")
    return {"kind": kind, "endpoint": endpoint.upper(), "frames": frames, "provenance": prov}


def draw_figure(inputs: dict):
    """The matplotlib Figure for :func:`figure_inputs`."""
    endpoint, prov, fr = inputs["endpoint"], inputs["provenance"], inputs["frames"]
    if inputs["kind"] == "monitor":
        return monitoring_figure(fr["monitoring_looks"], fr["monitoring_boundaries"], fr["monitoring_status"],
                                 fr["refresh_history"], prov)
    if inputs["kind"] == "love":
        return F.love_figure(fr["balance"], fr["propensity_model"], prov)
    if inputs["kind"] == "propensity":
        return F.propensity_figure(fr["propensity_histogram"], fr["propensity_overlap"], fr["propensity_model"], prov)
    if inputs["kind"] == "iptw_km":
        title = f"{F.ENDPOINT_TITLES[endpoint]} by group, IPTW-adjusted"
        summary = fr["iptw_km_summary"]
        summary = summary[(summary["endpoint"] == endpoint) & (summary["weighting"] == "stabilized")]
        curves = fr["iptw_km_curves"]
        curves = curves[curves["weighting"] == "stabilized"] if len(curves) else curves
        if not len(curves) or not (curves["endpoint"] == endpoint).any():
            why = next((str(n) for n in summary["note"] if isinstance(n, str)), "no weighted curve")
            return F.message_figure(title, textwrap.fill(f"Not drawn: {why}", 110), prov)
        return F.km_figure(curves, summary, pd.DataFrame(), endpoint, prov, iptw=fr["iptw_effects"])
    if inputs["kind"] == "km":
        if not len(fr["km_curves"]):
            return F.message_figure(f"{F.ENDPOINT_TITLES[endpoint]} by group",
                                    "No included patients: no curve to draw.", prov)
        return F.km_figure(fr["km_curves"], fr["km_summary"], fr["survival_tests"], endpoint, prov)
    return F.forest_figure(fr["cox_models"], fr["cox_excluded"], endpoint, prov)


def render_figure(con: duckdb.DuckDBPyConnection, name: str):
    """The matplotlib Figure ``name`` (one of FIGURES) drawn from the analysis tables."""
    return draw_figure(figure_inputs(con, name))


@functools.cache
def _drawing_code() -> bytes:
    """The source of the drawing code (the plotting modules and their canvas), read once per process."""
    return b"".join((Path(F.__file__).parent / code).read_bytes()
                    for code in ("figures.py", "monitoring_figure.py", "agg.py"))


def inputs_key(name: str, inputs: dict) -> str:
    h = hashlib.sha256()
    h.update(_drawing_code())  # a change of the drawing code redraws
    h.update(f"{name}|{inputs['provenance']!r}".encode())
    for t, df in sorted(inputs["frames"].items()):
        h.update(t.encode())
        h.update(df.to_csv(index=False, float_format="%.17g").encode())
    return h.hexdigest()


