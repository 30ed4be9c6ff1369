"""Vectorised simulation of the HAIC cohort and of its EMR rows, drop by drop.

Everything here works on numpy arrays (one element per patient, visit, scan, course or lab
row), so 100,000 patients (about 10 million lab rows) simulate in seconds. Days are integer
days since 1970-01-01; lab times are minutes since 1970-01-01 00:00.

The output is :class:`Extract`: one pandas frame per domain, each row carrying the index of
the drop that delivers it (``drop``), with coded columns (pandas Categoricals whose
categories include the messy spellings) that :mod:`haic_pipeline.synthetic.writer` formats.
"""

from __future__ import annotations

import calendar
import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .codes import (
    AB,
    ACCRUAL_END,
    DAY0,
    EXCLUSION_KINDS,
    FIRST_CUTOFF,
    HAIC,
    KIND_ELIGIBLE,
    KIND_WITHDRAWN,
    LAST_CUTOFF,
    LENVA,
    MISSING,
    MONTH_DAYS,
    NEVER,
    OTHER_RX,
    R_CR,
    R_NE,
    R_PD,
    R_PR,
    R_SD,
    S_COMP,
    S_DEATH,
    S_PD,
    S_TOX,
    SORA,
    STUDY_START,
    TACE,
    TEST_UNIT,
    _d,
    day_to_date,
)
from .messiness import CleanRows, apply_messiness
from .names import korean_names

# ----------------------------------------------------------------------------- calibration
# Generative parameters (not results): hazards, covariate effects, mixes. See __init__.
P_POST_AB = 0.34
AGE_MEAN = {0: 66.0, 1: 62.0}
AGE_SD = {0: 11.0, 1: 13.5}
P_MALE = 0.85
ETIOLOGY_P = [0.68, 0.08, 0.15, 0.09]
ECOG_P = [0.47, 0.45, 0.07, 0.01]
P_MULTIPLE = {0: 0.58, 1: 0.80}
P_PVI, P_EHM, P_TACE = 0.52, 0.30, 0.30
# Weibull proportional hazards; scale in months for the reference patient.
OS_SHAPE, OS_SCALE = 1.2, 9.2
PFS_SHAPE, PFS_SCALE = 1.0, 4.8
FRAILTY_SD = 0.35
OS_LOG_HR = {"post_ab": np.log(0.50), "ecog0": np.log(0.30), "ecog2": np.log(1.6),
             "size10": np.log(1.7), "cp_b": np.log(1.8), "ehm": np.log(1.25), "pvi": np.log(1.3)}
PFS_LOG_HR = {"post_ab": np.log(0.30), "ecog0": np.log(0.45), "ehm": np.log(1.9),
              "cp_b": np.log(1.4), "pvi": np.log(1.2)}
LTFU_MEDIAN_MONTHS = 10.0
P_RESPONDER = {0: 0.45, 1: 0.60}
RESPONDER_LOG_HR_PFS = np.log(0.6)
P_CR_GIVEN_RESPONSE = 0.04


@dataclass
class Extract:
    patients_n: int
    drops: int
    seed: int
    cutoffs: list  # datetime.date per drop
    plan: dict
    tables: dict  # domain -> DataFrame with a `drop` column
    truth: pd.DataFrame  # one row per patient: id, kind, group, index date ...
    notes: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- drops
def drop_cutoffs(drops: int) -> list:
    """Data cutoffs of the drops, oldest first: month ends spread from 2022-09-30 to
    2024-07-31 (day-spaced when more than 23 drops)."""
    if drops < 1:
        raise ValueError("drops must be >= 1")
    if drops == 1:
        return [day_to_date(LAST_CUTOFF)]
    if drops <= 23:
        out = []
        for i in range(drops):
            m = 8 + round(i * 22 / (drops - 1))  # months after 2022-01
            y, mo = 2022 + m // 12, m % 12 + 1
            out.append(_dt.date(y, mo, calendar.monthrange(y, mo)[1]))
        return out
    return [day_to_date(FIRST_CUTOFF + round(i * (LAST_CUTOFF - FIRST_CUTOFF) / (drops - 1)))
            for i in range(drops)]


def extract_id_for(cutoff: _dt.date) -> str:
    nxt = cutoff + _dt.timedelta(days=1)
    return nxt.strftime("%Y%m%d") + "T020000Z"


def drop_plan(drops: int) -> dict:
    """Which drop (0-based index, oldest first) carries each drop-level feature.

    ``None`` means the feature is left out because there are too few drops (all features
    are present from 6 drops, the default).
    """
    last = drops - 1

    def at(i):
        return min(i, last)

    def deferrable(i):  # the feature's rows move to the next drop, which must exist
        return i if i <= last - 1 else None

    cp949 = 1 if drops >= 2 else None
    bom = drops - 2 if drops >= 4 else (last if drops == 3 else (0 if drops == 1 else None))
    plan = {
        "cp949": cp949,
        "bom": bom,
        "empty_file": deferrable(1),  # imaging.csv with a header and zero data rows
        "permuted_columns": at(2),  # every file's columns in another order
        "late_patient_row": deferrable(2),  # rows whose patients.csv row comes one drop later
        "death_before_haic": deferrable(2),  # vital_status error, corrected one drop later
        "absent_file": deferrable(3),  # imaging.csv missing from the drop
        "extra_column": at(3),  # assessments.csv has an unlisted column `recorded_by`
        "withdrawn": max(1, drops - 2) if drops >= 2 else None,
        "future_date": last,
        "index_after_cutoff": last,
        "orphans": sorted({0, at(3)}),
    }
    if plan["absent_file"] is not None and plan["absent_file"] == plan["empty_file"]:
        plan["absent_file"] = None
    return plan


# ----------------------------------------------------------------------------- helpers
def _ragged(rng, start, end, gmin, gmax, fmin, fmax):
    """For each i: days start_i + cumsum(gaps) that are <= end_i, where the first gap is in
    [fmin, fmax] (0 allowed: the start itself) and later gaps in [gmin, gmax].
    Returns (owner, day, seq) sorted by owner, then day."""
    start = np.asarray(start, np.int64)
    end = np.asarray(end, np.int64)
    n = start.size
    span = end - start
    cnt = np.where(span >= 0, span // gmin + 2, 0).astype(np.int64)
    total = int(cnt.sum())
    owner = np.repeat(np.arange(n), cnt)
    gaps = rng.integers(gmin, gmax + 1, total)
    offs = np.cumsum(cnt) - cnt
    has = cnt > 0
    first = offs[has]
    gaps[first] = rng.integers(fmin, fmax + 1, first.size)
    cs = np.cumsum(gaps)
    base = cs[first] - gaps[first]
    cs = cs - np.repeat(base, cnt[has])
    day = np.repeat(start, cnt) + cs
    seq = np.arange(total) - np.repeat(offs, cnt)
    keep = day <= np.repeat(end, cnt)
    return owner[keep], day[keep], seq[keep]


def _group_cumsum(owner, x):
    """Cumulative sum of x within runs of equal (sorted) owner."""
    cs = np.cumsum(x)
    if owner.size == 0:
        return cs
    start = np.r_[True, owner[1:] != owner[:-1]]
    base = (cs - x)[start]
    run = np.cumsum(start) - 1
    return cs - base[run]


def _count_le(owner, day, q_owner, q_day):
    """Number of (owner, day) events with owner == q_owner and day <= q_day (owner-sorted,
    day-sorted within owner)."""
    key = owner.astype(np.int64) * (1 << 26) + day
    qk = q_owner.astype(np.int64) * (1 << 26) + q_day
    lo = np.searchsorted(key, q_owner.astype(np.int64) * (1 << 26) - (1 << 25), "left")
    return np.searchsorted(key, qk, "right") - lo


def _last_le(owner, day, q_owner, q_day, default):
    key = owner.astype(np.int64) * (1 << 26) + day
    qk = q_owner.astype(np.int64) * (1 << 26) + q_day
    pos = np.searchsorted(key, qk, "right") - 1
    ok = pos >= 0
    pos_c = np.clip(pos, 0, None)
    ok &= owner[pos_c] == q_owner if owner.size else np.zeros_like(ok)
    return np.where(ok, day[pos_c] if day.size else 0, default)


def _weibull(rng, n, shape, scale_months, lp):
    e = rng.exponential(size=n)
    return scale_months * (e / np.exp(lp)) ** (1.0 / shape) * MONTH_DAYS


# ----------------------------------------------------------------------------- simulation
def simulate(patients: int = 100, drops: int = 6, seed: int = 1) -> Extract:
    """The extract of ``patients`` study-eligible patients, plus the exclusion cases and the
    withdrawn patient, over ``drops`` drops: the patients, their visits, scans, courses and
    labs, the rows each drop delivers, and the messiness. One generator seeded by ``seed``
    draws every step, in this order: the same arguments give the same extract."""
    if patients < 1:
        raise ValueError("patients must be >= 1")
    s = _start(patients, drops, seed)
    _draw_groups(s)
    _draw_ids(s)
    _draw_index_dates(s)
    _draw_baseline(s)
    _draw_survival(s)
    _draw_history(s)
    visits = _draw_visits(s)
    img = _draw_scans(s)
    sessions = _draw_haic_course(s, img)
    courses = _draw_courses(s, *sessions)
    ass = _draw_assessments(s, visits)
    lab = _draw_labs(s, visits)
    truth = _truth(s)
    pat = _patient_rows(s)
    names = korean_names(s.rng, s.P)
    vit = _vital_status_rows(s, visits, img, courses)
    trt = _treatment_rows(s, courses)
    _keep_delivered(s, ass, lab, img)
    ex = Extract(patients_n=s.N, drops=s.D, seed=seed, cutoffs=s.cutoffs, plan=s.plan, tables={}, truth=truth)
    ex.tables = apply_messiness(CleanRows(rng=s.rng, plan=s.plan, C=s.C, notes=ex.notes, pid=s.pid,
                                          orphan_ids=s.orphan_ids, names=names, kind=s.kind, index=s.index,
                                          group=s.group, pat=pat, trt=trt, ass=ass, lab=lab, img=img, vit=vit))
    return ex


def _drawn():
    """A field of :class:`_Cohort` that a draw step fills in (not an argument, not in the repr)."""
    return field(init=False, repr=False)


@dataclass
class _Cohort:
    """The simulation's state: the random generator, the drop calendar and one array per
    patient ``p`` (the N study-eligible patients, then the exclusion cases, then the withdrawn
    patient), filled in by the draw steps of :func:`simulate`, which draw from ``rng`` in a
    fixed order (the same seed gives the same extract)."""

    rng: np.random.Generator
    N: int  # study-eligible patients
    D: int  # drops
    P: int  # all patients
    cutoffs: list  # datetime.date per drop
    C: np.ndarray  # cutoff day per drop
    plan: dict  # drop_plan(D)
    kind: np.ndarray  # KIND_ELIGIBLE, 1 + EXCLUSION_KINDS index, KIND_WITHDRAWN
    K: dict  # exclusion kind -> its kind code
    # _draw_groups: group 0 first line, 1 post atezo-bev; prior 0 none, 1 AB stop PD,
    # 2 sorafenib PD, 3 AB stop toxicity
    group: np.ndarray = _drawn()
    prior: np.ndarray = _drawn()
    has_haic: np.ndarray = _drawn()
    # _draw_ids
    pid: np.ndarray = _drawn()
    orphan_ids: np.ndarray = _drawn()
    # _draw_index_dates
    index: np.ndarray = _drawn()
    # _draw_baseline
    age: np.ndarray = _drawn()
    birth: np.ndarray = _drawn()
    sex: np.ndarray = _drawn()
    etiology: np.ndarray = _drawn()
    ecog: np.ndarray = _drawn()
    ascites: np.ndarray = _drawn()
    enceph: np.ndarray = _drawn()
    tcount: np.ndarray = _drawn()
    size: np.ndarray = _drawn()
    pvi: np.ndarray = _drawn()
    ehm: np.ndarray = _drawn()
    cp_b: np.ndarray = _drawn()
    base_labs: np.ndarray = _drawn()  # (P, 8): AFP, ALB, TBIL, INR, PLT, ALT, AST, CREA
    # _draw_survival (days)
    responder: np.ndarray = _drawn()
    t_os: np.ndarray = _drawn()
    t_prog: np.ndarray = _drawn()
    death: np.ndarray = _drawn()
    ltfu: np.ndarray = _drawn()
    end_fu: np.ndarray = _drawn()
    died_obs: np.ndarray = _drawn()
    # _draw_history: the prior atezo-bev / sorafenib course (ab_owner, ab_day: its visits),
    # the prior TACE, the diagnosis and the baseline and earlier in-window visits
    has_prior: np.ndarray = _drawn()
    ab_owner: np.ndarray = _drawn()
    ab_day: np.ndarray = _drawn()
    ab_start: np.ndarray = _drawn()
    ab_end: np.ndarray = _drawn()
    has_tace: np.ndarray = _drawn()
    tace_day: np.ndarray = _drawn()
    hcc_dx: np.ndarray = _drawn()
    base_day: np.ndarray = _drawn()
    win_day: np.ndarray = _drawn()
    has_win: np.ndarray = _drawn()
    # _draw_haic_course: when and why the HAIC course stops (NEVER: not observed)
    stop_reason: np.ndarray = _drawn()
    stop_day: np.ndarray = _drawn()
    observed_stop: np.ndarray = _drawn()

    def drop_of(self, day):
        """The drop that first delivers a row dated ``day`` (``D`` after the last cutoff: none)."""
        return np.searchsorted(self.C, day, "left")


def _start(patients: int, drops: int, seed: int) -> _Cohort:
    """The generator, the drop calendar and the patients' kinds: ``patients`` eligible, then
    ``max(6, 6%)`` exclusion cases cycling the kinds, then one withdrawn. Draws nothing."""
    rng = np.random.default_rng(seed)
    cut_dates = drop_cutoffs(drops)
    C = np.array([(c - DAY0).days for c in cut_dates], dtype=np.int64)
    N = patients
    n_ex = max(6, int(round(0.06 * N)))
    P = N + n_ex + 1
    kind = np.zeros(P, np.int8)
    kind[N:N + n_ex] = 1 + np.arange(n_ex) % 6
    kind[-1] = KIND_WITHDRAWN
    K = {k: 1 + i for i, k in enumerate(EXCLUSION_KINDS)}
    return _Cohort(rng=rng, N=N, D=drops, P=P, cutoffs=cut_dates, C=C, plan=drop_plan(drops),
                   kind=kind, K=K)


# ----------------------------------------------------------------------------- the patients
def _draw_groups(s: _Cohort) -> None:
    """Draws which eligible patients are post atezo-bev (``round(P_POST_AB N)``); the
    no_haic cases are too, the prior_other_systemic ones had sorafenib or atezo-bev stopped
    for toxicity, by turns."""
    N, P, kind, K = s.N, s.P, s.kind, s.K
    group = np.zeros(P, np.int8)
    n_ab = int(round(P_POST_AB * N))
    group[s.rng.choice(N, n_ab, replace=False)] = 1
    group[kind == K["no_haic"]] = 1
    prior = group.astype(np.int8).copy()
    pos_idx = np.flatnonzero(kind == K["prior_other_systemic"])
    prior[pos_idx] = np.where(np.arange(pos_idx.size) % 2 == 0, 2, 3)
    group[pos_idx] = 1
    s.group, s.prior, s.has_haic = group, prior, kind != K["no_haic"]


def _draw_ids(s: _Cohort) -> None:
    """Draws the patients' 8-digit ids, unique, and two more for the orphan rows."""
    ids = 10_000_000 + s.rng.choice(89_999_999, s.P + 2, replace=False)
    s.pid, s.orphan_ids = ids[:s.P], ids[s.P:]


def _draw_index_dates(s: _Cohort) -> None:
    """Draws the index dates (first HAIC course): accrual rising over the study period; the
    index_before_study_start and index_after_cutoff cases outside it, and the withdrawn
    patient early enough to be registered before the drop that withdraws the consent."""
    rng, P, kind, K, plan, C, D = s.rng, s.P, s.kind, s.K, s.plan, s.C, s.D
    u = rng.random(P)
    shape_mix = np.where(rng.random(P) < 0.4, u, u ** 0.6)
    index = STUDY_START + np.floor(shape_mix * (ACCRUAL_END - STUDY_START)).astype(np.int64)
    sel = kind == K["index_before_study_start"]
    index[sel] = rng.integers(_d("2021-09-01"), _d("2022-02-20"), sel.sum())
    sel = kind == K["index_after_cutoff"]
    index[sel] = LAST_CUTOFF + rng.integers(5, 26, sel.sum())
    sel = kind == KIND_WITHDRAWN
    w_drop = plan["withdrawn"] if plan["withdrawn"] is not None else D - 1
    w_hi = max(STUDY_START + 30, int(C[max(w_drop - 1, 0)]) - 60) if D > 1 else LAST_CUTOFF - 60
    index[sel] = rng.integers(STUDY_START + 14, max(STUDY_START + 15, w_hi), sel.sum())
    s.index = index


def _draw_baseline(s: _Cohort) -> None:
    """Draws the patients at baseline: age (the age_under_18 cases 17), sex, etiology, ECOG,
    a latent liver score driving bilirubin, albumin, INR, ascites and encephalopathy (hence
    Child-Pugh), AFP, the tumours and the other baseline labs."""
    rng, P, group, index = s.rng, s.P, s.group, s.index
    age = np.where(group == 1, rng.normal(AGE_MEAN[1], AGE_SD[1], P), rng.normal(AGE_MEAN[0], AGE_SD[0], P))
    age = np.clip(np.floor(age), 22, 89).astype(np.int64)
    age[s.kind == s.K["age_under_18"]] = 17
    s.age = age
    s.birth = index - np.round((age + rng.uniform(0.05, 0.95, P)) * 365.25).astype(np.int64)
    s.sex = (rng.random(P) >= P_MALE).astype(np.int16)  # 0 M, 1 F
    s.etiology = rng.choice(4, P, p=ETIOLOGY_P).astype(np.int16)
    s.ecog = rng.choice(4, P, p=ECOG_P).astype(np.int64)
    z = rng.normal(0, 1, P)  # liver dysfunction
    tbil = np.exp(np.log(0.85) + 0.38 * z + rng.normal(0, 0.22, P))
    alb = 3.78 - 0.33 * z + rng.normal(0, 0.22, P)
    inr = 1.08 + 0.07 * z + np.abs(rng.normal(0, 0.06, P))
    ascites = np.where(rng.random(P) < 1 / (1 + np.exp(-(1.6 * z - 1.9))), 1, 0)
    ascites = np.where((ascites == 1) & (rng.random(P) < 0.15 + 0.1 * (z > 1.5)), 2, ascites)
    enceph = (rng.random(P) < 0.02 + 0.03 * (z > 1.5)).astype(np.int64)
    pts_bil = np.where(tbil < 2, 1, np.where(tbil <= 3, 2, 3))
    pts_alb = np.where(alb > 3.5, 1, np.where(alb >= 2.8, 2, 3))
    pts_inr = np.where(inr < 1.7, 1, np.where(inr <= 2.3, 2, 3))
    cp_score = pts_bil + pts_alb + pts_inr + ascites + 1 + enceph + 1
    s.ascites, s.enceph, s.cp_b = ascites, enceph, cp_score >= 7
    log_afp = rng.normal(np.log(250), 3.1, P)
    afp = np.exp(log_afp)
    multiple = rng.random(P) < np.where(group == 1, P_MULTIPLE[1], P_MULTIPLE[0])
    s.tcount = np.where(multiple, 2 + rng.poisson(2.2, P), 1)
    s.size = np.round(np.clip(np.exp(rng.normal(np.log(6.5), 0.62, P)), 1.0, 25.0), 1)
    s.pvi = rng.random(P) < P_PVI
    s.ehm = rng.random(P) < P_EHM
    plt_b = np.exp(rng.normal(np.log(150), 0.4, P))
    alt_b = np.exp(rng.normal(np.log(35), 0.5, P))
    ast_b = np.exp(rng.normal(np.log(55), 0.5, P))
    crea_b = np.exp(rng.normal(np.log(0.85), 0.2, P))
    s.base_labs = np.stack([afp, alb, tbil, inr, plt_b, alt_b, ast_b, crea_b], axis=1)


def _draw_survival(s: _Cohort) -> None:
    """Draws response, death, progression and loss to follow-up (days after index) from the
    Weibull proportional-hazards models with a shared frailty; the index_after_cutoff cases
    neither die nor are lost within the study."""
    rng, P, ecog, size, cp_b, ehm, pvi = s.rng, s.P, s.ecog, s.size, s.cp_b, s.ehm, s.pvi
    frail = rng.normal(0, FRAILTY_SD, P)
    post_ab = (s.group == 1) & (s.prior == 1)
    lp_os = (OS_LOG_HR["post_ab"] * post_ab + OS_LOG_HR["ecog0"] * (ecog == 0)
             + OS_LOG_HR["ecog2"] * (ecog >= 2) + OS_LOG_HR["size10"] * (size > 10)
             + OS_LOG_HR["cp_b"] * cp_b + OS_LOG_HR["ehm"] * ehm + OS_LOG_HR["pvi"] * pvi + frail)
    lp_pfs = (PFS_LOG_HR["post_ab"] * post_ab + PFS_LOG_HR["ecog0"] * (ecog == 0)
              + PFS_LOG_HR["ehm"] * ehm + PFS_LOG_HR["cp_b"] * cp_b + PFS_LOG_HR["pvi"] * pvi + frail)
    responder = rng.random(P) < np.where(post_ab, P_RESPONDER[1], P_RESPONDER[0])
    lp_pfs = lp_pfs + RESPONDER_LOG_HR_PFS * responder
    t_os = np.maximum(np.round(_weibull(rng, P, OS_SHAPE, OS_SCALE, lp_os)), 3).astype(np.int64)
    t_prog = np.maximum(np.round(_weibull(rng, P, PFS_SHAPE, PFS_SCALE, lp_pfs)), 7).astype(np.int64)
    t_ltfu = 60 + np.round(rng.exponential(LTFU_MEDIAN_MONTHS / np.log(2) * MONTH_DAYS, P)).astype(np.int64) + 1
    death = s.index + t_os
    ltfu = s.index + t_ltfu
    sel = s.kind == s.K["index_after_cutoff"]
    death[sel] = NEVER
    ltfu[sel] = NEVER
    s.responder, s.t_os, s.t_prog, s.death, s.ltfu = responder, t_os, t_prog, death, ltfu
    s.end_fu = np.minimum(np.minimum(death, ltfu), LAST_CUTOFF)
    s.died_obs = (death <= ltfu) & (death <= LAST_CUTOFF)


def _draw_history(s: _Cohort) -> None:
    """Draws the time before index: the prior atezo-bev or sorafenib course (visits every
    18-24 days, stopped 10-35 days before index), a prior TACE for 30%, the diagnosis before
    the first treatment, the baseline visit 0-14 days before index and, for ~10%, an earlier
    visit inside the 30-day window."""
    rng, P, index = s.rng, s.P, s.index
    g_ab = rng.integers(10, 36, P)
    n_ab_vis = 2 + rng.poisson(4, P)
    has_prior = s.prior > 0
    ab_owner = np.repeat(np.arange(P)[has_prior], n_ab_vis[has_prior])
    ab_gap = rng.integers(18, 25, ab_owner.size)
    ab_cs = _group_cumsum(ab_owner, ab_gap)
    ab_len = np.zeros(P, np.int64)
    np.add.at(ab_len, ab_owner, ab_gap)
    ab_first_gap = ab_gap[np.r_[True, ab_owner[1:] != ab_owner[:-1]]] if ab_owner.size else ab_gap
    ab_len[has_prior] -= ab_first_gap  # first visit is the start itself
    ab_end = np.where(has_prior, index - g_ab, NEVER)
    ab_start = np.where(has_prior, ab_end - ab_len, NEVER)
    ab_day = ab_start[ab_owner] + ab_cs - ab_first_gap[np.cumsum(np.r_[True, ab_owner[1:] != ab_owner[:-1]]) - 1] if ab_owner.size else ab_cs
    has_tace = rng.random(P) < P_TACE
    tace_day = np.where(has_prior, ab_start, index) - rng.integers(30, 301, P)
    tace_day = np.where(has_tace, tace_day, NEVER)
    first_tx = np.minimum(np.where(has_prior, ab_start, NEVER), tace_day)
    hcc_dx = np.where(first_tx < NEVER, first_tx - rng.integers(7, 61, P), index - rng.integers(20, 151, P))
    b_off = rng.integers(0, 15, P)
    b_off = np.where(has_prior, np.minimum(b_off, g_ab - 1), b_off)
    base_day = index - b_off
    prev_pre = np.maximum(np.maximum(hcc_dx, np.where(has_tace, tace_day, 0)), np.where(has_prior, ab_end, 0))
    win_day = base_day - rng.integers(3, 11, P)
    s.has_win = (rng.random(P) < 0.10) & (win_day > prev_pre) & (win_day >= index - 30)
    s.has_prior, s.ab_owner, s.ab_day, s.ab_start, s.ab_end = has_prior, ab_owner, ab_day, ab_start, ab_end
    s.has_tace, s.tace_day, s.hcc_dx, s.base_day, s.win_day = has_tace, tace_day, hcc_dx, base_day, win_day


# ----------------------------------------------------------------------------- their rows
def _draw_visits(s: _Cohort) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every visit up to the last cutoff as (patient, day, kind), sorted by patient and day;
    kind 0 diagnosis, 1 prior TACE, 2 prior systemic course, 3 earlier in-window, 4 baseline,
    5 follow-up. Draws the follow-up visits, every 2-4 weeks from index to the end of
    follow-up."""
    P, hcc_dx, tace_day, has_win = s.P, s.hcc_dx, s.tace_day, s.has_win
    v_owner, v_day, _ = _ragged(s.rng, s.index, s.end_fu - 1 + (s.end_fu == LAST_CUTOFF), 14, 28, 14, 28)
    pt = np.flatnonzero(s.has_tace)
    parts = [
        (np.arange(P), hcc_dx, np.full(P, 0)),
        (pt, tace_day[pt], np.full(pt.size, 1)),
        (s.ab_owner, s.ab_day, np.full(s.ab_owner.size, 2)),
        (np.flatnonzero(has_win), s.win_day[has_win], np.full(has_win.sum(), 3)),
        (np.arange(P), s.base_day, np.full(P, 4)),
        (v_owner, v_day, np.full(v_owner.size, 5)),
    ]
    vo = np.concatenate([p[0] for p in parts])
    vd = np.concatenate([p[1] for p in parts]).astype(np.int64)
    vk = np.concatenate([p[2] for p in parts]).astype(np.int8)
    o = np.lexsort((vd, vo))
    vo, vd, vk = vo[o], vd[o], vk[o]
    # (visit days are unique per patient by construction)
    keep = vd <= LAST_CUTOFF
    return vo[keep], vd[keep], vk[keep]


def _draw_scans(s: _Cohort) -> dict:
    """The imaging rows (drop, p, day, modality, response) of the HAIC patients. Draws scans
    every 6-9 weeks after index (5% of first scans 1-14 days early) until the first PD, one
    more after it for 30%; the responders' PR from the first or second scan, CR for 4% of
    them; 3% NE reads; CT or MRI. A patient who dies before the first scan gets a last PD
    scan."""
    rng, P, index, kind, K, t_os, death = s.rng, s.P, s.index, s.kind, s.K, s.t_os, s.death
    s_owner, s_day, s_seq = _ragged(rng, index, s.end_fu - 1 + (s.end_fu == LAST_CUTOFF), 42, 63, 42, 63)
    early = rng.random(s_owner.size) < 0.05
    first_scan = s_seq == 0
    s_day = s_day - np.where(first_scan & early, rng.integers(1, 15, s_owner.size), 0)
    keep = s.has_haic[s_owner]
    s_owner, s_day, s_seq = s_owner[keep], s_day[keep], s_seq[keep]
    is_pd = (s_day - index[s_owner]) >= s.t_prog[s_owner]
    pd_before = _group_cumsum(s_owner, is_pd.astype(np.int64)) - is_pd
    extra_after_pd = rng.random(P) < 0.3
    prev_first_pd = np.r_[False, (is_pd & (pd_before == 0))[:-1]] & np.r_[False, s_owner[1:] == s_owner[:-1]]
    keep = (pd_before == 0) | ((pd_before == 1) & prev_first_pd & extra_after_pd[s_owner])
    s_owner, s_day, s_seq, is_pd, pd_before = s_owner[keep], s_day[keep], s_seq[keep], is_pd[keep], pd_before[keep]
    onset = (rng.random(P) < 0.3).astype(np.int64)
    cr = rng.random(P) < P_CR_GIVEN_RESPONSE
    resp = np.full(s_owner.size, R_SD, np.int16)
    r_on = s.responder[s_owner] & (s_seq >= onset[s_owner])
    resp[r_on] = R_PR
    resp[r_on & cr[s_owner] & (s_seq >= onset[s_owner] + 1)] = R_CR
    resp[is_pd & (pd_before == 0)] = R_PD
    after = pd_before == 1
    resp[after] = rng.choice([R_PD, R_SD, R_PR], after.sum(), p=[0.5, 0.3, 0.2])
    ne = (~is_pd) & (rng.random(s_owner.size) < 0.03)
    resp[ne] = R_NE
    # patients who die before their first scheduled scan get a last PD scan
    n_scans = np.bincount(s_owner, minlength=P)
    es = (n_scans == 0) & s.has_haic & s.died_obs & (t_os >= 10) & (kind != K["index_after_cutoff"])
    es_owner = np.flatnonzero(es)
    es_day = death[es_owner] - rng.integers(1, 8, es_owner.size) % (t_os[es_owner] - 5) - 1
    s_owner = np.r_[s_owner, es_owner]
    s_day = np.r_[s_day, es_day]
    resp = np.r_[resp, np.full(es_owner.size, R_PD, np.int16)]
    o = np.lexsort((s_day, s_owner))
    s_owner, s_day, resp = s_owner[o], s_day[o], resp[o]
    modality = (rng.random(s_owner.size) < 0.35).astype(np.int16)
    return dict(drop=s.drop_of(s_day), p=s_owner, day=s_day, modality=modality, response=resp)


def _draw_haic_course(s: _Cohort, img: dict) -> tuple[np.ndarray, np.ndarray]:
    """The HAIC sessions (patient, day) up to the course's stop. Draws sessions every 4-6
    weeks from index, the course length (6-8 sessions) and toxicity stops (12%, 30-180 days
    after index); the course stops at the first of PD scan, toxicity, completion and death,
    when that is observed (``stop_day``, ``stop_reason``, ``observed_stop``)."""
    rng, P, index, kind, K = s.rng, s.P, s.index, s.kind, s.K
    h_owner, h_day, h_seq = _ragged(rng, index, s.end_fu, 28, 42, 0, 0)
    keep = s.has_haic[h_owner] & (kind[h_owner] != K["index_after_cutoff"])
    h_owner, h_day, h_seq = h_owner[keep], h_day[keep], h_seq[keep]
    n_comp = rng.integers(6, 9, P)
    comp_day = np.full(P, NEVER, np.int64)
    cm = h_seq == (n_comp[h_owner] - 1)
    comp_day[h_owner[cm]] = h_day[cm]
    tox_day = np.where(rng.random(P) < 0.12, index + rng.integers(30, 181, P), NEVER)
    first_pd_day = np.full(P, NEVER, np.int64)
    pdm = img["response"] == R_PD
    np.minimum.at(first_pd_day, img["p"][pdm], img["day"][pdm])
    cand = np.stack([first_pd_day, tox_day, comp_day, np.where(s.died_obs, s.death, NEVER)])
    s.stop_reason = np.array([S_PD, S_TOX, S_COMP, S_DEATH])[np.argmin(cand, axis=0)]
    stop_day = cand.min(axis=0)
    s.observed_stop = stop_day <= np.minimum(s.ltfu, LAST_CUTOFF)
    s.stop_day = np.where(s.observed_stop, stop_day, NEVER)
    keep = h_day <= s.stop_day[h_owner]
    return h_owner[keep], h_day[keep]


@dataclass
class _Courses:
    """Treatment courses, one element a course, grown by :meth:`add`; each course's cycle
    days (``cyc_owner``: the course's number) give its cycles count at a cutoff."""

    pid: list = field(default_factory=list)
    regimen: list = field(default_factory=list)
    start: list = field(default_factory=list)
    end: list = field(default_factory=list)
    stop: list = field(default_factory=list)
    cyc_owner: list = field(default_factory=list)
    cyc_day: list = field(default_factory=list)
    n: int = 0

    def add(self, owner_pat, reg, start, end, stop, cyc_o=None, cyc_d=None):
        """One course for each patient of ``owner_pat`` (``reg``, ``stop``: one code for all or
        one each), with cycle days ``cyc_d`` of the courses ``cyc_o`` (0 = the first of these);
        without them one cycle, on the start day."""
        k = owner_pat.size
        self.pid.append(owner_pat)
        self.regimen.append(np.broadcast_to(np.asarray(reg, np.int16), (k,)).copy())
        self.start.append(start)
        self.end.append(end)
        self.stop.append(np.broadcast_to(np.asarray(stop, np.int16), (k,)).copy())
        if cyc_o is None:  # one cycle, on the start day
            cyc_o, cyc_d = np.arange(k), start
        self.cyc_owner.append(cyc_o + self.n)
        self.cyc_day.append(cyc_d)
        self.n += k

    def rows(self, planned: int) -> dict:
        """The courses as arrays, cycle days sorted by course and day; the last ``planned``
        courses are planned, not started."""
        pid = np.concatenate(self.pid)
        cyc_owner = np.concatenate(self.cyc_owner)
        cyc_day = np.concatenate(self.cyc_day).astype(np.int64)
        o = np.lexsort((cyc_day, cyc_owner))
        is_planned = np.zeros(pid.size, bool)
        is_planned[-planned:] = planned > 0
        return dict(pid=pid, regimen=np.concatenate(self.regimen), start=np.concatenate(self.start).astype(np.int64),
                    end=np.concatenate(self.end).astype(np.int64), stop=np.concatenate(self.stop),
                    cyc_owner=cyc_owner[o], cyc_day=cyc_day[o], planned=is_planned)


def _draw_courses(s: _Cohort, h_owner: np.ndarray, h_day: np.ndarray) -> dict:
    """Every treatment course, in this order: prior TACE, prior atezo-bev or sorafenib (its
    visits as cycles), HAIC (its sessions ``h_owner``, ``h_day`` as cycles), subsequent
    therapy, and the planned HAIC course of the index_after_cutoff cases, which starts after
    the last cutoff. Only the subsequent therapy draws."""
    P, index, kind, K = s.P, s.index, s.kind, s.K
    courses = _Courses()
    pt = np.flatnonzero(s.has_tace)
    courses.add(pt, TACE, s.tace_day[pt], s.tace_day[pt], S_COMP)
    pa = np.flatnonzero(s.has_prior)
    regs = np.where(s.prior[pa] == 2, SORA, AB)
    stops = np.where(s.prior[pa] == 3, S_TOX, S_PD)
    remap = np.full(P, -1)
    remap[pa] = np.arange(pa.size)
    courses.add(pa, regs, s.ab_start[pa], s.ab_end[pa], stops, remap[s.ab_owner], s.ab_day)
    ph = np.flatnonzero(s.has_haic & (kind != K["index_after_cutoff"]))
    remap = np.full(P, -1)
    remap[ph] = np.arange(ph.size)
    hk = remap[h_owner] >= 0
    courses.add(ph, HAIC, index[ph], s.stop_day[ph], s.stop_reason[ph], remap[h_owner[hk]], h_day[hk])
    _draw_subsequent_therapy(s, courses)
    pf = np.flatnonzero(kind == K["index_after_cutoff"])
    courses.add(pf, HAIC, index[pf], np.full(pf.size, NEVER), S_PD)
    return courses.rows(planned=pf.size)


def _draw_subsequent_therapy(s: _Cohort, courses: _Courses) -> None:
    """Draws the therapy after HAIC of 45% of the patients whose course stopped, not by death,
    within follow-up: starting 7-45 days later, its regimen by group, sessions every 21 days
    (a HAIC rechallenge every 28) until death or the end of follow-up."""
    rng, P, end_fu = s.rng, s.P, s.end_fu
    sub = (s.has_haic & s.observed_stop & (s.stop_reason != S_DEATH) & (rng.random(P) < 0.45)
           & (s.kind != s.K["index_after_cutoff"]))
    sub_start = s.stop_day + rng.integers(7, 46, P)
    sub &= sub_start < end_fu
    ps = np.flatnonzero(sub)
    fl_choice = rng.choice([AB, LENVA, SORA, OTHER_RX, HAIC], P, p=[0.45, 0.3, 0.1, 0.05, 0.1])
    ab_choice = rng.choice([LENVA, SORA, OTHER_RX, HAIC], P, p=[0.55, 0.2, 0.1, 0.15])
    sub_reg = np.where(s.group == 1, ab_choice, fl_choice)[ps]
    sub_end = np.where(s.died_obs, s.death, NEVER)[ps]
    gap = np.where(sub_reg == HAIC, 28, 21)
    so, sd_, _ = _ragged(rng, sub_start[ps], np.minimum(sub_end, end_fu[ps]), 21, 21, 0, 0)
    # HAIC rechallenge sessions are 28 days apart: stretch
    sd_ = sub_start[ps][so] + (sd_ - sub_start[ps][so]) * gap[so] // 21
    kk = sd_ <= np.minimum(sub_end, end_fu[ps])[so]
    courses.add(ps, sub_reg, sub_start[ps], sub_end, S_DEATH, so[kk], sd_[kk])


def _draw_assessments(s: _Cohort, visits) -> dict:
    """The assessment row of every visit. Draws the ECOG's drift at follow-up (and its own
    value at the earlier in-window and pre-treatment visits), ascites and encephalopathy now
    and then worse than at baseline, and the tumour size's variation between visits."""
    rng, ecog, ascites, enceph, size = s.rng, s.ecog, s.ascites, s.enceph, s.size
    vo, vd, vk = visits
    n_v = vo.size
    a_ecog = ecog[vo].copy()
    drift = rng.random(n_v)
    a_ecog = np.where(vk == 5, np.clip(a_ecog + (drift < 0.15) - (drift > 0.95), 0, 4), a_ecog)
    a_ecog = np.where(vk == 3, np.clip(a_ecog + 1, 0, 4), a_ecog)  # earlier in-window visit differs
    a_ecog = np.where(vk < 3, np.clip(a_ecog - (drift < 0.3), 0, 4), a_ecog)
    a_asc = np.where(vk == 4, ascites[vo], np.clip(ascites[vo] + (rng.random(n_v) < 0.06), 0, 2))
    a_enc = np.where(vk == 4, enceph[vo], np.where(rng.random(n_v) < 0.01, 1, enceph[vo]))
    a_tc = s.tcount[vo]
    a_size = np.where(vk == 4, size[vo], np.round(size[vo] * np.exp(rng.normal(0, 0.12, n_v)), 1))
    a_size = np.maximum(a_size, 0.5)
    a_pvi = np.where(s.pvi[vo], 0, 1)
    a_ehm = np.where(s.ehm[vo], 0, 1)
    return dict(drop=s.drop_of(vd), p=vo, day=vd, ecog=a_ecog, ascites=a_asc.astype(np.int16),
                enceph=a_enc.astype(np.int16), tumor_count=a_tc[...], size=a_size,
                pvi=a_pvi.astype(np.int16), ehm=a_ehm.astype(np.int16))


def _draw_labs(s: _Cohort, visits) -> dict:
    """The 8 labs of every visit. Draws their variation around the patient's baseline values
    (the baseline visit has them exactly), the time of day, and the ~1.5% whose baseline INR
    was taken 31-40 days before index instead (missing from the 30-day window)."""
    rng, P, index = s.rng, s.P, s.index
    vo, vd, vk = visits
    n_v = vo.size
    base_vals = s.base_labs
    noise_sd = np.array([0.25, 0.04, 0.12, 0.04, 0.12, 0.2, 0.2, 0.08])
    l_vis = np.repeat(np.arange(n_v), 8)
    l_test = np.tile(np.arange(8, dtype=np.int16), n_v)
    is_base = vk[l_vis] == 4
    noise = np.where(is_base, 1.0, np.exp(rng.normal(0, 1, l_vis.size) * noise_sd[l_test]))
    l_val = base_vals[vo[l_vis], l_test] * noise
    minute = (vd * 1440 + rng.integers(7 * 60, 12 * 60, n_v))[l_vis]
    # baseline INR missing from the 30-day window for ~1.5%: drawn 31-40 days before index
    no_inr = rng.random(P) < 0.015
    drop_row = is_base & (l_test == 3) & no_inr[vo[l_vis]]
    l_owner = vo[l_vis]
    l_owner, minute, l_test, l_val = l_owner[~drop_row], minute[~drop_row], l_test[~drop_row], l_val[~drop_row]
    pi = np.flatnonzero(no_inr)
    l_owner = np.r_[l_owner, pi]
    minute = np.r_[minute, (index[pi] - rng.integers(31, 41, pi.size)) * 1440 + 6 * 60 + rng.integers(0, 59, pi.size)]
    l_test = np.r_[l_test, np.full(pi.size, 3, np.int16)]
    l_val = np.r_[l_val, base_vals[pi, 3]]
    l_unit = TEST_UNIT[l_test].astype(np.int16)
    return dict(drop=s.drop_of(minute // 1440), p=l_owner, minute=minute, test=l_test, value=l_val, unit=l_unit)


# ----------------------------------------------------------------------------- rows per drop
def _truth(s: _Cohort) -> pd.DataFrame:
    """One row per patient of what was simulated, the ground truth behind the rows (kind,
    group, index date, age, ECOG, death day or -1, progression and death times, loss to
    follow-up, registration drop). Draws nothing."""
    kind, group = s.kind, s.group
    return pd.DataFrame({
        "patient_id": s.pid.astype(str), "kind": np.array(["eligible"] + EXCLUSION_KINDS + ["consent_withdrawn"])[kind],
        "group": np.where(kind == KIND_ELIGIBLE, np.where(group == 1, "post_ate_beva", "first_line"), None),
        "index_date": s.index, "age": s.age, "ecog": s.ecog, "death_day": np.where(s.died_obs, s.death, -1),
        "t_prog": s.t_prog, "t_os": s.t_os, "ltfu_day": s.ltfu, "registration_drop": s.drop_of(s.hcc_dx),
    })


def _patient_rows(s: _Cohort) -> dict:
    """A patients.csv row per patient, in the first drop whose cutoff is on or after the
    diagnosis, consent active. Draws nothing."""
    P = s.P
    return dict(drop=s.drop_of(s.hcc_dx), p=np.arange(P), birth=s.birth.copy(), sex=s.sex,
                etiology=s.etiology.copy(), hcc_dx=s.hcc_dx, consent=np.zeros(P, np.int16))


def _vital_status_rows(s: _Cohort, visits, img: dict, courses: dict) -> dict:
    """The vital_status rows: one in a drop whenever last_contact_date moves on or a death is
    recorded (the no_follow_up cases have none). A contact is a visit, a scan or a treatment
    session: a patient seen for a HAIC course is known alive that day (so last_contact_date
    is never before the index date). Draws nothing."""
    C, P, death, died_obs = s.C, s.P, s.death, s.died_obs
    vo, vd, _ = visits
    started = ~courses["planned"]
    act_o = np.r_[vo, img["p"], courses["pid"][started]]
    act_d = np.r_[vd, img["day"], courses["start"][started]]
    o = np.lexsort((act_d, act_o))
    act_o, act_d = act_o[o], act_d[o]
    vit_rows = []
    prev_lc = np.full(P, -1, np.int64)
    prev_dd = np.full(P, MISSING, np.int64)
    has_vital = s.kind != s.K["no_follow_up"]
    allp = np.arange(P)
    for k in range(s.D):
        c = C[k]
        regd = (s.hcc_dx <= c) & has_vital
        dead = died_obs & (death <= c)
        lc = np.where(dead, death, _last_le(act_o, act_d, allp, np.minimum(c, s.ltfu), -1))
        dd = np.where(dead, death, MISSING)
        emit = regd & (lc >= 0) & ((lc != prev_lc) | (dd != prev_dd))
        e = np.flatnonzero(emit)
        vit_rows.append((np.full(e.size, k), e, lc[e], dd[e]))
        prev_lc[e], prev_dd[e] = lc[e], dd[e]
    return dict(drop=np.concatenate([r[0] for r in vit_rows]), p=np.concatenate([r[1] for r in vit_rows]),
                last_contact=np.concatenate([r[2] for r in vit_rows]), death=np.concatenate([r[3] for r in vit_rows]))


def _treatment_rows(s: _Cohort, courses: dict) -> dict:
    """The treatments rows: a course in the drop it has started by (a planned course in the
    last drop), sent again whenever its cycles grow or its end_date and stop_reason are filled
    in. Draws nothing."""
    C, D = s.C, s.D
    c_start, c_end, c_stop, planned = courses["start"], courses["end"], courses["stop"], courses["planned"]
    nc = courses["pid"].size
    tr_rows = []
    prev_state = np.full((nc, 3), -2, np.int64)
    for k in range(D):
        c = C[k]
        vis = (c_start <= c) | (planned & (k == D - 1))
        ended = c_end <= c
        end_v = np.where(ended, c_end, MISSING)
        stop_v = np.where(ended, c_stop, -1)
        cyc = np.where(planned, -1, _count_le(courses["cyc_owner"], courses["cyc_day"], np.arange(nc), np.full(nc, c)))
        state = np.stack([end_v, stop_v, cyc], axis=1)
        emit = vis & (state != prev_state).any(axis=1)
        e = np.flatnonzero(emit)
        tr_rows.append((np.full(e.size, k), e, end_v[e], stop_v[e], cyc[e]))
        prev_state[e] = state[e]
    cidx = np.concatenate([r[1] for r in tr_rows])
    return dict(drop=np.concatenate([r[0] for r in tr_rows]), p=courses["pid"][cidx], regimen=courses["regimen"][cidx],
                start=c_start[cidx], end=np.concatenate([r[2] for r in tr_rows]),
                cycles=np.concatenate([r[4] for r in tr_rows]),
                stop=np.concatenate([r[3] for r in tr_rows]).astype(np.int16))


def _keep_delivered(s: _Cohort, *tables: dict) -> None:
    """Leaves out the rows dated after the last cutoff (no drop delivers them)."""
    for t in tables:
        keep = t["drop"] < s.D
        for key in t:
            t[key] = t[key][keep]
