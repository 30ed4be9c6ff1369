-- staging.assessments: generated from data_contracts/assessments.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.assessments (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes staging.assessments and the 'assessments' rows of ops.quarantine (error rules) and ops.row_flags (warn rules).

CREATE OR REPLACE TEMP TABLE _assessments_evaluated AS
WITH typed AS (
    -- 1. type and normalise every delivered column
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
    JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded'
    WHERE r.patient_key IS NULL OR r.patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')
),
versioned AS (
    -- 2. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        hash(patient_key, assessment_date, ecog, ascites, encephalopathy, tumor_count, max_tumor_size_cm, portal_vein_invasion, extrahepatic_metastasis) AS _content,
        first_value(hash(patient_key, assessment_date, ecog, ascites, encephalopathy, tumor_count, max_tumor_size_cm, portal_vein_invasion, extrahepatic_metastasis)) OVER w AS _winner_content
    FROM typed
    WINDOW w AS (PARTITION BY patient_key, assessment_date, CASE WHEN patient_key IS NULL OR assessment_date IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT *,
    -- 3. rules: errors (row quarantined) and warnings (row kept, flagged)
    CASE WHEN _version > 1 THEN [{'check_name': 'duplicate_key_conflict', 'reason': 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept'}]
         ELSE list_filter([
            CASE WHEN patient_key IS NULL THEN {'check_name': 'patient_id_required', 'reason': 'patient_id is missing'} END,
            CASE WHEN patient_key IS NOT NULL AND NOT _patient_id_valid THEN {'check_name': 'patient_id_pattern', 'reason': 'patient_id does not match ^[0-9]{8}$ (value withheld)'} END,
            CASE WHEN raw_assessment_date IS NULL THEN {'check_name': 'assessment_date_required', 'reason': 'assessment_date is missing'} END,
            CASE WHEN raw_assessment_date IS NOT NULL AND assessment_date IS NULL THEN {'check_name': 'assessment_date_type', 'reason': 'assessment_date ' || coalesce(raw_assessment_date, '') || ' is not a YYYY-MM-DD date'} END,
            CASE WHEN raw_ecog IS NOT NULL AND ecog IS NULL THEN {'check_name': 'ecog_type', 'reason': 'ecog ' || coalesce(raw_ecog, '') || ' is not an integer'} END,
            CASE WHEN ecog IS NOT NULL AND (ecog < 0 OR ecog > 4) THEN {'check_name': 'ecog_range', 'reason': 'ecog ' || coalesce(raw_ecog, '') || ' outside the allowed range (>= 0 and <= 4)'} END,
            CASE WHEN ascites IS NOT NULL AND ascites NOT IN ('none', 'mild', 'moderate_severe') THEN {'check_name': 'ascites_code', 'reason': 'ascites ' || coalesce(raw_ascites, '') || ' is not one of none, mild, moderate_severe'} END,
            CASE WHEN encephalopathy IS NOT NULL AND encephalopathy NOT IN ('none', 'grade_1_2', 'grade_3_4') THEN {'check_name': 'encephalopathy_code', 'reason': 'encephalopathy ' || coalesce(raw_encephalopathy, '') || ' is not one of none, grade_1_2, grade_3_4'} END,
            CASE WHEN raw_tumor_count IS NOT NULL AND tumor_count IS NULL THEN {'check_name': 'tumor_count_type', 'reason': 'tumor_count ' || coalesce(raw_tumor_count, '') || ' is not an integer'} END,
            CASE WHEN tumor_count IS NOT NULL AND (tumor_count < 0) THEN {'check_name': 'tumor_count_range', 'reason': 'tumor_count ' || coalesce(raw_tumor_count, '') || ' outside the allowed range (>= 0)'} END,
            CASE WHEN raw_max_tumor_size_cm IS NOT NULL AND max_tumor_size_cm IS NULL THEN {'check_name': 'max_tumor_size_cm_type', 'reason': 'max_tumor_size_cm ' || coalesce(raw_max_tumor_size_cm, '') || ' is not a number'} END,
            CASE WHEN max_tumor_size_cm IS NOT NULL AND (max_tumor_size_cm <= 0) THEN {'check_name': 'max_tumor_size_cm_range', 'reason': 'max_tumor_size_cm ' || coalesce(raw_max_tumor_size_cm, '') || ' outside the allowed range (> 0)'} END,
            CASE WHEN portal_vein_invasion IS NOT NULL AND portal_vein_invasion NOT IN ('Y', 'N') THEN {'check_name': 'portal_vein_invasion_code', 'reason': 'portal_vein_invasion ' || coalesce(raw_portal_vein_invasion, '') || ' is not one of Y, N'} END,
            CASE WHEN extrahepatic_metastasis IS NOT NULL AND extrahepatic_metastasis NOT IN ('Y', 'N') THEN {'check_name': 'extrahepatic_metastasis_code', 'reason': 'extrahepatic_metastasis ' || coalesce(raw_extrahepatic_metastasis, '') || ' is not one of Y, N'} END,
            CASE WHEN patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients) THEN {'check_name': 'orphan_patient', 'reason': 'patient is in no delivered patients.csv (or its patient row is quarantined)'} END
        ], lambda x: x IS NOT NULL)
    END AS _errors,
    CASE WHEN _version > 1 THEN []::STRUCT(check_name VARCHAR, reason VARCHAR)[]
         ELSE list_filter([
            CASE WHEN assessment_date IS NOT NULL AND assessment_date::DATE > _extract_date THEN {'check_name': 'assessment_date_in_future', 'reason': 'assessment_date ' || coalesce(raw_assessment_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR} END
        ], lambda x: x IS NOT NULL)
    END AS _warnings
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'assessments';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'assessments', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'error', e.f.reason,
       to_json({'patient_key': r.patient_key, 'assessment_date': r.assessment_date, 'ecog': r.ecog, 'ascites': r.ascites, 'encephalopathy': r.encephalopathy, 'tumor_count': r.tumor_count, 'max_tumor_size_cm': r.max_tumor_size_cm, 'portal_vein_invasion': r.portal_vein_invasion, 'extrahepatic_metastasis': r.extrahepatic_metastasis})
FROM (SELECT *, unnest(_errors) AS f FROM _assessments_evaluated) AS e
JOIN raw.assessments AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number;

DELETE FROM ops.row_flags WHERE domain = 'assessments';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'assessments', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'warn', e.f.reason,
       to_json({'patient_key': r.patient_key, 'assessment_date': r.assessment_date, 'ecog': r.ecog, 'ascites': r.ascites, 'encephalopathy': r.encephalopathy, 'tumor_count': r.tumor_count, 'max_tumor_size_cm': r.max_tumor_size_cm, 'portal_vein_invasion': r.portal_vein_invasion, 'extrahepatic_metastasis': r.extrahepatic_metastasis})
FROM (SELECT *, unnest(_warnings) AS f FROM _assessments_evaluated) AS e
JOIN raw.assessments AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number WHERE len(e._errors) = 0;

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
    list_transform(_warnings, lambda x: x.check_name) AS dq_warnings,
    _extract_id,
    _row_number
FROM _assessments_evaluated
WHERE len(_errors) = 0
ORDER BY patient_key, assessment_date;

DROP TABLE _assessments_evaluated;
