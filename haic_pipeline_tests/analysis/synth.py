"""A synthetic analysis frame (the columns load_study_data returns), for tests of edge cases
and of speed without building a warehouse."""

from __future__ import annotations

import numpy as np
import pandas as pd


def analysis_frame(n: int = 200, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(n) < 0.35, "post_ate_beva", "first_line")
    ecog = rng.choice([0, 1, 2, 3], size=n, p=[0.5, 0.38, 0.1, 0.02])
    hazard = 0.08 * np.where(group == "post_ate_beva", 0.6, 1.0) * np.where(ecog == 0, 0.5, 1.0)
    os_t = rng.exponential(1 / hazard)
    cens = rng.uniform(1, 30, n)
    pfs_t = np.minimum(os_t, rng.exponential(1 / (2.5 * hazard)))
    best = rng.choice(["CR", "PR", "SD", "PD", "NE"], size=n, p=[0.02, 0.25, 0.45, 0.26, 0.02])
    frame = pd.DataFrame({
        "group": group,
        "age": rng.integers(30, 90, n).astype(float),
        "sex": rng.choice(["M", "F"], size=n, p=[0.8, 0.2]),
        "etiology": rng.choice(["HBV", "HCV", "ALCOHOL", "OTHER"], size=n, p=[0.65, 0.12, 0.14, 0.09]),
        "ecog": ecog.astype(float),
        "child_pugh_class": rng.choice(["A", "B"], size=n, p=[0.9, 0.1]),
        "bclc_stage": rng.choice(["A", "B", "C", "D"], size=n, p=[0.03, 0.14, 0.8, 0.03]),
        "afp_ge_400": rng.random(n) < 0.43,
        "multiple_tumors": rng.random(n) < 0.66,
        "tumor_size_gt_10": rng.random(n) < 0.27,
        "portal_vein_invasion": rng.random(n) < 0.54,
        "extrahepatic_metastasis": rng.random(n) < 0.31,
        # times on a day grid, in months, as staging.endpoints
        "os_months": np.round(np.minimum(os_t, cens) * 30.4375) / 30.4375,
        "os_event": (os_t <= cens).astype(float),
        "pfs_months": np.round(np.minimum(pfs_t, cens) * 30.4375) / 30.4375,
        "pfs_event": (pfs_t <= cens).astype(float),
        "best_response": best,
        "objective_response": np.isin(best, ["CR", "PR"]),
        "disease_control": np.isin(best, ["CR", "PR", "SD"]),
    })
    for c in ("afp_ge_400", "multiple_tumors", "tumor_size_gt_10", "portal_vein_invasion",
              "extrahepatic_metastasis"):
        frame[c] = frame[c].astype(object)
    return frame
