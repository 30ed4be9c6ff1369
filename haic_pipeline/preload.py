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

The imported modules are most of the process's heap and live as long as the process. Python's
cyclic garbage collector would walk all of them again at each of its full collections, and a
growing heap triggers one at every quarter of growth: over the imports and a refresh, a
noticeable share of a `haic run`'s CPU (benchmarks/bench_demo_run.py measures it). So:

- once the thread's imports are in, what the heap holds is frozen out of the collector's reach
  (`gc.freeze()`): later collections walk only what was built after;
- the collector is off while the thread imports (`start` turns it off; `haic run` earlier, with
  `hold_collector()`, before it imports Dagster); the thread turns it back on when the imports
  are in, or `release_collector()` does where no import is under way.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

_thread: threading.Thread | None = None
_held = False


def _work(loaders: tuple[Callable[[], object], ...]) -> None:
    try:
        for load in loaders:
            load()
    except Exception:  # noqa: BLE001 - the checks and assets import them again and report any error
        pass
    finally:
        _imported()


def _imported() -> None:
    """The slow imports are in: freeze the heap they built, and turn the collector back on if
    `hold_collector` turned it off."""
    global _held
    gc.freeze()
    if _held:
        _held = False
        gc.enable()


def hold_collector() -> None:
    """Turn the cyclic garbage collector off until the slow imports are in (only before the first
    `start` of the process, and only if it is on)."""
    global _held
    if _thread is None and gc.isenabled():
        gc.disable()
        _held = True


def release_collector() -> None:
    """Turn the collector back on now if `hold_collector` turned it off and no import is under way
    (one under way turns it on when it ends)."""
    if _held and (_thread is None or not _thread.is_alive()):
        _imported()


def start(*loaders: Callable[[], object]) -> None:
    """Start the imports (once per process: a later call while or after they run does nothing),
    each loader in turn on one thread, the collector off until they are in.

    SQLAlchemy's ORM is imported first, here, on the calling thread: GX imports it too, and
    Dagster's run storage may reach it on the main thread while the thread is half-way through
    (a partially initialised `sqlalchemy.orm.exc` fails the step that meets it)."""
    global _thread
    if _thread is None:
        hold_collector()
        import sqlalchemy.orm  # noqa: F401, PLC0415
        _thread = threading.Thread(target=_work, args=(loaders,), name="haic-preload", daemon=True)
        _thread.start()


def wait() -> None:
    if _thread is not None:
        _thread.join()
