"""The synthetic extract's vocabulary: dates as day numbers, the code lists (valid codes first,
then the messy spellings the generator injects), the patients' kinds. Shared by the simulation
(`model.py`) and the messiness it adds (`messiness.py`)."""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd

from haic_pipeline.study.build import EXCLUSION_ORDER

DAY0 = _dt.date(1970, 1, 1)
MONTH_DAYS = 30.4375


def _d(s: str) -> int:
    return (_dt.date.fromisoformat(s) - DAY0).days


def day_to_date(day: int) -> _dt.date:
    return DAY0 + _dt.timedelta(days=int(day))


STUDY_START = _d("2022-03-01")
ACCRUAL_END = _d("2024-06-10")
FIRST_CUTOFF = _d("2022-09-30")
LAST_CUTOFF = _d("2024-07-31")
NEVER = 10**7  # a day far beyond any cutoff
MISSING = -(10**7)  # a missing date (negative days are real dates before 1970)

# ----------------------------------------------------------------------------- code lists
# Valid codes first, then the messy spellings the generator injects (kept in the same
# categorical so that the big tables stay numeric).
REGIMENS = ["HAIC_FP", "ATEZO_BEVA", "SORAFENIB", "LENVATINIB", "TACE", "OTHER", "RFA"]
(HAIC, AB, SORA, LENVA, TACE, OTHER_RX, RFA) = range(7)
STOPS = ["PD", "TOXICITY", "COMPLETED", "DEATH", "OTHER", "pd"]
(S_PD, S_TOX, S_COMP, S_DEATH, S_OTHER, S_PD_LOWER) = range(6)
SEXES = ["M", "F"]
ETIOLOGIES = ["HBV", "HCV", "ALCOHOL", "OTHER", "Hbv"]
CONSENTS = ["active", "withdrawn"]
ASCITES = ["none", "mild", "moderate_severe", "Mild", "severe"]
ENCEPH = ["none", "grade_1_2", "grade_3_4"]
YN = ["Y", "N"]
TESTS = ["AFP", "ALB", "TBIL", "INR", "PLT", "ALT", "AST", "CREA", "GGT", "ast"]
UNITS = ["ng/mL", "g/dL", "mg/dL", "ratio", "10^3/uL", "U/L", "umol/L", "g/L"]
TEST_UNIT = np.array([0, 1, 2, 3, 4, 5, 5, 2, 5, 5])
# value format: 0 '%.1f', 1 '%.2f', 2 '%d', 3 AFP ('%.1f' with censoring >60000 / <1.0)
TEST_FMT = np.array([3, 0, 1, 1, 2, 2, 2, 1, 2, 2], dtype=np.int8)
MODALITIES = ["CT", "MRI", "ct", "US"]
RESPONSES = ["CR", "PR", "SD", "PD", "NE", " PR ", "pd", "N/A"]
(R_CR, R_PR, R_SD, R_PD, R_NE, R_PR_SPACES, R_PD_LOWER, R_NA) = range(8)

# Exclusion kinds of the extra patients (study_spec section 1, the cohort's own order), in the
# order they cycle; a withdrawn patient is a kind of its own (KIND_WITHDRAWN).
EXCLUSION_KINDS = [k for k in EXCLUSION_ORDER if k != "consent_withdrawn"]
KIND_ELIGIBLE = 0
KIND_WITHDRAWN = 7  # 1..6 = EXCLUSION_KINDS


def categorical(codes, categories):
    """Integer codes as a pandas Categorical over `categories` (the big tables stay numeric)."""
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int16), categories=categories)
