"""Warehouses refreshed by a real `haic run` (a child process, as `make run` starts it), built once
per test run and shared by every xdist worker (shared.built_once). A test reads a shared folder
and never writes it: one that runs `haic` or opens the warehouse read-write works on a copy
(`copy_into`). Each folder has the `env` fixture's layout, so a copy into `env` is what that test's
HAIC_* variables point at:

    inbox/                 the drops
    wh/haic.duckdb         the pipeline's warehouse; wh/analytics.duckdb, wh/reports/ beside it
    dagster_home/          the run history of the refresh
    run.json               what `haic run` printed (each stdout line with the time it arrived)

- `demo`: `haic run` on an empty inbox: it writes the six synthetic demo drops, lands them and
  refreshes everything.
- `five_of_six`: the same demo drops (all six in all/), the first five in the inbox, refreshed by
  `haic run --no-demo`; the sixth is the "new drop" a test delivers to its copy.
- `blocked`: two hand-built drops, a clean first one (40 patients) and a delta with 10 of its 20
  ECOG values out of range, refreshed by `haic run --no-demo`: the blocking check fails, the study
  is blocked (the run exits 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from haic_pipeline.synthetic import write_drops

from .conftest import TEST_KEY
from .shared import built_once

LAYOUT = ("inbox", "wh", "dagster_home")


def haic_env(base: Path, **extra: str) -> dict[str, str]:
    """The environment of a `haic` process on the layout under `base`."""
    env = dict(os.environ)
    for name in ("HAIC_REPORTS", "HAIC_TEST_KILL_AT"):  # reports beside the warehouse; never killed
        env.pop(name, None)
    env.update(HAIC_INBOX=str(base / "inbox"), HAIC_WAREHOUSE=str(base / "wh" / "haic.duckdb"),
               DAGSTER_HOME=str(base / "dagster_home"), HAIC_PSEUDONYM_KEY=TEST_KEY, HAIC_ENV="test", **extra)
    return env


def haic_timed(*args: str, env: dict[str, str]) -> tuple[int, list[tuple[float, str]], str]:
    """`haic ...` with every line of its standard output stamped with the time it arrived (its
    standard error into a file meanwhile: a pipe read only at the end would stop it once full)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "haic_pipeline.cli", *args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=err)
        lines = [(time.monotonic(), line.rstrip("\n")) for line in proc.stdout]
        code = proc.wait(timeout=900)
        err.seek(0)
        return code, lines, err.read()


@dataclass(frozen=True)
class Refreshed:
    folder: Path
    code: int                          # the exit status of `haic run`
    lines: list[tuple[float, str]]     # its standard output, (time the line arrived, line)
    stderr: str

    @property
    def stdout(self) -> str:
        return "\n".join(text for _, text in self.lines)

    def succeeded(self) -> Refreshed:
        assert self.code == 0, self.stdout[-2000:] + self.stderr[-2000:]
        return self

    def copy_into(self, base: Path) -> dict[str, str]:
        """The warehouse, its inbox and run history copied under `base` (same layout); returns the
        environment of `haic` there."""
        for name in LAYOUT:
            shutil.copytree(self.folder / name, base / name, dirs_exist_ok=True)
        return haic_env(base)


def _run_and_record(folder: Path, *args: str) -> None:
    for name in LAYOUT:
        (folder / name).mkdir(exist_ok=True)
    code, lines, stderr = haic_timed(*args, env=haic_env(folder))
    (folder / "run.json").write_text(json.dumps({"code": code, "lines": lines, "stderr": stderr}))


def _build_demo(folder: Path) -> None:
    _run_and_record(folder, "run")


def _build_five_of_six(folder: Path) -> None:
    drops = write_drops(folder / "all")     # the demo drops, as `haic run` writes them
    for drop in drops[:5]:
        shutil.copytree(drop, folder / "inbox" / drop.name)
    _run_and_record(folder, "run", "--no-demo")


def _build_blocked(folder: Path) -> None:
    from .dropkit import write_drop
    from .quality.test_quality import E1, E2, cohort

    write_drop(folder / "inbox", E1, cohort(40))
    write_drop(folder / "inbox", E2, cohort(20, start=41, bad_ecog=10))   # 10 of 20 ECOG values out of range
    _run_and_record(folder, "run", "--no-demo")


def demo(tmp_path_factory) -> Refreshed:
    return _load(built_once(tmp_path_factory, "refreshed_demo", _build_demo))


def five_of_six(tmp_path_factory) -> Refreshed:
    return _load(built_once(tmp_path_factory, "refreshed_five_of_six", _build_five_of_six))


def blocked(tmp_path_factory) -> Refreshed:
    return _load(built_once(tmp_path_factory, "refreshed_blocked", _build_blocked))


def _load(folder: Path) -> Refreshed:
    run = json.loads((folder / "run.json").read_text())
    return Refreshed(folder, run["code"], [(t, text) for t, text in run["lines"]], run["stderr"])
