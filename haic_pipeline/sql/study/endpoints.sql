-- staging.endpoints: survival and response endpoints, one row per included patient (study_spec §2).
--
-- Reads  staging.cohort (included patients, their group, index_date, and the data_cutoff /
--        extract_id the cohort was computed from), staging.vital_status, staging.imaging.
-- Writes staging.endpoints.
-- Parameters (DuckDB variables, set by haic_pipeline.study.build before this file runs, read with
--        its macro study_parameter, which stops the model when one is not set):
--        month_days  DOUBLE, days per month (30.4375 = 365.25 / 12).
-- Run with haic_pipeline.study.build.build_endpoints(con), which wraps it in one transaction.
--
-- Readings where §2 is silent (documented in the study package docstring and ARCHITECTURE.md):
--   * "after index" is strict: a scan ON the index date is the pre-treatment baseline, not a
--     response assessment.
--   * Scans dated after data_cutoff are ignored (follow-up is complete only up to the cutoff),
--     for PFS and for best response alike; a death after the cutoff is no event (as for OS).
--   * last_follow_up_date = the OS event / censoring date.
--   * os_event, pfs_event are INTEGER 0/1 (R Surv() convention); objective_response and
--     disease_control are BOOLEAN.
--   * Times are not clamped: a death or last contact dated before the index date (a source
--     data error) gives a negative time, reported by build_endpoints as negative_times.

CREATE OR REPLACE TABLE staging.endpoints AS
WITH
params AS (
    SELECT
        study_parameter('month_days')::DOUBLE AS month_days,
        -- the same cutoff / drop the cohort was built from, so both tables describe one state
        (SELECT any_value(data_cutoff) FROM staging.cohort) AS data_cutoff,
        (SELECT any_value(extract_id) FROM staging.cohort) AS extract_id
),

included AS (
    SELECT patient_key, "group", index_date
    FROM staging.cohort
    WHERE included
),

-- §2 OS: index -> death_date (event) if death_date <= data_cutoff;
--        otherwise censored at min(last_contact_date, data_cutoff)
os AS (
    SELECT
        patient_key, died, death_date,
        CASE WHEN died THEN death_date ELSE least(last_contact_date, data_cutoff) END AS os_date
    FROM (
        SELECT i.patient_key, v.death_date, v.last_contact_date, prm.data_cutoff,
               coalesce(v.death_date <= prm.data_cutoff, false) AS died
        FROM included AS i
        CROSS JOIN params AS prm
        JOIN staging.vital_status AS v USING (patient_key)
    )
),

-- response assessments: scans strictly after index and not after the data cutoff
scans AS (
    SELECT i.patient_key, i.index_date, m.scan_date, m.mrecist_response AS response
    FROM included AS i
    CROSS JOIN params AS prm
    JOIN staging.imaging AS m USING (patient_key)
    WHERE m.scan_date > i.index_date
      AND m.scan_date <= prm.data_cutoff
),

scan_summary AS (
    SELECT
        patient_key,
        min(scan_date) FILTER (WHERE response = 'PD') AS first_pd_date,
        -- PFS censoring: the last evaluable (CR/PR/SD) scan after index
        max(scan_date) FILTER (WHERE response IN ('CR', 'PR', 'SD')) AS last_evaluable_date
    FROM scans
    GROUP BY patient_key
),

-- §2 best overall response over scans after index up to and including the first PD, NE ignored.
-- "X followed by Y >= 28 days later" for two scans of the same set of responses holds exactly
-- when the last such scan is >= 28 days after the first one.
response AS (
    SELECT
        s.patient_key,
        date_diff('day', min(s.scan_date) FILTER (WHERE s.response = 'CR'),
                         max(s.scan_date) FILTER (WHERE s.response = 'CR')) >= 28 AS cr_confirmed,
        date_diff('day', min(s.scan_date) FILTER (WHERE s.response IN ('CR', 'PR')),
                         max(s.scan_date) FILTER (WHERE s.response IN ('CR', 'PR'))) >= 28 AS pr_confirmed,
        bool_or(s.response IN ('CR', 'PR', 'SD') AND s.scan_date - s.index_date >= 42) AS sd_reached,
        bool_or(s.response = 'PD') AS has_pd
    FROM scans AS s
    JOIN scan_summary AS ss USING (patient_key)
    WHERE s.response IN ('CR', 'PR', 'SD', 'PD')                            -- NE ignored
      AND (ss.first_pd_date IS NULL OR s.scan_date <= ss.first_pd_date)     -- up to the first PD
    GROUP BY s.patient_key
),

assembled AS (
    SELECT
        i.patient_key, i."group", i.index_date,
        o.os_date, o.died,
        -- §2 PFS: the earlier of the first PD scan after index and death (as for OS) ...
        least(ss.first_pd_date, CASE WHEN o.died THEN o.death_date END) AS pfs_event_date,
        ss.last_evaluable_date,
        CASE
            WHEN coalesce(r.cr_confirmed, false) THEN 'CR'  -- a CR followed by another CR >= 28 d later
            WHEN coalesce(r.pr_confirmed, false) THEN 'PR'  -- a CR/PR followed by a CR/PR >= 28 d later
            WHEN coalesce(r.sd_reached, false)   THEN 'SD'  -- some non-PD scan >= 42 d after index
            WHEN coalesce(r.has_pd, false)       THEN 'PD'  -- a PD scan exists
            ELSE 'NE'
        END AS best_response
    FROM included AS i
    JOIN os AS o USING (patient_key)
    LEFT JOIN scan_summary AS ss USING (patient_key)
    LEFT JOIN response AS r USING (patient_key)
)

SELECT
    a.patient_key,
    a."group",
    a.index_date,
    (a.os_date - a.index_date) / prm.month_days                            AS os_months,
    a.died::INTEGER                                                         AS os_event,
    -- ... else censored at the last evaluable scan after index, or at index (time 0) if none
    (coalesce(a.pfs_event_date, a.last_evaluable_date, a.index_date) - a.index_date) / prm.month_days AS pfs_months,
    (a.pfs_event_date IS NOT NULL)::INTEGER                                 AS pfs_event,
    a.best_response,
    a.best_response IN ('CR', 'PR')                                         AS objective_response,
    a.best_response IN ('CR', 'PR', 'SD')                                   AS disease_control,
    a.os_date                                                               AS last_follow_up_date,
    -- provenance (study_spec §4)
    prm.data_cutoff,
    prm.extract_id
FROM assembled AS a
CROSS JOIN params AS prm
ORDER BY a.patient_key;
