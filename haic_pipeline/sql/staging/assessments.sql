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

CREATE OR REPLACE TEMP TABLE _assessments_judged AS
-- 2. every rule of the contract, judged on every delivered row: its reason where it fails, else NULL
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
    CASE WHEN patient_key IS NOT NULL AND assessment_date IS NOT NULL THEN hash(patient_key, assessment_date) END AS _key_hash,
    CASE WHEN ((CASE WHEN t.patient_key IS NOT NULL THEN true END) IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t._patient_id_valid END)) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
    CASE WHEN ((CASE WHEN t.raw_assessment_date IS NOT NULL THEN t.assessment_date IS NOT NULL END) IS NULL) THEN 'assessment_date is missing' END AS _r_assessment_date_required,
    CASE WHEN (NOT (CASE WHEN t.raw_assessment_date IS NOT NULL THEN t.assessment_date IS NOT NULL END)) THEN 'assessment_date ' || coalesce(raw_assessment_date, '') || ' is not a YYYY-MM-DD date' END AS _r_assessment_date_type,
    CASE WHEN (NOT (CASE WHEN t.raw_ecog IS NOT NULL THEN t.ecog IS NOT NULL END)) THEN 'ecog ' || coalesce(raw_ecog, '') || ' is not an integer' END AS _r_ecog_type,
    CASE WHEN ((t.ecog) < 0 OR (t.ecog) > 4) THEN 'ecog ' || coalesce(raw_ecog, '') || ' outside the allowed range (>= 0 and <= 4)' END AS _r_ecog_range,
    CASE WHEN ((t.ascites) NOT IN ('none', 'mild', 'moderate_severe')) THEN 'ascites ' || coalesce(raw_ascites, '') || ' is not one of none, mild, moderate_severe' END AS _r_ascites_code,
    CASE WHEN ((t.encephalopathy) NOT IN ('none', 'grade_1_2', 'grade_3_4')) THEN 'encephalopathy ' || coalesce(raw_encephalopathy, '') || ' is not one of none, grade_1_2, grade_3_4' END AS _r_encephalopathy_code,
    CASE WHEN (NOT (CASE WHEN t.raw_tumor_count IS NOT NULL THEN t.tumor_count IS NOT NULL END)) THEN 'tumor_count ' || coalesce(raw_tumor_count, '') || ' is not an integer' END AS _r_tumor_count_type,
    CASE WHEN ((t.tumor_count) < 0) THEN 'tumor_count ' || coalesce(raw_tumor_count, '') || ' outside the allowed range (>= 0)' END AS _r_tumor_count_range,
    CASE WHEN (NOT (CASE WHEN t.raw_max_tumor_size_cm IS NOT NULL THEN t.max_tumor_size_cm IS NOT NULL END)) THEN 'max_tumor_size_cm ' || coalesce(raw_max_tumor_size_cm, '') || ' is not a number' END AS _r_max_tumor_size_cm_type,
    CASE WHEN ((t.max_tumor_size_cm) <= 0) THEN 'max_tumor_size_cm ' || coalesce(raw_max_tumor_size_cm, '') || ' outside the allowed range (> 0)' END AS _r_max_tumor_size_cm_range,
    CASE WHEN ((t.portal_vein_invasion) NOT IN ('Y', 'N')) THEN 'portal_vein_invasion ' || coalesce(raw_portal_vein_invasion, '') || ' is not one of Y, N' END AS _r_portal_vein_invasion_code,
    CASE WHEN ((t.extrahepatic_metastasis) NOT IN ('Y', 'N')) THEN 'extrahepatic_metastasis ' || coalesce(raw_extrahepatic_metastasis, '') || ' is not one of Y, N' END AS _r_extrahepatic_metastasis_code,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t.patient_key IN (SELECT patient_key FROM staging.patients) END)) THEN 'patient is in no delivered patients.csv (or its patient row is quarantined)' END AS _r_orphan_patient,
    CASE WHEN (NOT ((t._extract_date) >= (t.assessment_date))) THEN 'assessment_date ' || coalesce(raw_assessment_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_assessment_date_in_future
FROM raw.typed_assessments AS t
    WHERE (patient_key IS NULL OR patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn'));

-- 3. delta semantics: per natural key the newest drop wins (the last data row within a drop).
--    Only keys delivered more than once need ranking; their losing rows are listed here: older
--    versions and exact duplicates drop out, a different row of the winner's drop is a conflict.
CREATE OR REPLACE TEMP TABLE _assessments_later AS
--    Keys are first grouped on their 8-byte hash (a collision only ranks a few more rows),
--    then ranked on the key itself.
WITH repeated AS (SELECT _key_hash FROM _assessments_judged WHERE _key_hash IS NOT NULL GROUP BY ALL HAVING count(*) > 1),
ranked AS (
    SELECT _extract_id, _row_number, _content,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        first_value(_content) OVER w AS _winner_content
    FROM _assessments_judged SEMI JOIN repeated USING (_key_hash)
    WINDOW w AS (PARTITION BY patient_key, assessment_date ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT _extract_id, _row_number, _winner_row_number,
    _extract_id = _winner_extract_id AND _content <> _winner_content AS _conflict
FROM ranked WHERE _version > 1;

-- 4. error rules: the row goes to ops.quarantine, one row per failed check
DELETE FROM ops.quarantine WHERE domain = 'assessments';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (
    SELECT v._extract_id, v._row_number, j.patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || v._winner_row_number || ' of this drop, with different values; that later row was kept' AS reason
    FROM _assessments_later AS v JOIN _assessments_judged AS j USING (_extract_id, _row_number) WHERE v._conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, u.check_name, u.reason
    FROM (SELECT j.*, unnest([{'check_name': 'patient_id_required', 'reason': _r_patient_id_required}, {'check_name': 'patient_id_pattern', 'reason': _r_patient_id_pattern}, {'check_name': 'assessment_date_required', 'reason': _r_assessment_date_required}, {'check_name': 'assessment_date_type', 'reason': _r_assessment_date_type}, {'check_name': 'ecog_type', 'reason': _r_ecog_type}, {'check_name': 'ecog_range', 'reason': _r_ecog_range}, {'check_name': 'ascites_code', 'reason': _r_ascites_code}, {'check_name': 'encephalopathy_code', 'reason': _r_encephalopathy_code}, {'check_name': 'tumor_count_type', 'reason': _r_tumor_count_type}, {'check_name': 'tumor_count_range', 'reason': _r_tumor_count_range}, {'check_name': 'max_tumor_size_cm_type', 'reason': _r_max_tumor_size_cm_type}, {'check_name': 'max_tumor_size_cm_range', 'reason': _r_max_tumor_size_cm_range}, {'check_name': 'portal_vein_invasion_code', 'reason': _r_portal_vein_invasion_code}, {'check_name': 'extrahepatic_metastasis_code', 'reason': _r_extrahepatic_metastasis_code}, {'check_name': 'orphan_patient', 'reason': _r_orphan_patient}]) AS u
          FROM _assessments_judged AS j ANTI JOIN _assessments_later AS v USING (_extract_id, _row_number) WHERE _r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_assessment_date_required IS NOT NULL OR _r_assessment_date_type IS NOT NULL OR _r_ecog_type IS NOT NULL OR _r_ecog_range IS NOT NULL OR _r_ascites_code IS NOT NULL OR _r_encephalopathy_code IS NOT NULL OR _r_tumor_count_type IS NOT NULL OR _r_tumor_count_range IS NOT NULL OR _r_max_tumor_size_cm_type IS NOT NULL OR _r_max_tumor_size_cm_range IS NOT NULL OR _r_portal_vein_invasion_code IS NOT NULL OR _r_extrahepatic_metastasis_code IS NOT NULL OR _r_orphan_patient IS NOT NULL)
    WHERE u.reason IS NOT NULL
)
SELECT 'assessments', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason, to_json({'patient_key': r.patient_key, 'assessment_date': r.assessment_date, 'ecog': r.ecog, 'ascites': r.ascites, 'encephalopathy': r.encephalopathy, 'tumor_count': r.tumor_count, 'max_tumor_size_cm': r.max_tumor_size_cm, 'portal_vein_invasion': r.portal_vein_invasion, 'extrahepatic_metastasis': r.extrahepatic_metastasis})
FROM failed AS f JOIN raw.assessments AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. warn rules: every offence of a winning row is listed in ops.row_flags (also that of a
--    row quarantined above: the drop's warn counts must not shrink by its errors);
--    a row without errors stays in staging with the rule names in dq_warnings
DELETE FROM ops.row_flags WHERE domain = 'assessments';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'assessments', f._extract_id, f._row_number, f.patient_key, f.u.check_name, 'warn', f.u.reason, to_json({'patient_key': r.patient_key, 'assessment_date': r.assessment_date, 'ecog': r.ecog, 'ascites': r.ascites, 'encephalopathy': r.encephalopathy, 'tumor_count': r.tumor_count, 'max_tumor_size_cm': r.max_tumor_size_cm, 'portal_vein_invasion': r.portal_vein_invasion, 'extrahepatic_metastasis': r.extrahepatic_metastasis})
FROM (SELECT j.*, unnest([{'check_name': 'assessment_date_in_future', 'reason': _r_assessment_date_in_future}]) AS u
      FROM _assessments_judged AS j ANTI JOIN _assessments_later AS v USING (_extract_id, _row_number) WHERE _r_assessment_date_in_future IS NOT NULL) AS f
JOIN raw.assessments AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number
WHERE f.u.reason IS NOT NULL;

-- 6. the staging table: the winning row of each key, without errors
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
    CASE WHEN _r_assessment_date_in_future IS NOT NULL THEN list_filter([CASE WHEN _r_assessment_date_in_future IS NOT NULL THEN 'assessment_date_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _assessments_judged AS j ANTI JOIN _assessments_later AS v USING (_extract_id, _row_number)
WHERE NOT (_r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_assessment_date_required IS NOT NULL OR _r_assessment_date_type IS NOT NULL OR _r_ecog_type IS NOT NULL OR _r_ecog_range IS NOT NULL OR _r_ascites_code IS NOT NULL OR _r_encephalopathy_code IS NOT NULL OR _r_tumor_count_type IS NOT NULL OR _r_tumor_count_range IS NOT NULL OR _r_max_tumor_size_cm_type IS NOT NULL OR _r_max_tumor_size_cm_range IS NOT NULL OR _r_portal_vein_invasion_code IS NOT NULL OR _r_extrahepatic_metastasis_code IS NOT NULL OR _r_orphan_patient IS NOT NULL);

DROP TABLE _assessments_judged;
DROP TABLE _assessments_later;
