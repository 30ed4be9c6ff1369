"""Expensive test inputs (warehouses refreshed by a real `haic run`, refreshed.py) built once per
test run and shared by every pytest-xdist worker: the first worker that asks builds the folder
under a file lock, the others wait for it and use the same folder. Tests only read a shared
folder; a test that changes it works on a copy (copying a DuckDB file is cheap)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temp folder of this test run, shared by its workers (each worker's own base temp is
    <run folder>/popen-gwN under xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """<run folder>/shared/<name>, filled by build(folder) the first time any worker asks for it."""
    root = run_root(tmp_path_factory) / "shared"
    root.mkdir(exist_ok=True)
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)   # what a failed build left
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder
