"""`haic run` (what `make run` calls), end to end in a child process, honouring HAIC_* variables."""

import os
import re
import subprocess
import sys

import duckdb

from .conftest import table_counts


def _haic(*args, env):
    return subprocess.run([sys.executable, "-m", "haic_pipeline.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


STEP_LINE = re.compile(r"^  (\w+) +(\d+\.\d) s(  .*)?$")


def _step_lines(lines: list[tuple[float, str]]) -> dict[str, tuple[float, str]]:
    """The refresh's step lines (`  staging__labs  12.3 s`): step -> (time it arrived, line)."""
    start = next(i for i, (_, text) in enumerate(lines) if text.startswith("refreshing staging"))
    end = next(i for i, (_, text) in enumerate(lines) if text.startswith("drops landed now"))
    return {m.group(1): (t, text) for t, text in lines[start + 1:end] if (m := STEP_LINE.match(text))}


def test_run_writes_demo_drops_into_an_empty_inbox_then_a_second_run_changes_nothing(refreshed_demo, env):
    # the first run: `haic run` on an empty inbox, as run once for every test (refreshed.py)
    first = refreshed_demo
    code, lines, stdout = first.code, first.lines, first.stdout
    assert code == 0, stdout[-2000:] + first.stderr[-2000:]
    # each drop's landing with its seconds, then each refresh step as it ends, with its seconds
    assert "landing 6 new drop(s)" in stdout
    assert len(re.findall(r"^  \[\d/6\] \d{8}T\d{6}Z +\d+\.\d s$", stdout, re.M)) == 6, stdout
    steps = _step_lines(lines)
    assert {"staging__patients", "staging__labs", "labs_rules", "staging__cohort", "staging__endpoints",
            "analysis_survival", "reports__study_report", "analytics__analysts_copy"} <= set(steps), stdout
    assert not any("FAILED" in text for _, text in steps.values()), stdout
    # printed while the refresh ran, not all at the end
    summary_at = next(t for t, text in lines if text.startswith("refresh succeeded"))
    assert steps["staging__patients"][0] < steps["analytics__analysts_copy"][0] - 1.0 < summary_at
    drops = sorted(p.name for p in (first.folder / "inbox").iterdir() if (p / "manifest.json").exists())
    assert len(drops) == 6
    assert "drops landed now: 6, rejected now: 0" in stdout
    assert str(first.folder / "wh" / "haic.duckdb") in stdout

    # the rest on a copy of that warehouse, its inbox and run history, where this test's HAIC_* point
    environ = first.copy_into(env)
    assert environ["HAIC_WAREHOUSE"] == os.environ["HAIC_WAREHOUSE"]
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        staged = table_counts(con, "staging")
        raw = table_counts(con, "raw")
        log_rows = con.execute("SELECT count(*) FROM ops.load_log").fetchall()[0][0]
        included = con.execute("SELECT count(*) FROM staging.cohort WHERE included").fetchall()[0][0]
    assert all(n > 0 for n in staged.values()), staged
    assert included == 100

    status = _haic("status", env=environ)
    assert status.returncode == 0 and "no blocking data-quality check fails" in status.stdout
    assert sum(1 for line in status.stdout.splitlines() if " loaded " in f" {line} ") == 6

    second = _haic("run", env=environ)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "drops landed now: 0" in second.stdout
    assert "nothing new since the last successful refresh" in second.stdout
    assert not re.search(r"^  staging__\w+ +\d+\.\d s$", second.stdout, re.M)
    with duckdb.connect(os.environ["HAIC_WAREHOUSE"], read_only=True) as con:
        assert table_counts(con, "staging") == staged
        assert table_counts(con, "raw") == raw
        assert con.execute("SELECT count(*) FROM ops.load_log").fetchall()[0][0] == log_rows


def test_run_reports_a_rejected_drop_and_exits_non_zero(refreshed_demo, env):
    import json

    from .dropkit import patient, write_drop

    refreshed_demo.succeeded().copy_into(env)   # a live warehouse; a drop with a wrong checksum arrives
    folder = write_drop(env / "inbox", "20250101T020000Z", {"patients.csv": [patient("10000001")]})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["patients.csv"]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = _haic("run", "--no-demo", env=dict(os.environ))
    assert result.returncode == 1
    assert "REJECTED" in result.stdout and "sha256" in result.stdout
    assert "drops landed now: 0, rejected now: 1" in result.stdout
    assert "10000001" not in result.stdout + result.stderr
    assert (folder / "manifest.json").exists()


def test_run_shows_the_failed_blocking_check_and_the_steps_it_held_back(refreshed_blocked):
    # `haic run` on a clean drop and a delta with 10 of 20 ECOG values out of range (refreshed.py)
    code, lines, stdout = refreshed_blocked.code, refreshed_blocked.lines, refreshed_blocked.stdout
    assert code == 1, stdout[-2000:] + refreshed_blocked.stderr[-2000:]
    steps = _step_lines(lines)
    assert re.search(r" \d+\.\d s  FAILED, check failed: assessments_error_rules \(blocking\); `haic status`",
                     steps["assessments_rules"][1]), stdout
    assert STEP_LINE.match(steps["staging__assessments"][1]).group(3) is None
    held_back = stdout[stdout.index("not run, downstream of the failure"):stdout.index("drops landed now")]
    assert "staging__cohort" in held_back and "reports__study_report" in held_back
    assert "staging__cohort" not in steps
    assert "refresh FAILED" in stdout
