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
WITH versioned AS (
    -- 2. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        hash(patient_key, assessment_date, ecog, ascites, encephalopathy, tumor_count, max_tumor_size_cm, portal_vein_invasion, extrahepatic_metastasis) AS _content,
        first_value(hash(patient_key, assessment_date, ecog, ascites, encephalopathy, tumor_count, max_tumor_size_cm, portal_vein_invasion, extrahepatic_metastasis)) OVER w AS _winner_content
    FROM raw.typed_assessments
    WHERE patient_key IS NULL OR patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')
    WINDOW w AS (PARTITION BY patient_key, assessment_date, CASE WHEN patient_key IS NULL OR assessment_date IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
-- 3. one boolean per rule: _e_* error rules (row quarantined), _w_* warn rules (row kept, flagged)
SELECT *,
    _version > 1 AS _e_duplicate_key_conflict,
    coalesce(_version = 1 AND (patient_key IS NULL), false) AS _e_patient_id_required,
    coalesce(_version = 1 AND (patient_key IS NOT NULL AND NOT _patient_id_valid), false) AS _e_patient_id_pattern,
    coalesce(_version = 1 AND (raw_assessment_date IS NULL), false) AS _e_assessment_date_required,
    coalesce(_version = 1 AND (raw_assessment_date IS NOT NULL AND assessment_date IS NULL), false) AS _e_assessment_date_type,
    coalesce(_version = 1 AND (raw_ecog IS NOT NULL AND ecog IS NULL), false) AS _e_ecog_type,
    coalesce(_version = 1 AND (ecog IS NOT NULL AND (ecog < 0 OR ecog > 4)), false) AS _e_ecog_range,
    coalesce(_version = 1 AND (ascites IS NOT NULL AND ascites NOT IN ('none', 'mild', 'moderate_severe')), false) AS _e_ascites_code,
    coalesce(_version = 1 AND (encephalopathy IS NOT NULL AND encephalopathy NOT IN ('none', 'grade_1_2', 'grade_3_4')), false) AS _e_encephalopathy_code,
    coalesce(_version = 1 AND (raw_tumor_count IS NOT NULL AND tumor_count IS NULL), false) AS _e_tumor_count_type,
    coalesce(_version = 1 AND (tumor_count IS NOT NULL AND (tumor_count < 0)), false) AS _e_tumor_count_range,
    coalesce(_version = 1 AND (raw_max_tumor_size_cm IS NOT NULL AND max_tumor_size_cm IS NULL), false) AS _e_max_tumor_size_cm_type,
    coalesce(_version = 1 AND (max_tumor_size_cm IS NOT NULL AND (max_tumor_size_cm <= 0)), false) AS _e_max_tumor_size_cm_range,
    coalesce(_version = 1 AND (portal_vein_invasion IS NOT NULL AND portal_vein_invasion NOT IN ('Y', 'N')), false) AS _e_portal_vein_invasion_code,
    coalesce(_version = 1 AND (extrahepatic_metastasis IS NOT NULL AND extrahepatic_metastasis NOT IN ('Y', 'N')), false) AS _e_extrahepatic_metastasis_code,
    coalesce(_version = 1 AND (patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients)), false) AS _e_orphan_patient,
    coalesce(_version = 1 AND (assessment_date IS NOT NULL AND assessment_date::DATE > _extract_date), false) AS _w_assessment_date_in_future
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'assessments';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _assessments_evaluated WHERE (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_assessment_date_required OR _e_assessment_date_type OR _e_ecog_type OR _e_ecog_range OR _e_ascites_code OR _e_encephalopathy_code OR _e_tumor_count_type OR _e_tumor_count_range OR _e_max_tumor_size_cm_type OR _e_max_tumor_size_cm_range OR _e_portal_vein_invasion_code OR _e_extrahepatic_metastasis_code OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept' AS reason FROM failed WHERE _e_duplicate_key_conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_required' AS check_name, 'patient_id is missing' AS reason FROM failed WHERE _e_patient_id_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_pattern' AS check_name, 'patient_id does not match ^[0-9]{8}$ (value withheld)' AS reason FROM failed WHERE _e_patient_id_pattern
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'assessment_date_required' AS check_name, 'assessment_date is missing' AS reason FROM failed WHERE _e_assessment_date_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'assessment_date_type' AS check_name, 'assessment_date ' || coalesce(raw_assessment_date, '') || ' is not a YYYY-MM-DD date' AS reason FROM failed WHERE _e_assessment_date_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'ecog_type' AS check_name, 'ecog ' || coalesce(raw_ecog, '') || ' is not an integer' AS reason FROM failed WHERE _e_ecog_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'ecog_range' AS check_name, 'ecog ' || coalesce(raw_ecog, '') || ' outside the allowed range (>= 0 and <= 4)' AS reason FROM failed WHERE _e_ecog_range
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'ascites_code' AS check_name, 'ascites ' || coalesce(raw_ascites, '') || ' is not one of none, mild, moderate_severe' AS reason FROM failed WHERE _e_ascites_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'encephalopathy_code' AS check_name, 'encephalopathy ' || coalesce(raw_encephalopathy, '') || ' is not one of none, grade_1_2, grade_3_4' AS reason FROM failed WHERE _e_encephalopathy_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'tumor_count_type' AS check_name, 'tumor_count ' || coalesce(raw_tumor_count, '') || ' is not an integer' AS reason FROM failed WHERE _e_tumor_count_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'tumor_count_range' AS check_name, 'tumor_count ' || coalesce(raw_tumor_count, '') || ' outside the allowed range (>= 0)' AS reason FROM failed WHERE _e_tumor_count_range
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'max_tumor_size_cm_type' AS check_name, 'max_tumor_size_cm ' || coalesce(raw_max_tumor_size_cm, '') || ' is not a number' AS reason FROM failed WHERE _e_max_tumor_size_cm_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'max_tumor_size_cm_range' AS check_name, 'max_tumor_size_cm ' || coalesce(raw_max_tumor_size_cm, '') || ' outside the allowed range (> 0)' AS reason FROM failed WHERE _e_max_tumor_size_cm_range
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'portal_vein_invasion_code' AS check_name, 'portal_vein_invasion ' || coalesce(raw_portal_vein_invasion, '') || ' is not one of Y, N' AS reason FROM failed WHERE _e_portal_vein_invasion_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'extrahepatic_metastasis_code' AS check_name, 'extrahepatic_metastasis ' || coalesce(raw_extrahepatic_metastasis, '') || ' is not one of Y, N' AS reason FROM failed WHERE _e_extrahepatic_metastasis_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'orphan_patient' AS check_name, 'patient is in no delivered patients.csv (or its patient row is quarantined)' AS reason FROM failed WHERE _e_orphan_patient
)
SELECT 'assessments', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason,
       to_json({'patient_key': r.patient_key, 'assessment_date': r.assessment_date, 'ecog': r.ecog, 'ascites': r.ascites, 'encephalopathy': r.encephalopathy, 'tumor_count': r.tumor_count, 'max_tumor_size_cm': r.max_tumor_size_cm, 'portal_vein_invasion': r.portal_vein_invasion, 'extrahepatic_metastasis': r.extrahepatic_metastasis})
FROM checks AS f
JOIN raw.assessments AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

DELETE FROM ops.row_flags WHERE domain = 'assessments';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _assessments_evaluated WHERE (_w_assessment_date_in_future) AND NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_assessment_date_required OR _e_assessment_date_type OR _e_ecog_type OR _e_ecog_range OR _e_ascites_code OR _e_encephalopathy_code OR _e_tumor_count_type OR _e_tumor_count_range OR _e_max_tumor_size_cm_type OR _e_max_tumor_size_cm_range OR _e_portal_vein_invasion_code OR _e_extrahepatic_metastasis_code OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'assessment_date_in_future' AS check_name, 'assessment_date ' || coalesce(raw_assessment_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR AS reason FROM failed WHERE _w_assessment_date_in_future
)
SELECT 'assessments', f._extract_id, f._row_number, f.patient_key, f.check_name, 'warn', f.reason,
       to_json({'patient_key': r.patient_key, 'assessment_date': r.assessment_date, 'ecog': r.ecog, 'ascites': r.ascites, 'encephalopathy': r.encephalopathy, 'tumor_count': r.tumor_count, 'max_tumor_size_cm': r.max_tumor_size_cm, 'portal_vein_invasion': r.portal_vein_invasion, 'extrahepatic_metastasis': r.extrahepatic_metastasis})
FROM checks AS f
JOIN raw.assessments AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 4. the staging table: winning rows without errors
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
