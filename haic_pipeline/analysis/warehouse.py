"""The ``analysis.*`` tables of study_spec §4 (:data:`TABLES`) and §5.5 (:data:`BEYOND_TABLES`):
column names and types, and how they are written.

Every table has the spec's columns first, then (where noted) explanatory columns
(``note``, ``detail``), then the provenance columns ``data_cutoff`` and ``extract_id``: the
newest loaded drop the result was computed from (every loaded drop up to it contributes;
``ops.drops`` lists them). ``analysis.refresh_history`` already has both in its key.

Writes use ``CREATE OR REPLACE TABLE`` with explicit types (an empty result still has the
right schema) and all tables of one build in ONE transaction: a failure leaves the previous
tables intact. NaN is never stored: missing numbers are NULL.
"""

from __future__ import annotations

from typing import Mapping

import duckdb
import pandas as pd

from haic_pipeline.warehouse.transaction import transaction

from .data import Provenance

PROVENANCE = [("data_cutoff", "DATE"), ("extract_id", "VARCHAR")]
#: the Kaplan-Meier median and 12-month rate with their 95 % limits (km_summary, and weighted in
#: iptw_km_summary)
MEDIAN_AND_RATE = [("median_months", "DOUBLE"), ("median_lower", "DOUBLE"), ("median_upper", "DOUBLE"),
                   ("rate_12m", "DOUBLE"), ("rate_12m_lower", "DOUBLE"), ("rate_12m_upper", "DOUBLE")]

TABLES: dict[str, list[tuple[str, str]]] = {
    "baseline_characteristics": [
        ("variable", "VARCHAR"), ("level", "VARCHAR"), ("first_line", "VARCHAR"),
        ("post_ate_beva", "VARCHAR"), ("overall", "VARCHAR"), ("test", "VARCHAR"),
        ("p_value", "DOUBLE"), *PROVENANCE],
    "km_summary": [
        ("endpoint", "VARCHAR"), ("group", "VARCHAR"), ("n", "INTEGER"), ("events", "INTEGER"), *MEDIAN_AND_RATE,
        *PROVENANCE],
    "km_curves": [
        ("endpoint", "VARCHAR"), ("group", "VARCHAR"), ("time_months", "DOUBLE"),
        ("n_at_risk", "INTEGER"), ("n_events", "INTEGER"), ("n_censored", "INTEGER"),
        ("survival", "DOUBLE"), ("lower", "DOUBLE"), ("upper", "DOUBLE"), *PROVENANCE],
    "survival_tests": [
        ("endpoint", "VARCHAR"), ("test", "VARCHAR"), ("statistic", "DOUBLE"), ("df", "INTEGER"),
        ("p_value", "DOUBLE"), ("note", "VARCHAR"), *PROVENANCE],
    "follow_up": [
        ("group", "VARCHAR"), ("median_months", "DOUBLE"), ("lower", "DOUBLE"), ("upper", "DOUBLE"),
        *PROVENANCE],
    "response_summary": [
        ("group", "VARCHAR"), ("n", "INTEGER"), ("cr", "INTEGER"), ("pr", "INTEGER"),
        ("sd", "INTEGER"), ("pd", "INTEGER"), ("ne", "INTEGER"), ("orr", "DOUBLE"), ("dcr", "DOUBLE"),
        *PROVENANCE],
    "response_tests": [
        ("measure", "VARCHAR"), ("test", "VARCHAR"), ("statistic", "DOUBLE"), ("p_value", "DOUBLE"),
        ("note", "VARCHAR"), *PROVENANCE],
    "cox_models": [
        ("endpoint", "VARCHAR"), ("model", "VARCHAR"), ("term", "VARCHAR"), ("n", "INTEGER"),
        ("events", "INTEGER"), ("hr", "DOUBLE"), ("hr_lower", "DOUBLE"), ("hr_upper", "DOUBLE"),
        ("p_value", "DOUBLE"), *PROVENANCE],
    "cox_excluded": [
        ("endpoint", "VARCHAR"), ("term", "VARCHAR"), ("reason", "VARCHAR"), ("detail", "VARCHAR"),
        *PROVENANCE],
    "refresh_history": [
        ("extract_id", "VARCHAR"), ("data_cutoff", "DATE"), ("endpoint", "VARCHAR"),
        ("group", "VARCHAR"), ("n", "INTEGER"), ("events", "INTEGER"), ("median_months", "DOUBLE"),
        ("rate_12m", "DOUBLE"),
        # study_spec §6.3: the monitoring state after this drop, the same on each row of the drop
        # (`events` of §6.3 is `monitoring_events` here: `events` is the row's endpoint x group)
        ("monitoring_endpoint", "VARCHAR"), ("monitoring_events", "INTEGER"), ("planned_events", "INTEGER"),
        ("information_fraction", "DOUBLE"), ("z", "DOUBLE"), ("nominal_p", "DOUBLE"), ("looks_taken", "INTEGER"),
        ("next_milestone_events", "INTEGER"), ("boundary_now", "DOUBLE"), ("conditional_power", "DOUBLE"),
        ("months_to_next_milestone", "DOUBLE"), ("date_next_milestone", "DATE"),
        ("months_to_planned_events", "DOUBLE"), ("date_planned_events", "DATE"), ("decision", "VARCHAR"),
        ("monitoring_note", "VARCHAR")],
}


#: study_spec §5.5 and §5.7 ("beyond the paper"), plus iptw_weights (§5.1's weight summary per
#: group), iptw_km_curves (the curves the IPTW figures are drawn from) and propensity_histogram
#: (the binned propensity scores the positivity figure draws). ``weighting``: ``none``
#: (unweighted, on the modelled patients), ``stabilized`` (stabilized ATE weights), ``truncated``
#: (those clipped at their 1st and 99th percentiles), ``overlap`` (ATO weights); iptw_effects
#: also ``multivariable`` (the multivariable Cox HR of group with its E-value). Built by
#: haic_pipeline.analysis.beyond.
BEYOND_TABLES: dict[str, list[tuple[str, str]]] = {
    "propensity_model": [
        ("term", "VARCHAR"), ("coef", "DOUBLE"), ("se", "DOUBLE"), ("p_value", "DOUBLE"),
        ("n", "INTEGER"), ("n_excluded_missing", "INTEGER"), ("status", "VARCHAR"),
        ("note", "VARCHAR"), *PROVENANCE],
    "propensity_overlap": [
        ("group", "VARCHAR"), ("n", "INTEGER"), ("ps_min", "DOUBLE"), ("ps_q1", "DOUBLE"),
        ("ps_median", "DOUBLE"), ("ps_q3", "DOUBLE"), ("ps_max", "DOUBLE"),
        ("n_outside_other_range", "INTEGER"), ("note", "VARCHAR"), *PROVENANCE],
    "propensity_histogram": [
        ("group", "VARCHAR"), ("bin_lower", "DOUBLE"), ("bin_upper", "DOUBLE"), ("n", "INTEGER"),
        *PROVENANCE],
    "balance": [
        ("covariate", "VARCHAR"), ("share_first_line", "DOUBLE"), ("share_post_ate_beva", "DOUBLE"),
        ("smd_before", "DOUBLE"), ("smd_after", "DOUBLE"), ("balanced_after", "BOOLEAN"),
        ("share_first_line_weighted", "DOUBLE"), ("share_post_ate_beva_weighted", "DOUBLE"),
        ("balanced_before", "BOOLEAN"), ("smd_after_truncated", "DOUBLE"), ("smd_after_overlap", "DOUBLE"),
        ("in_propensity_model", "BOOLEAN"), ("n", "INTEGER"), ("note", "VARCHAR"), *PROVENANCE],
    "iptw_weights": [
        ("group", "VARCHAR"), ("weighting", "VARCHAR"), ("n", "INTEGER"), ("sum_weights", "DOUBLE"),
        ("weight_min", "DOUBLE"), ("weight_max", "DOUBLE"), ("ess", "DOUBLE"),
        ("truncated_below", "DOUBLE"), ("truncated_above", "DOUBLE"), ("clipped_low", "INTEGER"),
        ("clipped_high", "INTEGER"), ("estimand", "VARCHAR"), ("note", "VARCHAR"), *PROVENANCE],
    "iptw_km_summary": [
        ("endpoint", "VARCHAR"), ("group", "VARCHAR"), ("weighting", "VARCHAR"), ("n", "INTEGER"),
        ("ess", "DOUBLE"), ("events", "INTEGER"), *MEDIAN_AND_RATE, ("sum_weights", "DOUBLE"),
        ("note", "VARCHAR"), *PROVENANCE],
    "iptw_effects": [
        ("endpoint", "VARCHAR"), ("weighting", "VARCHAR"), ("hr", "DOUBLE"), ("hr_lower", "DOUBLE"),
        ("hr_upper", "DOUBLE"), ("p_value", "DOUBLE"), ("robust_score", "DOUBLE"),
        ("robust_score_p", "DOUBLE"), ("e_value", "DOUBLE"), ("e_value_ci", "DOUBLE"),
        ("e_value_rr", "DOUBLE"), ("outcome_rare", "BOOLEAN"), ("estimand", "VARCHAR"),
        ("robust_se", "DOUBLE"), ("n", "INTEGER"), ("events", "INTEGER"), ("note", "VARCHAR"), *PROVENANCE],
    "rmst": [
        ("endpoint", "VARCHAR"), ("weighting", "VARCHAR"), ("tau_months", "DOUBLE"),
        ("rmst_first_line", "DOUBLE"), ("rmst_first_line_se", "DOUBLE"),
        ("rmst_post_ate_beva", "DOUBLE"), ("rmst_post_ate_beva_se", "DOUBLE"),
        ("difference", "DOUBLE"), ("difference_lower", "DOUBLE"), ("difference_upper", "DOUBLE"),
        ("difference_p", "DOUBLE"), ("ratio", "DOUBLE"), ("ratio_lower", "DOUBLE"),
        ("ratio_upper", "DOUBLE"), ("ratio_p", "DOUBLE"), ("tau_requested", "DOUBLE"),
        ("tau_truncated", "BOOLEAN"), ("n", "INTEGER"), ("note", "VARCHAR"), *PROVENANCE],
    "ph_tests": [
        ("endpoint", "VARCHAR"), ("model", "VARCHAR"), ("term", "VARCHAR"), ("chisq", "DOUBLE"),
        ("df", "INTEGER"), ("p_value", "DOUBLE"), ("model_terms", "VARCHAR"), ("n", "INTEGER"),
        ("events", "INTEGER"), ("note", "VARCHAR"), *PROVENANCE],
    "iptw_km_curves": [
        ("endpoint", "VARCHAR"), ("group", "VARCHAR"), ("weighting", "VARCHAR"),
        ("time_months", "DOUBLE"), ("n_at_risk", "INTEGER"), ("n_events", "INTEGER"),
        ("n_censored", "INTEGER"), ("weighted_at_risk", "DOUBLE"), ("weighted_events", "DOUBLE"),
        ("survival", "DOUBLE"), ("lower", "DOUBLE"), ("upper", "DOUBLE"), *PROVENANCE],
}
#: the monitoring columns of analysis.refresh_history (filled by build_monitoring)
HISTORY_MONITORING_COLUMNS = [c for c, _ in TABLES["refresh_history"]][8:]

#: study_spec §6 (haic_pipeline.analysis.monitoring): the formal looks, one row per look in drop
#: order, and the monitoring state after the newest drop; each row's data_cutoff / extract_id are
#: those of its drop. NULL where §6 says so, with the reason in `note`.
MONITORING_TABLES: dict[str, list[tuple[str, str]]] = {
    "monitoring_looks": [
        ("look", "INTEGER"), ("extract_id", "VARCHAR"), ("data_cutoff", "DATE"), ("endpoint", "VARCHAR"),
        ("events", "INTEGER"), ("planned_events", "INTEGER"), ("information_fraction", "DOUBLE"),
        ("cumulative_alpha", "DOUBLE"), ("critical_z", "DOUBLE"), ("z", "DOUBLE"), ("nominal_p", "DOUBLE"),
        ("crossed", "BOOLEAN"), ("hr", "DOUBLE"), ("rci_lower", "DOUBLE"), ("rci_upper", "DOUBLE"),
        ("final", "BOOLEAN"), ("note", "VARCHAR")],
    "monitoring_status": [
        ("extract_id", "VARCHAR"), ("data_cutoff", "DATE"), ("endpoint", "VARCHAR"), ("events", "INTEGER"),
        ("planned_events", "INTEGER"), ("information_fraction", "DOUBLE"), ("z", "DOUBLE"),
        ("nominal_p", "DOUBLE"), ("looks_taken", "INTEGER"), ("next_milestone_events", "INTEGER"),
        ("boundary_now", "DOUBLE"), ("conditional_power", "DOUBLE"), ("months_to_next_milestone", "DOUBLE"),
        ("date_next_milestone", "DATE"), ("months_to_planned_events", "DOUBLE"),
        ("date_planned_events", "DATE"), ("decision", "VARCHAR"), ("plan", "VARCHAR"), ("note", "VARCHAR")],
    # what the monitoring figure draws: the boundary at each look taken (kind `look`) and the
    # planned boundaries at the milestones still ahead (kind `planned`)
    "monitoring_boundaries": [
        ("kind", "VARCHAR"), ("look", "INTEGER"), ("events", "INTEGER"), ("information_fraction", "DOUBLE"),
        ("critical_z", "DOUBLE"), ("cumulative_alpha", "DOUBLE"), ("note", "VARCHAR"), *PROVENANCE],
}
#: tables whose rows carry their own drop's data_cutoff / extract_id
OWN_PROVENANCE = ("refresh_history", "monitoring_looks", "monitoring_status")
#: the software that computed the other tables (haic_pipeline.provenance), one row per component
SOFTWARE_TABLE = {"software": [("component", "VARCHAR"), ("version", "VARCHAR"), ("recorded_at", "TIMESTAMP"),
                               *PROVENANCE]}
#: every table this module writes (§4, §5.5 and the software)
ALL_TABLES = {**TABLES, **BEYOND_TABLES, **MONITORING_TABLES, **SOFTWARE_TABLE}


def _ddl(table: str) -> str:
    cols = ", ".join(f'"{c}" {t}' for c, t in ALL_TABLES[table])
    return f"analysis.{table} ({cols})"


def _prepared(table: str, frame: pd.DataFrame, prov: Provenance | None) -> pd.DataFrame:
    """The frame with the table's columns in order, provenance filled, NaN -> None."""
    df = frame.copy()
    names = [c for c, _ in ALL_TABLES[table]]
    if prov is not None and table not in OWN_PROVENANCE:
        df["data_cutoff"] = prov.data_cutoff
        df["extract_id"] = prov.extract_id
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise KeyError(f"analysis.{table}: columns missing from the result: {missing}")
    df = df[names].astype(object)
    return df.where(pd.notna(df), None)


def _insert(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame) -> None:
    if not len(df):
        return
    cols = ALL_TABLES[table]
    select = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in cols)
    con.register("_analysis_rows", df)
    try:
        con.execute(f"INSERT INTO analysis.{table} SELECT {select} FROM _analysis_rows")
    finally:
        con.unregister("_analysis_rows")


def write_tables(con: duckdb.DuckDBPyConnection, results: Mapping[str, pd.DataFrame],
                 prov: Provenance) -> dict[str, int]:
    """CREATE OR REPLACE each ``analysis.<table>`` of ``results`` in one transaction.
    Returns the row count per table."""
    prepared = {t: _prepared(t, f, prov) for t, f in results.items()}
    con.execute("CREATE SCHEMA IF NOT EXISTS analysis")
    with transaction(con):
        for table, df in prepared.items():
            con.execute(f"CREATE OR REPLACE TABLE {_ddl(table)}")
            _insert(con, table, df)
    return {t: len(df) for t, df in prepared.items()}


def append_history(con: duckdb.DuckDBPyConnection, snapshot: pd.DataFrame, prov: Provenance) -> int:
    """Append ``snapshot`` to analysis.refresh_history under ``prov.extract_id`` unless that
    extract_id is already there (or there is no drop). Returns the rows added (0 or more)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS analysis")
    ensure_history(con)
    if not prov.extract_id:
        return 0
    df = snapshot.copy()
    df["extract_id"] = prov.extract_id
    df["data_cutoff"] = prov.data_cutoff
    for c in HISTORY_MONITORING_COLUMNS:
        if c not in df:
            df[c] = None
    df = _prepared("refresh_history", df, None)
    with transaction(con):
        present = con.execute("SELECT count(*) FROM analysis.refresh_history WHERE extract_id = ?",
                              [prov.extract_id]).fetchall()[0][0]
        if present:
            return 0
        _insert(con, "refresh_history", df)
    return len(df)


def ensure_history(con: duckdb.DuckDBPyConnection) -> None:
    """analysis.refresh_history with every column of TABLES (columns added since a warehouse's
    table was made are added, NULL on the older rows)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS analysis")
    con.execute(f"CREATE TABLE IF NOT EXISTS {_ddl('refresh_history')}")
    have = {c for (c,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = "
        "'analysis' AND table_name = 'refresh_history'").fetchall()}
    for c, t in TABLES["refresh_history"]:
        if c not in have:
            con.execute(f'ALTER TABLE analysis.refresh_history ADD COLUMN "{c}" {t}')


def read_table(con: duckdb.DuckDBPyConnection, table: str) -> pd.DataFrame:
    """analysis.<table> as a DataFrame, NULL as None/NaN (empty frame if it does not exist)."""
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'analysis' "
                         "AND table_name = ?", [table]).fetchall()[0][0]
    if not exists:
        return pd.DataFrame(columns=[c for c, _ in ALL_TABLES.get(table, [])])
    return con.execute(f"SELECT * FROM analysis.{table}").df()
