"""The analysis assets in real Dagster runs (execute_in_process) on a real DuckDB file: five demo
drops landed and refreshed by `haic run` (conftest.refreshed_five_of_six), the sixth landed as its
partition, refreshes with and without a new drop, the figure metadata shown in the UI, no identifiers in the logs, and a failed blocking
check upstream stopping the analysis."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from haic_pipeline.analysis import TABLES
from haic_pipeline.definitions import load
from haic_pipeline.defs.ingest.assets import DROPS
from haic_pipeline.defs.resources import resources_for
from haic_pipeline.settings import load_settings

from ..dropkit import patient, write_drop
from .conftest import identifiers

ANALYSIS_KEYS = [dg.AssetKey(["analysis", t]) for t in TABLES]
FIGURE_KEYS = [dg.AssetKey(["reports", n]) for n in
               ("km_os_figure", "km_pfs_figure", "forest_os_figure", "forest_pfs_figure")]
REPORT_KEY = dg.AssetKey(["reports", "study_report"])


def _ingest(instance, extract_id):
    if not instance.has_dynamic_partition(DROPS.name, extract_id):
        instance.add_dynamic_partitions(DROPS.name, [extract_id])
    return load().resolve_job_def("ingest_drop").execute_in_process(
        partition_key=extract_id, instance=instance, resources=resources_for(load_settings()))


def _refresh(instance, raise_on_error=True):
    return load().resolve_job_def("refresh").execute_in_process(
        instance=instance, resources=resources_for(load_settings()), raise_on_error=raise_on_error)


def _history(con):
    return con.execute("SELECT extract_id, count(*) FROM analysis.refresh_history GROUP BY 1 ORDER BY 1").fetchall()


def _materialized(result) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}


def test_demo_refreshes_fill_the_analysis_and_history_grows_per_new_drop(env, refreshed_five_of_six):
    five = refreshed_five_of_six.succeeded()
    five.copy_into(env)                   # five demo drops landed one partition at a time and refreshed
    folders = sorted(p for p in (five.folder / "all").iterdir() if p.is_dir())
    eids = [f.name for f in folders]
    reports = load_settings().reports
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        assert _history(con) == [(eids[4], 6)]
        assert con.execute("SELECT DISTINCT extract_id FROM analysis.km_summary").fetchall() == [(eids[4],)]
    with dg.DagsterInstance.ephemeral() as instance:

        shutil.copytree(folders[5], env / "inbox" / eids[5])
        assert _ingest(instance, eids[5]).success
        second = _refresh(instance)
        with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
            assert _history(con) == [(eids[4], 6), (eids[5], 6)]
            for table in TABLES:
                n = con.execute(f"SELECT count(*) FROM analysis.{table}").fetchall()[0][0]
                assert n > 0 or table == "cox_excluded", table
            keys = {k for (k,) in con.execute("SELECT patient_key FROM staging.cohort").fetchall()}
            n_os = con.execute("SELECT n FROM analysis.km_summary WHERE endpoint = 'OS' AND \"group\" = 'overall'").fetchall()[0][0]

        third = _refresh(instance)  # no new drop: every asset all the same, nothing added to the history
        assert third.success and _materialized(third) >= {*ANALYSIS_KEYS, *FIGURE_KEYS, REPORT_KEY}
        with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
            assert _history(con) == [(eids[4], 6), (eids[5], 6)]

        # what the UI shows: an inline picture and the file paths, and the provenance
        mats = {m.asset_key: m for m in second.asset_materializations_for_node("report_figures")}
        assert set(mats) == set(FIGURE_KEYS)
        for key, m in mats.items():
            md = m.metadata["figure"].value
            assert md.startswith("![") and "](data:image/png;base64," in md, key
            assert Path(m.metadata["png"].value).is_file() and Path(m.metadata["svg"].value).is_file()
            assert m.metadata["extract_id"].value == eids[5]
        survival = {m.asset_key: m for m in second.asset_materializations_for_node("analysis_survival")}
        km = survival[dg.AssetKey(["analysis", "km_summary"])].metadata
        assert km["median_os_first_line"].value.endswith(")")
        assert km["dagster/row_count"].value == 6 and re.fullmatch(r"<?\d\.\d{3}", km["nominal_p_logrank_os"].value)
        assert f"n = {n_os}" in km["median_os_overall"].value
        # the monitoring (study_spec §6): its state on the UI, its figure shown on its asset, the state of each
        # drop in the history, and its NaN check passed
        mon = {m.asset_key: m for m in second.asset_materializations_for_node("analysis_monitoring")}
        status_meta = mon[dg.AssetKey(["analysis", "monitoring_status"])].metadata
        assert status_meta["decision"].value == "continue"
        assert "nominal" in status_meta["nightly_logrank"].value and "planned events" in status_meta["information"].value
        fig = second.asset_materializations_for_node("monitoring_figures")[0]
        assert fig.asset_key == dg.AssetKey(["reports", "monitoring_figure"])
        assert fig.metadata["figure"].value.startswith("![") and fig.metadata["png"].value.endswith("monitor.png")
        checks = [e.event_specific_data for e in second.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                  and e.event_specific_data.asset_key.path[-1].startswith("monitoring_")]
        assert len(checks) == 3 and all(c.passed for c in checks)
        with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
            assert con.execute("SELECT extract_id, count(*) FROM analysis.refresh_history WHERE decision IS NOT NULL "
                               "GROUP BY 1 ORDER BY 1").fetchall() == [(eids[4], 6), (eids[5], 6)]
        hist_meta = third.asset_materializations_for_node("analysis__refresh_history")[0].metadata
        assert hist_meta["rows_added"].value == "0"
        # the software that computed them: on every analysis asset, and once per refresh in ops
        from haic_pipeline import provenance

        assert km["software"].value == provenance.describe()
        with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
            runs = {r for (r,) in con.execute("SELECT DISTINCT refresh FROM ops.software").fetchall()}
            # these two, and the `haic run` that refreshed the five drops
            assert {second.run_id, third.run_id} < runs and len(runs) == 3
        with duckdb.connect(str(load_settings().analytics_copy), read_only=True) as copy:
            assert dict(copy.execute("SELECT component, version FROM analysis.software").fetchall()) == \
                provenance.software()
        assert (reports / "study_report.html").is_file()
        for name in ("km_os", "km_pfs", "forest_os", "forest_pfs"):
            assert (reports / "figures" / f"{name}.png").is_file() and (reports / "figures" / f"{name}.svg").is_file()

        # no identifier in any log line or metadata of the runs
        ids = identifiers(env / "inbox")
        for run in (second, third):
            texts = [e.user_message or "" for e in instance.all_logs(run.run_id)]
            texts += [str(e.dagster_event.event_specific_data) for e in instance.all_logs(run.run_id)
                      if e.dagster_event is not None and e.dagster_event.event_type_value in
                      ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")]
            blob = "\n".join(texts)
            assert not (set(re.findall(r"[0-9a-f]{16}", blob)) & keys)
            for kind in ("patient_id", "patient_name", "birth_date"):
                assert not [v for v in ids[kind] if len(v) >= 6 and v in blob], kind


def _blocking_check_names() -> set[str]:
    names = set()
    for ad in load().resolve_asset_graph().assets_defs:
        for spec in ad.check_specs:
            if spec.blocking and spec.asset_key.path[0] not in ("analysis", "reports"):
                names.add(spec.name)
    return names


def test_a_failed_blocking_check_upstream_stops_the_analysis(env, monkeypatch):
    if not _blocking_check_names():
        pytest.skip("no blocking data-quality check is defined upstream of the analysis yet")
    if "drop_sequence" not in _blocking_check_names():
        pytest.skip("the blocking check this test triggers (drop_sequence: data_cutoff going backwards) "
                    f"is not defined; blocking checks: {sorted(_blocking_check_names())}")
    pid = "10000001"
    files = {
        "patients.csv": [patient(pid)],
        "treatments.csv": [{"patient_id": pid, "regimen": "HAIC_FP", "start_date": "2023-01-10",
                            "end_date": "2023-04-10", "cycles": "4"}],
        "vital_status.csv": [{"patient_id": pid, "last_contact_date": "2024-06-30"}],
    }
    write_drop(env / "inbox", "20240801T020000Z", files, data_cutoff="2024-07-31")
    with dg.DagsterInstance.ephemeral() as instance:
        assert _ingest(instance, "20240801T020000Z").success
        ok = _refresh(instance)
        assert dg.AssetKey(["analysis", "km_summary"]) in _materialized(ok)
        # a monitoring plan with an impossible value: the refresh stops at its first step, naming the key
        (env / "plan.yaml").write_text("milestones: [0.5, 0.25, 1.0]\n")
        monkeypatch.setenv("HAIC_STUDY_PLAN", str(env / "plan.yaml"))
        refused = _refresh(instance, raise_on_error=False)
        assert not refused.success and not _materialized(refused)
        failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
        assert "milestones must be strictly increasing" in str(failure.event_specific_data.error)
        monkeypatch.delenv("HAIC_STUDY_PLAN")
        # a later drop whose data_cutoff goes backwards: the blocking drop_sequence check fails
        write_drop(env / "inbox", "20240901T020000Z",
                   {"vital_status.csv": [{"patient_id": pid, "last_contact_date": "2024-05-31"}]},
                   data_cutoff="2024-05-31")
        assert _ingest(instance, "20240901T020000Z").success
        bad = _refresh(instance, raise_on_error=False)
        assert not bad.success
        failed_checks = [e for e in bad.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                         and not e.event_specific_data.passed]
        assert any(e.event_specific_data.check_name == "drop_sequence" for e in failed_checks)
        stopped = _materialized(bad)
        assert not (stopped & {*ANALYSIS_KEYS, *FIGURE_KEYS, REPORT_KEY}), stopped
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:  # previous results kept
        assert con.execute("SELECT DISTINCT extract_id FROM analysis.km_summary").fetchall() == [("20240801T020000Z",)]
