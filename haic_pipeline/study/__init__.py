"""The study's derived tables: cohort (study_spec §1), endpoints (§2), CONSORT attrition.

Pure Python + DuckDB (no Dagster): the SQL lives in haic_pipeline/sql/study/*.sql, run by
haic_pipeline.study.build. Parameters: STUDY_START (2022-03-01), MONTH_DAYS (30.4375).

Readings taken where the spec is silent or ambiguous (mirrored in the SQL file headers):

Cohort (staging.cohort)
- "Courses that start before the index date" is strict (start_date < index); a course starting
  on the index date, or later, plays no part in the group.
- The latest ATEZO_BEVA course before index is the one with the latest start_date; an
  ongoing one (stop_reason missing) has not stopped for PD, so the patient is
  prior_other_systemic.
- A consent_withdrawn row carries only patient_key, included = false, exclusion_reason (plus
  the table-level provenance columns data_cutoff, extract_id, identical on every row).
- Other excluded patients keep every derivable column: sex, etiology always; index_date, age,
  group and baseline covariates whenever a HAIC_FP course exists (group is NULL exactly for
  prior_other_systemic; index_after_cutoff patients are derived relative to their index too).
- age_under_18 uses age in completed years at index; a 29 February birthday is reached on
  1 March in non-leap years. birth_date is read from raw.patients (the winning row, via the
  lineage columns) and never stored.
- Baseline labs: per test the latest collected_at (the timestamp, so two draws on one day:
  the later one) whose date lies in [index - 30 d, index]. Censored AFP counts as its number.
- Child-Pugh: closed intervals at the spec's boundaries (bilirubin 2 and 3 -> 2 points;
  albumin 3.5 and 2.8 -> 2; INR 1.7 and 2.3 -> 2).
- BCLC with missing inputs: assigned only when the available inputs decide it (three-valued
  logic): ECOG >= 3 -> D whatever Child-Pugh; ECOG 0 with Child-Pugh missing -> NULL (could be
  D); "<= 3 tumours all <= 3 cm" is judged on max_tumor_size_cm; tumor_count 0 -> A (vacuous).
- Provenance: data_cutoff = max(data_cutoff) of loaded drops; extract_id = the newest loaded
  drop (every loaded drop up to it contributes, newest row per key).

Endpoints (staging.endpoints)
- Scans strictly after index only (a scan on the index date is baseline); scans after
  data_cutoff are ignored for PFS and best response.
- last_follow_up_date = OS event/censoring date.
- os_event, pfs_event INTEGER 0/1; objective_response, disease_control BOOLEAN.
- The confirmation rules ("followed by ... >= 28 days later") compare any two qualifying scans
  in the window (earliest vs latest), whatever lies between them (NE ignored).
- Times are not clamped at 0: dates before index (data errors) give negative times, counted
  in EndpointsResult.negative_times.
- data_cutoff / extract_id are taken from staging.cohort so both tables describe one state.
"""

from haic_pipeline.study.build import (
    EXCLUSION_ORDER,
    MONTH_DAYS,
    STUDY_START,
    AttritionResult,
    CohortResult,
    EndpointsResult,
    build_attrition,
    build_cohort,
    build_endpoints,
    build_study,
)

__all__ = [
    "EXCLUSION_ORDER", "MONTH_DAYS", "STUDY_START", "AttritionResult", "CohortResult", "EndpointsResult",
    "build_attrition", "build_cohort", "build_endpoints", "build_study",
]
