"""Helpers for the statistics tests: where the shared R reference results live.

The reference folder is ``$HAIC_SHARED_DIR/reference/r_survival`` when HAIC_SHARED_DIR is
set, else ``<repo root>/../shared/reference/r_survival`` (``r_beyond`` beside it for the
analyses of study_spec §5); tests that need it skip with the path they looked at when it is
absent.
"""

from __future__ import annotations

import math

import json
import os
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWN_DATASETS = ("aml", "lung", "lung_months", "veteran")


def shared_dir() -> Path:
    env = os.environ.get("HAIC_SHARED_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared")


def reference_dir() -> Path:
    return shared_dir() / "reference" / "r_survival"


def beyond_dir() -> Path:
    """R's numbers for the "beyond the paper" analyses (study_spec §5): r_beyond/."""
    return shared_dir() / "reference" / "r_beyond"


def discover_datasets() -> list[str]:
    """Every NAME with both NAME.csv and NAME.json in the reference folder."""
    d = reference_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if (d / f"{p.stem}.csv").is_file())


def skip_message() -> str:
    src = "HAIC_SHARED_DIR" if os.environ.get("HAIC_SHARED_DIR") else "<repo root>/../shared"
    return f"R reference folder not found: looked at {reference_dir()} (from {src})"


def load_dataset(name: str) -> tuple[pd.DataFrame, dict]:
    d = reference_dir()
    if not d.is_dir():
        pytest.skip(skip_message())
    frame = pd.read_csv(d / f"{name}.csv")
    with open(d / f"{name}.json", encoding="utf-8") as fh:
        ref = json.load(fh)
    return frame, ref


def compare_reference(ref, got, path: str, rtol: float, failures: list, counter: list, exact: set) -> None:
    """Walk an R reference block and the computed one: every leaf compared (text, lists and the
    keys in `exact` exactly, numbers to `rtol` relative), each leaf's path added to `counter`,
    each mismatch to `failures`. A key missing from the computed block is a failure."""
    if isinstance(ref, dict):
        if not isinstance(got, dict):
            failures.append(f"{path}: expected a mapping, got {got!r}")
            return
        for key, val in ref.items():
            if key not in got:
                failures.append(f"{path}.{key}: in the R reference but not computed")
                continue
            compare_reference(val, got[key], f"{path}.{key}", rtol, failures, counter, exact)
        return
    counter.append(path)
    key = path.rsplit(".", 1)[-1]
    if ref is None or got is None:
        if not (ref is None and got is None):
            failures.append(f"{path}: R {ref!r}, got {got!r}")
        return
    if isinstance(ref, (str, list)) or key in exact:
        if ref != got:
            failures.append(f"{path}: R {ref!r}, got {got!r} (must be exact)")
        return
    if not math.isclose(float(got), float(ref), rel_tol=rtol, abs_tol=0.0):
        failures.append(f"{path}: R {ref!r}, got {got!r} (rel diff {float(got) / float(ref) - 1:.2e})")


def compare_sections(ref: dict, got: dict, rtol_of, exact: set, special=None) -> tuple[list, list]:
    """compare_reference for every section of an R reference: (failures, the leaves compared). A
    section the computation lacks is a failure; `rtol_of(section)` is its tolerance;
    `special(section, block, got_block, failures, counter)`, when it returns True, has compared
    that section itself."""
    failures: list = []
    counter: list = []
    for section, block in ref.items():
        if section not in got:
            failures.append(f"{section}: reference section not computed by the test")
            continue
        if special is not None and special(section, block, got[section], failures, counter):
            continue
        compare_reference(block, got[section], section, rtol_of(section), failures, counter, exact)
    return failures, counter
