"""Run slow imports in a background thread while the process waits on DuckDB: Great Expectations
(and, for `haic run`, the analysis libraries). The callers name what to import (`start(load_gx,
...)`), so this module imports nothing of the project.

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
from collections.abc import Callable

_thread: threading.Thread | None = None


def _work(loaders: tuple[Callable[[], object], ...]) -> None:
    for load in loaders:
        try:
            load()
        except Exception:  # noqa: BLE001 - the checks and assets import them again and report any error
            return


def start(*loaders: Callable[[], object]) -> None:
    """Start the imports (once per process: a later call while or after they run does nothing),
    each loader in turn on one thread.

    SQLAlchemy's ORM is imported first, here, on the calling thread: GX imports it too, and
    Dagster's run storage may reach it on the main thread while the thread is half-way through
    (a partially initialised `sqlalchemy.orm.exc` fails the step that meets it)."""
    global _thread
    if _thread is None:
        import sqlalchemy.orm  # noqa: F401, PLC0415
        _thread = threading.Thread(target=_work, args=(loaders,), name="haic-preload", daemon=True)
        _thread.start()


def wait() -> None:
    if _thread is not None:
        _thread.join()
