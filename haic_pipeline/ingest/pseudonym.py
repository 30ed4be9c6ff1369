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


def key_table(patient_ids: list[str | None], key: str, pattern: str | None = None):
    """A DataFrame (pid, patient_key, valid) for the distinct ids of one file.

    `pid` is the trimmed id as delivered; `valid` says whether it matches the contract's pattern.
    Missing ids get no key. The frame lives in Python memory only, never in the warehouse.
    """
    import pandas as pd

    regex = re.compile(pattern) if pattern else PATIENT_ID_PATTERN
    rows = []
    for pid in patient_ids:
        if pid is None or pid == "":
            continue
        rows.append((pid, patient_key(pid, key), bool(regex.match(pid))))
    return pd.DataFrame(rows, columns=["pid", "patient_key", "valid"]).astype(
        {"pid": "string", "patient_key": "string", "valid": "bool"}
    )
