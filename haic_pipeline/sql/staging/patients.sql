-- staging.patients: generated from data_contracts/patients.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.patients (every loaded drop) and ops.drops.
-- Writes raw.typed_patients (view), staging.patients, and the 'patients' rows of ops.quarantine (error rules)
-- and ops.row_flags (warn rules).

-- 1. type and normalise every delivered column
CREATE OR REPLACE VIEW raw.typed_patients AS
SELECT
    r._extract_id,
    r._row_number,
    d.extracted_at::DATE AS _extract_date,
    r.patient_key,
    r._patient_id_valid,
    CASE WHEN regexp_full_match(nullif(trim(r.birth_date), ''), '\d{4}-\d{2}-\d{2}') THEN try_cast(nullif(trim(r.birth_date), '') AS DATE) END AS birth_date,
    upper(nullif(trim(r.sex), '')) AS sex,
    upper(nullif(trim(r.etiology), '')) AS etiology,
    CASE WHEN regexp_full_match(nullif(trim(r.hcc_diagnosis_date), ''), '\d{4}-\d{2}-\d{2}') THEN try_cast(nullif(trim(r.hcc_diagnosis_date), '') AS DATE) END AS hcc_diagnosis_date,
    lower(nullif(trim(r.consent_status), '')) AS consent_status,
    nullif(trim(r.birth_date), '') AS raw_birth_date,
    nullif(trim(r.sex), '') AS raw_sex,
    nullif(trim(r.etiology), '') AS raw_etiology,
    nullif(trim(r.hcc_diagnosis_date), '') AS raw_hcc_diagnosis_date,
    nullif(trim(r.consent_status), '') AS raw_consent_status
FROM raw.patients AS r
JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded';

CREATE OR REPLACE TEMP TABLE _patients_evaluated AS
WITH judged AS (
    -- 2. every rule of the contract, judged on every delivered row
    SELECT _extract_id, _row_number,
        patient_key,
        sex,
        etiology,
        hcc_diagnosis_date,
        consent_status,
        _patient_id_valid,
        hash(patient_key, sex, etiology, hcc_diagnosis_date, consent_status, _patient_id_valid) AS _content,
        CASE WHEN (patient_key IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
        CASE WHEN (patient_key IS NOT NULL AND NOT _patient_id_valid) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (raw_birth_date IS NULL) THEN 'birth_date is missing' END AS _r_birth_date_required,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (raw_birth_date IS NOT NULL AND birth_date IS NULL) THEN 'birth_date ' || '(withheld)' || ' is not a YYYY-MM-DD date' END AS _r_birth_date_type,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (raw_sex IS NULL) THEN 'sex is missing' END AS _r_sex_required,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (sex IS NOT NULL AND sex NOT IN ('M', 'F')) THEN 'sex ' || coalesce(raw_sex, '') || ' is not one of M, F' END AS _r_sex_code,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (etiology IS NOT NULL AND etiology NOT IN ('HBV', 'HCV', 'ALCOHOL', 'OTHER')) THEN 'etiology ' || coalesce(raw_etiology, '') || ' is not one of HBV, HCV, ALCOHOL, OTHER' END AS _r_etiology_code,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (raw_hcc_diagnosis_date IS NOT NULL AND hcc_diagnosis_date IS NULL) THEN 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is not a YYYY-MM-DD date' END AS _r_hcc_diagnosis_date_type,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (raw_consent_status IS NULL) THEN 'consent_status is missing' END AS _r_consent_status_required,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (consent_status IS NOT NULL AND consent_status NOT IN ('active', 'withdrawn')) THEN 'consent_status ' || coalesce(raw_consent_status, '') || ' is not one of active, withdrawn' END AS _r_consent_status_code,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (birth_date IS NOT NULL AND birth_date::DATE > _extract_date) THEN 'birth_date ' || '(withheld)' || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_birth_date_in_future,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (hcc_diagnosis_date IS NOT NULL AND hcc_diagnosis_date::DATE > _extract_date) THEN 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_hcc_diagnosis_date_in_future,
        CASE WHEN consent_status IS DISTINCT FROM 'withdrawn' AND (birth_date IS NOT NULL AND hcc_diagnosis_date IS NOT NULL AND hcc_diagnosis_date < birth_date) THEN 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is before birth_date ' || '(withheld)' END AS _r_diagnosis_after_birth
    FROM raw.typed_patients
),
versioned AS (
    -- 3. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        first_value(_content) OVER w AS _winner_content
    FROM judged
    WINDOW w AS (PARTITION BY patient_key, CASE WHEN patient_key IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
-- 4. one boolean per rule on the winning rows: _e_* error rules (quarantined), _w_* warn rules (flagged)
SELECT *,
    _version > 1 AS _e_duplicate_key_conflict,
    _version = 1 AND _r_patient_id_required IS NOT NULL AS _e_patient_id_required,
    _version = 1 AND _r_patient_id_pattern IS NOT NULL AS _e_patient_id_pattern,
    _version = 1 AND _r_birth_date_required IS NOT NULL AS _e_birth_date_required,
    _version = 1 AND _r_birth_date_type IS NOT NULL AS _e_birth_date_type,
    _version = 1 AND _r_sex_required IS NOT NULL AS _e_sex_required,
    _version = 1 AND _r_sex_code IS NOT NULL AS _e_sex_code,
    _version = 1 AND _r_etiology_code IS NOT NULL AS _e_etiology_code,
    _version = 1 AND _r_hcc_diagnosis_date_type IS NOT NULL AS _e_hcc_diagnosis_date_type,
    _version = 1 AND _r_consent_status_required IS NOT NULL AS _e_consent_status_required,
    _version = 1 AND _r_consent_status_code IS NOT NULL AS _e_consent_status_code,
    _version = 1 AND _r_birth_date_in_future IS NOT NULL AS _e_birth_date_in_future,
    _version = 1 AND _r_hcc_diagnosis_date_in_future IS NOT NULL AS _w_hcc_diagnosis_date_in_future,
    _version = 1 AND _r_diagnosis_after_birth IS NOT NULL AS _w_diagnosis_after_birth
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'patients';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _patients_evaluated WHERE (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_birth_date_required OR _e_birth_date_type OR _e_sex_required OR _e_sex_code OR _e_etiology_code OR _e_hcc_diagnosis_date_type OR _e_consent_status_required OR _e_consent_status_code OR _e_birth_date_in_future)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept' AS reason FROM failed WHERE _e_duplicate_key_conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_required' AS check_name, _r_patient_id_required AS reason FROM failed WHERE _e_patient_id_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_pattern' AS check_name, _r_patient_id_pattern AS reason FROM failed WHERE _e_patient_id_pattern
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'birth_date_required' AS check_name, _r_birth_date_required AS reason FROM failed WHERE _e_birth_date_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'birth_date_type' AS check_name, _r_birth_date_type AS reason FROM failed WHERE _e_birth_date_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'sex_required' AS check_name, _r_sex_required AS reason FROM failed WHERE _e_sex_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'sex_code' AS check_name, _r_sex_code AS reason FROM failed WHERE _e_sex_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'etiology_code' AS check_name, _r_etiology_code AS reason FROM failed WHERE _e_etiology_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'hcc_diagnosis_date_type' AS check_name, _r_hcc_diagnosis_date_type AS reason FROM failed WHERE _e_hcc_diagnosis_date_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'consent_status_required' AS check_name, _r_consent_status_required AS reason FROM failed WHERE _e_consent_status_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'consent_status_code' AS check_name, _r_consent_status_code AS reason FROM failed WHERE _e_consent_status_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'birth_date_in_future' AS check_name, _r_birth_date_in_future AS reason FROM failed WHERE _e_birth_date_in_future
)
SELECT 'patients', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason,
       to_json({'patient_key': r.patient_key, 'sex': r.sex, 'etiology': r.etiology, 'hcc_diagnosis_date': r.hcc_diagnosis_date, 'consent_status': r.consent_status})
FROM checks AS f
JOIN raw.patients AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

DELETE FROM ops.row_flags WHERE domain = 'patients';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _patients_evaluated WHERE (_w_hcc_diagnosis_date_in_future OR _w_diagnosis_after_birth) AND NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_birth_date_required OR _e_birth_date_type OR _e_sex_required OR _e_sex_code OR _e_etiology_code OR _e_hcc_diagnosis_date_type OR _e_consent_status_required OR _e_consent_status_code OR _e_birth_date_in_future)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'hcc_diagnosis_date_in_future' AS check_name, _r_hcc_diagnosis_date_in_future AS reason FROM failed WHERE _w_hcc_diagnosis_date_in_future
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'diagnosis_after_birth' AS check_name, _r_diagnosis_after_birth AS reason FROM failed WHERE _w_diagnosis_after_birth
)
SELECT 'patients', f._extract_id, f._row_number, f.patient_key, f.check_name, 'warn', f.reason,
       to_json({'patient_key': r.patient_key, 'sex': r.sex, 'etiology': r.etiology, 'hcc_diagnosis_date': r.hcc_diagnosis_date, 'consent_status': r.consent_status})
FROM checks AS f
JOIN raw.patients AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.patients AS
SELECT
    patient_key,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE sex END AS sex,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE etiology END AS etiology,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE hcc_diagnosis_date END AS hcc_diagnosis_date,
    consent_status,
    CASE WHEN _w_hcc_diagnosis_date_in_future OR _w_diagnosis_after_birth THEN list_filter([CASE WHEN _w_hcc_diagnosis_date_in_future THEN 'hcc_diagnosis_date_in_future' END, CASE WHEN _w_diagnosis_after_birth THEN 'diagnosis_after_birth' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _patients_evaluated
WHERE NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_birth_date_required OR _e_birth_date_type OR _e_sex_required OR _e_sex_code OR _e_etiology_code OR _e_hcc_diagnosis_date_type OR _e_consent_status_required OR _e_consent_status_code OR _e_birth_date_in_future);

DROP TABLE _patients_evaluated;
