"""Legacy opaque QR texts -> 64-bit vehicle ids, by a keyed hash.

Older QR codes carry an opaque registration text, not a signed token. Headquarters maps
each to a vehicle id with BLAKE2b keyed by a salt it publishes in the signed allow-list
manifest, so the text itself never travels in the list and ids cannot be precomputed
without the salt.
"""

from __future__ import annotations

import hashlib

SALT_BYTES = 16
MAX_LEGACY_LEN = 200


def legacy_vehicle_id(text: str, salt: bytes) -> int:
    """The vehicle id for a legacy QR text under `salt`; never 0 (0 means "no vehicle")."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"salt must be {SALT_BYTES} bytes")
    raw = text.strip().encode("utf-8")
    if not raw or len(raw) > MAX_LEGACY_LEN:
        raise ValueError(f"legacy QR text must be 1 to {MAX_LEGACY_LEN} bytes")
    digest = hashlib.blake2b(raw, key=salt, digest_size=8, person=b"spbu-legacy-qr").digest()
    return int.from_bytes(digest, "big") or 1
