"""Benchmark: the "beyond the paper" step (haic_pipeline.analysis.beyond) on a synthetic cohort.

Usage:  .venv/bin/python benchmarks/bench_beyond.py [--patients 100000] [--seed 11] [--repeat 3]

Builds an analysis frame of the shape data.load_study_data returns (the columns beyond.py and
analysis.data.cox_terms read; times on a day grid in months, a few missing covariates), fits
the §3 Cox models once (analysis.cox_models: another step of the refresh, not timed), then
times each part of beyond_tables -- propensity (the ATE and ATO fits, weights, balance,
positivity), KM, Cox, RMST (every weighting), PH tests of the §3 models and of the weighted fits
-- and beyond_tables as a whole. Prints the best of ``--repeat`` runs
per part, wall and CPU seconds (CPU time, summed over threads, varies less on a shared
machine). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from haic_pipeline.analysis import beyond as B
from haic_pipeline.analysis import tables as T
from haic_pipeline.analysis.data import cox_terms


def make_frame(n: int, seed: int, missing: float) -> pd.DataFrame:
    """Study-like patients (the mixes and hazard ratios of haic_pipeline.synthetic): Weibull
    OS and PFS acting on group, ECOG, Child-Pugh, tumour size, extrahepatic metastasis,
    portal vein invasion, AFP and BCLC stage, with age and tumour count differing by group, so
    at this size ten terms enter each multivariable model; times in months rounded to days
    (tied times), loss to follow-up and administrative censoring; a share ``missing`` of AFP,
    ECOG and tumour size missing."""
    rng = np.random.default_rng(seed)
    post = rng.random(n) < 0.34
    age = np.where(post, rng.normal(62, 13.5, n), rng.normal(66, 11, n)).round()
    ecog = rng.choice([0, 1, 2, 3], size=n, p=[0.47, 0.45, 0.07, 0.01]).astype(float)
    cp_b = rng.random(n) < 0.12
    size10, ehm, pvi = rng.random(n) < 0.27, rng.random(n) < 0.30, rng.random(n) < 0.52
    afp, bclc = rng.random(n) < 0.43, rng.choice(["A", "B", "C", "D"], size=n, p=[0.03, 0.14, 0.8, 0.03])
    late = np.isin(bclc, ["C", "D"])
    frailty = rng.normal(0, 0.35, n)
    lp_os = (np.log(0.5) * post + np.log(0.3) * (ecog == 0) + np.log(1.6) * (ecog >= 2)
             + np.log(1.7) * size10 + np.log(1.8) * cp_b + np.log(1.25) * ehm + np.log(1.3) * pvi
             + np.log(1.1) * afp + np.log(1.15) * late + frailty)
    lp_pfs = (np.log(0.3) * post + np.log(0.45) * (ecog == 0) + np.log(1.9) * ehm + np.log(1.4) * cp_b
              + np.log(1.2) * pvi + np.log(1.1) * afp + np.log(1.15) * late + frailty)
    os_t = 9.2 * (rng.exponential(size=n) / np.exp(lp_os)) ** (1 / 1.2)
    pfs_t = np.minimum(os_t, 4.8 * rng.exponential(size=n) / np.exp(lp_pfs))
    cens = np.minimum(rng.uniform(1, 30, n), 2 + rng.exponential(10 / np.log(2), n))
    frame = pd.DataFrame({
        "group": np.where(post, "post_ate_beva", "first_line"),
        "age": age,
        "sex": rng.choice(["M", "F"], size=n, p=[0.85, 0.15]),
        "etiology": rng.choice(["HBV", "HCV", "ALCOHOL", "OTHER"], size=n, p=[0.68, 0.08, 0.15, 0.09]),
        "ecog": ecog,
        "child_pugh_class": np.where(cp_b, "B", "A"),
        "bclc_stage": bclc,
        "os_months": np.round(np.minimum(os_t, cens) * 30.4375) / 30.4375,
        "os_event": (os_t <= cens).astype(float),
        "pfs_months": np.round(np.minimum(pfs_t, cens) * 30.4375) / 30.4375,
        "pfs_event": (pfs_t <= cens).astype(float),
    })
    for c, v in (("afp_ge_400", afp), ("multiple_tumors", rng.random(n) < np.where(post, 0.8, 0.58)),
                 ("tumor_size_gt_10", size10), ("portal_vein_invasion", pvi), ("extrahepatic_metastasis", ehm)):
        frame[c] = pd.Series(v, dtype=object)
    for c in ("afp_ge_400", "ecog", "tumor_size_gt_10"):
        frame.loc[rng.random(n) < missing, c] = None
    return frame


def _best(fn, repeat: int) -> tuple[tuple[float, float], object]:
    """(wall, CPU) seconds of the fastest of ``repeat`` calls, and the result."""
    best, out = (float("inf"), float("inf")), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--missing", type=float, default=0.02, help="share missing of AFP, ECOG, tumour size")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    frame = make_frame(args.patients, args.seed, args.missing)
    models = T.cox_tables(frame).cox_models
    terms = cox_terms(frame)
    covariates, _ = B.propensity_covariates(terms)

    def propensity():
        w = B.iptw_weights(terms, covariates)
        B.balance_rows(terms, covariates, w)
        B.propensity_overlap_rows(terms, w)
        return w

    seconds = {}
    seconds["propensity (ATE + ATO fits, weights, balance, overlap)"], w = _best(propensity, args.repeat)
    seconds["weighted KM"], _ = _best(lambda: B.iptw_km_rows(terms, w), args.repeat)
    seconds["weighted Cox"], effects = _best(lambda: B.iptw_effect_rows(terms, w, models), args.repeat)
    seconds["RMST"], _ = _best(lambda: B.rmst_rows(terms, w), args.repeat)
    seconds["PH tests"], ph = _best(lambda: B.ph_rows(terms, models), args.repeat)
    seconds["weighted PH tests"], _ = _best(lambda: B.weighted_ph_rows(terms, w, effects), args.repeat)
    seconds["total (beyond_tables)"], _ = _best(lambda: B.beyond_tables(frame, models), args.repeat)
    n_models = len(ph.drop_duplicates(["endpoint", "model", "model_terms"]))
    print(f"patients {args.patients:,}, propensity covariates {len(covariates)}, Cox models tested {n_models}, "
          f"best of {args.repeat}")
    print(f"{'':56s} {'wall s':>7s} {'CPU s':>7s}")
    for name, (wall, cpu) in seconds.items():
        print(f"{name:56s} {wall:7.2f} {cpu:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
