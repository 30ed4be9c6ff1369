"""A deliberately small, independent reading of the synthetic drops for the generator's tests.

Not the pipeline: it merges the drops by natural key (newest drop wins), normalises code
case/spaces, drops rows with codes outside the lists or orphan patient ids, converts lab units,
and derives the study_spec cohort / endpoints just far enough to check the calibration.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = {
    "patients": ["patient_id"],
    "treatments": ["patient_id", "regimen", "start_date"],
    "assessments": ["patient_id", "assessment_date"],
    "labs": ["patient_id", "collected_at", "test_code"],
    "imaging": ["patient_id", "scan_date"],
    "vital_status": ["patient_id"],
}
CODES = {
    "sex": {"M", "F"}, "etiology": {"HBV", "HCV", "ALCOHOL", "OTHER"},
    "consent_status": {"active", "withdrawn"},
    "regimen": {"HAIC_FP", "ATEZO_BEVA", "SORAFENIB", "LENVATINIB", "TACE", "OTHER"},
    "stop_reason": {"PD", "TOXICITY", "COMPLETED", "DEATH", "OTHER"},
    "ascites": {"none", "mild", "moderate_severe"}, "encephalopathy": {"none", "grade_1_2", "grade_3_4"},
    "portal_vein_invasion": {"Y", "N"}, "extrahepatic_metastasis": {"Y", "N"},
    "test_code": {"AFP", "ALB", "TBIL", "INR", "PLT", "ALT", "AST", "CREA"},
    "modality": {"CT", "MRI"}, "mrecist_response": {"CR", "PR", "SD", "PD", "NE"},
}
LOWER = {"consent_status", "ascites", "encephalopathy"}
MONTH = 30.4375


def read_drop(folder: Path) -> tuple[dict, dict]:
    man = json.loads((folder / "manifest.json").read_text())
    enc = "utf-8-sig" if man["encoding"] == "utf-8" else man["encoding"]
    out = {}
    for name in man["files"]:
        text = (folder / name).read_bytes().decode(enc)
        out[name[:-4]] = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return man, out


def merged(folders) -> dict:
    frames = {d: [] for d in KEYS}
    cutoff = None
    for rank, f in enumerate(sorted(folders)):
        man, data = read_drop(Path(f))
        cutoff = man["data_cutoff"]
        for d, df in data.items():
            df = df.copy()
            df["_rank"] = rank
            frames[d].append(df)
    out = {}
    for d, parts in frames.items():
        df = pd.concat(parts, ignore_index=True).replace("", np.nan)
        for col, ok in CODES.items():
            if col in df:
                v = df[col].str.strip()
                v = v.str.lower() if col in LOWER else v.str.upper()
                df[col] = v
                df = df[v.isna() | v.isin(ok)] if col != "stop_reason" else df[v.isna() | v.isin(ok)]
        df = df.sort_values("_rank", kind="stable").drop_duplicates(KEYS[d], keep="last")
        out[d] = df.drop(columns="_rank").reset_index(drop=True)
    known = set(out["patients"]["patient_id"])
    for d in KEYS:
        out[d] = out[d][out[d]["patient_id"].isin(known)].reset_index(drop=True)
    labs = out["labs"]
    v = pd.to_numeric(labs["value"].str.lstrip("<>"), errors="coerce")
    v = np.where(labs["unit"] == "umol/L", v / 17.1, v)
    v = np.where(labs["unit"] == "g/L", v / 10, v)
    labs["num"] = v
    out["cutoff"] = pd.Timestamp(cutoff)
    return out


def cohort(m: dict) -> pd.DataFrame:
    cut = m["cutoff"]
    pat = m["patients"].set_index("patient_id")
    trt = m["treatments"].copy()
    for c in ("start_date", "end_date"):
        trt[c] = pd.to_datetime(trt[c], errors="coerce")
    haic = trt[trt.regimen == "HAIC_FP"].groupby("patient_id").start_date.min()
    vit = m["vital_status"].set_index("patient_id")
    by_p = dict(tuple(trt.groupby("patient_id")))
    empty = trt.iloc[:0]
    rows = []
    for p, r in pat.iterrows():
        idx = haic.get(p)
        excl, grp = None, None
        if r.consent_status == "withdrawn":
            excl = "consent_withdrawn"
        elif idx is None or pd.isna(idx):
            excl = "no_haic"
        elif idx < pd.Timestamp("2022-03-01"):
            excl = "index_before_study_start"
        elif idx > cut:
            excl = "index_after_cutoff"
        else:
            b = pd.Timestamp(r.birth_date)
            age = idx.year - b.year - ((idx.month, idx.day) < (b.month, b.day))
            tp = by_p.get(p, empty)
            before = tp[tp.start_date < idx]
            sysx = before[before.regimen.isin(["ATEZO_BEVA", "SORAFENIB", "LENVATINIB", "OTHER"])]
            ab = sysx[sysx.regimen == "ATEZO_BEVA"].sort_values("start_date")
            if sysx.empty:
                grp = "first_line"
            elif len(ab) == len(sysx) and ab.iloc[-1].stop_reason == "PD":
                grp = "post_ate_beva"
            if age < 18:
                excl = "age_under_18"
            elif grp is None:
                excl = "prior_other_systemic"
            elif p not in vit.index:
                excl = "no_follow_up"
        rows.append(dict(patient_id=p, index_date=idx, group=grp if excl is None else None,
                         exclusion_reason=excl, included=excl is None))
    return pd.DataFrame(rows)


def endpoints(m: dict, coh: pd.DataFrame) -> pd.DataFrame:
    cut = m["cutoff"]
    inc = coh[coh.included].set_index("patient_id")
    vit = m["vital_status"].set_index("patient_id")
    img = m["imaging"].copy()
    img["scan_date"] = pd.to_datetime(img.scan_date, errors="coerce")
    by_p = dict(tuple(img.groupby("patient_id")))
    empty = img.iloc[:0]
    out = []
    for p, r in inc.iterrows():
        idx = r.index_date
        v = vit.loc[p]
        dd = pd.to_datetime(v.death_date) if isinstance(v.death_date, str) else None
        lc = pd.Timestamp(v.last_contact_date)
        if dd is not None and dd <= cut:
            os_t, os_e = (dd - idx).days, 1
        else:
            os_t, os_e = (min(lc, cut) - idx).days, 0
        sc = by_p.get(p, empty)
        sc = sc[sc.scan_date > idx].sort_values("scan_date")
        pd_rows = sc[sc.mrecist_response == "PD"]
        first_pd = pd_rows.scan_date.iloc[0] if len(pd_rows) else None
        upto = sc[sc.scan_date <= first_pd] if first_pd is not None else sc
        upto = upto[upto.mrecist_response != "NE"]
        ev = [t for t in ((first_pd - idx).days if first_pd is not None else None,
                          os_t if os_e else None) if t is not None]
        if ev:
            pfs_t, pfs_e = min(ev), 1
        else:
            nonpd = upto[upto.mrecist_response.isin(["CR", "PR", "SD"])]
            pfs_t, pfs_e = ((nonpd.scan_date.iloc[-1] - idx).days if len(nonpd) else 0), 0
        resp = list(zip(upto.scan_date, upto.mrecist_response))
        best = "NE"
        if any(a[1] == "CR" and b[1] == "CR" and (b[0] - a[0]).days >= 28
               for i, a in enumerate(resp) for b in resp[i + 1:]):
            best = "CR"
        elif any(a[1] in ("CR", "PR") and b[1] in ("CR", "PR") and (b[0] - a[0]).days >= 28
                 for i, a in enumerate(resp) for b in resp[i + 1:]):
            best = "PR"
        elif any(s != "PD" and (d - idx).days >= 42 for d, s in resp):
            best = "SD"
        elif first_pd is not None:
            best = "PD"
        out.append(dict(patient_id=p, group=r.group, os_months=os_t / MONTH, os_event=os_e,
                        pfs_months=pfs_t / MONTH, pfs_event=pfs_e, best_response=best))
    return pd.DataFrame(out)


def km_median(t, e):
    """Kaplan-Meier median (first time S < 0.5; None if not reached)."""
    t = np.asarray(t, float)
    e = np.asarray(e, int)
    s = 1.0
    for u in np.unique(t[e == 1]):
        n = (t >= u).sum()
        d = ((t == u) & (e == 1)).sum()
        s *= 1 - d / n
        if s < 0.5:
            return float(u)
    return None
