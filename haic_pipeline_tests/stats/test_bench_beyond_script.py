"""Smoke test of benchmarks/bench_beyond.py at a small size (the timing itself is not tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_beyond.py"


def test_bench_beyond_runs_and_prints_each_part():
    out = subprocess.run([sys.executable, str(SCRIPT), "--patients", "3000", "--repeat", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("propensity", "weighted KM", "weighted Cox", "RMST", "PH tests", "weighted PH tests",
                 "total (beyond_tables)"):
        assert name in out.stdout
    assert "patients 3,000" in out.stdout and "Cox models tested" in out.stdout
