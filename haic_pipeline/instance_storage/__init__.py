"""The Dagster instance's storage, as DAGSTER_HOME/dagster.yaml names it (`storage: custom:`):
Dagster's own stores (runs, event log, schedules: their tables, SQL and files unchanged), each
holding an open database connection instead of opening one for every query.

- `postgres.py`: production (deploy/production/dagster.yaml), dagster-postgres's stores;
- `sqlite.py`: everywhere else (deploy/dagster.yaml: `make run`, `make ui`), the SQLite stores
  under DAGSTER_HOME.

Each module imports only its own database's Dagster package.
"""

from __future__ import annotations

import atexit
import os
import weakref

from sqlalchemy.engine import Engine

_open: weakref.WeakSet[Engine] = weakref.WeakSet()
_pid = os.getpid()


def closing_at_exit(engine: Engine) -> Engine:
    """`engine`, whose connections the process's exit closes if nothing closed them before (an
    instance nobody disposed; Dagster never disposes an instance's schedule store). `haic` exits
    with `os._exit` after running the exit handlers (cli/main.py: program), so this is where its
    connections close: a SQLite database's last connection checkpoints it, PostgreSQL ends the
    session cleanly. A forked child (the data-quality pool's workers) never closes its parent's
    connections: it ends with `os._exit`, and the handler acts only in the process that made them."""
    _open.add(engine)
    return engine


@atexit.register
def _close_all() -> None:
    if os.getpid() != _pid:
        return
    for engine in list(_open):
        engine.dispose()
