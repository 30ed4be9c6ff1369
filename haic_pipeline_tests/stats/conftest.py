"""Fixtures for the statistics tests (helpers in ``stats_reference.py``)."""

from __future__ import annotations

import pandas as pd
import pytest

from .stats_reference import load_dataset


@pytest.fixture
def lung() -> tuple[pd.DataFrame, dict]:
    return load_dataset("lung")


@pytest.fixture
def veteran() -> tuple[pd.DataFrame, dict]:
    return load_dataset("veteran")


@pytest.fixture
def lung_months() -> tuple[pd.DataFrame, dict]:
    return load_dataset("lung_months")
