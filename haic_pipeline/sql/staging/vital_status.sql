-- staging.vital_status: generated from data_contracts/vital_status.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.vital_status (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes staging.vital_status and the 'vital_status' rows of ops.quarantine (error rules) and ops.row_flags (warn rules).

CREATE OR REPLACE TEMP TABLE _vital_status_evaluated AS
WITH typed AS (
    -- 1. type and normalise every delivered column
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
    JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded'
    WHERE r.patient_key IS NULL OR r.patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')
),
versioned AS (
    -- 2. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        hash(patient_key, last_contact_date, death_date) AS _content,
        first_value(hash(patient_key, last_contact_date, death_date)) OVER w AS _winner_content
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
            CASE WHEN raw_last_contact_date IS NULL THEN {'check_name': 'last_contact_date_required', 'reason': 'last_contact_date is missing'} END,
            CASE WHEN raw_last_contact_date IS NOT NULL AND last_contact_date IS NULL THEN {'check_name': 'last_contact_date_type', 'reason': 'last_contact_date ' || coalesce(raw_last_contact_date, '') || ' is not a YYYY-MM-DD date'} END,
            CASE WHEN raw_death_date IS NOT NULL AND death_date IS NULL THEN {'check_name': 'death_date_type', 'reason': 'death_date ' || coalesce(raw_death_date, '') || ' is not a YYYY-MM-DD date'} END,
            CASE WHEN patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients) THEN {'check_name': 'orphan_patient', 'reason': 'patient is in no delivered patients.csv (or its patient row is quarantined)'} END
        ], lambda x: x IS NOT NULL)
    END AS _errors,
    CASE WHEN _version > 1 THEN []::STRUCT(check_name VARCHAR, reason VARCHAR)[]
         ELSE list_filter([
            CASE WHEN last_contact_date IS NOT NULL AND death_date IS NOT NULL AND death_date < last_contact_date THEN {'check_name': 'last_contact_after_death', 'reason': 'death_date ' || coalesce(raw_death_date, '') || ' is before last_contact_date ' || coalesce(raw_last_contact_date, '')} END,
            CASE WHEN last_contact_date IS NOT NULL AND last_contact_date::DATE > _extract_date THEN {'check_name': 'last_contact_in_future', 'reason': 'last_contact_date ' || coalesce(raw_last_contact_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR} END,
            CASE WHEN death_date IS NOT NULL AND death_date::DATE > _extract_date THEN {'check_name': 'death_date_in_future', 'reason': 'death_date ' || coalesce(raw_death_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR} END
        ], lambda x: x IS NOT NULL)
    END AS _warnings
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'vital_status';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'vital_status', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'error', e.f.reason,
       to_json({'patient_key': r.patient_key, 'last_contact_date': r.last_contact_date, 'death_date': r.death_date})
FROM (SELECT *, unnest(_errors) AS f FROM _vital_status_evaluated) AS e
JOIN raw.vital_status AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number;

DELETE FROM ops.row_flags WHERE domain = 'vital_status';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'vital_status', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'warn', e.f.reason,
       to_json({'patient_key': r.patient_key, 'last_contact_date': r.last_contact_date, 'death_date': r.death_date})
FROM (SELECT *, unnest(_warnings) AS f FROM _vital_status_evaluated) AS e
JOIN raw.vital_status AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number WHERE len(e._errors) = 0;

-- 4. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.vital_status AS
SELECT
    patient_key,
    last_contact_date,
    death_date,
    list_transform(_warnings, lambda x: x.check_name) AS dq_warnings,
    _extract_id,
    _row_number
FROM _vital_status_evaluated
WHERE len(_errors) = 0
ORDER BY patient_key;

DROP TABLE _vital_status_evaluated;
