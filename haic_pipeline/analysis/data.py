"""What the analysis reads: the included patients of staging.cohort with their endpoints from
staging.endpoints, the provenance of that state, and the one place where the Cox candidates
and the Table 1 variables are derived from the cohort columns.

No statistics here (they are in haic_pipeline.stats) and no Dagster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from haic_pipeline.stats import binary_indicator

#: study_spec §4 codes
ENDPOINTS = ("OS", "PFS")
GROUPS = ("first_line", "post_ate_beva")  # first_line is the reference (§ "Comparison groups")
SUMMARY_GROUPS = ("overall", *GROUPS)
#: endpoint code -> (time column, event column) of staging.endpoints (times in months)
ENDPOINT_COLUMNS = {"OS": ("os_months", "os_event"), "PFS": ("pfs_months", "pfs_event")}
LANDMARK_MONTHS = 12.0

#: §3 Cox candidates, in the spec's order (1 = the first named level); derived by cox_terms()
COX_TERMS = (
    "group",                    # post_ate_beva (1) vs first_line (0)
    "age_ge_65",                # age >= 65 years at index
    "sex_male",                 # sex 'M' vs 'F'
    "etiology_hbv",             # etiology 'HBV' vs any other etiology
    "ecog_0",                   # ECOG 0 vs >= 1
    "child_pugh_a",             # Child-Pugh class A vs B/C
    "bclc_c_d",                 # BCLC C/D vs A/B
    "afp_ge_400",               # AFP >= 400 ng/mL (staging.cohort.afp_ge_400)
    "multiple_tumors",          # tumour count >= 2 (staging.cohort.multiple_tumors)
    "tumor_size_gt_10",         # largest tumour > 10 cm (staging.cohort.tumor_size_gt_10)
    "portal_vein_invasion",
    "extrahepatic_metastasis",
)

#: Table 1 (the paper's baseline variables): continuous, then categorical, from staging.cohort
TABLE1_CONTINUOUS = ("age",)
TABLE1_CATEGORICAL = (
    "sex", "etiology", "ecog", "child_pugh_class", "bclc_stage", "afp_ge_400",
    "multiple_tumors", "tumor_size_gt_10", "portal_vein_invasion", "extrahepatic_metastasis",
)
TABLE1_BOOLEAN = ("afp_ge_400", "multiple_tumors", "tumor_size_gt_10", "portal_vein_invasion",
                  "extrahepatic_metastasis")
#: level order of the categorical rows (levels not listed here are appended, sorted)
TABLE1_LEVELS = {
    "sex": ["M", "F"],
    "etiology": ["HBV", "HCV", "ALCOHOL", "OTHER"],
    "ecog": ["0", "1", "2", "3", "4"],
    "child_pugh_class": ["A", "B", "C"],
    "bclc_stage": ["A", "B", "C", "D"],
    **{b: ["yes", "no"] for b in TABLE1_BOOLEAN},
}

COHORT_COLUMNS = (
    "age", "sex", "etiology", "ecog", "child_pugh_class", "bclc_stage", "afp_ge_400",
    "multiple_tumors", "tumor_size_gt_10", "portal_vein_invasion", "extrahepatic_metastasis",
)
ENDPOINT_VALUE_COLUMNS = ("os_months", "os_event", "pfs_months", "pfs_event", "best_response",
                          "objective_response", "disease_control")


def finite_or_none(x) -> float | None:
    """A finite float, or None: NaN and +-inf are never stored (an analysis row says why instead)."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


class AnalysisInputError(RuntimeError):
    """staging.cohort / staging.endpoints are not in a state the analysis can use."""


@dataclass(frozen=True)
class Provenance:
    """Which warehouse state a result was computed from: the newest loaded drop
    (``extract_id``), its ``data_cutoff`` and every loaded drop up to it (``drops``)."""

    extract_id: str | None
    data_cutoff: str | None  # ISO date
    drops: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """One line for figures, reports and metadata (no patient-level content)."""
        if not self.extract_id:
            return "no drop loaded"
        if len(self.drops) > 1:
            drops = f"{len(self.drops)} drops ({self.drops[0]} \u2026 {self.drops[-1]})"
            return f"computed from {drops}; newest drop {self.extract_id}, data cutoff {self.data_cutoff}"
        return f"computed from drop {self.extract_id}, data cutoff {self.data_cutoff}"

    def metadata(self) -> dict:
        return {"extract_id": self.extract_id or "", "data_cutoff": self.data_cutoff or "",
                "drops": len(self.drops)}


@dataclass
class StudyData:
    """One row per included patient: cohort covariates + endpoints (no patient_key).

    ``left_out`` lists, per endpoint, the patients whose time is negative in staging.endpoints
    (set to missing in ``frame``, so every survival analysis of that endpoint leaves them out):
    a censoring date before the index date (e.g. the last contact was the pre-treatment visit:
    no follow-up after index) or an event dated before the index date (a source data error)."""

    frame: pd.DataFrame
    provenance: Provenance
    left_out: dict = field(default_factory=dict)  # endpoint -> {"censored": n, "events": n}

    def problems(self) -> list[str]:
        out = []
        for endpoint, c in self.left_out.items():
            if c["censored"]:
                out.append(f"{endpoint}: {c['censored']} patient(s) censored before the index date "
                           "(last contact before the first HAIC, no follow-up) left out of the "
                           f"{endpoint} analyses")
            if c["events"]:
                out.append(f"{endpoint}: {c['events']} event(s) dated before the index date (source data "
                           f"error) left out of the {endpoint} analyses")
        return out

    @property
    def n(self) -> int:
        return len(self.frame)


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        [schema, table]).fetchall()[0][0])


def read_provenance(con: duckdb.DuckDBPyConnection) -> Provenance:
    """extract_id / data_cutoff of staging.cohort (staging.endpoints copies them), and the
    loaded drops up to that extract_id from ops.drops (when it exists)."""
    extract_id, cutoff = con.execute(
        "SELECT any_value(extract_id), any_value(data_cutoff)::VARCHAR FROM staging.cohort").fetchall()[0]
    drops: tuple[str, ...] = ()
    if extract_id and _table_exists(con, "ops", "drops"):
        drops = tuple(e for (e,) in con.execute(
            "SELECT DISTINCT extract_id FROM ops.drops WHERE status = 'loaded' AND extract_id <= ? "
            "ORDER BY 1", [extract_id]).fetchall())
    return Provenance(extract_id=extract_id, data_cutoff=cutoff, drops=drops or ((extract_id,) if extract_id else ()))


def load_study_data(con: duckdb.DuckDBPyConnection) -> StudyData:
    """The included patients of staging.cohort joined to staging.endpoints.

    Raises :class:`AnalysisInputError` when the two tables disagree (an included patient
    without an endpoints row or the reverse, a group mismatch, or another drop). A negative
    survival time becomes missing for that endpoint and is counted in ``left_out``.
    """
    cols = ", ".join(f"c.{c}" for c in COHORT_COLUMNS)
    ecols = ", ".join(f"e.{c}" for c in ENDPOINT_VALUE_COLUMNS)
    frame = con.execute(f"""
        SELECT c."group", {cols}, {ecols},
               (e.patient_key IS NULL) AS _no_endpoints,
               (e."group" IS DISTINCT FROM c."group") AS _group_mismatch
        FROM staging.cohort AS c
        LEFT JOIN staging.endpoints AS e USING (patient_key)
        WHERE c.included
        ORDER BY c.patient_key
    """).df()
    n_endpoints, endpoint_extracts = con.execute(
        "SELECT count(*), count(DISTINCT extract_id) FROM staging.endpoints").fetchall()[0]
    problems = []
    if int(frame["_no_endpoints"].sum()):
        problems.append(f"{int(frame['_no_endpoints'].sum())} included patients have no staging.endpoints row")
    if n_endpoints != len(frame):
        problems.append(f"staging.endpoints has {n_endpoints} rows for {len(frame)} included patients")
    if int((frame["_group_mismatch"] & ~frame["_no_endpoints"]).sum()):
        problems.append("the group differs between staging.cohort and staging.endpoints")
    prov = read_provenance(con)
    if n_endpoints:
        e_extract = con.execute("SELECT any_value(extract_id) FROM staging.endpoints").fetchall()[0][0]
        if endpoint_extracts > 1 or e_extract != prov.extract_id:
            problems.append(f"staging.endpoints is from drop {e_extract}, staging.cohort from {prov.extract_id}")
    if problems:
        raise AnalysisInputError("staging.cohort / staging.endpoints cannot be analysed: " + "; ".join(problems)
                                 + " (rebuild staging/cohort and staging/endpoints, or fix the source data)")
    frame = frame.drop(columns=["_no_endpoints", "_group_mismatch"]).reset_index(drop=True)
    for c in ("os_event", "pfs_event"):
        frame[c] = pd.to_numeric(frame[c]).astype("float64")
    for c in ("os_months", "pfs_months", "age"):
        frame[c] = pd.to_numeric(frame[c]).astype("float64")
    left_out = {}
    for endpoint, (tcol, ecol) in ENDPOINT_COLUMNS.items():
        neg = (frame[tcol] < 0).to_numpy()
        left_out[endpoint] = {"censored": int((neg & (frame[ecol] == 0)).sum()),
                              "events": int((neg & (frame[ecol] == 1)).sum())}
        frame.loc[neg, tcol] = np.nan  # missing for every survival analysis of this endpoint
    return StudyData(frame=frame, provenance=prov, left_out=left_out)


# ---------------------------------------------------------------------------------------
# derivations (the only place where they live)
# ---------------------------------------------------------------------------------------
def _threshold(values: pd.Series, test) -> pd.Series:
    v = pd.to_numeric(values, errors="coerce").astype("float64")
    out = pd.Series(np.where(test(v), 1.0, 0.0), index=values.index)
    out[v.isna()] = np.nan
    return out


def cox_terms(frame: pd.DataFrame) -> pd.DataFrame:
    """The 12 binary Cox candidates of study_spec §3 as 0/1 floats (NaN = missing stays
    missing), plus the endpoint columns, one row per included patient.

    group = post_ate_beva vs first_line; age_ge_65 = age >= 65; sex_male = sex 'M';
    etiology_hbv = 'HBV' vs other; ecog_0 = ECOG == 0; child_pugh_a = class A vs B/C;
    bclc_c_d = BCLC C or D vs A/B; afp_ge_400, multiple_tumors, tumor_size_gt_10,
    portal_vein_invasion, extrahepatic_metastasis = the staging.cohort booleans.
    """
    out = pd.DataFrame(index=frame.index)
    for c in ("os_months", "os_event", "pfs_months", "pfs_event"):
        out[c] = frame[c]
    out["group"] = binary_indicator(frame["group"], "post_ate_beva")
    out["age_ge_65"] = _threshold(frame["age"], lambda v: v >= 65)
    out["sex_male"] = binary_indicator(frame["sex"], "M")
    out["etiology_hbv"] = binary_indicator(frame["etiology"], "HBV")
    out["ecog_0"] = _threshold(frame["ecog"], lambda v: v == 0)
    out["child_pugh_a"] = binary_indicator(frame["child_pugh_class"], "A")
    out["bclc_c_d"] = binary_indicator(frame["bclc_stage"], ["C", "D"])
    for b in ("afp_ge_400", "multiple_tumors", "tumor_size_gt_10", "portal_vein_invasion",
              "extrahepatic_metastasis"):
        out[b] = binary_indicator(frame[b].astype(object), True)
    return out[[*ENDPOINT_COLUMNS["OS"], *ENDPOINT_COLUMNS["PFS"], *COX_TERMS]]


def table1_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The Table 1 variables as build_table1 wants them: age numeric; ECOG as text '0'..'4';
    booleans as 'yes'/'no'; missing stays missing (None)."""
    out = pd.DataFrame({"group": frame["group"].astype(object)})
    out["age"] = pd.to_numeric(frame["age"], errors="coerce").astype("float64")
    for c in TABLE1_CATEGORICAL:
        s = frame[c]
        missing = s.isna().to_numpy()
        if c in TABLE1_BOOLEAN:
            text = np.where(s.where(~missing, False).astype(bool).to_numpy(), "yes", "no")
        elif c == "ecog":
            text = pd.to_numeric(s, errors="coerce").fillna(-1).astype(np.int64).astype(str).to_numpy()
        else:
            text = s.astype(str).to_numpy()
        out[c] = pd.Series(np.where(missing, None, text), index=frame.index, dtype=object)
    return out


def table1_levels(t1: pd.DataFrame) -> dict[str, list[str]]:
    """Row order per categorical variable: booleans always 'yes', 'no'; otherwise the
    documented order, then any other observed level (sorted), observed levels only."""
    levels = {}
    for c in TABLE1_CATEGORICAL:
        if c in TABLE1_BOOLEAN:  # both rows always, so the table keeps its shape
            levels[c] = ["yes", "no"]
            continue
        present = set(t1[c].dropna().unique())
        known = [lv for lv in TABLE1_LEVELS.get(c, []) if lv in present]
        levels[c] = known + sorted(present - set(known))
    return levels
