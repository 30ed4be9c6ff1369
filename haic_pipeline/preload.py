"""Import Great Expectations in a background thread while the process waits on DuckDB.

`haic run` lands the drops first (DuckDB work that leaves the interpreter mostly free), then runs
the refresh in the same process, whose first check otherwise spends ~4 s importing GX (measured
on the 100,000-patient benchmark: `drop_changes` 6.4 s -> 3.3 s). The analysis libraries are
left to the analysis assets: importing them here too showed no gain within this machine's
run-to-run noise. `wait()` joins the thread: the data-quality pool calls it before forking its
workers, so that no module is half-imported in the forked copies.
"""

from __future__ import annotations

import threading

_thread: threading.Thread | None = None


def _work() -> None:
    try:
        from haic_pipeline.quality.gx_runtime import load_gx  # noqa: PLC0415

        load_gx()
    except Exception:  # noqa: BLE001 - the checks import it again and report any error
        pass


def start() -> None:
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_work, name="haic-preload", daemon=True)
        _thread.start()


def wait() -> None:
    if _thread is not None:
        _thread.join()
