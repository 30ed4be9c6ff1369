"""Inject the known messiness of extract_spec.md into the clean simulated rows.

Every injection touches a handful of rows (the study must still work) and is recorded in
``Extract.notes`` (domain, drop, patient_id, what) so tests can find it.

:func:`apply_messiness` runs one step a domain, in a fixed order: each step draws its rows
from the one random generator the simulation used, so the same seed gives the same drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import codes as m


@dataclass
class CleanRows:
    """The simulated rows of one extract before any messiness, and what the messiness picks by.

    Each table is a dict of equal-length arrays with the delivering ``drop`` and the patient's
    index ``p`` (negative for the orphans: -1, -2); the per-patient arrays are indexed by ``p``.
    The steps change the tables in place and add to ``notes`` (the Extract's).
    """

    rng: np.random.Generator
    plan: dict  # drop_plan(drops)
    C: np.ndarray  # cutoff day of each drop, oldest first
    notes: dict
    pid: np.ndarray  # 8-digit patient id
    orphan_ids: np.ndarray  # patient ids never in any patients.csv
    names: np.ndarray
    kind: np.ndarray
    index: np.ndarray  # index day
    group: np.ndarray  # 0 first line, 1 post atezo-bev
    pat: dict
    trt: dict
    ass: dict
    lab: dict
    img: dict
    vit: dict
    D: int = field(init=False)  # number of drops
    last: int = field(init=False)  # index of the last drop
    P: int = field(init=False)  # number of patients
    elig: np.ndarray = field(init=False)  # study-eligible patients

    def __post_init__(self):
        self.D = self.C.size
        self.last = self.D - 1
        self.P = self.pid.size
        self.elig = self.kind == m.KIND_ELIGIBLE

    def note(self, key, domain, drop, p, what):
        """Record one injected row of patient ``p`` under ``notes[key]``."""
        pid = self.pid[p] if p >= 0 else self.orphan_ids[-p - 1]
        self.notes.setdefault(key, []).append(
            {"domain": domain, "drop": int(drop), "patient_id": f"{pid:08d}", "what": what})

    def post_index_assessments(self) -> np.ndarray:
        """Assessment rows of eligible patients dated after their index date."""
        ass = self.ass
        return (ass["day"] > self.index[ass["p"]]) & self.elig[ass["p"]]

    def blocked(self) -> set:
        """The drops whose imaging.csv is empty or absent (None where the plan has none)."""
        return {self.plan["empty_file"], self.plan["absent_file"]}


def _take(t: dict, idx) -> dict:
    return {k: v[idx] for k, v in t.items()}


def _append(t: dict, rows: dict) -> None:
    for k in t:
        t[k] = np.concatenate([t[k], np.asarray(rows[k]).astype(t[k].dtype, copy=False)])


def _pick(rng, mask, n):
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return idx
    return np.sort(rng.choice(idx, min(n, idx.size), replace=False))


def _order(keys):
    """Stable argsort by several integer keys (first = primary), packed into one int64
    when the value ranges fit, else numpy lexsort."""
    packed = np.zeros(keys[0].size, np.int64)
    bits = 0
    for k in keys:
        k = k.astype(np.int64)
        lo = int(k.min()) if k.size else 0
        width = int(int(k.max()) - lo).bit_length() if k.size else 0
        bits += width
        if bits > 62:
            return np.lexsort(tuple(reversed(keys)))
        packed = (packed << width) | (k - lo)
    return np.argsort(packed, kind="stable")


def apply_messiness(s: CleanRows) -> dict[str, pd.DataFrame]:
    """The messy tables of the extract: one frame per domain, rows in drop, patient order."""
    _defer_imaging(s)
    _mess_patients(s)
    _mess_vital_status(s)
    _mess_treatments(s)
    _mess_imaging(s)
    _mess_assessments(s)
    _mess_labs(s)
    _add_orphans(s)
    _add_duplicates(s)
    return _frames(s)


def _defer_imaging(s: CleanRows) -> None:
    """Imaging rows of the drop with an empty or absent imaging.csv (= no changes in that
    drop) move to the next drop. Draws nothing."""
    img, plan = s.img, s.plan
    for key in ("empty_file", "absent_file"):
        e = plan[key]
        if e is not None:
            img["drop"][img["drop"] == e] = e + 1
            what = "imaging.csv " + ("with zero data rows" if key == "empty_file" else "absent")
            s.notes.setdefault(key, []).append({"domain": "imaging", "drop": e, "patient_id": None, "what": what})


def _mess_patients(s: CleanRows) -> None:
    """patients.csv: draws the patient whose row arrives one drop after their other rows, the
    birth_date entered 10 years off (corrected next drop) and the etiologies in another case;
    the withdrawn patient's consent changes in a later drop."""
    rng, pat, elig, P = s.rng, s.pat, s.elig, s.P
    # a patient whose patients.csv row arrives one drop after their other rows
    late = -1
    L = s.plan["late_patient_row"]
    if L is not None:
        cand = _pick(rng, elig & (pat["drop"] == L), 1)
        if cand.size:
            late = int(cand[0])
            pat["drop"][late] = L + 1
            s.note("late_patient_row", "patients", L + 1, late, f"rows from drop {L}, patients row in drop {L + 1}")

    # consent withdrawn in a later drop
    W = s.plan["withdrawn"]
    wp = np.flatnonzero(s.kind == m.KIND_WITHDRAWN)
    if W is not None:
        for p in wp:
            if pat["drop"][p] < W:
                row = _take(pat, [p])
                row["drop"][:] = W
                row["consent"][:] = 1
                _append(pat, row)
                s.note("withdrawn", "patients", W, p, "consent_status becomes withdrawn")

    # birth_date entered 10 years off, corrected in the next drop
    ages = (s.index - pat["birth"][:P]) / 365.25
    cand = _pick(rng, elig & (ages >= 45) & (pat["drop"][:P] < s.last) & (np.arange(P) != late), 1)
    for p in cand:
        row = _take(pat, [p])
        row["drop"][:] += 1
        _append(pat, row)
        pat["birth"][p] += 3653
        s.note("correction", "patients", row["drop"][0], p, "birth_date corrected (was 10 years off)")

    # etiology in another case
    hbv = pat["etiology"] == 0
    for i in _pick(rng, hbv, max(1, int(round(0.01 * hbv.sum())))):
        pat["etiology"][i] = 4
        s.note("code_case", "patients", pat["drop"][i], pat["p"][i], "etiology 'Hbv'")


def _mess_vital_status(s: CleanRows) -> None:
    """vital_status.csv: draws the row with a death before HAIC start, corrected next drop."""
    vit, index = s.vit, s.index
    k = s.plan["death_before_haic"]
    if k is not None:
        cand = _pick(s.rng, (vit["drop"] == k) & (vit["death"] == m.MISSING) & s.elig[vit["p"]]
                     & (index[vit["p"]] <= s.C[k]), 1)
        for i in cand:
            p = vit["p"][i]
            nxt = (vit["p"] == p) & (vit["drop"] == k + 1)
            if not nxt.any():
                row = _take(vit, [i])
                row["drop"][:] = k + 1
                _append(vit, row)
            bad = index[p] - 40
            vit["last_contact"][i] = bad
            vit["death"][i] = bad
            s.note("death_before_haic", "vital_status", k, p,
                   "death_date 40 days before HAIC start; corrected next drop")


def _mess_treatments(s: CleanRows) -> None:
    """treatments.csv: draws the atezo-bev courses whose stop_reason is 'pd', the out-of-list
    regimen (RFA) on a post-index assessment day and the prior TACE ending before it starts."""
    rng, trt, ass, elig = s.rng, s.trt, s.ass, s.elig
    ab_pd = (trt["regimen"] == m.AB) & (trt["stop"] == m.S_PD) & (trt["end"] < m.NEVER) & (trt["end"] != m.MISSING)
    for p in _pick(rng, np.zeros(s.P, bool) | (elig & (s.group == 1)), 2):
        rows = np.flatnonzero(ab_pd & (trt["p"] == p))
        for i in rows:
            trt["stop"][i] = m.S_PD_LOWER
            s.note("code_case", "treatments", trt["drop"][i], p, "stop_reason 'pd'")
    # out-of-list regimen after index
    for i in _pick(rng, s.post_index_assessments(), 2):
        p, day = ass["p"][i], ass["day"][i]
        _append(trt, dict(drop=[ass["drop"][i]], p=[p], regimen=[m.RFA], start=[day], end=[day],
                          cycles=[1], stop=[m.S_COMP]))
        s.note("code_invalid", "treatments", ass["drop"][i], p, "regimen 'RFA'")
    # end_date before start_date on a prior TACE
    tace = (trt["regimen"] == m.TACE) & elig[np.clip(trt["p"], 0, None)]
    for i in _pick(rng, tace, 1):
        trt["end"][i] = trt["start"][i] - 31
        s.note("end_before_start", "treatments", trt["drop"][i], trt["p"][i], "TACE end_date before start_date")


def _mess_imaging(s: CleanRows) -> None:
    """imaging.csv: draws responses and modalities in another spelling, the out-of-list
    ultrasound rows (US, N/A) and the preliminary NE reads re-read in the next drop."""
    rng, img, last = s.rng, s.img, s.last
    for i in _pick(rng, img["response"] == m.R_PR, 2):
        img["response"][i] = m.R_PR_SPACES
        s.note("code_spaces", "imaging", img["drop"][i], img["p"][i], "mrecist_response ' PR '")
    for i in _pick(rng, img["response"] == m.R_PD, 1):
        img["response"][i] = m.R_PD_LOWER
        s.note("code_case", "imaging", img["drop"][i], img["p"][i], "mrecist_response 'pd'")
    for i in _pick(rng, img["modality"] == 0, 2):
        img["modality"][i] = 2
        s.note("code_case", "imaging", img["drop"][i], img["p"][i], "modality 'ct'")
    ok = img["day"] + 1 <= s.C[np.minimum(img["drop"], last)]
    for i in _pick(rng, ok & s.elig[img["p"]], 2):
        row = _take(img, [i])
        row["day"][:] += 1
        row["modality"][:] = 3
        row["response"][:] = m.R_NA
        _append(img, row)
        s.note("code_invalid", "imaging", row["drop"][0], row["p"][0], "modality 'US', mrecist_response 'N/A'")
    blocked = s.blocked()
    nxt_ok = np.array([(d + 1 <= last) and (d + 1 not in blocked) for d in range(s.D)] + [False])
    cand = nxt_ok[img["drop"]] & np.isin(img["response"], [m.R_SD, m.R_PR]) & s.elig[img["p"]]
    for i in _pick(rng, cand, 2):
        row = _take(img, [i])
        row["drop"][:] += 1
        _append(img, row)
        img["response"][i] = m.R_NE
        s.note("correction", "imaging", row["drop"][0], row["p"][0], "preliminary NE re-read next drop")


def _mess_assessments(s: CleanRows) -> None:
    """assessments.csv: draws ascites in another case and outside the list, and the ECOG
    values corrected in the next drop."""
    rng, ass = s.rng, s.ass
    post = s.post_index_assessments()
    for i in _pick(rng, ass["ascites"] == 1, 2):
        ass["ascites"][i] = 3
        s.note("code_case", "assessments", ass["drop"][i], ass["p"][i], "ascites 'Mild'")
    for i in _pick(rng, post & (ass["ascites"] == 0), 1):
        ass["ascites"][i] = 4
        s.note("code_invalid", "assessments", ass["drop"][i], ass["p"][i], "ascites 'severe'")
    cand = (ass["drop"] < s.last) & post
    for i in _pick(rng, cand, 2):
        row = _take(ass, [i])
        row["drop"][:] += 1
        _append(ass, row)
        ass["ecog"][i] = 3 if ass["ecog"][i] < 3 else 2
        s.note("correction", "assessments", row["drop"][0], row["p"][0], "ecog corrected")


def _mess_labs(s: CleanRows) -> None:
    """labs.csv: every row gets its value format (``fmt``); draws TBIL and ALB in other units,
    AST in another case, out-of-list GGT rows, a lab ten years in the future and values
    entered x10 (corrected in the next drop)."""
    rng, lab, elig = s.rng, s.lab, s.elig
    lab["fmt"] = m.TEST_FMT[lab["test"]]
    for test, unit, factor, fmt in ((2, 6, 17.1, 0), (1, 7, 10.0, 2)):
        cand = lab["test"] == test
        for i in _pick(rng, cand, max(3, int(0.005 * cand.sum()))):
            lab["value"][i] *= factor
            lab["unit"][i] = unit
            lab["fmt"][i] = fmt
        s.notes.setdefault("lab_units", []).append(
            {"domain": "labs", "drop": None, "patient_id": None,
             "what": f"{m.TESTS[test]} in {m.UNITS[unit]}: {max(3, int(0.005 * cand.sum()))} rows"})
    for i in _pick(rng, lab["test"] == 6, 2):
        lab["test"][i] = 9
        s.note("code_case", "labs", lab["drop"][i], lab["p"][i], "test_code 'ast'")
    sel = _pick(rng, (lab["test"] == 5) & elig[lab["p"]], 3)
    rows = _take(lab, sel)
    rows["test"][:] = 8
    rows["unit"][:] = 5
    rows["fmt"][:] = 2
    rows["value"][:] = rows["value"] * 1.3
    _append(lab, rows)
    for i in sel:
        s.note("code_invalid", "labs", lab["drop"][i], lab["p"][i], "test_code 'GGT'")
    fd = s.plan["future_date"]
    for i in _pick(rng, (lab["drop"] == fd) & (lab["test"] == 5) & elig[lab["p"]], 1):
        row = _take(lab, [i])
        row["minute"][:] += 3653 * 1440 - 60  # ten years on, an hour earlier: a unique key
        _append(lab, row)
        s.note("future_date", "labs", fd, row["p"][0], "collected_at ten years in the future")
    cand = (lab["drop"] < s.last) & np.isin(lab["test"], [4, 5, 7]) & (lab["fmt"] != 3)
    ncorr = max(3, int(0.0002 * lab["p"].size))
    sel = _pick(rng, cand, ncorr)
    rows = _take(lab, sel)
    rows["drop"] = rows["drop"] + 1
    _append(lab, rows)
    lab["value"][sel] *= 10
    s.notes.setdefault("correction", []).append({"domain": "labs", "drop": None, "patient_id": None,
                                                 "what": f"{ncorr} lab values x10, corrected next drop"})


def _add_orphans(s: CleanRows) -> None:
    """Rows of two patient ids never in any patients.csv: labs, imaging and vital_status in
    the first orphan drop, treatments and assessments in the last. Draws nothing."""
    orph = s.plan["orphans"]
    if orph:
        k0, k1 = orph[0], orph[-1]
        p0, p1 = -1, -2
        d0 = int(s.C[k0]) - 20
        d1 = int(s.C[k1]) - 25
        _append(s.lab, dict(drop=[k0] * 8, p=[p0] * 8, minute=[d0 * 1440 + 500] * 8, test=np.arange(8),
                            value=[35.0, 3.6, 0.9, 1.1, 140.0, 30.0, 40.0, 0.8], unit=m.TEST_UNIT[:8],
                            fmt=m.TEST_FMT[:8]))
        _append(s.img, dict(drop=[k0], p=[p0], day=[d0], modality=[0], response=[m.R_SD]))
        _append(s.vit, dict(drop=[k0], p=[p0], last_contact=[d0], death=[m.MISSING]))
        _append(s.trt, dict(drop=[k1], p=[p1], regimen=[m.HAIC], start=[d1], end=[m.MISSING], cycles=[1], stop=[-1]))
        _append(s.ass, dict(drop=[k1], p=[p1], day=[d1], ecog=[1], ascites=[0], enceph=[0], tumor_count=[2],
                            size=[4.2], pvi=[1], ehm=[1]))
        s.note("orphan", "labs", k0, p0, "labs, imaging and vital_status of an unknown patient")
        s.note("orphan", "treatments", k1, p1, "treatments and assessments of an unknown patient")


def _add_duplicates(s: CleanRows) -> None:
    """Draws the rows repeated exactly within their file (none in an empty or absent
    imaging.csv's drop)."""
    blocked = s.blocked()
    for name, tab, n in (("labs", s.lab, 5), ("assessments", s.ass, 2), ("imaging", s.img, 1),
                         ("treatments", s.trt, 1), ("vital_status", s.vit, 1)):
        cand = tab["p"] >= 0
        if name == "imaging":
            cand &= ~np.isin(tab["drop"], [d for d in blocked if d is not None])
        sel = _pick(s.rng, cand, n)
        for i in sel:
            s.note("duplicate", name, tab["drop"][i], tab["p"][i], "exact duplicate row")
        _append(tab, _take(tab, sel))


def _frame(s: CleanRows, ids, tab, sort_cols, columns) -> pd.DataFrame:
    """One domain's frame: ``drop``, ``patient_id`` and ``columns`` (name -> (source array,
    categories or None)), rows in drop, patient_id, ``sort_cols[1:]`` order."""
    pidv = ids[tab["p"]]
    o = _order([tab["drop"], pidv] + [tab[c] for c in sort_cols[1:]])
    out = {"drop": tab["drop"][o].astype(np.int32), "patient_id": pidv[o].astype(np.int64)}
    for name, (src, cats) in columns.items():
        v = tab[src][o] if src != "__name__" else s.names[tab["p"][o]]
        out[name] = m.categorical(v, cats) if cats is not None else v
    return pd.DataFrame(out)


def _frames(s: CleanRows) -> dict[str, pd.DataFrame]:
    """The six domains' frames, coded columns as Categoricals over their code lists."""
    ids = np.r_[s.pid, s.orphan_ids[::-1]]  # p = -1 -> orphan_ids[0], p = -2 -> orphan_ids[1]
    return {
        "patients": _frame(s, ids, s.pat, ["p"], {
            "patient_name": ("__name__", None), "birth_date": ("birth", None), "sex": ("sex", m.SEXES),
            "etiology": ("etiology", m.ETIOLOGIES), "hcc_diagnosis_date": ("hcc_dx", None),
            "consent_status": ("consent", m.CONSENTS)}),
        "treatments": _frame(s, ids, s.trt, ["p", "start", "regimen"], {
            "regimen": ("regimen", m.REGIMENS), "start_date": ("start", None), "end_date": ("end", None),
            "cycles": ("cycles", None), "stop_reason": ("stop", m.STOPS)}),
        "assessments": _frame(s, ids, s.ass, ["p", "day"], {
            "assessment_date": ("day", None), "ecog": ("ecog", None), "ascites": ("ascites", m.ASCITES),
            "encephalopathy": ("enceph", m.ENCEPH), "tumor_count": ("tumor_count", None),
            "max_tumor_size_cm": ("size", None), "portal_vein_invasion": ("pvi", m.YN),
            "extrahepatic_metastasis": ("ehm", m.YN)}),
        "labs": _frame(s, ids, s.lab, ["p", "minute", "test"], {
            "collected_at": ("minute", None), "test_code": ("test", m.TESTS), "value": ("value", None),
            "unit": ("unit", m.UNITS), "fmt": ("fmt", None)}),
        "imaging": _frame(s, ids, s.img, ["p", "day"], {
            "scan_date": ("day", None), "modality": ("modality", m.MODALITIES),
            "mrecist_response": ("response", m.RESPONSES)}),
        "vital_status": _frame(s, ids, s.vit, ["p"], {
            "last_contact_date": ("last_contact", None), "death_date": ("death", None)}),
    }
