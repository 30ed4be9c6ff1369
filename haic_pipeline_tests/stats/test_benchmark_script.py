"""Smoke test of benchmarks/bench_stats.py at a small size (the timing itself is not tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_stats.py"


def test_benchmark_script_runs_and_prints_timings():
    out = subprocess.run([sys.executable, str(SCRIPT), "--rows", "5000"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("kaplan_meier", "logrank", "cox_regression", "total", "ratio Python / R"):
        assert name in out.stdout
    assert "rows 5,000, covariates 12" in out.stdout
