-- staging.patients: generated from data_contracts/patients.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.patients (every loaded drop) and ops.drops.
-- Writes staging.patients and the 'patients' rows of ops.quarantine (error rules) and ops.row_flags (warn rules).

CREATE OR REPLACE TEMP TABLE _patients_evaluated AS
WITH typed AS (
    -- 1. type and normalise every delivered column
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
    JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded'
),
versioned AS (
    -- 2. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        hash(patient_key, sex, etiology, hcc_diagnosis_date, consent_status) AS _content,
        first_value(hash(patient_key, sex, etiology, hcc_diagnosis_date, consent_status)) OVER w AS _winner_content
    FROM typed
    WINDOW w AS (PARTITION BY patient_key, CASE WHEN patient_key IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT *,
    -- 3. rules: errors (row quarantined) and warnings (row kept, flagged)
    CASE WHEN _version > 1 THEN [{'check_name': 'duplicate_key_conflict', 'reason': 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept'}]
         ELSE list_filter([
            CASE WHEN patient_key IS NULL THEN {'check_name': 'patient_id_required', 'reason': 'patient_id is missing'} END,
            CASE WHEN patient_key IS NOT NULL AND NOT _patient_id_valid THEN {'check_name': 'patient_id_pattern', 'reason': 'patient_id does not match ^[0-9]{8}$ (value withheld)'} END,
            CASE WHEN raw_birth_date IS NULL THEN {'check_name': 'birth_date_required', 'reason': 'birth_date is missing'} END,
            CASE WHEN raw_birth_date IS NOT NULL AND birth_date IS NULL THEN {'check_name': 'birth_date_type', 'reason': 'birth_date ' || '(withheld)' || ' is not a YYYY-MM-DD date'} END,
            CASE WHEN raw_sex IS NULL THEN {'check_name': 'sex_required', 'reason': 'sex is missing'} END,
            CASE WHEN sex IS NOT NULL AND sex NOT IN ('M', 'F') THEN {'check_name': 'sex_code', 'reason': 'sex ' || coalesce(raw_sex, '') || ' is not one of M, F'} END,
            CASE WHEN etiology IS NOT NULL AND etiology NOT IN ('HBV', 'HCV', 'ALCOHOL', 'OTHER') THEN {'check_name': 'etiology_code', 'reason': 'etiology ' || coalesce(raw_etiology, '') || ' is not one of HBV, HCV, ALCOHOL, OTHER'} END,
            CASE WHEN raw_hcc_diagnosis_date IS NOT NULL AND hcc_diagnosis_date IS NULL THEN {'check_name': 'hcc_diagnosis_date_type', 'reason': 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is not a YYYY-MM-DD date'} END,
            CASE WHEN raw_consent_status IS NULL THEN {'check_name': 'consent_status_required', 'reason': 'consent_status is missing'} END,
            CASE WHEN consent_status IS NOT NULL AND consent_status NOT IN ('active', 'withdrawn') THEN {'check_name': 'consent_status_code', 'reason': 'consent_status ' || coalesce(raw_consent_status, '') || ' is not one of active, withdrawn'} END,
            CASE WHEN birth_date IS NOT NULL AND birth_date::DATE > _extract_date THEN {'check_name': 'birth_date_in_future', 'reason': 'birth_date ' || '(withheld)' || ' is after the drop''s extraction date ' || _extract_date::VARCHAR} END
        ], lambda x: x IS NOT NULL)
    END AS _errors,
    CASE WHEN _version > 1 THEN []::STRUCT(check_name VARCHAR, reason VARCHAR)[]
         ELSE list_filter([
            CASE WHEN hcc_diagnosis_date IS NOT NULL AND hcc_diagnosis_date::DATE > _extract_date THEN {'check_name': 'hcc_diagnosis_date_in_future', 'reason': 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR} END,
            CASE WHEN birth_date IS NOT NULL AND hcc_diagnosis_date IS NOT NULL AND hcc_diagnosis_date < birth_date THEN {'check_name': 'diagnosis_after_birth', 'reason': 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is before birth_date ' || '(withheld)'} END
        ], lambda x: x IS NOT NULL)
    END AS _warnings
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

-- a withdrawn patient is judged on nothing but the key: no rule may keep it in a table
UPDATE _patients_evaluated SET _errors = list_filter(_errors, lambda x: x.check_name LIKE 'patient_id%'),
    _warnings = []
WHERE consent_status = 'withdrawn';

DELETE FROM ops.quarantine WHERE domain = 'patients';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'patients', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'error', e.f.reason,
       to_json({'patient_key': r.patient_key, 'sex': r.sex, 'etiology': r.etiology, 'hcc_diagnosis_date': r.hcc_diagnosis_date, 'consent_status': r.consent_status})
FROM (SELECT *, unnest(_errors) AS f FROM _patients_evaluated) AS e
JOIN raw.patients AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number;

DELETE FROM ops.row_flags WHERE domain = 'patients';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'patients', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'warn', e.f.reason,
       to_json({'patient_key': r.patient_key, 'sex': r.sex, 'etiology': r.etiology, 'hcc_diagnosis_date': r.hcc_diagnosis_date, 'consent_status': r.consent_status})
FROM (SELECT *, unnest(_warnings) AS f FROM _patients_evaluated) AS e
JOIN raw.patients AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number WHERE len(e._errors) = 0;

-- 4. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.patients AS
SELECT
    patient_key,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE sex END AS sex,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE etiology END AS etiology,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE hcc_diagnosis_date END AS hcc_diagnosis_date,
    consent_status,
    list_transform(_warnings, lambda x: x.check_name) AS dq_warnings,
    _extract_id,
    _row_number
FROM _patients_evaluated
WHERE len(_errors) = 0
ORDER BY patient_key;

DROP TABLE _patients_evaluated;
