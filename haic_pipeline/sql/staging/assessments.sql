-- staging.assessments: generated from data_contracts/assessments.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.assessments (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes raw.typed_assessments (view), staging.assessments, and the 'assessments' rows of ops.quarantine (error rules)
-- and ops.row_flags (warn rules).

-- 1. type and normalise every delivered column
CREATE OR REPLACE VIEW raw.typed_assessments AS
SELECT
    r._extract_id,
    r._row_number,
    d.extracted_at::DATE AS _extract_date,
    r.patient_key,
    r._patient_id_valid,
    CASE WHEN regexp_full_match(nullif(trim(r.assessment_date), ''), '\d{4}-\d{2}-\d{2}') THEN try_cast(nullif(trim(r.assessment_date), '') AS DATE) END AS assessment_date,
    CASE WHEN regexp_full_match(nullif(trim(r.ecog), ''), '[+-]?\d+') THEN try_cast(nullif(trim(r.ecog), '') AS INTEGER) END AS ecog,
    lower(nullif(trim(r.ascites), '')) AS ascites,
    lower(nullif(trim(r.encephalopathy), '')) AS encephalopathy,
    CASE WHEN regexp_full_match(nullif(trim(r.tumor_count), ''), '[+-]?\d+') THEN try_cast(nullif(trim(r.tumor_count), '') AS INTEGER) END AS tumor_count,
    CASE WHEN regexp_full_match(nullif(trim(r.max_tumor_size_cm), ''), '[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?') THEN try_cast(nullif(trim(r.max_tumor_size_cm), '') AS DOUBLE) END AS max_tumor_size_cm,
    upper(nullif(trim(r.portal_vein_invasion), '')) AS portal_vein_invasion,
    upper(nullif(trim(r.extrahepatic_metastasis), '')) AS extrahepatic_metastasis,
    nullif(trim(r.assessment_date), '') AS raw_assessment_date,
    nullif(trim(r.ecog), '') AS raw_ecog,
    nullif(trim(r.ascites), '') AS raw_ascites,
    nullif(trim(r.encephalopathy), '') AS raw_encephalopathy,
    nullif(trim(r.tumor_count), '') AS raw_tumor_count,
    nullif(trim(r.max_tumor_size_cm), '') AS raw_max_tumor_size_cm,
    nullif(trim(r.portal_vein_invasion), '') AS raw_portal_vein_invasion,
    nullif(trim(r.extrahepatic_metastasis), '') AS raw_extrahepatic_metastasis
FROM raw.assessments AS r
JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded';

CREATE OR REPLACE TEMP TABLE _assessments_evaluated AS
WITH judged AS (
    -- 2. every rule of the contract, judged on every delivered row
    SELECT _extract_id, _row_number,
        patient_key,
        assessment_date,
        ecog,
        ascites,
        encephalopathy,
        tumor_count,
        max_tumor_size_cm,
        portal_vein_invasion,
        extrahepatic_metastasis,
        hash(patient_key, assessment_date, ecog, ascites, encephalopathy, tumor_count, max_tumor_size_cm, portal_vein_invasion, extrahepatic_metastasis) AS _content,
        CASE WHEN (patient_key IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
        CASE WHEN (patient_key IS NOT NULL AND NOT _patient_id_valid) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
        CASE WHEN (raw_assessment_date IS NULL) THEN 'assessment_date is missing' END AS _r_assessment_date_required,
        CASE WHEN (raw_assessment_date IS NOT NULL AND assessment_date IS NULL) THEN 'assessment_date ' || coalesce(raw_assessment_date, '') || ' is not a YYYY-MM-DD date' END AS _r_assessment_date_type,
        CASE WHEN (raw_ecog IS NOT NULL AND ecog IS NULL) THEN 'ecog ' || coalesce(raw_ecog, '') || ' is not an integer' END AS _r_ecog_type,
        CASE WHEN (ecog IS NOT NULL AND (ecog < 0 OR ecog > 4)) THEN 'ecog ' || coalesce(raw_ecog, '') || ' outside the allowed range (>= 0 and <= 4)' END AS _r_ecog_range,
        CASE WHEN (ascites IS NOT NULL AND ascites NOT IN ('none', 'mild', 'moderate_severe')) THEN 'ascites ' || coalesce(raw_ascites, '') || ' is not one of none, mild, moderate_severe' END AS _r_ascites_code,
        CASE WHEN (encephalopathy IS NOT NULL AND encephalopathy NOT IN ('none', 'grade_1_2', 'grade_3_4')) THEN 'encephalopathy ' || coalesce(raw_encephalopathy, '') || ' is not one of none, grade_1_2, grade_3_4' END AS _r_encephalopathy_code,
        CASE WHEN (raw_tumor_count IS NOT NULL AND tumor_count IS NULL) THEN 'tumor_count ' || coalesce(raw_tumor_count, '') || ' is not an integer' END AS _r_tumor_count_type,
        CASE WHEN (tumor_count IS NOT NULL AND (tumor_count < 0)) THEN 'tumor_count ' || coalesce(raw_tumor_count, '') || ' outside the allowed range (>= 0)' END AS _r_tumor_count_range,
        CASE WHEN (raw_max_tumor_size_cm IS NOT NULL AND max_tumor_size_cm IS NULL) THEN 'max_tumor_size_cm ' || coalesce(raw_max_tumor_size_cm, '') || ' is not a number' END AS _r_max_tumor_size_cm_type,
        CASE WHEN (max_tumor_size_cm IS NOT NULL AND (max_tumor_size_cm <= 0)) THEN 'max_tumor_size_cm ' || coalesce(raw_max_tumor_size_cm, '') || ' outside the allowed range (> 0)' END AS _r_max_tumor_size_cm_range,
        CASE WHEN (portal_vein_invasion IS NOT NULL AND portal_vein_invasion NOT IN ('Y', 'N')) THEN 'portal_vein_invasion ' || coalesce(raw_portal_vein_invasion, '') || ' is not one of Y, N' END AS _r_portal_vein_invasion_code,
        CASE WHEN (extrahepatic_metastasis IS NOT NULL AND extrahepatic_metastasis NOT IN ('Y', 'N')) THEN 'extrahepatic_metastasis ' || coalesce(raw_extrahepatic_metastasis, '') || ' is not one of Y, N' END AS _r_extrahepatic_metastasis_code,
        CASE WHEN (patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients)) THEN 'patient is in no delivered patients.csv (or its patient row is quarantined)' END AS _r_orphan_patient,
        CASE WHEN (assessment_date IS NOT NULL AND assessment_date::DATE > _extract_date) THEN 'assessment_date ' || coalesce(raw_assessment_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_assessment_date_in_future
    FROM raw.typed_assessments
    WHERE patient_key IS NULL OR patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')
),
versioned AS (
    -- 3. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        first_value(_content) OVER w AS _winner_content
    FROM judged
    WINDOW w AS (PARTITION BY patient_key, assessment_date, CASE WHEN patient_key IS NULL OR assessment_date IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
-- 4. one boolean per rule on the winning rows: _e_* error rules (quarantined), _w_* warn rules (flagged)
SELECT *,
    _version > 1 AS _e_duplicate_key_conflict,
    _version = 1 AND _r_patient_id_required IS NOT NULL AS _e_patient_id_required,
    _version = 1 AND _r_patient_id_pattern IS NOT NULL AS _e_patient_id_pattern,
    _version = 1 AND _r_assessment_date_required IS NOT NULL AS _e_assessment_date_required,
    _version = 1 AND _r_assessment_date_type IS NOT NULL AS _e_assessment_date_type,
    _version = 1 AND _r_ecog_type IS NOT NULL AS _e_ecog_type,
    _version = 1 AND _r_ecog_range IS NOT NULL AS _e_ecog_range,
    _version = 1 AND _r_ascites_code IS NOT NULL AS _e_ascites_code,
    _version = 1 AND _r_encephalopathy_code IS NOT NULL AS _e_encephalopathy_code,
    _version = 1 AND _r_tumor_count_type IS NOT NULL AS _e_tumor_count_type,
    _version = 1 AND _r_tumor_count_range IS NOT NULL AS _e_tumor_count_range,
    _version = 1 AND _r_max_tumor_size_cm_type IS NOT NULL AS _e_max_tumor_size_cm_type,
    _version = 1 AND _r_max_tumor_size_cm_range IS NOT NULL AS _e_max_tumor_size_cm_range,
    _version = 1 AND _r_portal_vein_invasion_code IS NOT NULL AS _e_portal_vein_invasion_code,
    _version = 1 AND _r_extrahepatic_metastasis_code IS NOT NULL AS _e_extrahepatic_metastasis_code,
    _version = 1 AND _r_orphan_patient IS NOT NULL AS _e_orphan_patient,
    _version = 1 AND _r_assessment_date_in_future IS NOT NULL AS _w_assessment_date_in_future
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'assessments';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _assessments_evaluated WHERE (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_assessment_date_required OR _e_assessment_date_type OR _e_ecog_type OR _e_ecog_range OR _e_ascites_code OR _e_encephalopathy_code OR _e_tumor_count_type OR _e_tumor_count_range OR _e_max_tumor_size_cm_type OR _e_max_tumor_size_cm_range OR _e_portal_vein_invasion_code OR _e_extrahepatic_metastasis_code OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept' AS reason FROM failed WHERE _e_duplicate_key_conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_required' AS check_name, _r_patient_id_required AS reason FROM failed WHERE _e_patient_id_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_pattern' AS check_name, _r_patient_id_pattern AS reason FROM failed WHERE _e_patient_id_pattern
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'assessment_date_required' AS check_name, _r_assessment_date_required AS reason FROM failed WHERE _e_assessment_date_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'assessment_date_type' AS check_name, _r_assessment_date_type AS reason FROM failed WHERE _e_assessment_date_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'ecog_type' AS check_name, _r_ecog_type AS reason FROM failed WHERE _e_ecog_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'ecog_range' AS check_name, _r_ecog_range AS reason FROM failed WHERE _e_ecog_range
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'ascites_code' AS check_name, _r_ascites_code AS reason FROM failed WHERE _e_ascites_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'encephalopathy_code' AS check_name, _r_encephalopathy_code AS reason FROM failed WHERE _e_encephalopathy_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'tumor_count_type' AS check_name, _r_tumor_count_type AS reason FROM failed WHERE _e_tumor_count_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'tumor_count_range' AS check_name, _r_tumor_count_range AS reason FROM failed WHERE _e_tumor_count_range
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'max_tumor_size_cm_type' AS check_name, _r_max_tumor_size_cm_type AS reason FROM failed WHERE _e_max_tumor_size_cm_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'max_tumor_size_cm_range' AS check_name, _r_max_tumor_size_cm_range AS reason FROM failed WHERE _e_max_tumor_size_cm_range
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'portal_vein_invasion_code' AS check_name, _r_portal_vein_invasion_code AS reason FROM failed WHERE _e_portal_vein_invasion_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'extrahepatic_metastasis_code' AS check_name, _r_extrahepatic_metastasis_code AS reason FROM failed WHERE _e_extrahepatic_metastasis_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'orphan_patient' AS check_name, _r_orphan_patient AS reason FROM failed WHERE _e_orphan_patient
)
SELECT 'assessments', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason,
       to_json({'patient_key': r.patient_key, 'assessment_date': r.assessment_date, 'ecog': r.ecog, 'ascites': r.ascites, 'encephalopathy': r.encephalopathy, 'tumor_count': r.tumor_count, 'max_tumor_size_cm': r.max_tumor_size_cm, 'portal_vein_invasion': r.portal_vein_invasion, 'extrahepatic_metastasis': r.extrahepatic_metastasis})
FROM checks AS f
JOIN raw.assessments AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

DELETE FROM ops.row_flags WHERE domain = 'assessments';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _assessments_evaluated WHERE (_w_assessment_date_in_future) AND NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_assessment_date_required OR _e_assessment_date_type OR _e_ecog_type OR _e_ecog_range OR _e_ascites_code OR _e_encephalopathy_code OR _e_tumor_count_type OR _e_tumor_count_range OR _e_max_tumor_size_cm_type OR _e_max_tumor_size_cm_range OR _e_portal_vein_invasion_code OR _e_extrahepatic_metastasis_code OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'assessment_date_in_future' AS check_name, _r_assessment_date_in_future AS reason FROM failed WHERE _w_assessment_date_in_future
)
SELECT 'assessments', f._extract_id, f._row_number, f.patient_key, f.check_name, 'warn', f.reason,
       to_json({'patient_key': r.patient_key, 'assessment_date': r.assessment_date, 'ecog': r.ecog, 'ascites': r.ascites, 'encephalopathy': r.encephalopathy, 'tumor_count': r.tumor_count, 'max_tumor_size_cm': r.max_tumor_size_cm, 'portal_vein_invasion': r.portal_vein_invasion, 'extrahepatic_metastasis': r.extrahepatic_metastasis})
FROM checks AS f
JOIN raw.assessments AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.assessments AS
SELECT
    patient_key,
    assessment_date,
    ecog,
    ascites,
    encephalopathy,
    tumor_count,
    max_tumor_size_cm,
    portal_vein_invasion,
    extrahepatic_metastasis,
    CASE WHEN _w_assessment_date_in_future THEN list_filter([CASE WHEN _w_assessment_date_in_future THEN 'assessment_date_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _assessments_evaluated
WHERE NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_assessment_date_required OR _e_assessment_date_type OR _e_ecog_type OR _e_ecog_range OR _e_ascites_code OR _e_encephalopathy_code OR _e_tumor_count_type OR _e_tumor_count_range OR _e_max_tumor_size_cm_type OR _e_max_tumor_size_cm_range OR _e_portal_vein_invasion_code OR _e_extrahepatic_metastasis_code OR _e_orphan_patient);

DROP TABLE _assessments_evaluated;
