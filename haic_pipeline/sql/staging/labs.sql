-- staging.labs: generated from data_contracts/labs.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.labs (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes staging.labs and the 'labs' rows of ops.quarantine (error rules) and ops.row_flags (warn rules).

-- accepted units per test: value in the canonical unit = delivered value / divisor
CREATE OR REPLACE TEMP TABLE _units (test_code VARCHAR, unit_lower VARCHAR, canonical_unit VARCHAR, divisor DOUBLE);
INSERT INTO _units VALUES
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
    ('CREA', 'mg/dl', 'mg/dL', 1.0);

CREATE OR REPLACE TEMP TABLE _labs_evaluated AS
WITH typed AS (
    -- 1. type and normalise every delivered column
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
        nullif(trim(r.unit), '') AS raw_unit
    FROM raw.labs AS r
    JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded'
    WHERE r.patient_key IS NULL OR r.patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')
),
converted AS (
    -- labs: unit converted to the canonical unit, censoring sign kept apart
    SELECT t.*, u.divisor AS _unit_divisor, u.canonical_unit,
           round(t.value_number / u.divisor, 6) AS value_canonical
    FROM typed AS t
    LEFT JOIN _units AS u ON u.test_code = t.test_code AND u.unit_lower = coalesce(lower(t.raw_unit), '')
),
versioned AS (
    -- 2. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        hash(patient_key, collected_at, test_code, value_number, value_censoring, unit, raw_unit) AS _content,
        first_value(hash(patient_key, collected_at, test_code, value_number, value_censoring, unit, raw_unit)) OVER w AS _winner_content
    FROM converted
    WINDOW w AS (PARTITION BY patient_key, collected_at, test_code, CASE WHEN patient_key IS NULL OR collected_at IS NULL OR test_code IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT *,
    -- 3. rules: errors (row quarantined) and warnings (row kept, flagged)
    CASE WHEN _version > 1 THEN [{'check_name': 'duplicate_key_conflict', 'reason': 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept'}]
         ELSE list_filter([
            CASE WHEN patient_key IS NULL THEN {'check_name': 'patient_id_required', 'reason': 'patient_id is missing'} END,
            CASE WHEN patient_key IS NOT NULL AND NOT _patient_id_valid THEN {'check_name': 'patient_id_pattern', 'reason': 'patient_id does not match ^[0-9]{8}$ (value withheld)'} END,
            CASE WHEN raw_collected_at IS NULL THEN {'check_name': 'collected_at_required', 'reason': 'collected_at is missing'} END,
            CASE WHEN raw_collected_at IS NOT NULL AND collected_at IS NULL THEN {'check_name': 'collected_at_type', 'reason': 'collected_at ' || coalesce(raw_collected_at, '') || ' is not a YYYY-MM-DD[ HH:MM[:SS]] date-time'} END,
            CASE WHEN raw_test_code IS NULL THEN {'check_name': 'test_code_required', 'reason': 'test_code is missing'} END,
            CASE WHEN test_code IS NOT NULL AND test_code NOT IN ('AFP', 'ALB', 'TBIL', 'INR', 'PLT', 'ALT', 'AST', 'CREA') THEN {'check_name': 'test_code_code', 'reason': 'test_code ' || coalesce(raw_test_code, '') || ' is not one of AFP, ALB, TBIL, INR, PLT, ALT, AST, CREA'} END,
            CASE WHEN raw_value IS NULL THEN {'check_name': 'value_required', 'reason': 'value is missing'} END,
            CASE WHEN raw_value IS NOT NULL AND value_number IS NULL THEN {'check_name': 'value_type', 'reason': 'value ' || coalesce(raw_value, '') || ' is not a number with an optional < or > sign'} END,
            CASE WHEN value_number IS NOT NULL AND (value_number < 0) THEN {'check_name': 'value_range', 'reason': 'value ' || coalesce(raw_value, '') || ' outside the allowed range (>= 0)'} END,
            CASE WHEN test_code IS NOT NULL AND _unit_divisor IS NULL AND test_code IN (SELECT test_code FROM _units) THEN {'check_name': 'unit_for_test', 'reason': 'unit ''' || coalesce(raw_unit, '') || ''' is not accepted for ' || test_code} END,
            CASE WHEN patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients) THEN {'check_name': 'orphan_patient', 'reason': 'patient is in no delivered patients.csv (or its patient row is quarantined)'} END
        ], lambda x: x IS NOT NULL)
    END AS _errors,
    CASE WHEN _version > 1 THEN []::STRUCT(check_name VARCHAR, reason VARCHAR)[]
         ELSE list_filter([
            CASE WHEN value_censoring IS NOT NULL AND test_code NOT IN ('AFP') THEN {'check_name': 'censored_value_not_afp', 'reason': 'censored value ' || coalesce(raw_value, '') || ' for ' || test_code || ' (expected only for AFP)'} END,
            CASE WHEN collected_at IS NOT NULL AND collected_at::DATE > _extract_date THEN {'check_name': 'collected_at_in_future', 'reason': 'collected_at ' || coalesce(raw_collected_at, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR} END
        ], lambda x: x IS NOT NULL)
    END AS _warnings
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'labs';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'labs', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'error', e.f.reason,
       to_json({'patient_key': r.patient_key, 'collected_at': r.collected_at, 'test_code': r.test_code, 'value': r.value, 'unit': r.unit})
FROM (SELECT *, unnest(_errors) AS f FROM _labs_evaluated) AS e
JOIN raw.labs AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number;

DELETE FROM ops.row_flags WHERE domain = 'labs';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'labs', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'warn', e.f.reason,
       to_json({'patient_key': r.patient_key, 'collected_at': r.collected_at, 'test_code': r.test_code, 'value': r.value, 'unit': r.unit})
FROM (SELECT *, unnest(_warnings) AS f FROM _labs_evaluated) AS e
JOIN raw.labs AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number WHERE len(e._errors) = 0;

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
    list_transform(_warnings, lambda x: x.check_name) AS dq_warnings,
    _extract_id,
    _row_number
FROM _labs_evaluated
WHERE len(_errors) = 0
ORDER BY patient_key, collected_at, test_code;

DROP TABLE _labs_evaluated;
DROP TABLE _units;
