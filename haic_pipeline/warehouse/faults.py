"""Storage faults (a full disk, a read-only folder, a warehouse another process holds) told apart from every other error, so `haic run`
and the run-failure sensor say so plainly and name the path instead of ending on a traceback.

Nothing half-written survives such a fault: every asset writes its tables in one DuckDB transaction
(a failed commit keeps the last committed version) and the analysts' copy is a temporary file
renamed into place only when complete (removed on failure)."""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

_NO_SPACE = ("no space left on device", "database or disk is full", "disk quota exceeded")
_READ_ONLY = ("read-only file system", "permission denied", "operation not permitted", "readonly database")
_QUOTED_PATH = re.compile(r"""["'](/[^"']+)["']""")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


class StorageFault(RuntimeError):
    """The warehouse, the reports or DAGSTER_HOME cannot be written (disk full or read-only)."""


INTACT = "the previous results are intact (nothing half-written is kept)"


def disk_full_message(path) -> str:
    return f"disk full while writing {path}: free space and rerun; {INTACT}"


def read_only_message(path, what: str, reason: str = "", outcome: str = INTACT) -> str:
    why = f" ({reason})" if reason else ""
    return f"{what} {path} is read-only / not writable{why}: make it writable and rerun; {outcome}"


def locked(text: str) -> bool:
    """DuckDB's error when another process holds the database file's lock."""
    return "could not set lock" in text.lower()


def lock_message(path, text: str = "") -> str:
    holder = _LOCK_HOLDER.search(text)
    who = f" ({holder.group(1)}, PID {holder.group(2)})" if holder else ""
    path = Path(path)
    return (f"warehouse {path} is open in another process{who}, which holds its lock (an analyst's "
            f"session or another `haic run`): close it and rerun; analysts can read "
            f"{path.parent / 'analytics.duckdb'}, which never blocks a refresh; nothing was changed")


def describe(text: str, path=None) -> str | None:
    """A clear message if `text` (an error's message, or several joined) is a full disk, a
    read-only file system or a DuckDB file locked by another process, naming the first quoted
    absolute path in it (else `path`); else None."""
    lowered = text.lower()
    found = _QUOTED_PATH.search(text)
    where = found.group(1) if found else path
    if locked(text):
        return lock_message(where or "the warehouse", text)
    if any(s in lowered for s in _NO_SPACE):
        return disk_full_message(where or "the warehouse")
    if any(s in lowered for s in _READ_ONLY):
        return read_only_message(where or "the warehouse", "path")
    return None


def nearly_full(*folders: Path, below: int = 1 << 20) -> Path | None:
    """The first existing folder whose disk has less than `below` bytes free (for errors that do
    not say why, such as SQLite's "disk I/O error" from Dagster's run storage on a full disk)."""
    for folder in folders:
        folder = Path(folder)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            if shutil.disk_usage(folder).free < below:
                return folder
        except OSError:
            continue
    return None


def check_writable(folder: Path, what: str) -> None:
    """Create `folder` if missing, then create and delete a file in it; raises StorageFault.
    (As root, permission bits do not stop writes; a read-only mount does, and this finds it.)"""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".haic-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFault(disk_full_message(folder)) from None
        raise StorageFault(read_only_message(folder, what, exc.strerror, "nothing was changed")) from None
