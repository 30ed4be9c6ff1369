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

CREATE OR REPLACE TEMP TABLE _labs_judged AS
-- 2. every rule of the contract, judged on every delivered row: its reason where it fails, else NULL
SELECT _extract_id, _row_number,
    patient_key,
    collected_at,
    test_code,
    value_canonical AS value,
    value_censoring,
    canonical_unit AS unit,
    hash(patient_key, collected_at, test_code, value_canonical, value_censoring, canonical_unit, raw_unit) AS _content,
    CASE WHEN patient_key IS NOT NULL AND collected_at IS NOT NULL AND test_code IS NOT NULL THEN hash(patient_key, collected_at, test_code) END AS _key_hash,
    CASE WHEN ((CASE WHEN t.patient_key IS NOT NULL THEN true END) IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t._patient_id_valid END)) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
    CASE WHEN ((CASE WHEN t.raw_collected_at IS NOT NULL THEN t.collected_at IS NOT NULL END) IS NULL) THEN 'collected_at is missing' END AS _r_collected_at_required,
    CASE WHEN (NOT (CASE WHEN t.raw_collected_at IS NOT NULL THEN t.collected_at IS NOT NULL END)) THEN 'collected_at ' || coalesce(raw_collected_at, '') || ' is not a YYYY-MM-DD[ HH:MM[:SS]] date-time' END AS _r_collected_at_type,
    CASE WHEN ((CASE WHEN t.raw_test_code IS NOT NULL THEN true END) IS NULL) THEN 'test_code is missing' END AS _r_test_code_required,
    CASE WHEN ((t.test_code) NOT IN ('AFP', 'ALB', 'TBIL', 'INR', 'PLT', 'ALT', 'AST', 'CREA')) THEN 'test_code ' || coalesce(raw_test_code, '') || ' is not one of AFP, ALB, TBIL, INR, PLT, ALT, AST, CREA' END AS _r_test_code_code,
    CASE WHEN ((CASE WHEN t.raw_value IS NOT NULL THEN t.value_number IS NOT NULL END) IS NULL) THEN 'value is missing' END AS _r_value_required,
    CASE WHEN (NOT (CASE WHEN t.raw_value IS NOT NULL THEN t.value_number IS NOT NULL END)) THEN 'value ' || coalesce(raw_value, '') || ' is not a number with an optional < or > sign' END AS _r_value_type,
    CASE WHEN ((t.value_number) < 0) THEN 'value ' || coalesce(raw_value, '') || ' outside the allowed range (>= 0)' END AS _r_value_range,
    CASE WHEN (NOT (CASE WHEN t.test_code IN ('AFP', 'ALB', 'TBIL', 'INR', 'PLT', 'ALT', 'AST', 'CREA') THEN t._unit_divisor IS NOT NULL END)) THEN 'unit ''' || coalesce(raw_unit, '') || ''' is not accepted for ' || test_code END AS _r_unit_for_test,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t.patient_key IN (SELECT patient_key FROM staging.patients) END)) THEN 'patient is in no delivered patients.csv (or its patient row is quarantined)' END AS _r_orphan_patient,
    CASE WHEN (NOT (CASE WHEN t.test_code NOT IN ('AFP') THEN t.value_censoring IS NULL END)) THEN 'censored value ' || coalesce(raw_value, '') || ' for ' || test_code || ' (expected only for AFP)' END AS _r_censored_value_not_afp,
    CASE WHEN (NOT ((t._extract_date) >= (t.collected_at::DATE))) THEN 'collected_at ' || coalesce(raw_collected_at, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_collected_at_in_future
FROM raw.typed_labs AS t
    WHERE (patient_key IS NULL OR patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn'));

-- 3. delta semantics: per natural key the newest drop wins (the last data row within a drop).
--    Only keys delivered more than once need ranking; their losing rows are listed here: older
--    versions and exact duplicates drop out, a different row of the winner's drop is a conflict.
CREATE OR REPLACE TEMP TABLE _labs_later AS
--    Keys are first grouped on their 8-byte hash (a collision only ranks a few more rows),
--    then ranked on the key itself.
WITH repeated AS (SELECT _key_hash FROM _labs_judged WHERE _key_hash IS NOT NULL GROUP BY ALL HAVING count(*) > 1),
ranked AS (
    SELECT _extract_id, _row_number, _content,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        first_value(_content) OVER w AS _winner_content
    FROM _labs_judged SEMI JOIN repeated USING (_key_hash)
    WINDOW w AS (PARTITION BY patient_key, collected_at, test_code ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT _extract_id, _row_number, _winner_row_number,
    _extract_id = _winner_extract_id AND _content <> _winner_content AS _conflict
FROM ranked WHERE _version > 1;

-- 4. error rules: the row goes to ops.quarantine, one row per failed check
DELETE FROM ops.quarantine WHERE domain = 'labs';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (
    SELECT v._extract_id, v._row_number, j.patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || v._winner_row_number || ' of this drop, with different values; that later row was kept' AS reason
    FROM _labs_later AS v JOIN _labs_judged AS j USING (_extract_id, _row_number) WHERE v._conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, u.check_name, u.reason
    FROM (SELECT j.*, unnest([{'check_name': 'patient_id_required', 'reason': _r_patient_id_required}, {'check_name': 'patient_id_pattern', 'reason': _r_patient_id_pattern}, {'check_name': 'collected_at_required', 'reason': _r_collected_at_required}, {'check_name': 'collected_at_type', 'reason': _r_collected_at_type}, {'check_name': 'test_code_required', 'reason': _r_test_code_required}, {'check_name': 'test_code_code', 'reason': _r_test_code_code}, {'check_name': 'value_required', 'reason': _r_value_required}, {'check_name': 'value_type', 'reason': _r_value_type}, {'check_name': 'value_range', 'reason': _r_value_range}, {'check_name': 'unit_for_test', 'reason': _r_unit_for_test}, {'check_name': 'orphan_patient', 'reason': _r_orphan_patient}]) AS u
          FROM _labs_judged AS j ANTI JOIN _labs_later AS v USING (_extract_id, _row_number) WHERE _r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_collected_at_required IS NOT NULL OR _r_collected_at_type IS NOT NULL OR _r_test_code_required IS NOT NULL OR _r_test_code_code IS NOT NULL OR _r_value_required IS NOT NULL OR _r_value_type IS NOT NULL OR _r_value_range IS NOT NULL OR _r_unit_for_test IS NOT NULL OR _r_orphan_patient IS NOT NULL)
    WHERE u.reason IS NOT NULL
)
SELECT 'labs', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason, to_json({'patient_key': r.patient_key, 'collected_at': r.collected_at, 'test_code': r.test_code, 'value': r.value, 'unit': r.unit})
FROM failed AS f JOIN raw.labs AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. warn rules: every offence of a winning row is listed in ops.row_flags (also that of a
--    row quarantined above: the drop's warn counts must not shrink by its errors);
--    a row without errors stays in staging with the rule names in dq_warnings
DELETE FROM ops.row_flags WHERE domain = 'labs';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'labs', f._extract_id, f._row_number, f.patient_key, f.u.check_name, 'warn', f.u.reason, to_json({'patient_key': r.patient_key, 'collected_at': r.collected_at, 'test_code': r.test_code, 'value': r.value, 'unit': r.unit})
FROM (SELECT j.*, unnest([{'check_name': 'censored_value_not_afp', 'reason': _r_censored_value_not_afp}, {'check_name': 'collected_at_in_future', 'reason': _r_collected_at_in_future}]) AS u
      FROM _labs_judged AS j ANTI JOIN _labs_later AS v USING (_extract_id, _row_number) WHERE _r_censored_value_not_afp IS NOT NULL OR _r_collected_at_in_future IS NOT NULL) AS f
JOIN raw.labs AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number
WHERE f.u.reason IS NOT NULL;

-- 6. the staging table: the winning row of each key, without errors
CREATE OR REPLACE TABLE staging.labs AS
SELECT
    patient_key,
    collected_at,
    test_code,
    value,
    value_censoring,
    unit,
    CASE WHEN _r_censored_value_not_afp IS NOT NULL OR _r_collected_at_in_future IS NOT NULL THEN list_filter([CASE WHEN _r_censored_value_not_afp IS NOT NULL THEN 'censored_value_not_afp' END, CASE WHEN _r_collected_at_in_future IS NOT NULL THEN 'collected_at_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _labs_judged AS j ANTI JOIN _labs_later AS v USING (_extract_id, _row_number)
WHERE NOT (_r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_collected_at_required IS NOT NULL OR _r_collected_at_type IS NOT NULL OR _r_test_code_required IS NOT NULL OR _r_test_code_code IS NOT NULL OR _r_value_required IS NOT NULL OR _r_value_type IS NOT NULL OR _r_value_range IS NOT NULL OR _r_unit_for_test IS NOT NULL OR _r_orphan_patient IS NOT NULL);

DROP TABLE _labs_judged;
DROP TABLE _labs_later;
