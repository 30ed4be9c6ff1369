"""Inject the known messiness of extract_spec.md into the clean simulated rows.

Every injection touches a handful of rows (the study must still work) and is recorded in
``Extract.notes`` (domain, drop, patient_id, what) so tests can find it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import codes as m


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


def apply_messiness(rng, ex, t, *, names, pid, orphan_ids, kind, index, group, C, K, base_day):
    D = ex.drops
    plan = ex.plan
    notes = ex.notes
    P = pid.size
    elig = kind == m.KIND_ELIGIBLE
    last = D - 1
    pat, trt, ass, lab, img, vit = (t[k] for k in ("patients", "treatments", "assessments", "labs",
                                                    "imaging", "vital_status"))
    lab["fmt"] = m.TEST_FMT[lab["test"]]

    def note(key, domain, drop, p, what):
        notes.setdefault(key, []).append(
            {"domain": domain, "drop": int(drop),
             "patient_id": f"{pid[p]:08d}" if p >= 0 else f"{orphan_ids[-p - 1]:08d}", "what": what})

    # imaging deferred past the empty / absent imaging files (= no changes in that drop)
    for key in ("empty_file", "absent_file"):
        e = plan[key]
        if e is not None:
            img["drop"][img["drop"] == e] = e + 1
            notes.setdefault(key, []).append({"domain": "imaging", "drop": e, "patient_id": None,
                                              "what": "imaging.csv " + ("with zero data rows" if key == "empty_file" else "absent")})

    # a patient whose patients.csv row arrives one drop after their other rows
    late = -1
    L = plan["late_patient_row"]
    if L is not None:
        cand = _pick(rng, elig & (pat["drop"] == L), 1)
        if cand.size:
            late = int(cand[0])
            pat["drop"][late] = L + 1
            note("late_patient_row", "patients", L + 1, late, f"rows from drop {L}, patients row in drop {L + 1}")

    # consent withdrawn in a later drop
    W = plan["withdrawn"]
    wp = np.flatnonzero(kind == m.KIND_WITHDRAWN)
    if W is not None:
        for p in wp:
            if pat["drop"][p] < W:
                row = _take(pat, [p])
                row["drop"][:] = W
                row["consent"][:] = 1
                _append(pat, row)
                note("withdrawn", "patients", W, p, "consent_status becomes withdrawn")

    # birth_date entered 10 years off, corrected in the next drop
    ages = (index - pat["birth"][:P]) / 365.25
    cand = _pick(rng, elig & (ages >= 45) & (pat["drop"][:P] < last) & (np.arange(P) != late), 1)
    for p in cand:
        row = _take(pat, [p])
        row["drop"][:] += 1
        _append(pat, row)
        pat["birth"][p] += 3653
        note("correction", "patients", row["drop"][0], p, "birth_date corrected (was 10 years off)")

    # etiology in another case
    hbv = pat["etiology"] == 0
    for i in _pick(rng, hbv, max(1, int(round(0.01 * hbv.sum())))):
        pat["etiology"][i] = 4
        note("code_case", "patients", pat["drop"][i], pat["p"][i], "etiology 'Hbv'")

    # ---- vital status: death before HAIC start, corrected in the next drop
    k = plan["death_before_haic"]
    if k is not None:
        cand = _pick(rng, (vit["drop"] == k) & (vit["death"] == m.MISSING) & elig[vit["p"]]
                     & (index[vit["p"]] <= C[k]), 1)
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
            note("death_before_haic", "vital_status", k, p, "death_date 40 days before HAIC start; corrected next drop")

    # ---- treatments
    ab_pd = (trt["regimen"] == m.AB) & (trt["stop"] == m.S_PD) & (trt["end"] < m.NEVER) & (trt["end"] != m.MISSING)
    for p in _pick(rng, np.zeros(P, bool) | (elig & (group == 1)), 2):
        rows = np.flatnonzero(ab_pd & (trt["p"] == p))
        for i in rows:
            trt["stop"][i] = m.S_PD_LOWER
            note("code_case", "treatments", trt["drop"][i], p, "stop_reason 'pd'")
    # out-of-list regimen after index
    post = (ass["day"] > index[ass["p"]]) & elig[ass["p"]]
    for i in _pick(rng, post, 2):
        p, day = ass["p"][i], ass["day"][i]
        _append(trt, dict(drop=[ass["drop"][i]], p=[p], regimen=[m.RFA], start=[day], end=[day],
                          cycles=[1], stop=[m.S_COMP]))
        note("code_invalid", "treatments", ass["drop"][i], p, "regimen 'RFA'")
    # end_date before start_date on a prior TACE
    tace = (trt["regimen"] == m.TACE) & elig[np.clip(trt["p"], 0, None)]
    for i in _pick(rng, tace, 1):
        trt["end"][i] = trt["start"][i] - 31
        note("end_before_start", "treatments", trt["drop"][i], trt["p"][i], "TACE end_date before start_date")

    # ---- imaging
    for i in _pick(rng, img["response"] == m.R_PR, 2):
        img["response"][i] = m.R_PR_SPACES
        note("code_spaces", "imaging", img["drop"][i], img["p"][i], "mrecist_response ' PR '")
    for i in _pick(rng, img["response"] == m.R_PD, 1):
        img["response"][i] = m.R_PD_LOWER
        note("code_case", "imaging", img["drop"][i], img["p"][i], "mrecist_response 'pd'")
    for i in _pick(rng, img["modality"] == 0, 2):
        img["modality"][i] = 2
        note("code_case", "imaging", img["drop"][i], img["p"][i], "modality 'ct'")
    ok = img["day"] + 1 <= C[np.minimum(img["drop"], last)]
    for i in _pick(rng, ok & elig[img["p"]], 2):
        row = _take(img, [i])
        row["day"][:] += 1
        row["modality"][:] = 3
        row["response"][:] = m.R_NA
        _append(img, row)
        note("code_invalid", "imaging", row["drop"][0], row["p"][0], "modality 'US', mrecist_response 'N/A'")
    blocked = {plan["empty_file"], plan["absent_file"]}
    nxt_ok = np.array([(d + 1 <= last) and (d + 1 not in blocked) for d in range(D)] + [False])
    cand = nxt_ok[img["drop"]] & np.isin(img["response"], [m.R_SD, m.R_PR]) & elig[img["p"]]
    for i in _pick(rng, cand, 2):
        row = _take(img, [i])
        row["drop"][:] += 1
        _append(img, row)
        img["response"][i] = m.R_NE
        note("correction", "imaging", row["drop"][0], row["p"][0], "preliminary NE re-read next drop")

    # ---- assessments
    for i in _pick(rng, ass["ascites"] == 1, 2):
        ass["ascites"][i] = 3
        note("code_case", "assessments", ass["drop"][i], ass["p"][i], "ascites 'Mild'")
    for i in _pick(rng, post & (ass["ascites"] == 0), 1):
        ass["ascites"][i] = 4
        note("code_invalid", "assessments", ass["drop"][i], ass["p"][i], "ascites 'severe'")
    cand = (ass["drop"] < last) & post
    for i in _pick(rng, cand, 2):
        row = _take(ass, [i])
        row["drop"][:] += 1
        _append(ass, row)
        ass["ecog"][i] = 3 if ass["ecog"][i] < 3 else 2
        note("correction", "assessments", row["drop"][0], row["p"][0], "ecog corrected")

    # ---- labs
    for test, unit, factor, fmt in ((2, 6, 17.1, 0), (1, 7, 10.0, 2)):
        cand = lab["test"] == test
        for i in _pick(rng, cand, max(3, int(0.005 * cand.sum()))):
            lab["value"][i] *= factor
            lab["unit"][i] = unit
            lab["fmt"][i] = fmt
        notes.setdefault("lab_units", []).append(
            {"domain": "labs", "drop": None, "patient_id": None,
             "what": f"{m.TESTS[test]} in {m.UNITS[unit]}: {max(3, int(0.005 * cand.sum()))} rows"})
    for i in _pick(rng, lab["test"] == 6, 2):
        lab["test"][i] = 9
        note("code_case", "labs", lab["drop"][i], lab["p"][i], "test_code 'ast'")
    sel = _pick(rng, (lab["test"] == 5) & elig[lab["p"]], 3)
    rows = _take(lab, sel)
    rows["test"][:] = 8
    rows["unit"][:] = 5
    rows["fmt"][:] = 2
    rows["value"][:] = rows["value"] * 1.3
    _append(lab, rows)
    for i in sel:
        note("code_invalid", "labs", lab["drop"][i], lab["p"][i], "test_code 'GGT'")
    fd = plan["future_date"]
    for i in _pick(rng, (lab["drop"] == fd) & (lab["test"] == 5) & elig[lab["p"]], 1):
        row = _take(lab, [i])
        row["minute"][:] += 3653 * 1440 - 60  # ten years on, an hour earlier: a unique key
        _append(lab, row)
        note("future_date", "labs", fd, row["p"][0], "collected_at ten years in the future")
    cand = (lab["drop"] < last) & np.isin(lab["test"], [4, 5, 7]) & (lab["fmt"] != 3)
    ncorr = max(3, int(0.0002 * lab["p"].size))
    sel = _pick(rng, cand, ncorr)
    rows = _take(lab, sel)
    rows["drop"] = rows["drop"] + 1
    _append(lab, rows)
    lab["value"][sel] *= 10
    notes.setdefault("correction", []).append({"domain": "labs", "drop": None, "patient_id": None,
                                               "what": f"{ncorr} lab values x10, corrected next drop"})

    # ---- orphans: patient ids never in any patients.csv
    orph = plan["orphans"]
    if orph:
        k0, k1 = orph[0], orph[-1]
        p0, p1 = -1, -2
        d0 = int(C[k0]) - 20
        d1 = int(C[k1]) - 25
        _append(lab, dict(drop=[k0] * 8, p=[p0] * 8, minute=[d0 * 1440 + 500] * 8, test=np.arange(8),
                          value=[35.0, 3.6, 0.9, 1.1, 140.0, 30.0, 40.0, 0.8], unit=m.TEST_UNIT[:8],
                          fmt=m.TEST_FMT[:8]))
        _append(img, dict(drop=[k0], p=[p0], day=[d0], modality=[0], response=[m.R_SD]))
        _append(vit, dict(drop=[k0], p=[p0], last_contact=[d0], death=[m.MISSING]))
        _append(trt, dict(drop=[k1], p=[p1], regimen=[m.HAIC], start=[d1], end=[m.MISSING], cycles=[1], stop=[-1]))
        _append(ass, dict(drop=[k1], p=[p1], day=[d1], ecog=[1], ascites=[0], enceph=[0], tumor_count=[2],
                          size=[4.2], pvi=[1], ehm=[1]))
        note("orphan", "labs", k0, p0, "labs, imaging and vital_status of an unknown patient")
        note("orphan", "treatments", k1, p1, "treatments and assessments of an unknown patient")

    # ---- exact duplicate rows within a file
    for name, tab, n in (("labs", lab, 5), ("assessments", ass, 2), ("imaging", img, 1),
                         ("treatments", trt, 1), ("vital_status", vit, 1)):
        cand = tab["p"] >= 0
        if name == "imaging":
            cand &= ~np.isin(tab["drop"], [d for d in blocked if d is not None])
        sel = _pick(rng, cand, n)
        for i in sel:
            note("duplicate", name, tab["drop"][i], tab["p"][i], "exact duplicate row")
        _append(tab, _take(tab, sel))

    # ---- to frames
    ids = np.r_[pid, orphan_ids[::-1]]  # p = -1 -> orphan_ids[0], p = -2 -> orphan_ids[1]

    def frame(tab, sort_cols, columns):
        pidv = ids[tab["p"]]
        o = _order([tab["drop"], pidv] + [tab[c] for c in sort_cols[1:]])
        out = {"drop": tab["drop"][o].astype(np.int32), "patient_id": pidv[o].astype(np.int64)}
        for name, (src, cats) in columns.items():
            v = tab[src][o] if src != "__name__" else names[tab["p"][o]]
            out[name] = m.categorical(v, cats) if cats is not None else v
        return pd.DataFrame(out)

    tables = {
        "patients": frame(pat, ["p"], {
            "patient_name": ("__name__", None), "birth_date": ("birth", None), "sex": ("sex", m.SEXES),
            "etiology": ("etiology", m.ETIOLOGIES), "hcc_diagnosis_date": ("hcc_dx", None),
            "consent_status": ("consent", m.CONSENTS)}),
        "treatments": frame(trt, ["p", "start", "regimen"], {
            "regimen": ("regimen", m.REGIMENS), "start_date": ("start", None), "end_date": ("end", None),
            "cycles": ("cycles", None), "stop_reason": ("stop", m.STOPS)}),
        "assessments": frame(ass, ["p", "day"], {
            "assessment_date": ("day", None), "ecog": ("ecog", None), "ascites": ("ascites", m.ASCITES),
            "encephalopathy": ("enceph", m.ENCEPH), "tumor_count": ("tumor_count", None),
            "max_tumor_size_cm": ("size", None), "portal_vein_invasion": ("pvi", m.YN),
            "extrahepatic_metastasis": ("ehm", m.YN)}),
        "labs": frame(lab, ["p", "minute", "test"], {
            "collected_at": ("minute", None), "test_code": ("test", m.TESTS), "value": ("value", None),
            "unit": ("unit", m.UNITS), "fmt": ("fmt", None)}),
        "imaging": frame(img, ["p", "day"], {
            "scan_date": ("day", None), "modality": ("modality", m.MODALITIES),
            "mrecist_response": ("response", m.RESPONSES)}),
        "vital_status": frame(vit, ["p"], {
            "last_contact_date": ("last_contact", None), "death_date": ("death", None)}),
    }
    # patients.csv of the patients whose names must be encodable; p<0 never in patients
    return tables
