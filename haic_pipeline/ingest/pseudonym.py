"""Pseudonymisation of the hospital's patient_id (study_spec §4).

patient_key = first 16 hex digits of HMAC-SHA256(key = HAIC_PSEUDONYM_KEY, message = patient_id),
both encoded as UTF-8. The same patient_id always gives the same key under the same secret, so
drops join across time, and nobody without the secret can go back from key to patient.

Landing computes it in DuckDB (`patient_key_sql`, RFC 2104 spelled out with DuckDB's sha256), so
that the ids never pass through Python; `patient_key` is the same function in Python (the tests
check that both agree). The key's pads are passed as query parameters, never stored.
"""

from __future__ import annotations

import hashlib
import hmac

PATIENT_ID_PATTERN = r"^[0-9]{8}$"
_BLOCK = 64  # SHA-256's block size in bytes


def patient_key(patient_id: str, key: str) -> str:
    """HMAC-SHA256(key, patient_id)[:16] in hex."""
    return hmac.new(key.encode("utf-8"), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def hmac_pads(key: str) -> dict[str, bytes]:
    """The inner and outer padded keys of HMAC-SHA256 (RFC 2104): the query parameters
    `haic_ipad` / `haic_opad` of `patient_key_sql`."""
    k = key.encode("utf-8")
    if len(k) > _BLOCK:
        k = hashlib.sha256(k).digest()
    k = k.ljust(_BLOCK, b"\0")
    return {"haic_ipad": bytes(b ^ 0x36 for b in k), "haic_opad": bytes(b ^ 0x5C for b in k)}


def patient_key_sql(expr: str) -> str:
    """DuckDB SQL of patient_key(expr): sha256(opad || sha256(ipad || expr)), first 16 hex digits
    (parameters from hmac_pads)."""
    return f"left(sha256($haic_opad || unhex(sha256($haic_ipad || encode({expr})))), 16)"
