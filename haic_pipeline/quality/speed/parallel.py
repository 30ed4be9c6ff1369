"""Validate a large backlog on every core: GX in worker processes, DuckDB in the parent.

Great Expectations' pandas engine is Python: graph building per validation run plus the pandas
work, all under one GIL, so a large backlog keeps one core busy while the others wait. This
module runs those validations in a pool of worker processes (`HAIC_DQ_WORKERS`, default: the machine's
cores, at most 4) while the parent keeps reading the next frames from DuckDB:

- the parent alone touches DuckDB (DuckDB allows one writing process), and writes results
  only once a check's frames are all read (a statement on the connection would end the result
  being fetched); workers get pandas frames and their rows' drop codes (pickled) and return
  only counts per drop (`attribution.run_frame`: drop -> rule -> evaluated, unexpected, success,
  exception), so identifier values never cross a process boundary either;
- workers are forked once GX is imported in the parent (so none pays the import again;
  the gate starts that import in a thread, `preload.start(load_gx)`, while the drop-level checks run;
  `HAIC_DQ_START_METHOD=spawn` imports it in each worker instead). They only run GX on the
  frames they receive, never DuckDB or Dagster, so the parent's other threads do not matter,
  except an import under way in another thread: `preload.wait()` comes first. Each keeps one
  `SuiteRunner` per check spec, built from the same `CheckSpec` as in-process;
- results are aggregated per drop exactly as in-process (`validate.add_chunk` / `finish`), so
  the verdicts are identical (a test compares both paths rule by rule);
- at most `2 x workers` frames are in flight, so memory stays bounded.

The pool is used only for a backlog worth it: at least `HAIC_DQ_PARALLEL_MIN_ROWS` rows
(default 5,000,000, all domains of the pending drops, from `ops.load_log`), e.g. the first
refresh of a large history. A nightly delta (~2 M rows at 100k patients) and the tests' small
drops stay in-process, where starting the pool would cost about what it saves.
Once started, the pool serves every later check of the same process (a Dagster run), then
exits with it.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import pickle
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor

import pandas as pd

from haic_pipeline import preload
from haic_pipeline.quality.gx_runtime import load_gx
from haic_pipeline.quality.suites import CheckSpec
from haic_pipeline.quality.validate import shared_session, spec_key
from haic_pipeline.settings import quality_settings

log = logging.getLogger(__name__)

_pool: ProcessPoolExecutor | None = None
_pool_workers = 0


def workers() -> int:
    """Worker processes to use (`HAIC_DQ_WORKERS`; 0 or 1 = validate in-process)."""
    return quality_settings().workers


def started() -> bool:
    return _pool is not None


def wanted(pending_rows: int) -> bool:
    """Use the pool for this backlog? (never with fewer than two workers)"""
    if workers() < 2:
        return False
    return started() or pending_rows >= quality_settings().parallel_min_rows


def pool() -> ProcessPoolExecutor:
    global _pool, _pool_workers
    n = workers()
    if _pool is None or _pool_workers != n:
        shutdown()
        method = quality_settings().start_method
        if method == "fork":
            preload.wait()  # never fork while another thread is half-way through an import
            load_gx()  # imported once here, inherited by every worker
        _pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method),
                                    initializer=_worker_init)
        _pool_workers = n
        log.info("data-quality: validating in %d worker processes", n)
    return _pool


def shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


atexit.register(shutdown)


# ---------------------------------------------------------------------------------------------
# worker side

def _worker_init() -> None:
    preload.hold_collector()  # a spawned worker imports GX here (a forked one has it: no-op)
    shared_session()  # built while the parent reads the first frames
    preload.release_collector()


def _run_chunk(members: list[tuple[CheckSpec, list[str] | None]], keys: list[str], scope: str,
               frame: bytes) -> list[dict[int, dict[str, dict]]]:
    """In a worker: validate one (pickled) frame and its rows' drop codes with the generated
    suite for `scope` of each member check (`validate.run_members`: the worker keeps one runner
    per spec key); counts per drop code only, one dict per member."""
    from haic_pipeline.quality.speed.attribution import run_members  # noqa: PLC0415

    df, codes = pickle.loads(frame)
    return run_members(members, scope, df, codes, keys)


# ---------------------------------------------------------------------------------------------
# parent side


def validate_chunks(chunks: Iterable[tuple[str, list[tuple[CheckSpec, list[str] | None]], pd.DataFrame, list, object]],
                    on_result: Callable[[str, list, list, list[dict]], None]) -> None:
    """Validate each (scope, members, frame, labels, codes) of `chunks` (read from DuckDB here,
    in the parent) in the pool, with the suite of each member (check, its frame columns or None);
    `on_result(scope, members, labels, counts per code of each member)` per chunk, in order."""
    executor = pool()
    keys: dict[tuple[str, str], str] = {}
    limit = 2 * max(1, _pool_workers)
    queue: deque[tuple[str, list, list, Future]] = deque()
    for scope, members, df, labels, codes in chunks:
        while len(queue) >= limit:
            on_result(*_settled(queue.popleft()))
        for check, _cols in members:
            if (check.name, scope) not in keys:
                keys[(check.name, scope)] = spec_key(check, scope)
        member_keys = [keys[(check.name, scope)] for check, _cols in members]
        # pickled here, before the next fetch: what is in flight is bytes, not live frames
        queue.append((scope, members, labels, executor.submit(_run_chunk, members, member_keys, scope,
                                                              pickle.dumps((df, codes), protocol=5))))
    while queue:
        on_result(*_settled(queue.popleft()))


def _settled(entry: tuple[str, list, list, Future]) -> tuple[str, list, list, list[dict]]:
    scope, members, labels, future = entry
    return scope, members, labels, future.result()
