-- staging.labs: generated from data_contracts/labs.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.labs (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes raw.typed_labs (view), staging.labs, and the 'labs' rows of ops.quarantine (error rules)
-- and ops.row_flags (warn rules).

-- 1. type and normalise every delivered column
CREATE OR REPLACE VIEW raw.typed_labs AS
SELECT
    r._extract_id,
    r._row_number,
    d.extracted_at::DATE AS _extract_date,
    r.patient_key,
    r._patient_id_valid,
    CASE WHEN regexp_full_match(nullif(trim(r.collected_at), ''), '\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2}(\.\d+)?)?)?') THEN try_cast(nullif(trim(r.collected_at), '') AS TIMESTAMP) END AS collected_at,
    upper(nullif(trim(r.test_code), '')) AS test_code,
    CASE WHEN regexp_full_match(nullif(trim(r.value), ''), '([<>])?\s*([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?') THEN try_cast(trim(ltrim(nullif(trim(r.value), ''), '<>')) AS DOUBLE) END AS value_number,
    CASE WHEN regexp_full_match(nullif(trim(r.value), ''), '([<>])?\s*([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?') AND left(nullif(trim(r.value), ''), 1) IN ('<', '>') THEN left(nullif(trim(r.value), ''), 1) END AS value_censoring,
    nullif(trim(r.unit), '') AS unit,
    nullif(trim(r.collected_at), '') AS raw_collected_at,
    nullif(trim(r.test_code), '') AS raw_test_code,
    nullif(trim(r.value), '') AS raw_value,
    nullif(trim(r.unit), '') AS raw_unit,
    u.divisor AS _unit_divisor,
    u.canonical_unit,
    round(value_number / u.divisor, 6) AS value_canonical
FROM raw.labs AS r
JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded'
-- accepted units per test: value in the canonical unit = delivered value / divisor
LEFT JOIN (VALUES
        ('AFP', 'ng/ml', 'ng/mL', 1.0),
        ('ALB', 'g/dl', 'g/dL', 1.0),
        ('ALB', 'g/l', 'g/dL', 10.0),
        ('TBIL', 'mg/dl', 'mg/dL', 1.0),
        ('TBIL', 'umol/l', 'mg/dL', 17.1),
        ('INR', 'ratio', 'ratio', 1.0),
        ('INR', '', 'ratio', 1.0),
        ('PLT', '10^3/ul', '10^3/uL', 1.0),
        ('ALT', 'u/l', 'U/L', 1.0),
        ('AST', 'u/l', 'U/L', 1.0),
        ('CREA', 'mg/dl', 'mg/dL', 1.0)
    ) AS u(test_code, unit_lower, canonical_unit, divisor)
    ON u.test_code = upper(nullif(trim(r.test_code), '')) AND u.unit_lower = coalesce(lower(nullif(trim(r.unit), '')), '');

CREATE OR REPLACE TEMP TABLE _labs_evaluated AS
WITH versioned AS (
    -- 2. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        hash(patient_key, collected_at, test_code, value_number, value_censoring, unit, raw_unit) AS _content,
        first_value(hash(patient_key, collected_at, test_code, value_number, value_censoring, unit, raw_unit)) OVER w AS _winner_content
    FROM raw.typed_labs
    WHERE patient_key IS NULL OR patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')
    WINDOW w AS (PARTITION BY patient_key, collected_at, test_code, CASE WHEN patient_key IS NULL OR collected_at IS NULL OR test_code IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
-- 3. one boolean per rule: _e_* error rules (row quarantined), _w_* warn rules (row kept, flagged)
SELECT *,
    _version > 1 AS _e_duplicate_key_conflict,
    coalesce(_version = 1 AND (patient_key IS NULL), false) AS _e_patient_id_required,
    coalesce(_version = 1 AND (patient_key IS NOT NULL AND NOT _patient_id_valid), false) AS _e_patient_id_pattern,
    coalesce(_version = 1 AND (raw_collected_at IS NULL), false) AS _e_collected_at_required,
    coalesce(_version = 1 AND (raw_collected_at IS NOT NULL AND collected_at IS NULL), false) AS _e_collected_at_type,
    coalesce(_version = 1 AND (raw_test_code IS NULL), false) AS _e_test_code_required,
    coalesce(_version = 1 AND (test_code IS NOT NULL AND test_code NOT IN ('AFP', 'ALB', 'TBIL', 'INR', 'PLT', 'ALT', 'AST', 'CREA')), false) AS _e_test_code_code,
    coalesce(_version = 1 AND (raw_value IS NULL), false) AS _e_value_required,
    coalesce(_version = 1 AND (raw_value IS NOT NULL AND value_number IS NULL), false) AS _e_value_type,
    coalesce(_version = 1 AND (value_number IS NOT NULL AND (value_number < 0)), false) AS _e_value_range,
    coalesce(_version = 1 AND (test_code IN ('AFP', 'ALB', 'TBIL', 'INR', 'PLT', 'ALT', 'AST', 'CREA') AND _unit_divisor IS NULL), false) AS _e_unit_for_test,
    coalesce(_version = 1 AND (patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients)), false) AS _e_orphan_patient,
    coalesce(_version = 1 AND (value_censoring IS NOT NULL AND test_code NOT IN ('AFP')), false) AS _w_censored_value_not_afp,
    coalesce(_version = 1 AND (collected_at IS NOT NULL AND collected_at::DATE > _extract_date), false) AS _w_collected_at_in_future
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'labs';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _labs_evaluated WHERE (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_collected_at_required OR _e_collected_at_type OR _e_test_code_required OR _e_test_code_code OR _e_value_required OR _e_value_type OR _e_value_range OR _e_unit_for_test OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept' AS reason FROM failed WHERE _e_duplicate_key_conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_required' AS check_name, 'patient_id is missing' AS reason FROM failed WHERE _e_patient_id_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_pattern' AS check_name, 'patient_id does not match ^[0-9]{8}$ (value withheld)' AS reason FROM failed WHERE _e_patient_id_pattern
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'collected_at_required' AS check_name, 'collected_at is missing' AS reason FROM failed WHERE _e_collected_at_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'collected_at_type' AS check_name, 'collected_at ' || coalesce(raw_collected_at, '') || ' is not a YYYY-MM-DD[ HH:MM[:SS]] date-time' AS reason FROM failed WHERE _e_collected_at_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'test_code_required' AS check_name, 'test_code is missing' AS reason FROM failed WHERE _e_test_code_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'test_code_code' AS check_name, 'test_code ' || coalesce(raw_test_code, '') || ' is not one of AFP, ALB, TBIL, INR, PLT, ALT, AST, CREA' AS reason FROM failed WHERE _e_test_code_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'value_required' AS check_name, 'value is missing' AS reason FROM failed WHERE _e_value_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'value_type' AS check_name, 'value ' || coalesce(raw_value, '') || ' is not a number with an optional < or > sign' AS reason FROM failed WHERE _e_value_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'value_range' AS check_name, 'value ' || coalesce(raw_value, '') || ' outside the allowed range (>= 0)' AS reason FROM failed WHERE _e_value_range
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'unit_for_test' AS check_name, 'unit ''' || coalesce(raw_unit, '') || ''' is not accepted for ' || test_code AS reason FROM failed WHERE _e_unit_for_test
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'orphan_patient' AS check_name, 'patient is in no delivered patients.csv (or its patient row is quarantined)' AS reason FROM failed WHERE _e_orphan_patient
)
SELECT 'labs', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason,
       to_json({'patient_key': r.patient_key, 'collected_at': r.collected_at, 'test_code': r.test_code, 'value': r.value, 'unit': r.unit})
FROM checks AS f
JOIN raw.labs AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

DELETE FROM ops.row_flags WHERE domain = 'labs';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _labs_evaluated WHERE (_w_censored_value_not_afp OR _w_collected_at_in_future) AND NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_collected_at_required OR _e_collected_at_type OR _e_test_code_required OR _e_test_code_code OR _e_value_required OR _e_value_type OR _e_value_range OR _e_unit_for_test OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'censored_value_not_afp' AS check_name, 'censored value ' || coalesce(raw_value, '') || ' for ' || test_code || ' (expected only for AFP)' AS reason FROM failed WHERE _w_censored_value_not_afp
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'collected_at_in_future' AS check_name, 'collected_at ' || coalesce(raw_collected_at, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR AS reason FROM failed WHERE _w_collected_at_in_future
)
SELECT 'labs', f._extract_id, f._row_number, f.patient_key, f.check_name, 'warn', f.reason,
       to_json({'patient_key': r.patient_key, 'collected_at': r.collected_at, 'test_code': r.test_code, 'value': r.value, 'unit': r.unit})
FROM checks AS f
JOIN raw.labs AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 4. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.labs AS
SELECT
    patient_key,
    collected_at,
    test_code,
    value_canonical AS value,
    value_censoring,
    canonical_unit AS unit,
    raw_value AS value_as_delivered,
    raw_unit AS unit_as_delivered,
    CASE WHEN _w_censored_value_not_afp OR _w_collected_at_in_future THEN list_filter([CASE WHEN _w_censored_value_not_afp THEN 'censored_value_not_afp' END, CASE WHEN _w_collected_at_in_future THEN 'collected_at_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _labs_evaluated
WHERE NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_collected_at_required OR _e_collected_at_type OR _e_test_code_required OR _e_test_code_code OR _e_value_required OR _e_value_type OR _e_value_range OR _e_unit_for_test OR _e_orphan_patient);

DROP TABLE _labs_evaluated;
