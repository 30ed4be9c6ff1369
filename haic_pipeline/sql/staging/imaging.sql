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

CREATE OR REPLACE TEMP TABLE _imaging_judged AS
-- 2. every rule of the contract, judged on every delivered row: its reason where it fails, else NULL
SELECT _extract_id, _row_number,
    patient_key,
    scan_date,
    modality,
    mrecist_response,
    hash(patient_key, scan_date, modality, mrecist_response) AS _content,
    CASE WHEN patient_key IS NOT NULL AND scan_date IS NOT NULL THEN hash(patient_key, scan_date) END AS _key_hash,
    CASE WHEN ((CASE WHEN t.patient_key IS NOT NULL THEN true END) IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t._patient_id_valid END)) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
    CASE WHEN ((CASE WHEN t.raw_scan_date IS NOT NULL THEN t.scan_date IS NOT NULL END) IS NULL) THEN 'scan_date is missing' END AS _r_scan_date_required,
    CASE WHEN (NOT (CASE WHEN t.raw_scan_date IS NOT NULL THEN t.scan_date IS NOT NULL END)) THEN 'scan_date ' || coalesce(raw_scan_date, '') || ' is not a YYYY-MM-DD date' END AS _r_scan_date_type,
    CASE WHEN ((t.modality) NOT IN ('CT', 'MRI')) THEN 'modality ' || coalesce(raw_modality, '') || ' is not one of CT, MRI' END AS _r_modality_code,
    CASE WHEN ((CASE WHEN t.raw_mrecist_response IS NOT NULL THEN true END) IS NULL) THEN 'mrecist_response is missing' END AS _r_mrecist_response_required,
    CASE WHEN ((t.mrecist_response) NOT IN ('CR', 'PR', 'SD', 'PD', 'NE')) THEN 'mrecist_response ' || coalesce(raw_mrecist_response, '') || ' is not one of CR, PR, SD, PD, NE' END AS _r_mrecist_response_code,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t.patient_key IN (SELECT patient_key FROM staging.patients) END)) THEN 'patient is in no delivered patients.csv (or its patient row is quarantined)' END AS _r_orphan_patient,
    CASE WHEN (NOT ((t._extract_date) >= (t.scan_date))) THEN 'scan_date ' || coalesce(raw_scan_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_scan_date_in_future
FROM raw.typed_imaging AS t
    WHERE (patient_key IS NULL OR patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn'));

-- 3. delta semantics: per natural key the newest drop wins (the last data row within a drop).
--    Only keys delivered more than once need ranking; their losing rows are listed here: older
--    versions and exact duplicates drop out, a different row of the winner's drop is a conflict.
CREATE OR REPLACE TEMP TABLE _imaging_later AS
--    Keys are first grouped on their 8-byte hash (a collision only ranks a few more rows),
--    then ranked on the key itself.
WITH repeated AS (SELECT _key_hash FROM _imaging_judged WHERE _key_hash IS NOT NULL GROUP BY ALL HAVING count(*) > 1),
ranked AS (
    SELECT _extract_id, _row_number, _content,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        first_value(_content) OVER w AS _winner_content
    FROM _imaging_judged SEMI JOIN repeated USING (_key_hash)
    WINDOW w AS (PARTITION BY patient_key, scan_date ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT _extract_id, _row_number, _winner_row_number,
    _extract_id = _winner_extract_id AND _content <> _winner_content AS _conflict
FROM ranked WHERE _version > 1;

-- 4. error rules: the row goes to ops.quarantine, one row per failed check
DELETE FROM ops.quarantine WHERE domain = 'imaging';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (
    SELECT v._extract_id, v._row_number, j.patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || v._winner_row_number || ' of this drop, with different values; that later row was kept' AS reason
    FROM _imaging_later AS v JOIN _imaging_judged AS j USING (_extract_id, _row_number) WHERE v._conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, u.check_name, u.reason
    FROM (SELECT j.*, unnest([{'check_name': 'patient_id_required', 'reason': _r_patient_id_required}, {'check_name': 'patient_id_pattern', 'reason': _r_patient_id_pattern}, {'check_name': 'scan_date_required', 'reason': _r_scan_date_required}, {'check_name': 'scan_date_type', 'reason': _r_scan_date_type}, {'check_name': 'modality_code', 'reason': _r_modality_code}, {'check_name': 'mrecist_response_required', 'reason': _r_mrecist_response_required}, {'check_name': 'mrecist_response_code', 'reason': _r_mrecist_response_code}, {'check_name': 'orphan_patient', 'reason': _r_orphan_patient}]) AS u
          FROM _imaging_judged AS j ANTI JOIN _imaging_later AS v USING (_extract_id, _row_number) WHERE _r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_scan_date_required IS NOT NULL OR _r_scan_date_type IS NOT NULL OR _r_modality_code IS NOT NULL OR _r_mrecist_response_required IS NOT NULL OR _r_mrecist_response_code IS NOT NULL OR _r_orphan_patient IS NOT NULL)
    WHERE u.reason IS NOT NULL
)
SELECT 'imaging', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason, to_json({'patient_key': r.patient_key, 'scan_date': r.scan_date, 'modality': r.modality, 'mrecist_response': r.mrecist_response})
FROM failed AS f JOIN raw.imaging AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. warn rules: every offence of a winning row is listed in ops.row_flags (also that of a
--    row quarantined above: the drop's warn counts must not shrink by its errors);
--    a row without errors stays in staging with the rule names in dq_warnings
DELETE FROM ops.row_flags WHERE domain = 'imaging';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'imaging', f._extract_id, f._row_number, f.patient_key, f.u.check_name, 'warn', f.u.reason, to_json({'patient_key': r.patient_key, 'scan_date': r.scan_date, 'modality': r.modality, 'mrecist_response': r.mrecist_response})
FROM (SELECT j.*, unnest([{'check_name': 'scan_date_in_future', 'reason': _r_scan_date_in_future}]) AS u
      FROM _imaging_judged AS j ANTI JOIN _imaging_later AS v USING (_extract_id, _row_number) WHERE _r_scan_date_in_future IS NOT NULL) AS f
JOIN raw.imaging AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number
WHERE f.u.reason IS NOT NULL;

-- 6. the staging table: the winning row of each key, without errors
CREATE OR REPLACE TABLE staging.imaging AS
SELECT
    patient_key,
    scan_date,
    modality,
    mrecist_response,
    CASE WHEN _r_scan_date_in_future IS NOT NULL THEN list_filter([CASE WHEN _r_scan_date_in_future IS NOT NULL THEN 'scan_date_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _imaging_judged AS j ANTI JOIN _imaging_later AS v USING (_extract_id, _row_number)
WHERE NOT (_r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_scan_date_required IS NOT NULL OR _r_scan_date_type IS NOT NULL OR _r_modality_code IS NOT NULL OR _r_mrecist_response_required IS NOT NULL OR _r_mrecist_response_code IS NOT NULL OR _r_orphan_patient IS NOT NULL);

DROP TABLE _imaging_judged;
DROP TABLE _imaging_later;
