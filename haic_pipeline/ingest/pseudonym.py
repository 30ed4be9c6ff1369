"""Pseudonymisation of the hospital's patient_id (study_spec §4).

patient_key = first 16 hex digits of HMAC-SHA256(key = HAIC_PSEUDONYM_KEY, message = patient_id),
both encoded as UTF-8. The same patient_id always gives the same key under the same secret, so
drops join across time, and nobody without the secret can go back from key to patient.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PATIENT_ID_PATTERN = re.compile(r"^[0-9]{8}$")


def patient_key(patient_id: str, key: str) -> str:
    """HMAC-SHA256(key, patient_id)[:16] in hex."""
    return hmac.new(key.encode("utf-8"), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class Pseudonymiser:
    """patient_key for many ids: the keyed HMAC state is built once and copied per id, and each
    id is computed once per drop however many files mention it."""

    def __init__(self, key: str, pattern: str | None = None):
        self._base = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
        self._regex = re.compile(pattern) if pattern else PATIENT_ID_PATTERN
        self._cache: dict[str, tuple[str, bool]] = {}

    def __call__(self, patient_id: str) -> tuple[str, bool]:
        hit = self._cache.get(patient_id)
        if hit is None:
            h = self._base.copy()
            h.update(patient_id.encode("utf-8"))
            hit = (h.hexdigest()[:16], bool(self._regex.match(patient_id)))
            self._cache[patient_id] = hit
        return hit


def key_table(patient_ids: list[str | None], pseudonymise: Pseudonymiser):
    """A DataFrame (pid, patient_key, valid) for the distinct ids of one file.

    `pid` is the trimmed id as delivered; `valid` says whether it matches the contract's pattern.
    Missing ids get no key. The frame lives in Python memory only, never in the warehouse.
    """
    import pandas as pd

    pids = [p for p in patient_ids if p]
    keys = [pseudonymise(p) for p in pids]
    return pd.DataFrame({
        "pid": pd.Series(pids, dtype="string"),
        "patient_key": pd.Series([k for k, _ in keys], dtype="string"),
        "valid": pd.Series([v for _, v in keys], dtype="bool"),
    })
