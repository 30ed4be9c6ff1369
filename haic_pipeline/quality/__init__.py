"""Data-quality gates: Great Expectations suites generated from the rule catalogue
(`haic_pipeline/catalogue.py`, read from `data_contracts/`), validated on DuckDB query results read
as pandas frames, judged per drop on a threshold and a minimum count (OHDSI DQD style), with
drop-level comparisons, `ops.dq_results` and an HTML report.

Pure Python + DuckDB + GX; no Dagster (the asset checks are in `haic_pipeline/defs/quality/`).
GX is imported lazily (`gx_runtime.load_gx`), only when something new has to be validated.

The core, read top to bottom:
- `suites.py`     the catalogue's rules grouped into checks (plain data) -> GX suites
- `frames.py`     the DuckDB queries the suites validate (selected columns)
- `validate.py`   `validate`: the one dispatch of the pending frames by scope, read and run by a
                  `FrameSource` (the plain one: each drop's frame alone); counts only, the one
                  judge (`verdict`), exception_info
- `drops.py`      drop-level checks (data_cutoff order, sharp changes between drops)
- `gate.py`       run_checks: plan -> validate -> re-judge -> write once; waivers, the report
- `store.py`      ops.dq_results (history and cache)
- `report.py`     <reports>/quality/index.html

The speed layer, `speed/`: `FastSource`, faster readers and runners for the same dispatch
(`HAIC_DQ_FAST=0` turns it off; the verdicts are the same, tested): several drops per frame with per-drop attribution, ENUM categoricals and GX-friendly dtypes,
staging parts split on the key's hash, GX in worker processes.
"""
