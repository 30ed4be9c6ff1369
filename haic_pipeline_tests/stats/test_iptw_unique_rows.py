"""The distinct rows of the separation check (iptw._unique_rows) are np.unique(axis=0)'s: the
same rows in the same order with the same counts, so the linear program is the same."""

from __future__ import annotations

import numpy as np
import pytest

from haic_pipeline.stats.iptw import _unique_rows


def _design(n, p, seed, continuous=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, p)) < rng.uniform(0.1, 0.6, p)).astype(float)
    x[:, :continuous] = rng.normal(size=(n, continuous)).round(1) + 0.0  # no -0.0 among the covariates
    a = (rng.random(n) < 0.35).astype(float)
    ys = (2 * a - 1)[:, None] * np.column_stack([np.ones(n), x])  # -0.0 where a = 0 and x = 0
    return ys / np.maximum(np.abs(ys).max(axis=0), 1.0)


@pytest.mark.parametrize("n,p,continuous", [(1, 3, 0), (50, 2, 0), (5000, 11, 0), (3000, 6, 2), (800, 4, 4)])
def test_unique_rows_are_numpys(n, p, continuous):
    ys = _design(n, p, seed=n + p, continuous=continuous)
    rows, counts = _unique_rows(ys)
    want_rows, want_counts = np.unique(ys, axis=0, return_counts=True)
    np.testing.assert_array_equal(rows, want_rows)
    # the same zeros: -0.0 comes only with the treatment's sign, the same within equal rows
    np.testing.assert_array_equal(np.signbit(rows), np.signbit(want_rows))
    np.testing.assert_array_equal(counts, want_counts)


def test_unique_rows_of_nothing():
    rows, counts = _unique_rows(np.empty((0, 3)))
    assert rows.shape == (0, 3) and counts.shape == (0,)
