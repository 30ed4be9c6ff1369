-- staging.imaging: generated from data_contracts/imaging.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.imaging (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes raw.typed_imaging (view), staging.imaging, and the 'imaging' rows of ops.quarantine (error rules)
-- and ops.row_flags (warn rules).

-- 1. type and normalise every delivered column
CREATE OR REPLACE VIEW raw.typed_imaging AS
SELECT
    r._extract_id,
    r._row_number,
    d.extracted_at::DATE AS _extract_date,
    r.patient_key,
    r._patient_id_valid,
    CASE WHEN regexp_full_match(nullif(trim(r.scan_date), ''), '\d{4}-\d{2}-\d{2}') THEN try_cast(nullif(trim(r.scan_date), '') AS DATE) END AS scan_date,
    upper(nullif(trim(r.modality), '')) AS modality,
    upper(nullif(trim(r.mrecist_response), '')) AS mrecist_response,
    nullif(trim(r.scan_date), '') AS raw_scan_date,
    nullif(trim(r.modality), '') AS raw_modality,
    nullif(trim(r.mrecist_response), '') AS raw_mrecist_response
FROM raw.imaging AS r
JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded';

CREATE OR REPLACE TEMP TABLE _imaging_evaluated AS
WITH judged AS (
    -- 2. every rule of the contract, judged on every delivered row
    SELECT _extract_id, _row_number,
        patient_key,
        scan_date,
        modality,
        mrecist_response,
        hash(patient_key, scan_date, modality, mrecist_response) AS _content,
        CASE WHEN (patient_key IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
        CASE WHEN (patient_key IS NOT NULL AND NOT _patient_id_valid) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
        CASE WHEN (raw_scan_date IS NULL) THEN 'scan_date is missing' END AS _r_scan_date_required,
        CASE WHEN (raw_scan_date IS NOT NULL AND scan_date IS NULL) THEN 'scan_date ' || coalesce(raw_scan_date, '') || ' is not a YYYY-MM-DD date' END AS _r_scan_date_type,
        CASE WHEN (modality IS NOT NULL AND modality NOT IN ('CT', 'MRI')) THEN 'modality ' || coalesce(raw_modality, '') || ' is not one of CT, MRI' END AS _r_modality_code,
        CASE WHEN (raw_mrecist_response IS NULL) THEN 'mrecist_response is missing' END AS _r_mrecist_response_required,
        CASE WHEN (mrecist_response IS NOT NULL AND mrecist_response NOT IN ('CR', 'PR', 'SD', 'PD', 'NE')) THEN 'mrecist_response ' || coalesce(raw_mrecist_response, '') || ' is not one of CR, PR, SD, PD, NE' END AS _r_mrecist_response_code,
        CASE WHEN (patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients)) THEN 'patient is in no delivered patients.csv (or its patient row is quarantined)' END AS _r_orphan_patient,
        CASE WHEN (scan_date IS NOT NULL AND scan_date::DATE > _extract_date) THEN 'scan_date ' || coalesce(raw_scan_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_scan_date_in_future
    FROM raw.typed_imaging
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
    WINDOW w AS (PARTITION BY patient_key, scan_date, CASE WHEN patient_key IS NULL OR scan_date IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
-- 4. one boolean per rule on the winning rows: _e_* error rules (quarantined), _w_* warn rules (flagged)
SELECT *,
    _version > 1 AS _e_duplicate_key_conflict,
    _version = 1 AND _r_patient_id_required IS NOT NULL AS _e_patient_id_required,
    _version = 1 AND _r_patient_id_pattern IS NOT NULL AS _e_patient_id_pattern,
    _version = 1 AND _r_scan_date_required IS NOT NULL AS _e_scan_date_required,
    _version = 1 AND _r_scan_date_type IS NOT NULL AS _e_scan_date_type,
    _version = 1 AND _r_modality_code IS NOT NULL AS _e_modality_code,
    _version = 1 AND _r_mrecist_response_required IS NOT NULL AS _e_mrecist_response_required,
    _version = 1 AND _r_mrecist_response_code IS NOT NULL AS _e_mrecist_response_code,
    _version = 1 AND _r_orphan_patient IS NOT NULL AS _e_orphan_patient,
    _version = 1 AND _r_scan_date_in_future IS NOT NULL AS _w_scan_date_in_future
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'imaging';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _imaging_evaluated WHERE (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_scan_date_required OR _e_scan_date_type OR _e_modality_code OR _e_mrecist_response_required OR _e_mrecist_response_code OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept' AS reason FROM failed WHERE _e_duplicate_key_conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_required' AS check_name, _r_patient_id_required AS reason FROM failed WHERE _e_patient_id_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_pattern' AS check_name, _r_patient_id_pattern AS reason FROM failed WHERE _e_patient_id_pattern
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'scan_date_required' AS check_name, _r_scan_date_required AS reason FROM failed WHERE _e_scan_date_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'scan_date_type' AS check_name, _r_scan_date_type AS reason FROM failed WHERE _e_scan_date_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'modality_code' AS check_name, _r_modality_code AS reason FROM failed WHERE _e_modality_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'mrecist_response_required' AS check_name, _r_mrecist_response_required AS reason FROM failed WHERE _e_mrecist_response_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'mrecist_response_code' AS check_name, _r_mrecist_response_code AS reason FROM failed WHERE _e_mrecist_response_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'orphan_patient' AS check_name, _r_orphan_patient AS reason FROM failed WHERE _e_orphan_patient
)
SELECT 'imaging', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason,
       to_json({'patient_key': r.patient_key, 'scan_date': r.scan_date, 'modality': r.modality, 'mrecist_response': r.mrecist_response})
FROM checks AS f
JOIN raw.imaging AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

DELETE FROM ops.row_flags WHERE domain = 'imaging';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _imaging_evaluated WHERE (_w_scan_date_in_future) AND NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_scan_date_required OR _e_scan_date_type OR _e_modality_code OR _e_mrecist_response_required OR _e_mrecist_response_code OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'scan_date_in_future' AS check_name, _r_scan_date_in_future AS reason FROM failed WHERE _w_scan_date_in_future
)
SELECT 'imaging', f._extract_id, f._row_number, f.patient_key, f.check_name, 'warn', f.reason,
       to_json({'patient_key': r.patient_key, 'scan_date': r.scan_date, 'modality': r.modality, 'mrecist_response': r.mrecist_response})
FROM checks AS f
JOIN raw.imaging AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.imaging AS
SELECT
    patient_key,
    scan_date,
    modality,
    mrecist_response,
    CASE WHEN _w_scan_date_in_future THEN list_filter([CASE WHEN _w_scan_date_in_future THEN 'scan_date_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _imaging_evaluated
WHERE NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_scan_date_required OR _e_scan_date_type OR _e_modality_code OR _e_mrecist_response_required OR _e_mrecist_response_code OR _e_orphan_patient);

DROP TABLE _imaging_evaluated;
