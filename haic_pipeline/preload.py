"""Import Great Expectations (and, for `haic run`, the analysis libraries) in a background thread
while the process waits on DuckDB.

`haic run` lands the drops first (DuckDB work that leaves the interpreter mostly free), then runs
the refresh in the same process, whose first check would otherwise wait for GX's import, and
whose first analysis asset for SciPy, lifelines and matplotlib (`haic_pipeline.analysis.build`),
each several seconds. The
data-quality gate starts the GX import alone (its pool forks once the thread is done).
`wait()` joins the thread: the data-quality pool calls it before forking its workers, so that
no module is half-imported in the forked copies.
"""

from __future__ import annotations

import threading

_thread: threading.Thread | None = None


def _work(analysis: bool) -> None:
    try:
        from haic_pipeline.quality.gx_runtime import load_gx  # noqa: PLC0415

        load_gx()
        if analysis:
            import haic_pipeline.analysis.build  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001 - the checks and assets import them again and report any error
        pass


def start(analysis: bool = False) -> None:
    """Start the imports (once per process): GX, then the analysis libraries if `analysis`.

    SQLAlchemy's ORM is imported first, here, on the calling thread: GX imports it too, and
    Dagster's run storage may reach it on the main thread while the thread is half-way through
    (a partially initialised `sqlalchemy.orm.exc` fails the step that meets it)."""
    global _thread
    if _thread is None:
        import sqlalchemy.orm  # noqa: F401, PLC0415
        _thread = threading.Thread(target=_work, args=(analysis,), name="haic-preload", daemon=True)
        _thread.start()


def wait() -> None:
    if _thread is not None:
        _thread.join()
