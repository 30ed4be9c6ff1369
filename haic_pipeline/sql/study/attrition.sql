-- analysis.attrition: CONSORT-style flow of the cohort (study_spec §1 exclusions, in their order).
--
-- Reads  staging.cohort.  Writes analysis.attrition.
-- One row per step: step 0 = every patient in staging.patients (n_remaining = all), steps 1-7 =
-- the §1 exclusions in the order they are applied (n_excluded = patients whose FIRST applicable
-- reason is this one, n_remaining = patients left after it), last step = the included cohort.
-- n_excluded is NULL on the first and last rows (they exclude nobody).
-- Run with haic_pipeline.study.build.build_attrition(con), which wraps it in one transaction.

CREATE OR REPLACE TABLE analysis.attrition AS
WITH
-- §1 exclusion order; keep in step with cohort.sql and haic_pipeline.study.build.EXCLUSION_ORDER
steps (step, reason, description) AS (
    VALUES
        (1, 'consent_withdrawn',        'Consent withdrawn'),
        (2, 'no_haic',                  'No HAIC_FP course'),
        (3, 'index_before_study_start', 'First HAIC_FP before the study start'),
        (4, 'index_after_cutoff',       'First HAIC_FP after the data cutoff'),
        (5, 'age_under_18',             'Under 18 years at the first HAIC_FP'),
        (6, 'prior_other_systemic',     'Prior systemic therapy other than ATEZO_BEVA stopped for PD'),
        (7, 'no_follow_up',             'No vital status (follow-up) record')
),
cohort_counts AS (
    SELECT
        count(*) AS n_all,
        count(*) FILTER (WHERE included) AS n_included,
        count(*) FILTER (WHERE NOT included AND exclusion_reason NOT IN (SELECT reason FROM steps)) AS n_unknown,
        any_value(data_cutoff) AS data_cutoff,
        any_value(extract_id) AS extract_id
    FROM staging.cohort
),
excluded AS (
    SELECT s.step, s.reason, s.description, count(c.patient_key) AS n_excluded
    FROM steps AS s
    LEFT JOIN staging.cohort AS c ON c.exclusion_reason = s.reason
    GROUP BY ALL
),
flow AS (
    SELECT 0 AS step, 'all_patients' AS reason, 'All patients in staging.patients' AS description,
           NULL::BIGINT AS n_excluded, n_all AS n_remaining
    FROM cohort_counts
    UNION ALL
    SELECT e.step, e.reason, e.description, e.n_excluded,
           cc.n_all - sum(e.n_excluded) OVER (ORDER BY e.step) AS n_remaining
    FROM excluded AS e CROSS JOIN cohort_counts AS cc
    UNION ALL
    SELECT 8, 'included', 'Included in the analysis', NULL::BIGINT,
           -- guard: the flow must end at the included count (no unknown exclusion reason)
           CASE WHEN n_unknown = 0 THEN n_included
                ELSE error('staging.cohort has an exclusion_reason that attrition.sql does not know') END
    FROM cohort_counts
)
SELECT f.step::INTEGER AS step, f.reason, f.description, f.n_excluded, f.n_remaining::BIGINT AS n_remaining,
       cc.data_cutoff, cc.extract_id
FROM flow AS f CROSS JOIN cohort_counts AS cc
ORDER BY f.step;
