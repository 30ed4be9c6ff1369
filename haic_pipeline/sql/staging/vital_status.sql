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

CREATE OR REPLACE TEMP TABLE _vital_status_judged AS
-- 2. every rule of the contract, judged on every delivered row: its reason where it fails, else NULL
SELECT _extract_id, _row_number,
    patient_key,
    last_contact_date,
    death_date,
    hash(patient_key, last_contact_date, death_date) AS _content,
    CASE WHEN patient_key IS NOT NULL THEN hash(patient_key) END AS _key_hash,
    CASE WHEN ((CASE WHEN t.patient_key IS NOT NULL THEN true END) IS NULL) THEN 'patient_id is missing' END AS _r_patient_id_required,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t._patient_id_valid END)) THEN 'patient_id does not match ^[0-9]{8}$ (value withheld)' END AS _r_patient_id_pattern,
    CASE WHEN ((CASE WHEN t.raw_last_contact_date IS NOT NULL THEN t.last_contact_date IS NOT NULL END) IS NULL) THEN 'last_contact_date is missing' END AS _r_last_contact_date_required,
    CASE WHEN (NOT (CASE WHEN t.raw_last_contact_date IS NOT NULL THEN t.last_contact_date IS NOT NULL END)) THEN 'last_contact_date ' || coalesce(raw_last_contact_date, '') || ' is not a YYYY-MM-DD date' END AS _r_last_contact_date_type,
    CASE WHEN (NOT (CASE WHEN t.raw_death_date IS NOT NULL THEN t.death_date IS NOT NULL END)) THEN 'death_date ' || coalesce(raw_death_date, '') || ' is not a YYYY-MM-DD date' END AS _r_death_date_type,
    CASE WHEN (NOT (CASE WHEN t.patient_key IS NOT NULL THEN t.patient_key IN (SELECT patient_key FROM staging.patients) END)) THEN 'patient is in no delivered patients.csv (or its patient row is quarantined)' END AS _r_orphan_patient,
    CASE WHEN (NOT ((t.death_date) >= (t.last_contact_date))) THEN 'death_date ' || coalesce(raw_death_date, '') || ' is before last_contact_date ' || coalesce(raw_last_contact_date, '') END AS _r_last_contact_after_death,
    CASE WHEN (NOT ((t._extract_date) >= (t.last_contact_date))) THEN 'last_contact_date ' || coalesce(raw_last_contact_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_last_contact_in_future,
    CASE WHEN (NOT ((t._extract_date) >= (t.death_date))) THEN 'death_date ' || coalesce(raw_death_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR END AS _r_death_date_in_future
FROM raw.typed_vital_status AS t
    WHERE (patient_key IS NULL OR patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn'));

-- 3. delta semantics: per natural key the newest drop wins (the last data row within a drop).
--    Only keys delivered more than once need ranking; their losing rows are listed here: older
--    versions and exact duplicates drop out, a different row of the winner's drop is a conflict.
CREATE OR REPLACE TEMP TABLE _vital_status_later AS
--    Keys are first grouped on their 8-byte hash (a collision only ranks a few more rows),
--    then ranked on the key itself.
WITH repeated AS (SELECT _key_hash FROM _vital_status_judged WHERE _key_hash IS NOT NULL GROUP BY ALL HAVING count(*) > 1),
ranked AS (
    SELECT _extract_id, _row_number, _content,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        first_value(_content) OVER w AS _winner_content
    FROM _vital_status_judged SEMI JOIN repeated USING (_key_hash)
    WINDOW w AS (PARTITION BY patient_key ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT _extract_id, _row_number, _winner_row_number,
    _extract_id = _winner_extract_id AND _content <> _winner_content AS _conflict
FROM ranked WHERE _version > 1;

-- 4. error rules: the row goes to ops.quarantine, one row per failed check
DELETE FROM ops.quarantine WHERE domain = 'vital_status';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
WITH failed AS (
    SELECT v._extract_id, v._row_number, j.patient_key, 'duplicate_key_conflict' AS check_name, 'same natural key as data row ' || v._winner_row_number || ' of this drop, with different values; that later row was kept' AS reason
    FROM _vital_status_later AS v JOIN _vital_status_judged AS j USING (_extract_id, _row_number) WHERE v._conflict
    UNION ALL
    SELECT _extract_id, _row_number, patient_key, u.check_name, u.reason
    FROM (SELECT j.*, unnest([{'check_name': 'patient_id_required', 'reason': _r_patient_id_required}, {'check_name': 'patient_id_pattern', 'reason': _r_patient_id_pattern}, {'check_name': 'last_contact_date_required', 'reason': _r_last_contact_date_required}, {'check_name': 'last_contact_date_type', 'reason': _r_last_contact_date_type}, {'check_name': 'death_date_type', 'reason': _r_death_date_type}, {'check_name': 'orphan_patient', 'reason': _r_orphan_patient}]) AS u
          FROM _vital_status_judged AS j ANTI JOIN _vital_status_later AS v USING (_extract_id, _row_number) WHERE _r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_last_contact_date_required IS NOT NULL OR _r_last_contact_date_type IS NOT NULL OR _r_death_date_type IS NOT NULL OR _r_orphan_patient IS NOT NULL)
    WHERE u.reason IS NOT NULL
)
SELECT 'vital_status', f._extract_id, f._row_number, f.patient_key, f.check_name, 'error', f.reason, to_json({'patient_key': r.patient_key, 'last_contact_date': r.last_contact_date, 'death_date': r.death_date})
FROM failed AS f JOIN raw.vital_status AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number;

-- 5. warn rules: every offence of a winning row is listed in ops.row_flags (also that of a
--    row quarantined above: the drop's warn counts must not shrink by its errors);
--    a row without errors stays in staging with the rule names in dq_warnings
DELETE FROM ops.row_flags WHERE domain = 'vital_status';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'vital_status', f._extract_id, f._row_number, f.patient_key, f.u.check_name, 'warn', f.u.reason, to_json({'patient_key': r.patient_key, 'last_contact_date': r.last_contact_date, 'death_date': r.death_date})
FROM (SELECT j.*, unnest([{'check_name': 'last_contact_after_death', 'reason': _r_last_contact_after_death}, {'check_name': 'last_contact_in_future', 'reason': _r_last_contact_in_future}, {'check_name': 'death_date_in_future', 'reason': _r_death_date_in_future}]) AS u
      FROM _vital_status_judged AS j ANTI JOIN _vital_status_later AS v USING (_extract_id, _row_number) WHERE _r_last_contact_after_death IS NOT NULL OR _r_last_contact_in_future IS NOT NULL OR _r_death_date_in_future IS NOT NULL) AS f
JOIN raw.vital_status AS r ON r._extract_id = f._extract_id AND r._row_number = f._row_number
WHERE f.u.reason IS NOT NULL;

-- 6. the staging table: the winning row of each key, without errors
CREATE OR REPLACE TABLE staging.vital_status AS
SELECT
    patient_key,
    last_contact_date,
    death_date,
    CASE WHEN _r_last_contact_after_death IS NOT NULL OR _r_last_contact_in_future IS NOT NULL OR _r_death_date_in_future IS NOT NULL THEN list_filter([CASE WHEN _r_last_contact_after_death IS NOT NULL THEN 'last_contact_after_death' END, CASE WHEN _r_last_contact_in_future IS NOT NULL THEN 'last_contact_in_future' END, CASE WHEN _r_death_date_in_future IS NOT NULL THEN 'death_date_in_future' END], lambda x: x IS NOT NULL) ELSE []::VARCHAR[] END AS dq_warnings,
    _extract_id,
    _row_number
FROM _vital_status_judged AS j ANTI JOIN _vital_status_later AS v USING (_extract_id, _row_number)
WHERE NOT (_r_patient_id_required IS NOT NULL OR _r_patient_id_pattern IS NOT NULL OR _r_last_contact_date_required IS NOT NULL OR _r_last_contact_date_type IS NOT NULL OR _r_death_date_type IS NOT NULL OR _r_orphan_patient IS NOT NULL);

DROP TABLE _vital_status_judged;
DROP TABLE _vital_status_later;
