"""Helpers for the study tests: hand-built drops landed through the real loader and staging
models into a real DuckDB file, then the study models on top."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import pytest

from haic_pipeline.ingest import patient_key
from haic_pipeline.study import build_study

from ..conftest import TEST_KEY
from ..dropkit import land, patient, write_drop

E1, E2 = "20240801T020000Z", "20240901T020000Z"
CUTOFF1, CUTOFF2 = "2024-07-31", "2024-08-31"
INDEX = "2023-01-10"


def key(pid: str) -> str:
    return patient_key(pid, TEST_KEY)


def day(base: str, offset: int) -> str:
    """base (YYYY-MM-DD) shifted by offset days, as YYYY-MM-DD."""
    return (date.fromisoformat(base) + timedelta(days=offset)).isoformat()


class Drop:
    """Rows of one drop, built per patient."""

    def __init__(self):
        self.files: dict[str, list[dict]] = defaultdict(list)

    def add(self, file: str, **row) -> "Drop":
        self.files[file].append(row)
        return self

    def patient(self, pid, **kw):
        return self.add("patients.csv", **patient(pid, **kw))

    def course(self, pid, regimen, start, end=None, stop=None, cycles="3"):
        return self.add("treatments.csv", patient_id=pid, regimen=regimen, start_date=start, end_date=end,
                        cycles=cycles, stop_reason=stop)

    def visit(self, pid, when, **kw):
        row = {"ecog": "0", "ascites": "none", "encephalopathy": "none", "tumor_count": "1",
               "max_tumor_size_cm": "2.0", "portal_vein_invasion": "N", "extrahepatic_metastasis": "N"} | kw
        return self.add("assessments.csv", patient_id=pid, assessment_date=when, **row)

    def lab(self, pid, when, code, value, unit=None):
        unit = unit if unit is not None else {"TBIL": "mg/dL", "ALB": "g/dL", "INR": "", "AFP": "ng/mL"}[code]
        when = when if " " in when else when + " 08:00"
        return self.add("labs.csv", patient_id=pid, collected_at=when, test_code=code, value=value, unit=unit)

    def scan(self, pid, when, response, modality="CT"):
        return self.add("imaging.csv", patient_id=pid, scan_date=when, modality=modality, mrecist_response=response)

    def vital(self, pid, last, death=None):
        return self.add("vital_status.csv", patient_id=pid, last_contact_date=last, death_date=death)

    def eligible(self, pid, index=INDEX, *, post_ab=False, vital=True, labs=True, visit=True, **patient_kw):
        """A patient who is included: first_line (or post_ate_beva), baseline visit and labs at
        index - 5 d (Child-Pugh 5 A, BCLC A), alive at the cutoff."""
        self.patient(pid, **patient_kw)
        self.course(pid, "HAIC_FP", index, cycles="4")
        if post_ab:
            self.course(pid, "ATEZO_BEVA", day(index, -200), day(index, -20), "PD")
        if visit:
            self.visit(pid, day(index, -5))
        if labs:
            for code, value in (("TBIL", "1.0"), ("ALB", "4.0"), ("INR", "1.0"), ("AFP", "10")):
                self.lab(pid, day(index, -5), code, value)
        if vital:
            self.vital(pid, CUTOFF1)
        return self


def land_study(env, con, contracts, extract_id, drop: Drop | dict, data_cutoff):
    """Write the drop, land every new complete drop, then build the study tables."""
    files = drop.files if isinstance(drop, Drop) else drop
    write_drop(env / "inbox", extract_id, dict(files), data_cutoff=data_cutoff)
    land(con, env / "inbox", contracts)
    assert con.execute("SELECT count(*) FROM ops.quarantine").fetchone()[0] == 0, \
        con.execute("SELECT * FROM ops.quarantine").fetchall()
    return build_study(con)


def rows(con, table: str) -> dict[str, dict]:
    """table rows keyed by patient_key."""
    cur = con.execute(f"SELECT * FROM {table}")
    names = [c[0] for c in cur.description]
    return {r[0]: dict(zip(names, r)) for r in cur.fetchall()}


@pytest.fixture
def study(env, con, contracts):
    """study(drop, extract_id=E1, data_cutoff=CUTOFF1) -> (cohort rows, endpoint rows) by patient_id lookup."""

    class Tables:
        def __init__(self, results):
            self.results = results
            self._cohort = rows(con, "staging.cohort")
            self._endpoints = rows(con, "staging.endpoints")

        def cohort(self, pid):
            return self._cohort[key(pid)]

        def endpoints(self, pid):
            return self._endpoints.get(key(pid))

    def run(drop, extract_id=E1, data_cutoff=CUTOFF1):
        return Tables(land_study(env, con, contracts, extract_id, drop, data_cutoff))

    return run
