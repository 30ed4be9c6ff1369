-- staging.treatments: generated from data_contracts/treatments.yaml by
--   python -m haic_pipeline.warehouse.compile
-- Do not edit by hand: change the contract and regenerate (a test keeps this file in sync).
-- Reads raw.treatments (every loaded drop) and ops.drops, staging.patients (orphans, consent).
-- Writes staging.treatments and the 'treatments' rows of ops.quarantine (error rules) and ops.row_flags (warn rules).

CREATE OR REPLACE TEMP TABLE _treatments_evaluated AS
WITH typed AS (
    -- 1. type and normalise every delivered column
    SELECT
        r._extract_id,
        r._row_number,
        d.extracted_at::DATE AS _extract_date,
        r.patient_key,
        r._patient_id_valid,
        upper(nullif(trim(r.regimen), '')) AS regimen,
        CASE WHEN regexp_full_match(nullif(trim(r.start_date), ''), '\d{4}-\d{2}-\d{2}') THEN try_cast(nullif(trim(r.start_date), '') AS DATE) END AS start_date,
        CASE WHEN regexp_full_match(nullif(trim(r.end_date), ''), '\d{4}-\d{2}-\d{2}') THEN try_cast(nullif(trim(r.end_date), '') AS DATE) END AS end_date,
        CASE WHEN regexp_full_match(nullif(trim(r.cycles), ''), '[+-]?\d+') THEN try_cast(nullif(trim(r.cycles), '') AS INTEGER) END AS cycles,
        upper(nullif(trim(r.stop_reason), '')) AS stop_reason,
        nullif(trim(r.regimen), '') AS raw_regimen,
        nullif(trim(r.start_date), '') AS raw_start_date,
        nullif(trim(r.end_date), '') AS raw_end_date,
        nullif(trim(r.cycles), '') AS raw_cycles,
        nullif(trim(r.stop_reason), '') AS raw_stop_reason
    FROM raw.treatments AS r
    JOIN ops.drops AS d ON d.extract_id = r._extract_id AND d.status = 'loaded'
    WHERE r.patient_key IS NULL OR r.patient_key NOT IN (SELECT patient_key FROM staging.patients WHERE consent_status = 'withdrawn')
),
versioned AS (
    -- 2. delta semantics: the newest drop wins per natural key (rows without a full key stand alone)
    SELECT *,
        row_number() OVER w AS _version,
        first_value(_extract_id) OVER w AS _winner_extract_id,
        first_value(_row_number) OVER w AS _winner_row_number,
        hash(patient_key, regimen, start_date, end_date, cycles, stop_reason) AS _content,
        first_value(hash(patient_key, regimen, start_date, end_date, cycles, stop_reason)) OVER w AS _winner_content
    FROM typed
    WINDOW w AS (PARTITION BY patient_key, regimen, start_date, CASE WHEN patient_key IS NULL OR regimen IS NULL OR start_date IS NULL THEN _extract_id || ':' || _row_number END
                 ORDER BY _extract_id DESC, _row_number DESC)
)
SELECT *,
    -- 3. rules: errors (row quarantined) and warnings (row kept, flagged)
    CASE WHEN _version > 1 THEN [{'check_name': 'duplicate_key_conflict', 'reason': 'same natural key as data row ' || _winner_row_number || ' of this drop, with different values; that later row was kept'}]
         ELSE list_filter([
            CASE WHEN patient_key IS NULL THEN {'check_name': 'patient_id_required', 'reason': 'patient_id is missing'} END,
            CASE WHEN patient_key IS NOT NULL AND NOT _patient_id_valid THEN {'check_name': 'patient_id_pattern', 'reason': 'patient_id does not match ^[0-9]{8}$ (value withheld)'} END,
            CASE WHEN raw_regimen IS NULL THEN {'check_name': 'regimen_required', 'reason': 'regimen is missing'} END,
            CASE WHEN regimen IS NOT NULL AND regimen NOT IN ('HAIC_FP', 'ATEZO_BEVA', 'SORAFENIB', 'LENVATINIB', 'TACE', 'OTHER') THEN {'check_name': 'regimen_code', 'reason': 'regimen ' || coalesce(raw_regimen, '') || ' is not one of HAIC_FP, ATEZO_BEVA, SORAFENIB, LENVATINIB, TACE, OTHER'} END,
            CASE WHEN raw_start_date IS NULL THEN {'check_name': 'start_date_required', 'reason': 'start_date is missing'} END,
            CASE WHEN raw_start_date IS NOT NULL AND start_date IS NULL THEN {'check_name': 'start_date_type', 'reason': 'start_date ' || coalesce(raw_start_date, '') || ' is not a YYYY-MM-DD date'} END,
            CASE WHEN raw_end_date IS NOT NULL AND end_date IS NULL THEN {'check_name': 'end_date_type', 'reason': 'end_date ' || coalesce(raw_end_date, '') || ' is not a YYYY-MM-DD date'} END,
            CASE WHEN raw_cycles IS NOT NULL AND cycles IS NULL THEN {'check_name': 'cycles_type', 'reason': 'cycles ' || coalesce(raw_cycles, '') || ' is not an integer'} END,
            CASE WHEN cycles IS NOT NULL AND (cycles < 1) THEN {'check_name': 'cycles_range', 'reason': 'cycles ' || coalesce(raw_cycles, '') || ' outside the allowed range (>= 1)'} END,
            CASE WHEN stop_reason IS NOT NULL AND stop_reason NOT IN ('PD', 'TOXICITY', 'COMPLETED', 'DEATH', 'OTHER') THEN {'check_name': 'stop_reason_code', 'reason': 'stop_reason ' || coalesce(raw_stop_reason, '') || ' is not one of PD, TOXICITY, COMPLETED, DEATH, OTHER'} END,
            CASE WHEN patient_key IS NOT NULL AND patient_key NOT IN (SELECT patient_key FROM staging.patients) THEN {'check_name': 'orphan_patient', 'reason': 'patient is in no delivered patients.csv (or its patient row is quarantined)'} END
        ], lambda x: x IS NOT NULL)
    END AS _errors,
    CASE WHEN _version > 1 THEN []::STRUCT(check_name VARCHAR, reason VARCHAR)[]
         ELSE list_filter([
            CASE WHEN start_date IS NOT NULL AND end_date IS NOT NULL AND end_date < start_date THEN {'check_name': 'end_date_before_start_date', 'reason': 'end_date ' || coalesce(raw_end_date, '') || ' is before start_date ' || coalesce(raw_start_date, '')} END,
            CASE WHEN start_date IS NOT NULL AND start_date::DATE > _extract_date THEN {'check_name': 'start_date_in_future', 'reason': 'start_date ' || coalesce(raw_start_date, '') || ' is after the drop''s extraction date ' || _extract_date::VARCHAR} END
        ], lambda x: x IS NOT NULL)
    END AS _warnings
FROM versioned
-- superseded versions (older drops) and exact duplicates drop out here
WHERE _version = 1 OR (_extract_id = _winner_extract_id AND _content <> _winner_content);

DELETE FROM ops.quarantine WHERE domain = 'treatments';
INSERT INTO ops.quarantine (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'treatments', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'error', e.f.reason,
       to_json({'patient_key': r.patient_key, 'regimen': r.regimen, 'start_date': r.start_date, 'end_date': r.end_date, 'cycles': r.cycles, 'stop_reason': r.stop_reason})
FROM (SELECT *, unnest(_errors) AS f FROM _treatments_evaluated) AS e
JOIN raw.treatments AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number;

DELETE FROM ops.row_flags WHERE domain = 'treatments';
INSERT INTO ops.row_flags (domain, extract_id, row_number, patient_key, check_name, severity, reason, row_json)
SELECT 'treatments', e._extract_id, e._row_number, e.patient_key, e.f.check_name, 'warn', e.f.reason,
       to_json({'patient_key': r.patient_key, 'regimen': r.regimen, 'start_date': r.start_date, 'end_date': r.end_date, 'cycles': r.cycles, 'stop_reason': r.stop_reason})
FROM (SELECT *, unnest(_warnings) AS f FROM _treatments_evaluated) AS e
JOIN raw.treatments AS r ON r._extract_id = e._extract_id AND r._row_number = e._row_number WHERE len(e._errors) = 0;

-- 4. the staging table: winning rows without errors
CREATE OR REPLACE TABLE staging.treatments AS
SELECT
    patient_key,
    regimen,
    start_date,
    end_date,
    cycles,
    stop_reason,
    list_transform(_warnings, lambda x: x.check_name) AS dq_warnings,
    _extract_id,
    _row_number
FROM _treatments_evaluated
WHERE len(_errors) = 0
ORDER BY patient_key, regimen, start_date;

DROP TABLE _treatments_evaluated;
