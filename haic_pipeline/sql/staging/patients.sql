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

CREATE OR REPLACE TEMP TABLE _patients_judged AS
-- 2. every rule of the contract, judged on every delivered row: its reason where it fails, else NULL
SELECT _extract_id, _row_number,
    patient_key,
    sex,
    etiology,
    hcc_diagnosis_date,
    consent_status,
    hash(patient_key, sex, etiology, hcc_diagnosis_date, consent_status) AS _content,
    CASE WHEN patient_key IS NOT NULL THEN hash(patient_key) END AS _key_hash,
    CASE WHEN ((CASE WHEN t.patient_key IS NOT NULL THEN true END) IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t._patient_id_valid END)) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
    CASE WHEN (NOT (CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.raw_birth_date IS NOT NULL END)) THEN 'birth_date is missing' END AS _r_birth_date_required,
    CASE WHEN (NOT (CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN CASE WHEN t.raw_birth_date IS NOT NULL THEN t.birth_date IS NOT NULL END END)) THEN 'birth_date ' || '(withheld)' || ' is not a YYYY-MM-DD date' END AS _r_birth_date_type,
    CASE WHEN (NOT (CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.raw_sex IS NOT NULL END)) THEN 'sex is missing' END AS _r_sex_required,
    CASE WHEN ((CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.sex END) NOT IN ('M', 'F')) THEN 'sex ' || coalesce(raw_sex, '') || ' is not one of M, F' END AS _r_sex_code,
    CASE WHEN ((CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.etiology END) NOT IN ('HBV', 'HCV', 'ALCOHOL', 'OTHER')) THEN 'etiology ' || coalesce(raw_etiology, '') || ' is not one of HBV, HCV, ALCOHOL, OTHER' END AS _r_etiology_code,
    CASE WHEN (NOT (CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN CASE WHEN t.raw_hcc_diagnosis_date IS NOT NULL THEN t.hcc_diagnosis_date IS NOT NULL END END)) THEN 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is not a YYYY-MM-DD date' END AS _r_hcc_diagnosis_date_type,
    CASE WHEN (NOT (CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.raw_consent_status IS NOT NULL END)) THEN 'consent_status is missing' END AS _r_consent_status_required,
    CASE WHEN ((CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.consent_status END) NOT IN ('active', 'withdrawn')) THEN 'consent_status ' || coalesce(raw_consent_status, '') || ' is not one of active, withdrawn' END AS _r_consent_status_code,
    CASE WHEN (NOT ((CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t._extract_date END) >= (CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.birth_date END))) THEN 'birth_date ' || '(withheld)' || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_birth_date_in_future,
    CASE WHEN (NOT ((CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t._extract_date END) >= (CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.hcc_diagnosis_date END))) THEN 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_hcc_diagnosis_date_in_future,
    CASE WHEN (NOT ((CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.hcc_diagnosis_date END) >= (CASE WHEN t.consent_status IS DISTINCT FROM 'withdrawn' THEN t.birth_date END))) THEN 'hcc_diagnosis_date ' || coalesce(raw_hcc_diagnosis_date, '') || ' is before birth_date ' || '(withheld)' END AS _r_diagnosis_after_birth
FROM raw.typed_patients AS t;

-- 3. delta semantics: per natural key the newest drop wins (the last data row within a drop).
--    Only keys delivered more than once need ranking; their losing rows are listed here: older
--    versions and exact duplicates drop out, a different row of the winner's drop is a conflict.
CREATE OR REPLACE TEMP TABLE _patients_later AS
--    Keys are first grouped on their 8-byte hash (a collision only ranks a few more rows),
--    then ranked on the key itself.
WITH repeated AS (SELECT _key_hash FROM _patients_judged WHERE _key_hash IS NOT NULL GROUP BY ALL HAVING count(*) > 1),
ranked AS (
    SELECT _extract_id, _row_number, _content,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        first_value(_content) OVER w AS _winner_content
    FROM _patients_judged SEMI JOIN repeated USING (_key_hash)
    WINDOW w AS (PARTITION BY patient_key ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT _extract_id, _row_number, _winner_row_number,
    _extract_id = _winner_extract_id AND _content <> _winner_content AS _conflict
FROM ranked WHERE _version > 1;

-- 4. error rules: the row goes to ops.quarantine, one row per failed check
DELETE FROM ops.quarantine WHERE domain = 'patients';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (
    SELECT v._extract_id, v._row_number, j.patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || v._winner_row_number || ' of this drop, with different values; that later row was kept' AS reason
    FROM _patients_later AS v JOIN _patients_judged AS j USING (_extract_id, _row_number) WHERE v._conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, u.check_name, u.reason
    FROM (SELECT j.*, unnest([{'check_name': 'patient_id_required', 'reason': _r_patient_id_required}, {'check_name': 'patient_id_pattern', 'reason': _r_patient_id_pattern}, {'check_name': 'birth_date_required', 'reason': _r_birth_date_required}, {'check_name': 'birth_date_type', 'reason': _r_birth_date_type}, {'check_name': 'sex_required', 'reason': _r_sex_required}, {'check_name': 'sex_code', 'reason': _r_sex_code}, {'check_name': 'etiology_code', 'reason': _r_etiology_code}, {'check_name': 'hcc_diagnosis_date_type', 'reason': _r_hcc_diagnosis_date_type}, {'check_name': 'consent_status_required', 'reason': _r_consent_status_required}, {'check_name': 'consent_status_code', 'reason': _r_consent_status_code}, {'check_name': 'birth_date_in_future', 'reason': _r_birth_date_in_future}]) AS u
          FROM _patients_judged AS j ANTI JOIN _patients_later AS v USING (_extract_id, _row_number) WHERE _r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_birth_date_required IS NOT NULL OR _r_birth_date_type IS NOT NULL OR _r_sex_required IS NOT NULL OR _r_sex_code IS NOT NULL OR _r_etiology_code IS NOT NULL OR _r_hcc_diagnosis_date_type IS NOT NULL OR _r_consent_status_required IS NOT NULL OR _r_consent_status_code IS NOT NULL OR _r_birth_date_in_future IS NOT NULL)
    WHERE u.reason IS NOT NULL
)
SELECT 'patients', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason, to_json({'patient_key': r.patient_key, 'sex': r.sex, 'etiology': r.etiology, 'hcc_diagnosis_date': r.hcc_diagnosis_date, 'consent_status': r.consent_status})
FROM failed AS f JOIN raw.patients AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. warn rules: every offence of a winning row is listed in ops.row_flags (also that of a
--    row quarantined above: the drop's warn counts must not shrink by its errors);
--    a row without errors stays in staging with the rule names in dq_warnings
DELETE FROM ops.row_flags WHERE domain = 'patients';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'patients', f._extract_id, f._row_number, f.patient_key, f.u.check_name, 'warn', f.u.reason, to_json({'patient_key': r.patient_key, 'sex': r.sex, 'etiology': r.etiology, 'hcc_diagnosis_date': r.hcc_diagnosis_date, 'consent_status': r.consent_status})
FROM (SELECT j.*, unnest([{'check_name': 'hcc_diagnosis_date_in_future', 'reason': _r_hcc_diagnosis_date_in_future}, {'check_name': 'diagnosis_after_birth', 'reason': _r_diagnosis_after_birth}]) AS u
      FROM _patients_judged AS j ANTI JOIN _patients_later AS v USING (_extract_id, _row_number) WHERE _r_hcc_diagnosis_date_in_future IS NOT NULL OR _r_diagnosis_after_birth IS NOT NULL) AS f
JOIN raw.patients AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number
WHERE f.u.reason IS NOT NULL;

-- 6. the staging table: the winning row of each key, without errors
CREATE OR REPLACE TABLE staging.patients AS
SELECT
    patient_key,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE sex END AS sex,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE etiology END AS etiology,
    CASE WHEN consent_status = 'withdrawn' THEN NULL ELSE hcc_diagnosis_date END AS hcc_diagnosis_date,
    consent_status,
    CASE WHEN _r_hcc_diagnosis_date_in_future IS NOT NULL OR _r_diagnosis_after_birth IS NOT NULL THEN list_filter([CASE WHEN _r_hcc_diagnosis_date_in_future IS NOT NULL THEN 'hcc_diagnosis_date_in_future' END, CASE WHEN _r_diagnosis_after_birth IS NOT NULL THEN 'diagnosis_after_birth' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _patients_judged AS j ANTI JOIN _patients_later AS v USING (_extract_id, _row_number)
WHERE NOT (_r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_birth_date_required IS NOT NULL OR _r_birth_date_type IS NOT NULL OR _r_sex_required IS NOT NULL OR _r_sex_code IS NOT NULL OR _r_etiology_code IS NOT NULL OR _r_hcc_diagnosis_date_type IS NOT NULL OR _r_consent_status_required IS NOT NULL OR _r_consent_status_code IS NOT NULL OR _r_birth_date_in_future IS NOT NULL);

DROP TABLE _patients_judged;
DROP TABLE _patients_later;
