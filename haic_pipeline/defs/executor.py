"""How the project's jobs execute: Dagster's default executor, configured to run the steps of a
run in one process (`in_process`) unless the launchpad asks for `multiprocess`.

Why in one process by default: every step that writes DuckDB is serialised anyway (one writing
process; pool `duckdb_writer`, limit 1), and a separate process per step re-imports dagster,
pandas, matplotlib and, for every data-quality check, Great Expectations, so a 40-step refresh
would spend minutes importing. Forking from a preloaded server (forkserver) hung on a
forked BLAS thread pool here, so it is not used. When the warehouse moves to a server database,
`execution: {config: {multiprocess: {}}}` in the run config (or the launchpad) parallelises the
analysis steps without code changes.
"""

import dagster as dg

EXECUTOR = dg.multi_or_in_process_executor
RUN_CONFIG = {"execution": {"config": {"in_process": {}}}}


@dg.definitions
def executor() -> dg.Definitions:
    """The code location's default executor, for the runs declarative automation and the UI's
    "Materialize" start (Dagster's implicit asset jobs): the steps in one process, as above."""
    return dg.Definitions(executor=dg.in_process_executor)
