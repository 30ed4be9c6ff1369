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
    try_cast(nullif(trim(r.collected_at), '') AS TIMESTAMP) AS collected_at,
    upper(nullif(trim(r.test_code), '')) AS test_code,
    CASE WHEN isfinite(try_cast(CASE WHEN left(nullif(trim(r.value), ''), 1) IN ('<', '>') THEN ltrim(substr(nullif(trim(r.value), ''), 2)) ELSE nullif(trim(r.value), '') END AS DOUBLE)) THEN try_cast(CASE WHEN left(nullif(trim(r.value), ''), 1) IN ('<', '>') THEN ltrim(substr(nullif(trim(r.value), ''), 2)) ELSE nullif(trim(r.value), '') END AS DOUBLE) END AS value_number,
    CASE WHEN value_number IS NOT NULL AND left(nullif(trim(r.value), ''), 1) IN ('<', '>') THEN left(nullif(trim(r.value), ''), 1) END AS value_censoring,
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
WITH judged AS (
    -- 2. every rule of the contract, judged on every delivered row
    SELECT _extract_id, _row_number,
        patient_key,
        collected_at,
        test_code,
        value_canonical AS value,
        value_censoring,
        canonical_unit AS unit,
        hash(patient_key, collected_at, test_code, value_canonical, value_censoring, canonical_unit, raw_unit) AS _content,
        CASE WHEN (patient_key IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
        CASE WHEN (patient_key IS NOT NULL AND NOT _patient_id_valid) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
        CASE WHEN (raw_collected_at IS NULL) THEN 'collected_at is missing' END AS _r_collected_at_required,
        CASE WHEN (raw_collected_at IS NOT NULL AND collected_at IS NULL) THEN 'collected_at ' || coalesce(raw_collected_at, '') || ' is not a YYYY-MM-DD[ HH:MM[:SS]] date-time' END AS _r_collected_at_type,
        CASE WHEN (raw_test_code IS NULL) THEN 'test_code is missing' END AS _r_test_code_required,
        CASE WHEN (test_code IS NOT NULL AND test_code NOT IN ('AFP', 'ALB', 'TBIL', 'INR', 'PLT', 'ALT', 'AST', 'CREA')) THEN 'test_code ' || coalesce(raw_test_code, '') || ' is not one of AFP, ALB, TBIL, INR, PLT, ALT, AST, CREA' END AS _r_test_code_code,
        CASE WHEN (raw_value IS NULL) THEN 'value is missing' END AS _r_value_required,
        CASE WHEN (raw_value IS NOT NULL AND value_number IS NULL) THEN 'value ' || coalesce(raw_value, '') || ' is not a number with an optional < or > sign' END AS _r_value_type,
        CASE WHEN (value_number IS NOT NULL AND (value_number < 0)) THEN 'value ' || coalesce(raw_value, '') || ' outside the allowed range (>= 0)' END AS _r_value_range,
        CASE WHEN (test_code IN ('AFP', 'ALB', 'TBIL', 'INR', 'PLT', 'ALT', 'AST', 'CREA') AND _unit_divisor IS NULL) THEN 'unit ''' || coalesce(raw_unit, '') || ''' is not accepted for ' || test_code END AS _r_unit_for_test,
        CASE WHEN (patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients)) THEN 'patient is in no delivered patients.csv (or its patient row is quarantined)' END AS _r_orphan_patient,
        CASE WHEN (value_censoring IS NOT NULL AND test_code NOT IN ('AFP')) THEN 'censored value ' || coalesce(raw_value, '') || ' for ' || test_code || ' (expected only for AFP)' END AS _r_censored_value_not_afp,
        CASE WHEN (collected_at IS NOT NULL AND collected_at::DATE > _extract_date) THEN 'collected_at ' || coalesce(raw_collected_at, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_collected_at_in_future
    FROM raw.typed_labs
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
    WINDOW w AS (PARTITION BY patient_key, collected_at, test_code, CASE WHEN patient_key IS NULL OR collected_at IS NULL OR test_code IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
-- 4. one boolean per rule on the winning rows: _e_* error rules (quarantined), _w_* warn rules (flagged)
SELECT *,
    _version > 1 AS _e_duplicate_key_conflict,
    _version = 1 AND _r_patient_id_required IS NOT NULL AS _e_patient_id_required,
    _version = 1 AND _r_patient_id_pattern IS NOT NULL AS _e_patient_id_pattern,
    _version = 1 AND _r_collected_at_required IS NOT NULL AS _e_collected_at_required,
    _version = 1 AND _r_collected_at_type IS NOT NULL AS _e_collected_at_type,
    _version = 1 AND _r_test_code_required IS NOT NULL AS _e_test_code_required,
    _version = 1 AND _r_test_code_code IS NOT NULL AS _e_test_code_code,
    _version = 1 AND _r_value_required IS NOT NULL AS _e_value_required,
    _version = 1 AND _r_value_type IS NOT NULL AS _e_value_type,
    _version = 1 AND _r_value_range IS NOT NULL AS _e_value_range,
    _version = 1 AND _r_unit_for_test IS NOT NULL AS _e_unit_for_test,
    _version = 1 AND _r_orphan_patient IS NOT NULL AS _e_orphan_patient,
    _version = 1 AND _r_censored_value_not_afp IS NOT NULL AS _w_censored_value_not_afp,
    _version = 1 AND _r_collected_at_in_future IS NOT NULL AS _w_collected_at_in_future
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'labs';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _labs_evaluated WHERE (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_collected_at_required OR _e_collected_at_type OR _e_test_code_required OR _e_test_code_code OR _e_value_required OR _e_value_type OR _e_value_range OR _e_unit_for_test OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept' AS reason FROM failed WHERE _e_duplicate_key_conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_required' AS check_name, _r_patient_id_required AS reason FROM failed WHERE _e_patient_id_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'patient_id_pattern' AS check_name, _r_patient_id_pattern AS reason FROM failed WHERE _e_patient_id_pattern
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'collected_at_required' AS check_name, _r_collected_at_required AS reason FROM failed WHERE _e_collected_at_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'collected_at_type' AS check_name, _r_collected_at_type AS reason FROM failed WHERE _e_collected_at_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'test_code_required' AS check_name, _r_test_code_required AS reason FROM failed WHERE _e_test_code_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'test_code_code' AS check_name, _r_test_code_code AS reason FROM failed WHERE _e_test_code_code
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'value_required' AS check_name, _r_value_required AS reason FROM failed WHERE _e_value_required
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'value_type' AS check_name, _r_value_type AS reason FROM failed WHERE _e_value_type
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'value_range' AS check_name, _r_value_range AS reason FROM failed WHERE _e_value_range
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'unit_for_test' AS check_name, _r_unit_for_test AS reason FROM failed WHERE _e_unit_for_test
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'orphan_patient' AS check_name, _r_orphan_patient AS reason FROM failed WHERE _e_orphan_patient
)
SELECT 'labs', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason,
       to_json({'patient_key': r.patient_key, 'collected_at': r.collected_at, 'test_code': r.test_code, 'value': r.value, 'unit': r.unit})
FROM checks AS f
JOIN raw.labs AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

DELETE FROM ops.row_flags WHERE domain = 'labs';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (SELECT * FROM _labs_evaluated WHERE (_w_censored_value_not_afp OR _w_collected_at_in_future) AND NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_collected_at_required OR _e_collected_at_type OR _e_test_code_required OR _e_test_code_code OR _e_value_required OR _e_value_type OR _e_value_range OR _e_unit_for_test OR _e_orphan_patient)),
checks AS (
    SELECT _extract_id, _row_number, patient_key, 'censored_value_not_afp' AS check_name, _r_censored_value_not_afp AS reason FROM failed WHERE _w_censored_value_not_afp
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, 'collected_at_in_future' AS check_name, _r_collected_at_in_future AS reason FROM failed WHERE _w_collected_at_in_future
)
SELECT 'labs', f._extract_id, f._row_number, f.patient_key, f.check_name, 'warn', f.reason,
       to_json({'patient_key': r.patient_key, 'collected_at': r.collected_at, 'test_code': r.test_code, 'value': r.value, 'unit': r.unit})
FROM checks AS f
JOIN raw.labs AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.labs AS
SELECT
    patient_key,
    collected_at,
    test_code,
    value,
    value_censoring,
    unit,
    CASE WHEN _w_censored_value_not_afp OR _w_collected_at_in_future THEN list_filter([CASE WHEN _w_censored_value_not_afp THEN 'censored_value_not_afp' END, CASE WHEN _w_collected_at_in_future THEN 'collected_at_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _labs_evaluated
WHERE NOT (_e_duplicate_key_conflict OR _e_patient_id_required OR _e_patient_id_pattern OR _e_collected_at_required OR _e_collected_at_type OR _e_test_code_required OR _e_test_code_code OR _e_value_required OR _e_value_type OR _e_value_range OR _e_unit_for_test OR _e_orphan_patient);

DROP TABLE _labs_evaluated;
