"""The "beyond the paper" assets in real Dagster runs on a real DuckDB file: the demo's refresh by
`haic run` (refreshed.py, read from a copy of its warehouse and run history) filled the §5.5 / §5.7
tables (one step), passed their NaN / inf checks, drew the Love plot, the propensity scores and the
IPTW curves into the assets' metadata, wrote the report section and published everything to the
analysts' copy; a NaN written into a table afterwards fails the blocking check, and the figures,
the report and the analysts' copy then stay as they were."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg
import duckdb

from haic_pipeline.analysis import BEYOND_TABLES
from haic_pipeline.definitions import load
from haic_pipeline.defs.resources import resources_for
from haic_pipeline.settings import load_settings

from ..conftest import local_instance
from .conftest import identifiers

BEYOND_KEYS = {dg.AssetKey(["analysis", t]) for t in BEYOND_TABLES}
FIGURES = {dg.AssetKey(["reports", n]) for n in ("love_figure", "propensity_figure", "iptw_km_os_figure",
                                                  "iptw_km_pfs_figure")}
REPORT = dg.AssetKey(["reports", "study_report"])
COPY = dg.AssetKey(["analytics", "analysts_copy"])
CHECK_AND_DOWNSTREAM = ("beyond_tables_are_finite", "beyond_figures", "reports__study_report",
                        "analytics__analysts_copy")


class _StoredRun:
    """A finished run read back from the instance: its events, as an execute_in_process result has them."""

    def __init__(self, instance, run_id: str):
        self.run_id = run_id
        self.all_events = [r.dagster_event for r in instance.all_logs(run_id) if r.dagster_event is not None]

    def asset_materializations_for_node(self, node: str) -> list:
        return [e.event_specific_data.materialization for e in self.all_events
                if e.event_type_value == "ASSET_MATERIALIZATION" and e.step_key == node]


def _materialized(result) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}


def _checks(result) -> list:
    return [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.event_specific_data.check_name == "stores_no_nan_or_inf"
            and e.event_specific_data.asset_key in BEYOND_KEYS]   # the monitoring tables have their own


def _check_and_downstream(instance):
    job = load().resolve_job_def("refresh")
    return job.get_subset(op_selection=list(CHECK_AND_DOWNSTREAM)).execute_in_process(
        instance=instance, resources=resources_for(load_settings()), raise_on_error=False)


def test_refresh_fills_publishes_and_checks_the_beyond_tables(env, refreshed_demo):
    demo = refreshed_demo.succeeded()
    demo.copy_into(env)
    last = sorted(p.name for p in (env / "inbox").iterdir() if p.is_dir())[-1]
    settings = load_settings()
    with local_instance(temp_dir=str(env / "dagster_home")) as instance:
        run = _StoredRun(instance, instance.get_runs(filters=dg.RunsFilter(job_name="refresh"), limit=1)[0].run_id)
        assert _materialized(run) >= {*BEYOND_KEYS, *FIGURES, REPORT, COPY}
        # the beyond tables are one step, and every one of them passed its blocking check
        nodes = {e.step_key for e in run.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
                 and e.asset_key in BEYOND_KEYS}
        assert nodes == {"analysis_beyond"}
        checks = [c for c in _checks(run) if c.asset_key in BEYOND_KEYS]
        assert {c.asset_key for c in checks} == BEYOND_KEYS and all(c.passed for c in checks)
        specs = [s for ad in load().resolve_asset_graph().assets_defs for s in ad.check_specs
                 if s.name == "stores_no_nan_or_inf" and s.asset_key in BEYOND_KEYS]
        assert len(specs) == len(BEYOND_TABLES) and all(s.blocking for s in specs)
        overlap = [e.event_specific_data for e in run.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                   and e.event_specific_data.check_name == "overlap_weights_balance_exactly"]
        assert len(overlap) == 1 and overlap[0].passed  # the overlap weights' exact balance, checked
        assert overlap[0].metadata["covariates_checked"].value > 0

        # what the UI shows: the headline of the weighted analyses and the figures inline
        beyond = {m.asset_key: m for m in run.asset_materializations_for_node("analysis_beyond")}
        meta = beyond[dg.AssetKey(["analysis", "iptw_effects"])].metadata
        assert meta["propensity_model"].value.startswith("ok: ")
        for key in ("iptw_hr_os", "overlap_hr_os"):
            assert re.match(r"\d\.\d{3} \(", meta[key].value) and "robust score nominal p" in meta[key].value
            assert "E-value" in meta[key].value
        assert "months at 12 months" in meta["rmst_difference_pfs_overlap"].value
        assert "outside the other group's range" in meta["propensity_overlap"].value
        assert meta["dagster/row_count"].value == 10  # OS / PFS x none, stabilized, truncated, overlap, multivariable
        figs = {m.asset_key: m for m in run.asset_materializations_for_node("beyond_figures")}
        assert set(figs) == FIGURES
        for key, m in figs.items():
            md = m.metadata["figure"].value
            assert md.startswith("![") and "](data:image/png;base64," in md
            png, svg = Path(m.metadata["png"].value), Path(m.metadata["svg"].value)
            # where that run wrote them: the reports folder beside its warehouse
            assert png.is_file() and svg.is_file() and png.parent == demo.folder / "wh" / "reports" / "figures"
            assert key.path[-1].split("_")[0] in png.name  # love, propensity, iptw
            assert m.metadata["extract_id"].value == last
        assert "Beyond the paper" in (settings.reports / "study_report.html").read_text()

        # the analysts' copy holds every beyond table as the warehouse does
        with duckdb.connect(str(settings.warehouse), read_only=True) as wh, \
                duckdb.connect(str(settings.analytics_copy), read_only=True) as copy:
            for t in BEYOND_TABLES:
                sql = f"SELECT * FROM analysis.{t} ORDER BY ALL"
                assert copy.execute(sql).fetchall() == wh.execute(sql).fetchall(), t
                assert copy.execute(f"SELECT DISTINCT extract_id FROM analysis.{t}").fetchall() == [(last,)]
            before = copy.execute("SELECT hr FROM analysis.iptw_effects ORDER BY ALL").fetchall()

        # no identifier in the run's logs or metadata
        keys = {k for (k,) in duckdb.connect(str(settings.warehouse), read_only=True).execute(
            "SELECT patient_key FROM staging.cohort").fetchall()}
        logs = instance.all_logs(run.run_id)
        blob = "\n".join([e.user_message or "" for e in logs] + [
            str(e.dagster_event.event_specific_data) for e in logs if e.dagster_event is not None
            and e.dagster_event.event_type_value in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")])
        assert not (set(re.findall(r"[0-9a-f]{16}", blob)) & keys)
        ids = identifiers(env / "inbox")
        for kind in ("patient_id", "patient_name", "birth_date"):
            assert not [v for v in ids[kind] if len(v) >= 6 and v in blob], kind

        # the check and what it blocks, run alone: on the stored tables it passes and they run ...
        clean = _check_and_downstream(instance)
        assert clean.success and _materialized(clean) >= {*FIGURES, REPORT, COPY}
        # ... a NaN and an infinite weight written into the tables fail it loudly, and stop them
        with duckdb.connect(str(settings.warehouse)) as con:
            con.execute("UPDATE analysis.iptw_effects SET hr = 'NaN'::DOUBLE WHERE weighting = 'stabilized'")
            con.execute("UPDATE analysis.iptw_weights SET weight_max = 'inf'::DOUBLE")
        bad = _check_and_downstream(instance)
        assert not bad.success
        failed = {c.asset_key.path[-1]: c for c in _checks(bad) if not c.passed}
        assert set(failed) == {"iptw_effects", "iptw_weights"}
        assert "hr: 2 NaN" in failed["iptw_effects"].description
        assert "weight_max: 0 NaN, 8 infinite" in failed["iptw_weights"].description
        assert not (_materialized(bad) & {*FIGURES, REPORT, COPY})
        with duckdb.connect(str(settings.analytics_copy), read_only=True) as copy:
            assert copy.execute("SELECT hr FROM analysis.iptw_effects ORDER BY ALL").fetchall() == before
        assert os.path.getsize(settings.analytics_copy) > 0
