"""Synthetic EMR extract drops for the HAIC study (the demo / test data source).

Writes what the hospital warehouse would deliver (``/work/shared/specs/extract_spec.md``):
one folder per drop, ``OUTDIR/<extract_id>/`` (``20221001T020000Z`` ...), with the six
domain CSVs and ``manifest.json`` written last (data rows, sha256 of the bytes on disk,
``encoding``, ``extract_id``, ``extracted_at``, ``data_cutoff``, ``source_system``)::

    python -m haic_pipeline.synthetic OUTDIR --patients 100 --drops 6 --seed 1
    write_drops(outdir, patients=100, drops=6, seed=1) -> list[Path]   # oldest first

Output is deterministic for a given (patients, drops, seed).

Drops
-----
Data cutoffs are month ends spread from 2022-09-30 to 2024-07-31 (the last drop's cutoff is
always 2024-07-31); ``extract_id`` is the next day at 02:00Z. Drops are deltas: the first holds
everything registered so far (patients diagnosed from 2021 on), each later one only rows new or
changed since the previous drop: new patients, visits, labs and scans; a vital_status row
whenever last_contact_date moves on or a death is recorded; treatment rows re-sent when
cycles grow or end_date/stop_reason are filled in; and corrections of earlier rows (same
natural key, newer drop wins): lab values entered x10, an ECOG, a preliminary ``NE`` scan read,
a birth_date 10 years off.

With the default 6 drops (``drop_plan(6)``; indices 0-5, oldest first):

0. ``20221001T020000Z`` (cutoff 2022-09-30) first extract, utf-8; orphan labs, imaging and
   vital_status rows (a patient_id never in any patients.csv).
1. ``20230201T020000Z`` (2023-01-31) **cp949** (``CP949_DROP_INDEX``; Korean names in
   patients.csv); imaging.csv present with **zero data rows** (its scans come in drop 2).
2. ``20230701T020000Z`` (2023-06-30) **column order reversed** in every file; rows of one
   patient whose patients.csv row only arrives in drop 3; a vital_status row with a **death
   before HAIC start** (corrected in drop 3).
3. ``20231101T020000Z`` (2023-10-31) **imaging.csv absent** (= no changes; its scans come in
   drop 4); assessments.csv has an **extra unlisted column** ``recorded_by``; orphan
   treatments and assessments rows (a second unknown patient_id).
4. ``20240401T020000Z`` (2024-03-31) utf-8 with a **byte-order mark** on every file
   (``BOM_DROP_INDEX``); one patient's consent_status becomes ``withdrawn``.
5. ``20240801T020000Z`` (2024-07-31) last drop; a planned HAIC_FP course starting after the
   cutoff (index_after_cutoff) and a lab dated ten years in the future.

Spread over the drops, a few rows each: TBIL in ``umol/L`` and ALB in ``g/L`` (0.5% of those
tests); AFP censored as ``>60000`` / ``<1.0`` (from the AFP distribution's tails); exact
duplicate rows in labs, assessments, imaging, treatments and vital_status; codes in another
case (``Hbv``, ``pd`` as stop_reason and as response, ``ct``, ``Mild``, ``ast``) or with
spaces (`` PR ``); codes outside the lists (regimen ``RFA``, modality ``US`` with response
``N/A``, ascites ``severe``, test_code ``GGT``: extra rows the study does not need); a prior
TACE with end_date before start_date. Every injected row is listed in
``simulate(...).notes``. With fewer drops some drop-level features are left out
(``drop_plan`` gives None); all are present from 6 drops.

Cohort and calibration (paper_summary.md)
-----------------------------------------
``patients`` = study-eligible patients by the last drop: first HAIC_FP course between
2022-03-01 and 2024-06-10 (accrual rising over time), adult, with a vital_status row. 34%
(``round(0.34 N)``) are post atezolizumab-bevacizumab (an ATEZO_BEVA course stopped for PD
10-35 days before HAIC), the rest first-line; 30% of both had a prior TACE. Added on top:
``max(6, round(0.06 N))`` patients each meeting one exclusion of study_spec section 1, cycling
no_haic, index_before_study_start, index_after_cutoff, age_under_18, prior_other_systemic
(sorafenib, or atezo-bev stopped for toxicity), no_follow_up; plus one patient whose consent
is withdrawn in a later drop. Demographics: age ~N(66, 11) first-line, ~N(62, 13.5) post-AB;
85% male; HBV 68%; ECOG 0/1/2/3 = 47/45/7/1%; Child-Pugh mostly A (from a latent liver
score driving bilirubin, albumin, INR, ascites); baseline visit and all 8 labs 0-14 days
before index (for ~1.5% INR only 31-40 days before, i.e. missing), ~10% with an earlier
in-window visit with another ECOG. Visits every 2-4 weeks with all 8 labs; scans every 6-9
weeks after index until progression (+ one after PD for 30%), about 3% read NE.
Survival is drawn from Weibull proportional-hazards models with a shared frailty: OS (shape
1.2) with HR 0.5 post-AB, 0.3 ECOG 0, 1.6 ECOG >= 2, 1.7 tumour > 10 cm, 1.8 Child-Pugh B/C;
progression (shape 1.0) with HR 0.3 post-AB, 0.45 ECOG 0, 1.9 extrahepatic metastasis, 0.6
for responders (45% first-line / 60% post-AB of patients respond, PR from the first or second
scan, 4% of responders reach CR); loss to follow-up 2 months + exponential (median 10
months). At large N this gives median OS about 7 vs 13 months, PFS about 3 vs 7, best response
PD ~35% first-line vs ~14% post-AB, and ~45% deaths by the last cutoff; 100 patients vary
around that by chance. Nothing of the paper's results is hard-coded.

Scale: 100,000 patients give ~10 million lab rows over 6 drops in well under a minute
(numpy throughout, CSVs written by DuckDB COPY); see ``benchmarks/bench_synthetic.py``.
"""

from __future__ import annotations

from pathlib import Path

from .model import drop_cutoffs, drop_plan, extract_id_for, simulate
from .writer import DOMAINS, write_extract

#: Index (0-based, oldest first) of the cp949-encoded drop in the default 6-drop set.
CP949_DROP_INDEX = 1
#: Index of the UTF-8 drop whose files start with a byte-order mark (default 6-drop set).
BOM_DROP_INDEX = 4

__all__ = [
    "BOM_DROP_INDEX", "CP949_DROP_INDEX", "DOMAINS", "drop_cutoffs", "drop_encodings",
    "drop_plan", "extract_id_for", "simulate", "write_drops", "write_extract",
]


def drop_encodings(drops: int = 6) -> list[tuple[str, str, bool]]:
    """``(extract_id, manifest encoding, files start with a BOM)`` for each drop, oldest
    first, for a drop set of ``drops`` drops."""
    plan = drop_plan(drops)
    return [(extract_id_for(c), "cp949" if plan["cp949"] == k else "utf-8", plan["bom"] == k)
            for k, c in enumerate(drop_cutoffs(drops))]


def write_drops(outdir, patients: int = 100, drops: int = 6, seed: int = 1) -> list[Path]:
    """Simulate ``patients`` study-eligible patients (plus the exclusion cases) and write
    ``drops`` drop folders under ``outdir``; returns the folders, oldest first. Existing
    folders with the same extract_id are replaced."""
    ex = simulate(patients=patients, drops=drops, seed=seed)
    return write_extract(ex, outdir)
