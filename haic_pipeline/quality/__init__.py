"""Data-quality gates (issue 4): Great Expectations suites generated from `data_contracts/`,
validated on DuckDB query results read as pandas batches, with thresholds on the share of
offending rows (OHDSI DQD style), drop-level comparisons, `ops.dq_results` and an HTML report.

Pure Python + DuckDB + GX; no Dagster (the asset checks are in `haic_pipeline/defs/quality/`).
GX is imported lazily (`gx_runtime.load_gx`), only when something new has to be validated.

- `suites.py`   rules and checks generated from the contracts (plain data) -> GX suites
- `frames.py`   the DuckDB queries the suites validate (selected columns, ~2 M-row chunks,
                text as ENUM categoricals, several drops per chunk)
- `validate.py` running a suite, per-drop attribution of a shared frame, exception_info, the
                threshold decision, counts only
- `parallel.py` GX in worker processes for a large backlog
- `drops.py`    drop-level checks (data_cutoff order, sharp changes between drops)
- `store.py`    ops.dq_results (history and cache)
- `report.py`   <reports>/quality/index.html
- `gate.py`     run_check / run_all: what the asset checks and the benchmark call
"""
