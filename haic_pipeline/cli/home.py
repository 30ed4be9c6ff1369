"""What every `haic` command that touches Dagster or the warehouse shares: the Dagster home
(`DAGSTER_HOME`, default warehouse/dagster_home, given the project's instance settings when it has
none), the lock that lets one `haic run` (or backup, or restore) at a time use it, and how a
command prints a line of progress."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from haic_pipeline.settings import project_root
from haic_pipeline.warehouse.faults import check_writable


def say(msg: str) -> None:
    """One line of a command's output, flushed at once (a long refresh is never a silent wait)."""
    print(msg, flush=True)


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (set to warehouse/dagster_home when unset), writable, with deploy/dagster.yaml
    copied in when it has no dagster.yaml of its own."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(project_root() / "warehouse" / "dagster_home")
        os.environ["DAGSTER_HOME"] = home
    path = Path(home)
    check_writable(path, "DAGSTER_HOME folder")
    template = project_root() / "deploy" / "dagster.yaml"
    if not (path / "dagster.yaml").exists() and template.exists():
        (path / "dagster.yaml").write_text(template.read_text())
    return path


@contextmanager
def run_lock(dagster_home: Path):
    """One `haic run` at a time per DAGSTER_HOME (an flock, released by the kernel on any exit,
    SIGKILL included)."""
    fh = open(dagster_home / "haic-run.lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another `haic run` is using {dagster_home}; wait for it to finish") from None
        yield
    finally:
        fh.close()
