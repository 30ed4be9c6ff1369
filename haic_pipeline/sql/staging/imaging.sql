-- staging.imaging: generated from data_contracts/imaging.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.imaging (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes staging.imaging and the 'imaging' rows of ops.quarantine (error rules) and ops.row_flags (warn rules).

CREATE OR REPLACE TEMP TABLE _imaging_evaluated AS
WITH typed AS (
    -- 1. type and normalise every delivered column
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
    JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded'
    WHERE r.patient_key IS NULL OR r.patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')
),
versioned AS (
    -- 2. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        hash(patient_key, scan_date, modality, mrecist_response) AS _content,
        first_value(hash(patient_key, scan_date, modality, mrecist_response)) OVER w AS _winner_content
    FROM typed
    WINDOW w AS (PARTITION BY patient_key, scan_date, CASE WHEN patient_key IS NULL OR scan_date IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT *,
    -- 3. rules: errors (row quarantined) and warnings (row kept, flagged)
    CASE WHEN _version > 1 THEN [{'check_name': 'duplicate_key_conflict', 'reason': 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept'}]
         ELSE list_filter([
            CASE WHEN patient_key IS NULL THEN {'check_name': 'patient_id_required', 'reason': 'patient_id is missing'} END,
            CASE WHEN patient_key IS NOT NULL AND NOT _patient_id_valid THEN {'check_name': 'patient_id_pattern', 'reason': 'patient_id does not match ^[0-9]{8}$ (value withheld)'} END,
            CASE WHEN raw_scan_date IS NULL THEN {'check_name': 'scan_date_required', 'reason': 'scan_date is missing'} END,
            CASE WHEN raw_scan_date IS NOT NULL AND scan_date IS NULL THEN {'check_name': 'scan_date_type', 'reason': 'scan_date ' || coalesce(raw_scan_date, '') || ' is not a YYYY-MM-DD date'} END,
            CASE WHEN modality IS NOT NULL AND modality NOT IN ('CT', 'MRI') THEN {'check_name': 'modality_code', 'reason': 'modality ' || coalesce(raw_modality, '') || ' is not one of CT, MRI'} END,
            CASE WHEN raw_mrecist_response IS NULL THEN {'check_name': 'mrecist_response_required', 'reason': 'mrecist_response is missing'} END,
            CASE WHEN mrecist_response IS NOT NULL AND mrecist_response NOT IN ('CR', 'PR', 'SD', 'PD', 'NE') THEN {'check_name': 'mrecist_response_code', 'reason': 'mrecist_response ' || coalesce(raw_mrecist_response, '') || ' is not one of CR, PR, SD, PD, NE'} END,
            CASE WHEN patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients) THEN {'check_name': 'orphan_patient', 'reason': 'patient is in no delivered patients.csv (or its patient row is quarantined)'} END
        ], lambda x: x IS NOT NULL)
    END AS _errors,
    CASE WHEN _version > 1 THEN []::STRUCT(check_name VARCHAR, reason VARCHAR)[]
         ELSE list_filter([
            CASE WHEN scan_date IS NOT NULL AND scan_date::DATE > _extract_date THEN {'check_name': 'scan_date_in_future', 'reason': 'scan_date ' || coalesce(raw_scan_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR} END
        ], lambda x: x IS NOT NULL)
    END AS _warnings
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'imaging';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'imaging', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'error', e.f.reason,
       to_json({'patient_key': r.patient_key, 'scan_date': r.scan_date, 'modality': r.modality, 'mrecist_response': r.mrecist_response})
FROM (SELECT *, unnest(_errors) AS f FROM _imaging_evaluated) AS e
JOIN raw.imaging AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number;

DELETE FROM ops.row_flags WHERE domain = 'imaging';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'imaging', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'warn', e.f.reason,
       to_json({'patient_key': r.patient_key, 'scan_date': r.scan_date, 'modality': r.modality, 'mrecist_response': r.mrecist_response})
FROM (SELECT *, unnest(_warnings) AS f FROM _imaging_evaluated) AS e
JOIN raw.imaging AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number WHERE len(e._errors) = 0;

-- 4. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.imaging AS
SELECT
    patient_key,
    scan_date,
    modality,
    mrecist_response,
    list_transform(_warnings, lambda x: x.check_name) AS dq_warnings,
    _extract_id,
    _row_number
FROM _imaging_evaluated
WHERE len(_errors) = 0
ORDER BY patient_key, scan_date;

DROP TABLE _imaging_evaluated;
