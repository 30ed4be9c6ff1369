-- staging.vital_status: generated from data_contracts/vital_status.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.vital_status (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes raw.typed_vital_status (view), staging.vital_status, and the 'vital_status' rows of ops.quarantine (error rules)
-- and ops.row_flags (warn rules).

-- 1. type and normalise every delivered column
CREATE OR REPLACE VIEW raw.typed_vital_status AS
SELECT
    r._extract_id,
    r._row_number,
    d.extracted_at::DATE AS _extract_date,
    r.patient_key,
    r._patient_id_valid,
    CASE WHEN regexp_full_match(nullif(trim(r.last_contact_date), ''), '\d{4}-\d{2}-\d{2}') THEN try_cast(nullif(trim(r.last_contact_date), '') AS DATE) END AS last_contact_date,
    CASE WHEN regexp_full_match(nullif(trim(r.death_date), ''), '\d{4}-\d{2}-\d{2}') THEN try_cast(nullif(trim(r.death_date), '') AS DATE) END AS death_date,
    nullif(trim(r.last_contact_date), '') AS raw_last_contact_date,
    nullif(trim(r.death_date), '') AS raw_death_date
FROM raw.vital_status AS r
JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded';

CREATE OR REPLACE TEMP TABLE _vital_status_evaluated AS
WITH judged AS (
    -- 2. every rule of the contract, judged on every delivered row
    SELECT _extract_id, _row_number,
        patient_key,
        last_contact_date,
        death_date,
        hash(patient_key, last_contact_date, death_date) AS _content,
        CASE WHEN (patient_key IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
        CASE WHEN (patient_key IS NOT NULL AND NOT _patient_id_valid) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
        CASE WHEN (raw_last_contact_date IS NULL) THEN 'last_contact_date is missing' END AS _r_last_contact_date_required,
        CASE WHEN (raw_last_contact_date IS NOT NULL AND last_contact_date IS NULL) THEN 'last_contact_date ' || coalesce(raw_last_contact_date, '') || ' is not a YYYY-MM-DD date' END AS _r_last_contact_date_type,
        CASE WHEN (raw_death_date IS NOT NULL AND death_date IS NULL) THEN 'death_date ' || coalesce(raw_death_date, '') || ' is not a YYYY-MM-DD date' END AS _r_death_date_type,
        CASE WHEN (patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients)) THEN 'patient is in no delivered patients.csv (or its patient row is quarantined)' END AS _r_orphan_patient,
        CASE WHEN (last_contact_date IS NOT NULL AND death_date IS NOT NULL AND death_date < last_contact_date) THEN 'death_date ' || coalesce(raw_death_date, '') || ' is before last_contact_date ' || coalesce(raw_last_contact_date, '') END AS _r_last_contact_after_death,
        CASE WHEN (last_contact_date IS NOT NULL AND last_contact_date::DATE > _extract_date) THEN 'last_contact_date ' || coalesce(raw_last_contact_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_last_contact_in_future,
        CASE WHEN (death_date IS NOT NULL AND death_date::DATE > _extract_date) THEN 'death_date ' || coalesce(raw_death_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_death_date_in_future
    FROM raw.typed_vital_status
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
    WINDOW w AS (PARTITION BY patient_key, CASE WHEN patient_key IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
-- 4. one boolean per rule on the winning rows: _e_* error rules (quarantined), _w_* warn rules (flagged)
SELECT *,
    _version > 1 AS _e_duplicate_key_conflict,
    _version = 1 AND _r_patient_id_required IS NOT NULL AS _e_patient_id_required,
    _version = 1 AND _r_patient_id_pattern IS NOT NULL AS _e_patient_id_pattern,
    _version = 1 AND _r_last_contact_date_required IS NOT NULL AS _e_last_contact_date_required,
    _version = 1 AND _r_last_contact_date_type IS NOT NULL AS _e_last_contact_date_type,
    _version = 1 AND _r_death_date_type IS NOT NULL AS _e_death_date_type,
    _version = 1 AND _r_orphan_patient IS NOT NULL AS _e_orphan_patient,
    _version = 1 AND _r_last_contact_after_death IS NOT NULL AS _w_last_contact_after_death,
    _version = 1 AND _r_last_contact_in_future IS NOT NULL AS _w_last_contact_in_future,
    _version = 1 AND _r_death_date_in_future IS NOT NULL AS _w_death_date_in_future
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'vital_status';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _vital_status_evaluated WHERE (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_last_contact_date_required OR _e_last_contact_date_type OR _e_death_date_type OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept' AS reason FROM failed WHERE _e_duplicate_key_conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_required' AS check_name, _r_patient_id_required AS reason FROM failed WHERE _e_patient_id_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_pattern' AS check_name, _r_patient_id_pattern AS reason FROM failed WHERE _e_patient_id_pattern
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'last_contact_date_required' AS check_name, _r_last_contact_date_required AS reason FROM failed WHERE _e_last_contact_date_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'last_contact_date_type' AS check_name, _r_last_contact_date_type AS reason FROM failed WHERE _e_last_contact_date_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'death_date_type' AS check_name, _r_death_date_type AS reason FROM failed WHERE _e_death_date_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'orphan_patient' AS check_name, _r_orphan_patient AS reason FROM failed WHERE _e_orphan_patient
)
SELECT 'vital_status', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason,
       to_json({'patient_key': r.patient_key, 'last_contact_date': r.last_contact_date, 'death_date': r.death_date})
FROM checks AS f
JOIN raw.vital_status AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

DELETE FROM ops.row_flags WHERE domain = 'vital_status';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _vital_status_evaluated WHERE (_w_last_contact_after_death OR _w_last_contact_in_future OR _w_death_date_in_future) AND NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_last_contact_date_required OR _e_last_contact_date_type OR _e_death_date_type OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'last_contact_after_death' AS check_name, _r_last_contact_after_death AS reason FROM failed WHERE _w_last_contact_after_death
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'last_contact_in_future' AS check_name, _r_last_contact_in_future AS reason FROM failed WHERE _w_last_contact_in_future
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'death_date_in_future' AS check_name, _r_death_date_in_future AS reason FROM failed WHERE _w_death_date_in_future
)
SELECT 'vital_status', f._extract_id, f._row_number, f.patient_key, f.check_name, 'warn', f.reason,
       to_json({'patient_key': r.patient_key, 'last_contact_date': r.last_contact_date, 'death_date': r.death_date})
FROM checks AS f
JOIN raw.vital_status AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.vital_status AS
SELECT
    patient_key,
    last_contact_date,
    death_date,
    CASE WHEN _w_last_contact_after_death OR _w_last_contact_in_future OR _w_death_date_in_future THEN list_filter([CASE WHEN _w_last_contact_after_death THEN 'last_contact_after_death' END, CASE WHEN _w_last_contact_in_future THEN 'last_contact_in_future' END, CASE WHEN _w_death_date_in_future THEN 'death_date_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _vital_status_evaluated
WHERE NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_last_contact_date_required OR _e_last_contact_date_type OR _e_death_date_type OR _e_orphan_patient);

DROP TABLE _vital_status_evaluated;
