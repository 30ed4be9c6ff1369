"""Group-sequential monitoring (study_spec §6) on the demo drops, in real DuckDB files: looks are
a function of the drop sequence (one refresh per drop and one refresh for the whole backlog give
the same looks), a retraction re-derives what follows it, the per-drop inputs are the staging
tables' own counts, the report speaks of nominal p-values and of significance only at a crossed
boundary, a bad plan is refused naming its key before anything is written, and nothing stored
is NaN."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from scipy.stats import norm

from haic_pipeline.analysis import build_figures, build_monitoring, build_report
from haic_pipeline.analysis.checks import finite_values
from haic_pipeline.cli.main import main
from haic_pipeline.contracts import load_contracts
from haic_pipeline.study import build_study
from haic_pipeline.study.plan import PlanError, load_plan, parse_plan
from haic_pipeline.warehouse import interventions
from haic_pipeline.warehouse.staging import build_staging

from ..dropkit import land

#: a plan whose milestones the 100-patient demo passes several times (its drops reach 42 deaths):
#: D = 40 deaths, milestones at 10, 20, 30 and 40
PLAN = parse_plan({"planned_events": 40}, "test plan")
MONITORING = ("monitoring_looks", "monitoring_status", "monitoring_boundaries")


def _looks(con) -> pd.DataFrame:
    return con.execute("SELECT * FROM analysis.monitoring_looks ORDER BY look").df()


def _inputs(con) -> pd.DataFrame:
    return con.execute("SELECT * EXCLUDE (derived_from) FROM ops.monitoring_inputs "
                       'ORDER BY extract_id, endpoint, "group"').df()


def _restage(con) -> None:
    contracts = load_contracts()
    for domain in ["patients"] + [d for d in contracts if d != "patients"]:
        build_staging(con, domain)
    build_study(con)


@pytest.fixture(scope="module")
def one_per_refresh(demo_folder, tmp_path_factory) -> Path:
    """A fresh warehouse that received the demo drops one per refresh (land, study, monitoring)."""
    folder = tmp_path_factory.mktemp("one_per_refresh")
    inbox = folder / "inbox"
    inbox.mkdir()
    with duckdb.connect(str(folder / "haic.duckdb")) as con:
        for drop in sorted(p for p in (demo_folder / "inbox").iterdir() if p.is_dir()):
            shutil.copytree(drop, inbox / drop.name)
            land(con, inbox)
            build_study(con)
            build_monitoring(con, PLAN)
    return folder / "haic.duckdb"


def test_one_refresh_per_drop_and_one_backlog_give_the_same_looks(one_per_refresh, demo_copy):
    backlog, _, _ = demo_copy          # all six drops landed and analysed in one refresh
    build_monitoring(backlog, PLAN)
    with duckdb.connect(str(one_per_refresh), read_only=True) as nightly:
        looks = _looks(nightly)
        pd.testing.assert_frame_equal(looks, _looks(backlog), check_exact=True)
        pd.testing.assert_frame_equal(_inputs(nightly), _inputs(backlog), check_exact=True)
        status = nightly.execute("SELECT * FROM analysis.monitoring_status").df()
        pd.testing.assert_frame_equal(status, backlog.execute("SELECT * FROM analysis.monitoring_status").df())
        # the nightly warehouse derived every drop from its live staging, the backlog replayed the earlier ones
        assert {h for (h,) in nightly.execute("SELECT DISTINCT derived_from FROM ops.monitoring_inputs").fetchall()} \
            == {"live"}
    how = dict(backlog.execute("SELECT extract_id, any_value(derived_from) FROM ops.monitoring_inputs "
                               "GROUP BY 1").fetchall())
    newest = max(how)
    assert how.pop(newest) == "live" and set(how.values()) == {"replay"} and len(how) == 5

    # the looks follow the §6.2 rule, restated: the first drop whose deaths reach each milestone
    # (the demo's deaths never decrease), one look per drop, up to the final look
    events = backlog.execute("SELECT extract_id, sum(events) FROM ops.monitoring_inputs WHERE endpoint = 'OS' "
                             "GROUP BY 1 ORDER BY 1").fetchall()
    assert [e for _, e in events] == sorted(e for _, e in events)
    expected = []
    for m in (10, 20, 30, 40):
        first = next(eid for eid, e in events if e >= m)
        if first not in expected:
            expected.append(first)
    assert looks["extract_id"].tolist() == expected and len(expected) >= 2
    assert looks["final"].tolist() == [False] * (len(expected) - 1) + [True]
    assert looks["look"].tolist() == list(range(1, len(expected) + 1))
    assert looks["information_fraction"].is_monotonic_increasing
    # each look's numbers: t = min(e / D, 1), nominal p from z, HR and repeated CI from the drop's Cox fit
    fits = backlog.execute("SELECT extract_id, any_value(log_hr), any_value(se_log_hr) FROM ops.monitoring_inputs "
                           "WHERE endpoint = 'OS' GROUP BY 1").fetchall()
    fit = {eid: (b, se) for eid, b, se in fits}
    for _, r in looks.iterrows():
        assert r["information_fraction"] == pytest.approx(min(r["events"] / 40, 1.0))
        assert r["nominal_p"] == pytest.approx(2 * norm.sf(abs(r["z"])), rel=1e-12)
        assert r["crossed"] == (abs(r["z"]) >= r["critical_z"])
        b, se = fit[r["extract_id"]]
        assert r["hr"] == pytest.approx(math.exp(b), rel=1e-12)
        assert r["rci_lower"] == pytest.approx(math.exp(b - r["critical_z"] * se), rel=1e-12)
        assert r["rci_upper"] == pytest.approx(math.exp(b + r["critical_z"] * se), rel=1e-12)
    # boundaries: later looks spend more alpha, and the final look has spent all of it
    assert looks["cumulative_alpha"].is_monotonic_increasing
    assert looks["cumulative_alpha"].iloc[-1] == pytest.approx(PLAN.alpha, abs=1e-9)


def test_a_retraction_rederives_the_drops_after_it_and_a_restore_gives_the_looks_back(demo_copy):
    con, _, _ = demo_copy
    build_monitoring(con, PLAN)
    before_looks, before_inputs = _looks(con), _inputs(con)
    drops = sorted(before_inputs["extract_id"].unique())
    third = drops[2]
    interventions.retract(con, third, "wrong extraction window")
    _restage(con)
    build_monitoring(con, PLAN)
    after = _inputs(con)
    assert third not in set(after["extract_id"])
    kept = before_inputs[before_inputs["extract_id"] < third]
    pd.testing.assert_frame_equal(after[after["extract_id"] < third].reset_index(drop=True),
                                  kept.reset_index(drop=True))
    later = after[after["extract_id"] > third]
    assert set(later["drops_key"]).isdisjoint(set(before_inputs["drops_key"]))   # derived again
    assert third not in set(_looks(con)["extract_id"])
    interventions.restore(con, third, "extraction window checked")
    _restage(con)
    build_monitoring(con, PLAN)
    pd.testing.assert_frame_equal(_inputs(con), before_inputs, check_exact=True)
    pd.testing.assert_frame_equal(_looks(con), before_looks, check_exact=True)


def test_the_drop_inputs_are_the_staging_tables_own_counts(demo):
    con, _, _ = demo
    newest = con.execute("SELECT max(extract_id) FROM ops.monitoring_inputs").fetchall()[0][0]
    got = con.execute("""SELECT endpoint, "group", n, events, follow_up_months, without_event, accrued_12m
                         FROM ops.monitoring_inputs WHERE extract_id = ? ORDER BY 1, 2""", [newest]).fetchall()
    expected = con.execute("""
        WITH c AS (SELECT patient_key, "group", index_date, data_cutoff FROM staging.cohort WHERE included),
        acc AS (SELECT "group", count(*) FILTER (WHERE index_date >= data_cutoff - 365 AND index_date <= data_cutoff)
                AS accrued FROM c GROUP BY 1),
        long AS (SELECT "group", 'OS' AS endpoint, os_months AS t, os_event AS e FROM staging.endpoints
                 UNION ALL SELECT "group", 'PFS', pfs_months, pfs_event FROM staging.endpoints)
        SELECT l.endpoint, l."group", count(*), sum(e), sum(t), count(*) - sum(e), any_value(acc.accrued)
        FROM long l JOIN acc USING ("group") WHERE t >= 0 GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
    assert len(got) == 4
    for g, x in zip(got, expected):
        assert g[:4] == x[:4] and g[5:] == x[5:]
        assert g[4] == pytest.approx(x[4], rel=1e-12)
    status = con.execute("SELECT extract_id, events FROM analysis.monitoring_status").fetchall()
    assert status == [(newest, sum(r[3] for r in got if r[0] == "OS"))]


def test_report_says_nominal_shows_the_monitoring_and_significant_only_at_a_crossing(demo, demo_copy, tmp_path):
    con, reports, _ = demo
    md = (reports / "study_report.md").read_text()
    html = (reports / "study_report.html").read_text()
    results = md.split("\n## ", 1)[1]
    assert results.startswith("Monitoring: where the study stands")
    paragraph = results.split("\n\n")[1]
    assert paragraph.startswith("Monitoring of OS") and "formal look" in paragraph and "nominal p" in paragraph
    status = con.execute("SELECT events, planned_events, decision FROM analysis.monitoring_status").fetchall()[0]
    assert f"{status[0]} of the {status[1]} planned deaths" in paragraph and status[2] == "continue"
    assert "conditional power" in paragraph and "is expected in about" in paragraph
    assert "figures/monitor.png" in md and 'alt="Figure M.' in html
    # every p-value a refresh printed is labelled nominal (the Cox selection rule "univariable p < 0.1" is no p-value)
    bare = [m.group(0) for m in re.finditer(r"(?<!nominal )(?<!Nominal )\bp\s?(=|<|\u2265)\s?[0-9]", md)
            if "univariable p < 0.1" not in md[m.start() - 12:m.end() + 3]]
    assert not bare, bare
    assert "Nominal p" in md
    assert "significan" not in md.lower() and "significan" not in html.lower()   # no look crossed

    # a plan whose final look crosses (alpha 0.5): the report names it statistically significant
    copy, _, _ = demo_copy
    shutil.copytree(reports, tmp_path / "reports")
    res = build_monitoring(copy, parse_plan({"planned_events": 40, "alpha": 0.5}, "test plan"))
    decision = copy.execute("SELECT decision FROM analysis.monitoring_status").fetchall()[0][0]
    assert decision.startswith("boundary crossed at look"), decision
    assert "crossed: statistically significant" in res.headline["looks"]
    build_figures(copy, tmp_path / "reports", ("monitor",))
    build_report(copy, tmp_path / "reports")
    crossed = (tmp_path / "reports" / "study_report.md").read_text()
    assert "the difference is statistically significant at the study's overall two-sided" in crossed


def test_monitoring_figure_draws_looks_boundaries_and_nightly_z(demo_copy, tmp_path):
    from haic_pipeline.analysis import render_figure
    from haic_pipeline.analysis.figures import figure_texts

    con, _, _ = demo_copy
    build_monitoring(con, PLAN)
    fig = render_figure(con, "monitor")
    texts = "\n".join(figure_texts(fig))
    n_looks = con.execute("SELECT count(*) FROM analysis.monitoring_looks").fetchall()[0][0]
    assert all(f"look {k}" in texts for k in range(1, n_looks + 1))
    assert "Nightly z (nominal)" in texts and "Boundary at the looks taken" in texts
    assert "nominal 5%" in texts and "Data: computed from 6 drops" in texts
    saved = build_figures(con, tmp_path, ("monitor",))["monitor"]
    assert saved.png.name == "monitor.png" and saved.png.stat().st_size > 10_000


def test_a_bad_plan_is_refused_naming_the_key(tmp_path):
    cases = {
        "alpha": ({"alpha": 1.2}, "alpha must lie in (0, 1)"),
        "power": ({"power": 0}, "power must lie in (0, 1)"),
        "design_hazard_ratio": ({"design_hazard_ratio": 1}, "design_hazard_ratio must be > 0 and not 1"),
        "negative hr": ({"design_hazard_ratio": -0.5}, "design_hazard_ratio must be > 0"),
        "milestones": ({"milestones": [0.5, 0.25, 1.0]}, "milestones must be strictly increasing"),
        "milestones end": ({"milestones": [0.25, 0.5]}, "milestones must end at 1"),
        "spending": ({"spending": "haybittle"}, "spending must be one of obf, pocock"),
        "endpoint": ({"endpoint": "ORR"}, "endpoint must be one of OS, PFS"),
        "allocation_ratio": ({"allocation_ratio": "35/0"}, "allocation_ratio must be a number"),
        "planned_events": ({"planned_events": 12.5}, "planned_events must be a whole number"),
        "unknown": ({"alpah": 0.05}, "unknown key(s) alpah"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(PlanError, match=re.escape(message)):
            parse_plan(data, "plan.yaml")
    assert parse_plan({"allocation_ratio": "35/65"}).allocation_ratio == pytest.approx(35 / 65)
    assert parse_plan({"allocation_ratio": 0.5}).allocation_ratio == 0.5
    bad = tmp_path / "plan.yaml"
    bad.write_text("alpha: [0.05\n")
    with pytest.raises(PlanError, match=re.escape(f"{bad}: not valid YAML at line")):
        load_plan(bad)
    with pytest.raises(PlanError, match="cannot be read"):
        load_plan(tmp_path / "missing.yaml")
    assert load_plan().source.endswith("study/monitoring_plan.yaml")   # the committed plan parses


def test_a_bad_plan_stops_haic_run_and_the_monitoring_before_anything_is_written(env, demo_copy, monkeypatch,
                                                                                   capsys):
    plan = env / "plan.yaml"
    plan.write_text("endpoint: OS\nalpha: 0.05\ndesign_hazard_ratio: 1.0\n")
    monkeypatch.setenv("HAIC_STUDY_PLAN", str(plan))
    (env / "wh").rmdir()
    assert main(["run", "--no-demo"]) == 2
    err = capsys.readouterr().err
    assert f"{plan}: design_hazard_ratio must be > 0 and not 1" in err
    assert not (env / "wh").exists()                      # nothing written, not even the warehouse folder
    con, _, _ = demo_copy
    before = {t: con.execute(f"SELECT * FROM analysis.{t}").df() for t in MONITORING}
    inputs = con.execute("SELECT count(*) FROM ops.monitoring_inputs").fetchall()
    with pytest.raises(PlanError, match="design_hazard_ratio"):
        build_monitoring(con)
    for t, df in before.items():
        pd.testing.assert_frame_equal(con.execute(f"SELECT * FROM analysis.{t}").df(), df)
    assert con.execute("SELECT count(*) FROM ops.monitoring_inputs").fetchall() == inputs


def test_monitoring_tables_store_no_nan_and_carry_their_drop(demo, one_per_refresh):
    con, _, _ = demo
    with duckdb.connect(str(one_per_refresh), read_only=True) as nightly:
        for c in (con, nightly):
            assert finite_values(c, (*MONITORING, "refresh_history")) == {t: [] for t in (*MONITORING,
                                                                                          "refresh_history")}
            for t in MONITORING:
                missing = c.execute(f"SELECT count(*) FROM analysis.{t} WHERE data_cutoff IS NULL OR extract_id IS NULL"
                                    ).fetchall()[0][0]
                assert missing == 0, t
    # the history rows carry the monitoring state of their drop; NULL numbers come with a note
    hist = con.execute("SELECT DISTINCT extract_id, monitoring_events, z, decision FROM analysis.refresh_history"
                       ).fetchall()
    status = con.execute("SELECT extract_id, events, z, decision FROM analysis.monitoring_status").fetchall()
    assert status[0] in hist
    nulls = con.execute("SELECT count(*) FROM analysis.monitoring_status WHERE (boundary_now IS NULL OR "
                        "conditional_power IS NULL OR months_to_next_milestone IS NULL) AND note IS NULL").fetchall()
    assert nulls == [(0,)]
