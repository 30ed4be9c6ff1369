"""Benchmark: kaplan_meier + logrank + a 12-covariate cox_regression on 1,000,000 rows.

Usage:  python benchmarks/bench_stats.py [--rows 1000000] [--seed 1] [--r]

Prints the wall time of each call and the total. The targets: under 10 s for
the three together on the 2-core reference machine, and at most half of R ``survival``'s
time for ``survfit`` + ``survdiff`` + ``coxph`` on the same data (about 8 s measured there).
R is optional: with ``--r`` and ``Rscript`` on PATH (and the ``survival`` package) the same
three calls are timed in R on the same data; otherwise the ~8 s reference is quoted.
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from haic_pipeline.stats import cox_regression, kaplan_meier, logrank

R_REFERENCE_SECONDS = 8.0


def make_data(rows: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Study-like data: 12 covariates (10 binary, 2 continuous), a two-level group,
    exponential survival times in months rounded to days (ties), ~30% censoring."""
    rng = np.random.default_rng(seed)
    covs = [f"x{i:02d}" for i in range(1, 13)]
    frame = pd.DataFrame({c: rng.integers(0, 2, rows).astype(float) for c in covs[:10]})
    frame[covs[10]] = rng.normal(65, 10, rows)
    frame[covs[11]] = rng.normal(0, 1, rows)
    beta = np.array([0.4, -0.3, 0.2, 0.1, -0.1, 0.25, 0.0, 0.15, -0.2, 0.05, 0.01, 0.3])
    lin = frame[covs].to_numpy() @ beta
    t_event = rng.exponential(12.0 * np.exp(-(lin - lin.mean())))
    t_cens = rng.uniform(0, 40, rows)
    days = np.round(np.minimum(t_event, t_cens) * 30.4375)
    frame["time"] = days / 30.4375
    frame["event"] = (t_event <= t_cens).astype(float)
    frame["group"] = np.where(frame["x01"] == 1, "post_ate_beva", "first_line")
    return frame, covs


def time_python(frame: pd.DataFrame, covs: list[str]) -> tuple[dict[str, float], pd.DataFrame]:
    out = {}
    t0 = time.perf_counter()
    km = kaplan_meier(frame["time"], frame["event"])
    out["kaplan_meier"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lr = logrank(frame["time"], frame["event"], frame["group"])
    out["logrank"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cox = cox_regression(frame, "time", "event", covs)
    out["cox_regression"] = time.perf_counter() - t0
    print(f"  KM median {km.median:.4f}  log-rank chi2 {lr.statistic:.2f}  "
          f"cox iterations {cox.attrs['iterations']}  loglik {cox.attrs['loglik']:.3f}")
    return out, cox


R_SCRIPT = r"""
suppressMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
covs <- sprintf("x%02d", 1:12)
f <- as.formula(paste("Surv(time, event) ~", paste(covs, collapse = " + ")))
t0 <- proc.time()[["elapsed"]]
km <- survfit(Surv(time, event) ~ 1, data = d)
t1 <- proc.time()[["elapsed"]]
lr <- survdiff(Surv(time, event) ~ group, data = d)
t2 <- proc.time()[["elapsed"]]
cx <- coxph(f, data = d, ties = "efron")
t3 <- proc.time()[["elapsed"]]
cat(sprintf("%.3f %.3f %.3f %.6f\n", t1 - t0, t2 - t1, t3 - t2, cx$loglik[2]))
cat(sprintf("%.15g", coef(cx)), "\n")
"""


def time_r(frame: pd.DataFrame, cox: pd.DataFrame) -> dict[str, float] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "bench.csv")
        script = os.path.join(tmp, "bench.R")
        frame.to_csv(csv, index=False)
        with open(script, "w") as fh:
            fh.write(R_SCRIPT)
        res = subprocess.run([rscript, script, csv], capture_output=True, text=True)
    if res.returncode != 0:
        print("  R failed:", res.stderr.strip()[-500:])
        return None
    lines = res.stdout.strip().splitlines()
    km, lr, cx, ll = lines[0].split()
    r_coef = np.array([float(v) for v in lines[1].split()])
    rel = np.max(np.abs(cox["coef"].to_numpy() / r_coef - 1))
    print(f"  R coxph loglik {float(ll):.3f}; max relative coefficient difference "
          f"Python vs R {rel:.1e}")
    return {"kaplan_meier": float(km), "logrank": float(lr), "cox_regression": float(cx)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--r", action="store_true", help="also time R (needs Rscript + survival)")
    args = ap.parse_args(argv)

    frame, covs = make_data(args.rows, args.seed)
    print(f"rows {len(frame):,}, covariates {len(covs)}, events {int(frame['event'].sum()):,}, "
          f"distinct times {frame['time'].nunique():,}")
    print("Python (haic_pipeline.stats):")
    py, cox = time_python(frame, covs)
    total = sum(py.values())
    for k, v in py.items():
        print(f"  {k:<16s} {v:7.3f} s")
    print(f"  {'total':<16s} {total:7.3f} s   (target < 10 s)")

    r = time_r(frame, cox) if args.r else None
    if r is None:
        r_total = R_REFERENCE_SECONDS
        print(f"R survival: not run here; reference ~{R_REFERENCE_SECONDS:.0f} s on the target machine"
              + ("" if args.r else " (use --r with Rscript on PATH to measure)"))
    else:
        r_total = sum(r.values())
        print("R survival (survfit, survdiff, coxph):")
        for k, v in r.items():
            print(f"  {k:<16s} {v:7.3f} s")
        print(f"  {'total':<16s} {r_total:7.3f} s")
    ratio = total / r_total
    print(f"ratio Python / R = {ratio:.2f}  (target <= 0.50)")
    ok = total < 10 and ratio <= 0.5
    print("PASS" if ok else "OVER TARGET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
