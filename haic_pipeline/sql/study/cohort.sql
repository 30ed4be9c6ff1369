-- staging.cohort: the study cohort, one row per patient in staging.patients (study_spec §1).
--
-- Reads  staging.patients, staging.treatments, staging.assessments, staging.labs,
--        staging.vital_status, ops.drops, and raw.patients for birth_date only (joined through
--        the lineage columns _extract_id/_row_number of the winning staging row; birth_date is
--        used to compute age and is never stored: study_spec §4).
-- Writes staging.cohort.
-- Parameters (DuckDB variables, set by haic_pipeline.study.build before this file runs, read with
--        its macro study_parameter, which stops the model when one is not set):
--        study_start  DATE, the earliest allowed index date (2022-03-01).
-- Run with haic_pipeline.study.build.build_cohort(con), which wraps it in one transaction.
--
-- Readings where §1 is silent (documented in the study package docstring and ARCHITECTURE.md):
--   * "before the index date" is strict: a course starting ON the index date does not count.
--   * A consent_withdrawn row carries only patient_key, included, exclusion_reason (and the
--     table-level provenance columns data_cutoff, extract_id). Every other excluded patient
--     keeps whatever is derivable: sex/etiology always; index_date, age, group and baseline
--     covariates whenever a HAIC_FP course exists (group is NULL for prior_other_systemic).
--   * BCLC is assigned only when the inputs decide it (three-valued logic): ECOG 3 -> D even
--     without Child-Pugh, but ECOG 0 with Child-Pugh missing -> NULL (it could be D).
--   * Age = whole years completed at the index date (a 29 February birthday is reached on
--     1 March in non-leap years).

CREATE OR REPLACE TABLE staging.cohort AS
WITH
params AS (
    SELECT
        study_parameter('study_start')::DATE AS study_start,
        -- the newest loaded drop's cutoff: follow-up is complete up to this date
        (SELECT max(data_cutoff) FROM ops.drops WHERE status = 'loaded') AS data_cutoff,
        -- provenance: the newest loaded drop (the table is computed from every loaded drop up to it)
        (SELECT max(extract_id) FROM ops.drops WHERE status = 'loaded') AS extract_id
),

-- patients whose data may be used at all: a withdrawn patient contributes nothing (§1)
active AS (
    SELECT patient_key, sex, etiology, _extract_id, _row_number
    FROM staging.patients
    WHERE consent_status IS DISTINCT FROM 'withdrawn'
),

-- §1 index date: start_date of the patient's first HAIC_FP course
haic AS (
    SELECT t.patient_key, min(t.start_date) AS index_date
    FROM staging.treatments AS t
    JOIN active AS a USING (patient_key)
    WHERE t.regimen = 'HAIC_FP'
    GROUP BY t.patient_key
),

-- §1 group: judged on courses that start (strictly) before the index date
prior_courses AS (
    SELECT
        t.patient_key,
        count(*) FILTER (WHERE t.regimen = 'ATEZO_BEVA') AS n_atezo_beva,
        count(*) FILTER (WHERE t.regimen IN ('SORAFENIB', 'LENVATINIB', 'OTHER')) AS n_other_systemic,
        -- stop_reason of the latest ATEZO_BEVA course (NULL = still ongoing, which is not PD)
        arg_max_null(t.stop_reason, t.start_date) FILTER (WHERE t.regimen = 'ATEZO_BEVA') AS last_atezo_beva_stop
    FROM staging.treatments AS t
    JOIN haic AS h USING (patient_key)
    WHERE t.start_date < h.index_date
    GROUP BY t.patient_key
),

grouped AS (
    SELECT
        h.patient_key,
        h.index_date,
        CASE
            -- first_line: no systemic course (ATEZO_BEVA, SORAFENIB, LENVATINIB, OTHER) before index
            WHEN coalesce(pc.n_atezo_beva, 0) = 0 AND coalesce(pc.n_other_systemic, 0) = 0 THEN 'first_line'
            -- post_ate_beva: the latest ATEZO_BEVA before index stopped for PD, and no other systemic
            WHEN pc.n_other_systemic = 0 AND pc.last_atezo_beva_stop = 'PD' THEN 'post_ate_beva'
            -- neither rule holds: NULL here, excluded below as prior_other_systemic
        END AS "group"
    FROM haic AS h
    LEFT JOIN prior_courses AS pc USING (patient_key)
),

-- age in whole years at index; birth_date comes from the raw row that won in staging.patients
age AS (
    SELECT
        g.patient_key,
        year(g.index_date) - year(b.birth_date)
            - CASE WHEN (month(g.index_date), day(g.index_date)) < (month(b.birth_date), day(b.birth_date))
                   THEN 1 ELSE 0 END AS age
    FROM grouped AS g
    JOIN active AS a USING (patient_key)
    JOIN (SELECT r._extract_id, r._row_number, try_cast(nullif(trim(r.birth_date), '') AS DATE) AS birth_date
          FROM raw.patients AS r) AS b
      ON b._extract_id = a._extract_id AND b._row_number = a._row_number
),

-- §1 baseline visit: the assessment with the latest assessment_date in [index - 30 d, index]
baseline_visit AS (
    SELECT a.patient_key, a.ecog, a.ascites, a.encephalopathy, a.tumor_count, a.max_tumor_size_cm,
           a.portal_vein_invasion, a.extrahepatic_metastasis
    FROM staging.assessments AS a
    JOIN haic AS h USING (patient_key)
    WHERE a.assessment_date BETWEEN h.index_date - 30 AND h.index_date
    QUALIFY row_number() OVER (PARTITION BY a.patient_key ORDER BY a.assessment_date DESC) = 1
),

-- §1 baseline labs: per test, the latest collected_at whose DATE is in [index - 30 d, index].
-- Values are already in the canonical unit (TBIL mg/dL, ALB g/dL); a censored AFP already
-- carries its number ('>60000' -> 60000, '<1.0' -> 1.0), which is what §1 counts it as.
baseline_labs AS (
    SELECT
        l.patient_key,
        arg_max_null(l.value, l.collected_at) FILTER (WHERE l.test_code = 'TBIL') AS bilirubin_mg_dl,
        arg_max_null(l.value, l.collected_at) FILTER (WHERE l.test_code = 'ALB')  AS albumin_g_dl,
        arg_max_null(l.value, l.collected_at) FILTER (WHERE l.test_code = 'INR')  AS inr,
        arg_max_null(l.value, l.collected_at) FILTER (WHERE l.test_code = 'AFP')  AS afp_ng_ml
    FROM staging.labs AS l
    JOIN haic AS h USING (patient_key)
    WHERE l.test_code IN ('TBIL', 'ALB', 'INR', 'AFP')
      AND l.collected_at::DATE BETWEEN h.index_date - 30 AND h.index_date
    GROUP BY l.patient_key
),

baseline AS (
    SELECT
        g.patient_key, g.index_date, g."group", ag.age,
        v.ecog, v.ascites, v.encephalopathy,
        lb.bilirubin_mg_dl, lb.albumin_g_dl, lb.inr, lb.afp_ng_ml,
        v.tumor_count, v.max_tumor_size_cm,
        CASE v.portal_vein_invasion WHEN 'Y' THEN true WHEN 'N' THEN false END AS portal_vein_invasion,
        CASE v.extrahepatic_metastasis WHEN 'Y' THEN true WHEN 'N' THEN false END AS extrahepatic_metastasis,
        -- §1 Child-Pugh points per component (NULL when the component is missing)
        CASE WHEN lb.bilirubin_mg_dl < 2 THEN 1 WHEN lb.bilirubin_mg_dl <= 3 THEN 2
             WHEN lb.bilirubin_mg_dl > 3 THEN 3 END AS cp_bilirubin,
        CASE WHEN lb.albumin_g_dl > 3.5 THEN 1 WHEN lb.albumin_g_dl >= 2.8 THEN 2
             WHEN lb.albumin_g_dl < 2.8 THEN 3 END AS cp_albumin,
        CASE WHEN lb.inr < 1.7 THEN 1 WHEN lb.inr <= 2.3 THEN 2 WHEN lb.inr > 2.3 THEN 3 END AS cp_inr,
        CASE v.ascites WHEN 'none' THEN 1 WHEN 'mild' THEN 2 WHEN 'moderate_severe' THEN 3 END AS cp_ascites,
        CASE v.encephalopathy WHEN 'none' THEN 1 WHEN 'grade_1_2' THEN 2 WHEN 'grade_3_4' THEN 3 END AS cp_encephalopathy
    FROM grouped AS g
    LEFT JOIN age AS ag USING (patient_key)
    LEFT JOIN baseline_visit AS v USING (patient_key)
    LEFT JOIN baseline_labs AS lb USING (patient_key)
),

scored AS (
    SELECT *,
        -- §1 Child-Pugh score: missing if any component is missing (NULL + x = NULL)
        cp_bilirubin + cp_albumin + cp_inr + cp_ascites + cp_encephalopathy AS child_pugh_score
    FROM baseline
),

classified AS (
    SELECT *,
        -- §1 Child-Pugh class: A 5-6, B 7-9, C 10-15
        CASE WHEN child_pugh_score BETWEEN 5 AND 6 THEN 'A'
             WHEN child_pugh_score BETWEEN 7 AND 9 THEN 'B'
             WHEN child_pugh_score BETWEEN 10 AND 15 THEN 'C' END AS child_pugh_class
    FROM scored
),

staged AS (
    SELECT *,
        -- §1 BCLC (simplified 2022, no stage 0). Each condition is SQL three-valued: TRUE, FALSE,
        -- or NULL when a missing input could make it either. A stage is assigned only when the
        -- inputs decide it; otherwise NULL.
        CASE
            WHEN d_rule THEN 'D'                       -- ECOG >= 3 or Child-Pugh C
            WHEN d_rule IS NULL THEN NULL
            WHEN c_rule THEN 'C'                       -- portal vein invasion, extrahepatic metastasis or ECOG 1-2
            WHEN c_rule IS NULL THEN NULL
            WHEN a_rule THEN 'A'                       -- one tumour, or <= 3 tumours all <= 3 cm
            WHEN a_rule IS NULL THEN NULL
            ELSE 'B'
        END AS bclc_stage
    FROM (
        SELECT *,
            (ecog >= 3 OR child_pugh_class = 'C') AS d_rule,
            (portal_vein_invasion OR extrahepatic_metastasis OR ecog BETWEEN 1 AND 2) AS c_rule,
            -- "all <= 3 cm" is judged on the largest lesion; with 0 lesions it holds vacuously
            (tumor_count = 1 OR (tumor_count <= 3 AND (tumor_count = 0 OR max_tumor_size_cm <= 3))) AS a_rule
        FROM classified
    )
),

judged AS (
    SELECT
        p.patient_key,
        -- §1 exclusions, in this order; the first that applies is the exclusion_reason
        CASE
            WHEN p.consent_status = 'withdrawn'      THEN 'consent_withdrawn'
            WHEN s.index_date IS NULL                THEN 'no_haic'
            WHEN s.index_date < prm.study_start      THEN 'index_before_study_start'
            WHEN s.index_date > prm.data_cutoff      THEN 'index_after_cutoff'
            WHEN s.age < 18                          THEN 'age_under_18'
            WHEN s."group" IS NULL                   THEN 'prior_other_systemic'
            WHEN vs.patient_key IS NULL              THEN 'no_follow_up'
        END AS exclusion_reason,
        a.sex, a.etiology, s.* EXCLUDE (patient_key)
    FROM staging.patients AS p
    CROSS JOIN params AS prm
    LEFT JOIN active AS a USING (patient_key)        -- withdrawn: no match, everything stays NULL
    LEFT JOIN staged AS s USING (patient_key)
    LEFT JOIN (SELECT DISTINCT patient_key FROM staging.vital_status) AS vs USING (patient_key)
)

SELECT
    j.patient_key,
    j.exclusion_reason IS NULL                           AS included,
    j.exclusion_reason,
    j."group",
    j.index_date,
    j.age::INTEGER                                       AS age,
    j.sex,
    j.etiology,
    j.ecog,
    j.ascites,
    j.encephalopathy,
    j.bilirubin_mg_dl,
    j.albumin_g_dl,
    j.inr,
    j.child_pugh_score::INTEGER                          AS child_pugh_score,
    j.child_pugh_class,
    j.bclc_stage,
    j.afp_ng_ml,
    j.afp_ng_ml >= 400                                   AS afp_ge_400,
    j.tumor_count,
    j.tumor_count >= 2                                   AS multiple_tumors,
    j.max_tumor_size_cm,
    j.max_tumor_size_cm > 10                             AS tumor_size_gt_10,
    j.portal_vein_invasion,
    j.extrahepatic_metastasis,
    -- provenance (study_spec §4): which warehouse state this table was computed from
    prm.data_cutoff,
    prm.extract_id
FROM judged AS j
CROSS JOIN params AS prm
ORDER BY j.patient_key;
